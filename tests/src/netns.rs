//! Throwaway network namespaces, and running commands and threads inside them.
//!
//! A namespace is a file bind-mounted under `/run/netns` by `ip netns add`; `ip netns del`
//! unmounts it and the kernel destroys the namespace (and every interface in it, so both ends
//! of a veth) once the last reference goes: a process, a thread or a socket living in it.
//!
//! Threads enter a namespace with `setns(CLONE_NEWNET)`, which changes only the calling
//! thread. That is enough for sockets, ioctls and `/proc/sys/net` (resolved against the
//! *opening thread's* namespace), but not for `/proc/net` (a link to `/proc/self/net`, the
//! thread-group leader's view: use `/proc/thread-self/net`) nor `/sys/class/net` (the
//! namespace that mounted sysfs). Each helper therefore spawns a fresh thread and lets it die,
//! so no pooled thread is ever left in the wrong namespace.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::link::{Link, LinkInfo, LinkStats};

/// Where `ip netns` keeps its bind mounts.
const RUN_DIR: &str = "/run/netns";
/// Every namespace this harness creates is `kxdp-<tag>-<pid>-<counter>`.
const PREFIX: &str = "kxdp-";

/// Makes names unique among the threads of one test binary (cargo runs tests in parallel).
static COUNTER: AtomicU32 = AtomicU32::new(0);
/// The first `ip netns add` on a machine makes `/run/netns` a shared mount point; two racing
/// first calls can stack two such mounts. Serialising the adds inside one process avoids it.
static ADD_LOCK: Mutex<()> = Mutex::new(());
/// Stale namespaces from dead runs are swept once per process.
static SWEEP: Once = Once::new();

