//! Test support for the bpf module: the root check and a throwaway network
//! namespace with a veth pair.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether a privileged test may run. Not root: with `CI=true` this panics
/// (CI must run these), otherwise it prints a skip note and returns false.
pub(crate) fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs root (CAP_BPF/CAP_NET_ADMIN) and CI=true: run CI as root");
    }
    eprintln!("skipped: needs root (CAP_BPF/CAP_NET_ADMIN)");
    false
}

/// A network namespace named `kxdp-bpf-test-<pid>-<n>`, deleted on drop
/// (also when the test fails).
pub(crate) struct TestNetns {
    name: String,
    file: File,
}

impl TestNetns {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kxdp-bpf-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        // Construct the guard before anything else can fail, so Drop deletes it.
        let file = match File::open(format!("/run/netns/{name}")) {
            Ok(f) => f,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                panic!("open /run/netns/{name}: {e}");
            }
        };
        TestNetns { name, file }
    }

    /// Runs `ip -n <ns> <args>` and returns its stdout; panics on failure.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Index of `dev` inside the namespace (from `ip -o link show`, which
    /// prints `<index>: <name>...`).
    pub(crate) fn ifindex(&self, dev: &str) -> u32 {
        let out = self.ip(&["-o", "link", "show", "dev", dev]);
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex in {out:?}"))
    }

    /// Runs `f` on a fresh thread that has entered the namespace, so the
    /// test's own thread stays where it was.
    pub(crate) fn run_inside<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter_netns(fd);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veths inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn enter_netns(fd: BorrowedFd<'_>) {
    // SAFETY: setns only changes the calling thread's network namespace; `fd`
    // is a live namespace fd borrowed for the call. Only this dedicated test
    // thread is affected.
    let ret = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
