//! Before anything is built: root, the CNI plugins the demo runs, one demo at a time, and what
//! an earlier, killed run left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

use super::netns;

/// Where the standard CNI plugins live: Debian/Ubuntu's `containernetworking-plugins`
/// package, then the upstream release tarball's (and Kubernetes') location.
pub const CNI_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// Held for the whole run; the kernel releases it when the process dies, however it dies.
const LOCK_FILE: &str = "/run/kxdp-demo.lock";
/// Temporary directories are `<tmp>/kxdp-demo-<pid>`.
pub const TEMP_PREFIX: &str = "kxdp-demo-";

/// What the preflight found.
#[derive(Debug)]
pub struct Preflight {
    /// The `kxdp` binary (this process), which the demo runs as the agent.
    pub kxdp: PathBuf,
    /// `kxdp-cni`, next to it.
    pub kxdp_cni: PathBuf,
    /// The directory holding `host-local`.
    pub cni_plugin_dir: PathBuf,
    /// Held until the process exits.
    _lock: Flock<File>,
    /// What was swept: namespaces, processes and directories of earlier runs.
    pub swept: Vec<String>,
}

/// Checks what the demo needs and sweeps leftovers. Errors say what to install or run.
pub fn run() -> anyhow::Result<Preflight> {
    if effective_uid() != Some(0) {
        bail!(
            "kxdp demo needs root: it creates network namespaces, veth pairs and a VXLAN \
             device, and the agent attaches XDP programs (run it with sudo)"
        );
    }
    let cni_plugin_dir = CNI_PLUGIN_DIRS
        .iter()
        .map(Path::new)
        .find(|d| d.join("host-local").is_file())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "the CNI plugin host-local is not installed (looked in {}): install the \
                 package containernetworking-plugins (apt install containernetworking-plugins), \
                 or unpack the plugins release into /opt/cni/bin",
                CNI_PLUGIN_DIRS.join(" and ")
            )
        })?;
    let kxdp = std::env::current_exe().context("finding the kxdp binary (current_exe)")?;
    let kxdp_cni = kxdp
        .parent()
        .map(|dir| dir.join("kxdp-cni"))
        .filter(|p| p.is_file())
        .with_context(|| {
            format!(
                "kxdp-cni is not next to {} (the demo attaches pods with it): build it with \
                 `cargo build --release -p kxdp-control`, which builds both binaries",
                kxdp.display()
            )
        })?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!(
            "another kxdp demo is running (it holds {LOCK_FILE}: {errno}); wait for it or \
             stop it with Ctrl-C"
        )
    })?;
    let swept = sweep();
    Ok(Preflight {
        kxdp,
        kxdp_cni,
        cni_plugin_dir,
        _lock: lock,
        swept,
    })
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Removes what a killed run left: its processes (an agent outlives a SIGKILLed demo, in its
/// own process group), its namespaces, its temporary directory. Only called with the lock
/// held, so nothing found here belongs to a live demo.
fn sweep() -> Vec<String> {
    let mut swept = Vec::new();
    for name in netns::list_demo() {
        let ended = netns::end_processes_in(&name, Duration::from_secs(3));
        if ended > 0 {
            swept.push(format!("{ended} process(es) in {name}"));
        }
        match netns::delete(&name) {
            Ok(()) => swept.push(format!("namespace {name}")),
            Err(e) => eprintln!("kxdp demo: sweeping a stale namespace: {e}"),
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(TEMP_PREFIX)
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if !netns::alive(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
                swept.push(format!("directory {}", entry.path().display()));
            }
        }
    }
    swept
}