/// A network namespace owned by this test, deleted on drop (also while unwinding a panic).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `kxdp-<tag>-<pid>-<counter>` with loopback up. `tag` names the test (letters,
    /// digits, `_`, `-`; at most 48 bytes) so a leaked namespace says who leaked it.
    pub fn new(tag: &str) -> Result<Self> {
        ensure!(
            !tag.is_empty()
                && tag.len() <= 48
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "netns tag {tag:?}: use 1-48 of [A-Za-z0-9_-]"
        );
        SWEEP.call_once(|| match sweep_stale() {
            Ok(0) => {}
            Ok(n) => tracing::info!("swept {n} stale kxdp namespace(s) from dead runs"),
            Err(e) => tracing::warn!("sweeping stale namespaces: {e:#}"),
        });
        let name = format!(
            "{PREFIX}{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        {
            let _serial = ADD_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        }
        // From here on, Drop deletes the namespace if anything below fails.
        let ns = Netns { name };
        ns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(ns)
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: open it to `setns` yourself, or to hand it to code under test.
    pub fn path(&self) -> PathBuf {
        Path::new(RUN_DIR).join(&self.name)
    }

    /// Opens the namespace file (a reference that keeps the namespace alive while open).
    pub fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("opening {}", self.path().display()))
    }

    /// `ip netns exec <name> args...`, unconfigured: set stdio yourself, then spawn or run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs a command in the namespace; fails (with its stderr) unless it exits 0.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        run_checked(&mut self.command(args))
    }

    /// [`exec`](Self::exec), returning stdout as a string.
    pub fn exec_stdout(&self, args: &[&str]) -> Result<String> {
        let out = self.exec(args)?;
        String::from_utf8(out.stdout).context("command output is not UTF-8")
    }

    /// Runs a command in the namespace and returns its output whatever its exit status;
    /// fails only if it could not be started.
    pub fn exec_unchecked(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command(args);
        cmd.output().with_context(|| format!("spawning {cmd:?}"))
    }

    /// `ip -n <name> args...` (cheaper than `exec`: no mount namespace), returning stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ip_in(&self.name, args)
    }

    /// Starts a long-running command in the namespace; it is killed when the handle drops.
    /// Its stdout and stderr are drained in the background, so a chatty program never blocks.
    pub fn spawn(&self, args: &[&str]) -> Result<NsProcess> {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Ok(NsProcess {
            child,
            stdout,
            stderr,
            what: args.join(" "),
        })
    }

    /// Runs `f` on a fresh thread inside the namespace and returns its result. `f` may borrow
    /// from the caller. A panic in `f` is re-raised here, with its original message.
    ///
    /// What `f` creates stays in the namespace after the thread ends: sockets (and so AF_XDP
    /// sockets and BPF links) and threads it spawns, which inherit the calling thread's
    /// namespace. So `ns.run(|| Engine::start(..))` leaves a running engine inside `ns`.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = self.open()?;
        let name = &self.name;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("in-{name}"))
                .spawn_scoped(scope, move || -> Result<T> {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("setns into {name}"))?;
                    drop(file);
                    Ok(f())
                })
                .context("spawning a thread")?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts a long-running thread inside the namespace (a receiver, a packet engine).
    /// Returns once the thread has entered the namespace, so a failed `setns` is reported here.
    pub fn spawn_thread<T, F>(&self, thread_name: &str, f: F) -> Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.open()?;
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

    /// Writes a sysctl inside the namespace: `sysctl("net.ipv4.ip_forward", "1")`. A key that
    /// contains `/` is taken as a path under `/proc/sys` (for interface names with dots).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.run(|| std::fs::write(&path, value))?
            .with_context(|| format!("writing {value:?} to {} in {}", path.display(), self.name))
    }

    /// Reads a sysctl inside the namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        let value = self
            .run(|| std::fs::read_to_string(&path))?
            .with_context(|| format!("reading {} in {}", path.display(), self.name))?;
        Ok(value.trim().to_owned())
    }

    /// A handle on interface `ifname` in this namespace (no syscall; it may not exist yet).
    pub fn link(&self, ifname: &str) -> Link {
        Link::new(&self.name, ifname)
    }

    /// Index, MAC, MTU, queue counts and counters of `ifname`.
    pub fn link_info(&self, ifname: &str) -> Result<LinkInfo> {
        self.link(ifname).info()
    }

    /// Packet and byte counters of `ifname` (from `ip -j -s link show`).
    pub fn link_stats(&self, ifname: &str) -> Result<LinkStats> {
        Ok(self.link_info(ifname)?.stats)
    }

    /// Interface index of `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        Ok(self.link_info(ifname)?.ifindex)
    }

    /// MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        Ok(self.link_info(ifname)?.mac)
    }

    /// `ip route add <dst> [via <via>] dev <dev>`; `dst` is a prefix (`10.0.0.0/24`,
    /// `fd00::/64`) or `default` (then the family follows `via`).
    pub fn route_add(&self, dst: &str, via: Option<std::net::IpAddr>, dev: &str) -> Result<()> {
        let via = via.map(|v| v.to_string());
        let v6 = dst.contains(':') || via.as_deref().is_some_and(|v| v.contains(':'));
        let mut args = vec![if v6 { "-6" } else { "-4" }, "route", "add", dst];
        if let Some(via) = via.as_deref() {
            args.extend(["via", via]);
        }
        args.extend(["dev", dev]);
        self.ip(&args).map(drop)
    }

    /// The device the kernel would send a packet for `dst` out of (`ip route get`).
    pub fn route_dev(&self, dst: std::net::IpAddr) -> Result<String> {
        let dst = dst.to_string();
        let out = self.ip(&["-j", "route", "get", &dst])?;
        let routes: Vec<serde_json::Value> =
            serde_json::from_str(&out).context("parsing `ip -j route get`")?;
        routes
            .first()
            .and_then(|r| r.get("dev"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("`ip route get {dst}` named no device: {out}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic here: this often runs while a failed test unwinds.
        if let Err(e) = delete_netns(&self.name) {
            tracing::warn!("leaking network namespace {}: {e:#}", self.name);
        }
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
            Ok(Some(value)) => Ok(value),
            // spawn_thread returns an NsThread only after setns succeeded.
            Ok(None) => bail!("namespace thread never entered its namespace"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// True once the thread's closure has returned (or panicked).
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

/// A process running inside a namespace, from [`Netns::spawn`]; SIGKILLed on drop.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    what: String,
}

impl NsProcess {
    /// Pid of the command itself (`ip netns exec` execs it in place, without forking).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} to {}", self.what))
    }

    /// Returns the exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit by itself and returns everything it printed.
    pub fn wait(mut self) -> Result<Output> {
        let status = self.child.wait()?;
        Ok(self.collect(status))
    }

    /// SIGTERM, up to 2 s to exit, then SIGKILL; returns everything it printed.
    pub fn stop(mut self) -> Result<Output> {
        if self.child.try_wait()?.is_none() {
            // ESRCH: it exited between the two calls; the wait below reaps it.
            let _ = self.signal(Signal::SIGTERM);
            if self.wait_timeout(Duration::from_secs(2))?.is_none() {
                self.child.kill()?;
            }
        }
        let status = self.child.wait()?;
        Ok(self.collect(status))
    }

    fn collect(&mut self, status: ExitStatus) -> Output {
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Err(e) = self.child.kill() {
                tracing::warn!("killing `{}`: {e}", self.what);
            }
            let _ = self.child.wait();
        }
        // The drain threads end at EOF, now that the process is gone; detach them.
    }
}

/// Deletes every `kxdp-<tag>-<pid>-<n>` namespace whose creating process no longer exists
/// (a run killed by Ctrl-C or SIGKILL could not drop its namespaces). Returns how many.
///
/// Pids are compared in this process's pid namespace: run the tests of one machine from one
/// pid namespace, or a sweep may take another container's live namespaces for stale ones.
pub fn sweep_stale() -> Result<usize> {
    let entries = match std::fs::read_dir(RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).context(RUN_DIR),
    };
    let mut swept = 0;
    for entry in entries {
        let Ok(name) = entry?.file_name().into_string() else {
            continue;
        };
        if let Some(pid) = owner_pid(&name)
            && !pid_alive(pid)
        {
            match delete_netns(&name) {
                Ok(()) => swept += 1,
                Err(e) => tracing::warn!("sweeping {name}: {e:#}"),
            }
        }
    }
    Ok(swept)
}

/// The creator's pid in `kxdp-<tag>-<pid>-<counter>`; the tag may itself contain dashes.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let counter = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    counter.parse::<u32>().ok()?;
    if tag.is_empty() {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// kill(pid, 0): ESRCH means no such process; EPERM still means it exists.
fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

fn delete_netns(name: &str) -> Result<()> {
    run_checked(Command::new("ip").args(["netns", "del", name])).map(drop)
}

fn sysctl_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    Path::new("/proc/sys").join(rel)
}

/// `ip -n <ns> args...`, returning stdout.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let out = run_checked(Command::new("ip").args(["-n", ns]).args(args))?;
    String::from_utf8(out.stdout).context("ip output is not UTF-8")
}

