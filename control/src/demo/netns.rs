//! Named network namespaces without the `ip` tool, compatible with `ip netns`.
//!
//! A namespace is made as `ip netns add` makes it: a thread `unshare(CLONE_NEWNET)`s and
//! bind-mounts its `/proc/thread-self/ns/net` onto `/run/netns/<name>`; the mount keeps the
//! namespace alive after the thread is gone, and `ip netns exec <name>` works on it while the
//! demo runs. Code runs inside one from a thread that `setns`'d into it (a network namespace
//! is per thread); a process started from such a thread is born in it, since `fork` copies the
//! calling thread's namespaces.
//!
//! Deleting one unmounts and removes the file; the kernel frees the namespace (and with it
//! every interface inside, e.g. a veth whose other end is elsewhere) once the last process,
//! thread or open file referring to it is gone.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netlink::Netlink;

/// Where `ip netns` keeps its namespaces.
pub const RUN_DIR: &str = "/run/netns";
/// Every namespace the demo makes is called `kxdp-demo-<role>`.
pub const PREFIX: &str = "kxdp-demo-";

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The message names the step and the namespace.
    #[error("network namespace {name}: {what}: {source}")]
    Io {
        name: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A system call refused.
    #[error("network namespace {name}: {what}: {errno}")]
    Sys {
        name: String,
        what: &'static str,
        errno: nix::errno::Errno,
    },
}

/// An open handle on a named namespace. Dropping it closes the handle only; [`delete`]
/// removes the namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Creates `/run/netns/<name>` with its loopback up. EEXIST if the name is taken.
    pub fn create(name: &str) -> Result<Netns, NetnsError> {
        let io = |what| {
            let name = name.to_owned();
            move |source| NetnsError::Io { name, what, source }
        };
        let sys = |what| {
            let name = name.to_owned();
            move |errno| NetnsError::Sys { name, what, errno }
        };
        std::fs::create_dir_all(RUN_DIR).map_err(io("creating /run/netns"))?;
        share_run_dir();
        let path = Path::new(RUN_DIR).join(name);
        // The mount point: an empty file, made exclusively so two runs cannot share a name.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
            .map_err(io("creating the mount point"))?;
        let target = path.clone();
        let made = std::thread::spawn(move || -> Result<(), nix::errno::Errno> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .unwrap_or(Err(nix::errno::Errno::EINTR));
        if let Err(errno) = made {
            let _ = std::fs::remove_file(&path);
            return Err(sys("unshare + bind mount")(errno));
        }
        let file = File::open(&path).map_err(io("opening"))?;
        let ns = Netns {
            name: name.to_owned(),
            path,
            file,
        };
        ns.netlink()
            .and_then(|mut nl| nl.set_link_up("lo"))
            .map_err(|e| NetnsError::Io {
                name: name.to_owned(),
                what: "bringing lo up",
                source: std::io::Error::other(e),
            })?;
        Ok(ns)
    }

    /// Opens an existing namespace by name.
    pub fn open(name: &str) -> Result<Netns, NetnsError> {
        let path = Path::new(RUN_DIR).join(name);
        let file = File::open(&path).map_err(|source| NetnsError::Io {
            name: name.to_owned(),
            what: "opening",
            source,
        })?;
        Ok(Netns {
            name: name.to_owned(),
            path,
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, what `CNI_NETNS` carries.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// A netlink socket in this namespace.
    pub fn netlink(&self) -> crate::netlink::Result<Netlink> {
        Netlink::open_in(self.fd())
    }

    /// Runs `f` on a thread inside the namespace and waits for it. A panic in `f` is passed
    /// on to the caller.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        let fd = self.fd();
        std::thread::scope(|scope| {
            let helper = scope.spawn(move || {
                setns(fd, CloneFlags::CLONE_NEWNET)?;
                Ok(f())
            });
            match helper.join() {
                Ok(result) => result.map_err(|errno| NetnsError::Sys {
                    name: self.name.clone(),
                    what: "setns",
                    errno,
                }),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Sets a sysctl of this namespace, e.g. `net/ipv4/ip_forward` (net sysctls resolve to
    /// the namespace of the thread that opens the file).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = Path::new("/proc/sys").join(key);
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Io {
                name: self.name.clone(),
                what: "writing a sysctl",
                source,
            })
    }
}

/// `ip netns` makes `/run/netns` a shared mount point, so that namespaces mounted later show
/// up in other mount namespaces too; do the same, so the demo's namespaces behave like ones
/// `ip netns add` made. Best effort: without it they still work in this mount namespace.
fn share_run_dir() {
    let shared = || {
        mount(
            None::<&str>,
            RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => {}
        // Not a mount point yet: bind it onto itself first (what iproute2 does).
        Err(nix::errno::Errno::EINVAL) => {
            let bound = mount(
                Some(RUN_DIR),
                RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            );
            if let Err(e) = bound.and_then(|()| shared()) {
                tracing::debug!("making {RUN_DIR} a shared mount: {e}");
            }
        }
        Err(e) => tracing::debug!("making {RUN_DIR} a shared mount: {e}"),
    }
}

/// Removes a namespace made by [`Netns::create`]: unmount (lazily, in case a process still
/// has it open) and delete the file. A namespace already gone is not an error.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let path = Path::new(RUN_DIR).join(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(errno) => {
            return Err(NetnsError::Sys {
                name: name.to_owned(),
                what: "unmounting",
                errno,
            });
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            name: name.to_owned(),
            what: "removing the mount point",
            source,
        }),
    }
}

/// The demo's namespaces present now, by name. Names of the test harness's namespaces
/// (`kxdp-<tag>-<pid>-<counter>`, whose tag may begin with `demo`) are not the demo's.
pub fn list_demo() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX) && !is_harness_name(n))
        .collect();
    names.sort();
    names
}

/// `...-<digits>-<digits>`: a name the test harness made.
fn is_harness_name(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let all_digits =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    all_digits(parts.next()) && all_digits(parts.next())
}

/// The processes whose network namespace is `name`'s (`ip netns pids`).
pub fn pids_in(name: &str) -> Vec<i32> {
    let Ok(meta) = std::fs::metadata(Path::new(RUN_DIR).join(name)) else {
        return Vec::new();
    };
    let wanted = format!("net:[{}]", meta.ino());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|l| l.as_os_str() == wanted.as_str())
        })
        .collect()
}

/// Ends the processes left in namespace `name` (by a run that was killed): SIGTERM, so an
/// agent detaches cleanly, then SIGKILL after `grace`.
pub fn end_processes_in(name: &str, grace: Duration) -> usize {
    let pids = pids_in(name);
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    pids.len()
}

/// kill(pid, 0): ESRCH means gone. A zombie of ours still counts as alive until reaped.
pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_names_are_not_the_demos() {
        assert!(is_harness_name("kxdp-demo-ul-1234-0"));
        assert!(!is_harness_name("kxdp-demo-kxdp-a"));
        assert!(!is_harness_name("kxdp-demo-flannel-b"));
        assert!(!is_harness_name("kxdp-demo-web-a"));
        assert!(!is_harness_name("kxdp-demo-ul"));
    }
}
