//! The privilege gate shared by every test that needs namespaces, AF_XDP or BPF.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Returns true when this process may build network namespaces (euid 0 and `ip netns` works).
///
/// Otherwise a test should return early: `if !kxdp_tests::require_root("forward") { return; }`.
/// Under `CI=true` a missing privilege is a failure, not a skip, so a misconfigured CI job
/// cannot silently pass every end-to-end test.
pub fn require_root(test: &str) -> bool {
    let Err(why) = capability() else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: CI=true requires root for network namespaces / AF_XDP, refusing to skip");
    }
    eprintln!("skipped {test}: needs root (network namespaces, AF_XDP, BPF)");
    if why != NOT_ROOT {
        eprintln!("  ({why})");
    }
    false
}

const NOT_ROOT: &str = "effective uid is not 0";

/// Probed once per process: `ip netns list` forks a process.
fn capability() -> Result<(), &'static str> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !nix::unistd::geteuid().is_root() {
                return Err(NOT_ROOT.to_owned());
            }
            match Command::new("ip")
                .args(["netns", "list"])
                .stdout(Stdio::null())
                .output()
            {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!(
                    "`ip netns list` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Err(format!("cannot run `ip` (iproute2): {e}")),
            }
        })
        .as_ref()
        .copied()
        .map_err(String::as_str)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn root_here_means_capable() {
        // The harness machine runs as root; elsewhere this is a plain skip.
        if nix::unistd::geteuid().is_root() {
            assert_eq!(capability(), Ok(()));
            assert!(require_root("privilege::root_here_means_capable"));
        }
    }
}