/// Runs `cmd` to completion; an error names the command and carries its stderr.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    tracing::debug!(?cmd, "running");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture early; the bytes so far are still useful.
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::require_root;

    fn exists(name: &str) -> bool {
        Path::new(RUN_DIR).join(name).exists()
    }

    #[test]
    fn owner_pid_parses_names_with_dashed_tags() {
        assert_eq!(owner_pid("kxdp-forward-123-7"), Some(123));
        assert_eq!(owner_pid("kxdp-a-b-c-42-0"), Some(42));
        assert_eq!(owner_pid("kxdp--42-0"), None);
        assert_eq!(owner_pid("kxdp-forward-123"), None);
        assert_eq!(owner_pid("kxdp-forward-x-1"), None);
        assert_eq!(owner_pid("other-forward-123-7"), None);
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/rp_filter"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.1/rp_filter")
        );
    }

    #[test]
    fn bad_tags_are_refused() {
        assert!(Netns::new("").is_err());
        assert!(Netns::new("a/b").is_err());
        assert!(Netns::new(&"x".repeat(49)).is_err());
    }

    #[test]
    fn create_and_drop() {
        if !require_root("netns::create_and_drop") {
            return;
        }
        let ns = Netns::new("create").unwrap();
        let name = ns.name().to_owned();
        assert!(name.starts_with(&format!("kxdp-create-{}-", std::process::id())));
        assert!(exists(&name));
        let info = ns.link_info("lo").unwrap();
        assert!(info.up);
        assert_eq!(info.ifindex, 1);
        drop(ns);
        assert!(!exists(&name));
        let list = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&name))
        );
    }

    #[test]
    fn panic_inside_scope_still_deletes() {
        if !require_root("netns::panic_inside_scope_still_deletes") {
            return;
        }
        let name = Mutex::new(String::new());
        let result = std::panic::catch_unwind(|| {
            let ns = Netns::new("panic").unwrap();
            *name.lock().unwrap() = ns.name().to_owned();
            panic!("deliberate panic with {} alive", ns.name());
        });
        assert!(result.is_err());
        let name = name.into_inner().unwrap();
        assert!(!name.is_empty());
        assert!(!exists(&name), "{name} survived a panic");
    }

    #[test]
    fn threads_and_commands_run_inside() {
        if !require_root("netns::threads_and_commands_run_inside") {
            return;
        }
        let ns = Netns::new("inside").unwrap();
        // No dummy driver on this kernel (no modules): a veth pair inside the one namespace.
        crate::Veth::create(&ns, "kx-dummy0", &ns, "kx-dummy1").unwrap();
        // A setns'd thread sees the namespace's interfaces; this thread does not.
        let inside = ns
            .run(|| nix::net::if_::if_nametoindex("kx-dummy0"))
            .unwrap();
        assert_eq!(inside.unwrap(), ns.ifindex("kx-dummy0").unwrap());
        assert!(nix::net::if_::if_nametoindex("kx-dummy0").is_err());
        // Commands too.
        let out = ns.exec_stdout(&["ip", "-o", "link", "show"]).unwrap();
        assert!(out.contains("kx-dummy0"), "{out}");
        let err = ns
            .exec(&["ip", "link", "show", "dev", "nope0"])
            .unwrap_err();
        assert!(format!("{err:#}").contains("nope0"), "{err:#}");
        // A long-running thread.
        let t = ns
            .spawn_thread("probe", || {
                std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
            })
            .unwrap();
        assert!(t.join().unwrap().contains("kx-dummy0"));
    }

    #[test]
    fn panics_in_run_propagate() {
        if !require_root("netns::panics_in_run_propagate") {
            return;
        }
        let ns = Netns::new("runpanic").unwrap();
        let caught = std::panic::catch_unwind(|| ns.run(|| panic!("boom in ns")));
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in ns"));
    }

    #[test]
    fn sysctl_is_per_namespace() {
        if !require_root("netns::sysctl_is_per_namespace") {
            return;
        }
        let ns = Netns::new("sysctl").unwrap();
        let root = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap();
        let ttl = if root.trim() == "77" { "78" } else { "77" };
        ns.sysctl("net.ipv4.ip_default_ttl", ttl).unwrap();
        assert_eq!(ns.sysctl_get("net.ipv4.ip_default_ttl").unwrap(), ttl);
        // Seen the same way by a process in the namespace, and not at all outside it.
        let via_exec = ns
            .exec_stdout(&["cat", "/proc/sys/net/ipv4/ip_default_ttl"])
            .unwrap();
        assert_eq!(via_exec.trim(), ttl);
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap(),
            root
        );
    }

    #[test]
    fn spawned_process_is_killed_on_drop() {
        if !require_root("netns::spawned_process_is_killed_on_drop") {
            return;
        }
        let ns = Netns::new("spawn").unwrap();
        let proc = ns.spawn(&["sleep", "30"]).unwrap();
        let pid = i32::try_from(proc.id()).unwrap();
        assert!(pid_alive(pid));
        drop(proc);
        assert!(!pid_alive(pid));

        let mut echo = ns.spawn(&["sh", "-c", "echo out; echo err >&2"]).unwrap();
        assert!(echo.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
        let out = echo.wait().unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");

        let sleeper = ns.spawn(&["sleep", "30"]).unwrap();
        let out = sleeper.stop().unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn sweep_removes_namespaces_of_dead_pids() {
        if !require_root("netns::sweep_removes_namespaces_of_dead_pids") {
            return;
        }
        // A pid that existed and is now gone (reaped), so it cannot be alive.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = format!("kxdp-sweeptest-{dead}-0");
        run_checked(Command::new("ip").args(["netns", "add", &stale])).unwrap();
        let live = Netns::new("sweeplive").unwrap();
        // Another test's first Netns::new may sweep it first; either way it must be gone.
        sweep_stale().unwrap();
        assert!(!exists(&stale));
        assert!(exists(live.name()));
    }
}
