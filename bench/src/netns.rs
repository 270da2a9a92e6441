//! Network namespaces held by file descriptor, and running code, commands and sysfs accesses
//! inside them, without the `ip` tool (the lent benchmark machines have none).
//!
//! A namespace is created by a short-lived thread that calls `unshare(CLONE_NEWNET)` and opens
//! `/proc/thread-self/ns/net`; that open file is the namespace's handle. Nothing is mounted
//! under `/run/netns`, so a crashed run leaks nothing: the kernel destroys the namespace (and
//! every veth end in it) when the last reference goes: this file, a thread or a socket in it.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so every helper here runs its work on
//! a fresh thread that enters the namespace and dies afterwards: no pooled thread is ever left
//! in the wrong namespace. What such a thread creates stays in the namespace: sockets, the
//! threads it spawns and the processes it forks (a child inherits the forking thread's
//! namespaces), which is how [`Netns::output`] runs `nft` and `ethtool` there.
//!
//! Two views need more than the thread's network namespace: `/proc/net` is the thread-group
//! leader's (use `/proc/thread-self/net`), and `/sys/class/net` is the network namespace of
//! whoever mounted sysfs: [`Netns::sysfs_write`] mounts a fresh sysfs in a private mount
//! namespace of its own thread, as `ip netns exec` does for a whole process.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail, ensure};
use kxdp_control::netlink::Netlink;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

/// A network namespace owned by this benchmark, destroyed when the last reference goes.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// Creates a namespace with loopback up. `name` only labels it in messages.
    pub fn new(name: &str) -> Result<Self> {
        let file = std::thread::scope(|s| {
            s.spawn(|| -> Result<File> {
                unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
                let file = File::open("/proc/thread-self/ns/net")
                    .context("opening /proc/thread-self/ns/net")?;
                Netlink::open()?.set_link_up("lo")?;
                Ok(file)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .with_context(|| format!("creating network namespace {name}"))?;
        Ok(Netns {
            name: name.to_owned(),
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, for `setns` or `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// An rtnetlink socket in this namespace.
    pub fn netlink(&self) -> Result<Netlink> {
        Netlink::open_in(self.fd()).with_context(|| format!("netlink socket in {}", self.name))
    }

    /// Runs `f` on a fresh thread inside the namespace and returns its result; `f` may borrow.
    /// A panic in `f` is re-raised here.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.fd();
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("in-{}", self.name))
                .spawn_scoped(scope, move || -> Result<T> {
                    setns(fd, CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("setns into {}", self.name))?;
                    Ok(f())
                })
                .context("spawning a thread")?;
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts a long-running thread inside the namespace; returns once it has entered it.
    pub fn spawn_thread<T, F>(&self, thread_name: &str, f: F) -> Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.file.try_clone().context("duplicating the netns fd")?;
        let (entered_tx, entered_rx) = mpsc::sync_channel::<nix::Result<()>>(1);
        let handle = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                let entered = setns(&file, CloneFlags::CLONE_NEWNET);
                drop(file);
                let ok = entered.is_ok();
                // The receiver waits for this message; it cannot have gone away.
                let _ = entered_tx.send(entered);
                ok.then(f)
            })
            .context("spawning a thread")?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(NsThread { handle }),
            Ok(Err(errno)) => {
                let _ = handle.join();
                Err(errno).with_context(|| format!("setns into {}", self.name))
            }
            Err(_) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(_) => bail!("namespace thread exited before reporting setns"),
            },
        }
    }

    /// Writes a sysctl of this namespace (`net.ipv4.ip_forward`; a key with `/` is a path
    /// under `/proc/sys`, for interface names with dots). `/proc/sys/net` resolves against the
    /// opening thread's namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.run(|| std::fs::write(&path, value))?
            .with_context(|| format!("writing {value:?} to {path} in {}", self.name))
    }

    /// Reads a sysctl of this namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        let v = self
            .run(|| std::fs::read_to_string(&path))?
            .with_context(|| format!("reading {path} in {}", self.name))?;
        Ok(v.trim().to_owned())
    }

    /// Runs a program inside the namespace, optionally feeding it `stdin`, and returns its
    /// output whatever its exit status; fails only if it could not be started (e.g. not
    /// installed: check `io::ErrorKind::NotFound` in the chain).
    pub fn output(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let (program, rest) = args.split_first().context("no program to run")?;
        self.run(|| -> std::io::Result<Output> {
            let mut child = Command::new(program)
                .args(rest)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(input)?;
            }
            child.wait_with_output()
        })?
        .with_context(|| format!("running {program} in {}", self.name))
    }

    /// [`output`](Self::output), failing with the program's stderr unless it exits 0.
    pub fn exec(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let out = self.output(args, stdin)?;
        ensure!(
            out.status.success(),
            "`{}` in {} failed ({}): {}",
            args.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8(out.stdout).context("command output is not UTF-8")
    }

    /// Packet counters of `ifname` from `/proc/thread-self/net/dev` (per namespace).
    pub fn link_stats(&self, ifname: &str) -> Result<LinkStats> {
        let text = self
            .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))?
            .context("reading /proc/thread-self/net/dev")?;
        parse_net_dev(&text, ifname)
            .with_context(|| format!("no {ifname} in {}'s /proc/net/dev", self.name))
    }

    /// Writes `value` to `/sys/<path>` as seen from this namespace (a private sysfs mount).
    pub fn sysfs_write(&self, path: &str, value: &str) -> Result<()> {
        self.with_own_sysfs(|| std::fs::write(format!("/sys/{path}"), value))
            .with_context(|| format!("writing {value:?} to /sys/{path} in {}", self.name))
    }

    /// Reads `/sys/<path>` as seen from this namespace (trimmed).
    pub fn sysfs_read(&self, path: &str) -> Result<String> {
        self.with_own_sysfs(|| std::fs::read_to_string(format!("/sys/{path}")))
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("reading /sys/{path} in {}", self.name))
    }

    /// Runs `f` on a thread inside the namespace that has its own mount namespace with a sysfs
    /// mounted from there (sysfs shows the network namespace of its mounter). The mount
    /// namespace dies with the thread.
    fn with_own_sysfs<T: Send>(&self, f: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T> {
        self.run(|| -> Result<T> {
            // A thread may unshare its mount namespace (it gets its own fs_struct copy).
            unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
            // Keep our mounts from propagating back to the host's namespace.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .context("making / a slave mount")?;
            mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .context("mounting sysfs")?;
            Ok(f()?)
        })?
    }
}

/// A thread running inside a namespace, from [`Netns::spawn_thread`].
pub struct NsThread<T> {
    handle: JoinHandle<Option<T>>,
}

impl<T> NsThread<T> {
    /// Waits for the thread; a panic in it is re-raised here.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => bail!("namespace thread never entered its namespace"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl<T> std::fmt::Debug for NsThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsThread")
            .field("thread", self.handle.thread())
            .finish_non_exhaustive()
    }
}

/// Counters of one interface, from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    /// `rx_dropped + rx_missed_errors` (how /proc/net/dev sums them).
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

fn parse_net_dev(text: &str, ifname: &str) -> Option<LinkStats> {
    text.lines().skip(2).find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != ifname {
            return None;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs
        // drop fifo colls carrier compressed.
        Some(LinkStats {
            rx_packets: *f.get(1)?,
            rx_dropped: *f.get(3)?,
            tx_packets: *f.get(9)?,
            tx_dropped: *f.get(11)?,
        })
    })
}

fn sysctl_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{}", key.trim_start_matches('/'))
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn net_dev_columns() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n\
            kb-sink: 6400 100 0 7 0 0 0 0 1280 20 0 3 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(text, "kb-sink"),
            Some(LinkStats {
                rx_packets: 100,
                rx_dropped: 7,
                tx_packets: 20,
                tx_dropped: 3
            })
        );
        assert_eq!(parse_net_dev(text, "kb-gen"), None);
    }

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/kb.1/rp_filter"),
            "/proc/sys/net/ipv4/conf/kb.1/rp_filter"
        );
    }

    #[test]
    fn namespaces_are_separate_and_sysfs_follows() {
        if !kxdp_tests::require_root("netns::namespaces_are_separate_and_sysfs_follows") {
            return;
        }
        let ns = Netns::new("unit").unwrap();
        ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(ns.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
        assert!(ns.link_stats("lo").is_ok());
        assert_eq!(ns.sysfs_read("class/net/lo/mtu").unwrap(), "65536");
        let out = ns.exec(&["cat", "/proc/self/net/dev"], None).unwrap();
        assert!(!out.contains("eth"), "{out}");
    }
}
