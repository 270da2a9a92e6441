//! DPDK `testpmd` forwarding between the node's two veths through the net_af_xdp PMD: the
//! userspace I/O ceiling beside the kernel path and kxdp (`forward --dpdk`).
//!
//! testpmd runs in the node namespace, non-interactive: it starts forwarding at once and exits
//! when its stdin closes. Both lcores are on the node core: the forwarding lcore polls, the
//! main lcore only waits on stdin. Memory is plain pages (`--no-huge`), the PCI bus is off, and
//! each port is one AF_XDP socket on queue 0 of one veth (copy mode: veth has no zero-copy),
//! bound through the PMD's defaults (libxdp's program, native XDP, preferred busy polling).
//! Mac forwarding rewrites the source MAC to the port's and the destination to `--eth-peer`:
//! frames from the generator leave toward the sink with the sink's MAC.
//!
//! Readiness is seen from outside, since testpmd's stdout is block-buffered into a pipe: both
//! veths have an XDP program attached (each port's socket exists), and the process is alive a
//! moment later. Its output is collected for failure reasons and its final statistics.

use std::io::{ErrorKind, Read as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;
use crate::topology::Iface;
use crate::xdp;

/// The program (Debian: package `dpdk-dev`; the PMD is `librte-net-af-xdp23`).
pub const PROGRAM: &str = "dpdk-testpmd";
/// What to install when it is missing.
const INSTALL_HINT: &str = "Debian: apt-get install dpdk-dev librte-net-af-xdp23";
/// EAL's runtime directories (`--file-prefix` names one).
const RUNTIME_DIR: &str = "/var/run/dpdk";
/// Memory EAL reserves without hugepages, MiB: the mbuf pool and the rings fit.
const MEMORY_MB: u32 = 256;
/// Mbufs in the pool (2176 bytes each): both ports' fill, RX and TX rings with room to spare
/// (testpmd's default sizes the pool for the largest rings and needs more than 256 MiB).
const MBUFS: u32 = 32_768;
/// How long testpmd may take to attach to both veths.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to exit once its stdin closes, and then after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How testpmd is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestpmdConfig {
    /// The node's interfaces: port 0 faces the generator, port 1 the sink.
    pub ports: [String; 2],
    /// The destination MAC of frames leaving each port: the generator's for port 0, the
    /// sink's for port 1.
    pub peers: [[u8; 6]; 2],
    /// The core of both lcores (the forwarding one and the main one, which waits on stdin).
    pub core: usize,
    /// EAL's `--file-prefix`: its runtime directory is `/var/run/dpdk/<prefix>`.
    pub file_prefix: String,
}

impl TestpmdConfig {
    /// The node's two veths of a topology, forwarding gen ↔ sink, on `core`; the runtime
    /// directory is named after this process.
    pub fn new(ports: [&Iface; 2], peers: [[u8; 6]; 2], core: usize) -> Self {
        TestpmdConfig {
            ports: ports.map(|i| i.name.clone()),
            peers,
            core,
            file_prefix: format!("kxdp-bench-{}", std::process::id()),
        }
    }
}

/// testpmd's command line (without the program): EAL options, `--`, then testpmd's own.
pub fn args(cfg: &TestpmdConfig) -> Vec<String> {
    let c = cfg.core;
    let mut a: Vec<String> = vec![
        // Two lcores on one CPU: the main one (0) and the forwarding one (1).
        format!("--lcores=0@{c},1@{c}"),
        "--main-lcore=0".into(),
        "--no-pci".into(),
        "--no-huge".into(),
        "-m".into(),
        MEMORY_MB.to_string(),
        "--no-telemetry".into(),
        format!("--file-prefix={}", cfg.file_prefix),
    ];
    for (i, port) in cfg.ports.iter().enumerate() {
        a.push(format!(
            "--vdev=net_af_xdp{i},iface={port},start_queue=0,queue_count=1"
        ));
    }
    a.extend([
        "--".into(),
        "--forward-mode=mac".into(),
        "--nb-cores=1".into(),
        format!("--total-num-mbufs={MBUFS}"),
        // No periodic statistics: without -i it starts forwarding, then waits for stdin.
        "--stats-period=0".into(),
    ]);
    for (i, mac) in cfg.peers.iter().enumerate() {
        a.push(format!("--eth-peer={i},{}", mac_string(mac)));
    }
    a
}

/// `02:00:00:00:02:02`.
fn mac_string(mac: &[u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// CPU time of the testpmd process, all its threads, nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestpmdCpu {
    /// Run time (`schedstat`), summed over its threads.
    pub run_ns: u64,
    /// Of which in user space and in the kernel (`/proc/<pid>/stat`, 10 ms ticks).
    pub user_ns: u64,
    pub system_ns: u64,
}

/// A running testpmd; [`stop`](Self::stop) ends it (dropping it kills it).
#[derive(Debug)]
pub struct Testpmd {
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    runtime_dir: PathBuf,
    stopped: bool,
}

/// What [`Testpmd::stop`] found.
#[derive(Debug, Clone, Default)]
pub struct Stopped {
    /// How it ended, and anything left behind that was cleaned up.
    pub notes: Vec<String>,
    /// testpmd's own totals over its whole life: `(port, RX-packets, TX-packets, TX-dropped)`.
    pub ports: Vec<(u32, u64, u64, u64)>,
}

impl Testpmd {
    /// Starts testpmd in `ns` on the interfaces `ifaces` (port order) and waits until it has
    /// attached to both. Fails with a reason fit for a report: not installed, PMD missing,
    /// an XDP program still attached, or what testpmd said before it gave up.
    pub fn start(ns: &Netns, ifaces: [&Iface; 2], cfg: &TestpmdConfig) -> Result<Testpmd> {
        for iface in ifaces {
            if let Some(a) = xdp::attached(ns, iface.ifindex)? {
                bail!(
                    "XDP program {} is still attached to {} (mode {}): testpmd could not attach \
                     its own",
                    a.prog_id,
                    iface.name,
                    a.mode
                );
            }
        }
        let args = args(cfg);
        let (reader, writer) = std::io::pipe().context("creating a pipe for testpmd's output")?;
        let spawned = ns.run(|| -> std::io::Result<Child> {
            Command::new(PROGRAM)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(writer.try_clone()?)
                .stderr(writer)
                .spawn()
        })?;
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                bail!("{PROGRAM} not installed ({INSTALL_HINT})")
            }
            Err(e) => {
                return Err(e).with_context(|| format!("starting {PROGRAM} in {}", ns.name()));
            }
        };
        let stdin = child.stdin.take();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::Builder::new()
            .name("testpmd-log".into())
            .spawn(move || collect(reader, &sink))
            .context("spawning testpmd's log reader")?;
        let mut pmd = Testpmd {
            child,
            stdin,
            log,
            reader: Some(reader),
            runtime_dir: PathBuf::from(RUNTIME_DIR).join(&cfg.file_prefix),
            stopped: false,
        };
        match pmd.wait_attached(ns, ifaces) {
            Ok(()) => Ok(pmd),
            Err(e) => {
                // The reason is in `e`; the stop notes add nothing to it.
                let _ = pmd.stop(ns, ifaces);
                Err(e)
            }
        }
    }

    /// Waits until both interfaces have an XDP program and testpmd is still alive after a
    /// moment (its ports are started; forwarding starts right after).
    fn wait_attached(&mut self, ns: &Netns, ifaces: [&Iface; 2]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for testpmd")? {
                return Err(self.failed(status));
            }
            let mut all = true;
            for iface in ifaces {
                all &= xdp::attached(ns, iface.ifindex)?.is_some();
            }
            if all {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{PROGRAM} did not attach to both {} and {} within {} s: {}",
                    ifaces[0].name,
                    ifaces[1].name,
                    START_TIMEOUT.as_secs(),
                    failure_reason(&self.log_text())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        if let Some(status) = self.child.try_wait().context("waiting for testpmd")? {
            return Err(self.failed(status));
        }
        Ok(())
    }

    /// The error for a testpmd that exited on its own with `status`.
    fn failed(&mut self, status: ExitStatus) -> anyhow::Error {
        self.join_reader();
        anyhow::anyhow!(
            "{PROGRAM} exited ({status}): {}",
            failure_reason(&self.log_text())
        )
    }

    /// The process id (on the host: this benchmark does not change PID namespaces).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time of all of testpmd's threads so far.
    pub fn cpu(&self) -> Result<TestpmdCpu> {
        let pid = self.pid();
        let mut cpu = TestpmdCpu::default();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("listing /proc/{pid}/task"))?;
        for task in tasks.flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                // A thread that exited in between counts as zero.
                cpu.run_ns += crate::cpu::thread_runtime_ns(pid, tid).unwrap_or(0);
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        let (user, system) =
            parse_stat_times(&stat).with_context(|| format!("/proc/{pid}/stat: {stat:?}"))?;
        cpu.user_ns = user * 10_000_000;
        cpu.system_ns = system * 10_000_000;
        Ok(cpu)
    }

    /// Ends testpmd: closes its stdin (it stops forwarding, closes its ports and exits), then
    /// SIGINT, then SIGKILL if it takes too long; detaches any XDP program it left on
    /// `ifaces`; removes its runtime directory.
    pub fn stop(&mut self, ns: &Netns, ifaces: [&Iface; 2]) -> Result<Stopped> {
        let mut out = Stopped::default();
        if !self.stopped {
            self.stopped = true;
            drop(self.stdin.take());
            let status = match self.wait_for(STOP_TIMEOUT)? {
                Some(s) => Some(s),
                None => {
                    out.notes.push(format!(
                        "{PROGRAM} did not exit within {} s of its stdin closing: sent SIGINT",
                        STOP_TIMEOUT.as_secs()
                    ));
                    let pid = Pid::from_raw(i32::try_from(self.pid()).unwrap_or(i32::MAX));
                    let _ = kill(pid, Signal::SIGINT);
                    self.wait_for(STOP_TIMEOUT)?
                }
            };
            match status {
                Some(s) if !s.success() => {
                    out.notes.push(format!("{PROGRAM} exited with {s}"));
                }
                Some(_) => {}
                None => {
                    out.notes.push(format!("{PROGRAM} ignored SIGINT: killed"));
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
            self.join_reader();
            out.ports = forward_stats(&self.log_text());
        }
        remove_runtime_dir(&self.runtime_dir);
        for iface in ifaces {
            if let Some(a) = xdp::attached(ns, iface.ifindex)? {
                xdp::detach(ns, iface.ifindex, a)?;
                out.notes.push(format!(
                    "{PROGRAM} left XDP program {} attached to {}: detached it",
                    a.prog_id, iface.name
                ));
            }
        }
        Ok(out)
    }

    /// Waits up to `timeout` for testpmd to exit.
    fn wait_for(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().context("waiting for testpmd")? {
                return Ok(Some(s));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the log reader, which ends when testpmd's output closes.
    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            remove_runtime_dir(&self.runtime_dir);
        }
    }
}

/// Appends everything read from `pipe` to `log` until it closes.
fn collect(mut pipe: std::io::PipeReader, log: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// Removes EAL's runtime directory of one run (EAL leaves it behind); best effort.
fn remove_runtime_dir(dir: &std::path::Path) {
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Why testpmd failed, from its output: the PMD missing, else its error lines (EAL's
/// `Cause:`, probe failures), else its last lines.
pub fn failure_reason(log: &str) -> String {
    if log.contains("failed to parse device \"net_af_xdp") {
        return format!("the net_af_xdp PMD is not installed ({INSTALL_HINT})");
    }
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("libbpf: elf: skipping"))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["cause:", "fail", "error", "cannot", "unable", "no probed"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    let picked = if errors.is_empty() {
        &lines[lines.len().saturating_sub(3)..]
    } else {
        &errors[errors.len().saturating_sub(4)..]
    };
    if picked.is_empty() {
        "no output".into()
    } else {
        picked.join("; ")
    }
}

/// testpmd's per-port totals printed when it stops ("Forward statistics for port N"):
/// `(port, RX-packets, TX-packets, TX-dropped)`.
pub fn forward_stats(log: &str) -> Vec<(u32, u64, u64, u64)> {
    let mut out = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        let Some(port) = line
            .split("Forward statistics for port")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let (Some(rx), Some(tx)) = (lines.next(), lines.next()) else {
            break;
        };
        let field = |l: &str, name: &str| -> Option<u64> {
            l.split(name)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        if let (Some(rx_packets), Some(tx_packets), Some(tx_dropped)) = (
            field(rx, "RX-packets:"),
            field(tx, "TX-packets:"),
            field(tx, "TX-dropped:"),
        ) {
            out.push((port, rx_packets, tx_packets, tx_dropped));
        }
    }
    out
}

/// utime and stime (fields 14 and 15, clock ticks) of a `/proc/<pid>/stat` line.
fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    // The name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn config() -> TestpmdConfig {
        TestpmdConfig {
            ports: ["kb-ngen".into(), "kb-nsink".into()],
            peers: [[2, 0, 0, 0, 1, 2], [2, 0, 0, 0, 2, 2]],
            core: 1,
            file_prefix: "kxdp-bench-42".into(),
        }
    }

    #[test]
    fn command_line() {
        assert_eq!(
            args(&config()).join(" "),
            "--lcores=0@1,1@1 --main-lcore=0 --no-pci --no-huge -m 256 --no-telemetry \
             --file-prefix=kxdp-bench-42 \
             --vdev=net_af_xdp0,iface=kb-ngen,start_queue=0,queue_count=1 \
             --vdev=net_af_xdp1,iface=kb-nsink,start_queue=0,queue_count=1 \
             -- --forward-mode=mac --nb-cores=1 --total-num-mbufs=32768 --stats-period=0 \
             --eth-peer=0,02:00:00:00:01:02 --eth-peer=1,02:00:00:00:02:02"
        );
    }

    #[test]
    fn failure_reasons() {
        let missing = "EAL: Detected CPU lcores: 2\nEAL: failed to parse device \
                       \"net_af_xdp0\"\nEAL: Unable to parse device 'net_af_xdp0,iface=x'\n";
        assert!(failure_reason(missing).contains("net_af_xdp PMD is not installed"));
        let probe = "EAL: Selected IOVA mode 'VA'\ninit_internals(): Failed to get channel info \
                     of interface: nosuch\nrte_pmd_af_xdp_probe(): Failed to init internals\n\
                     vdev_probe(): failed to initialize net_af_xdp0 device\n\
                     EAL: Bus (vdev) probe failed.\ntestpmd: No probed ethernet devices\n\
                     testpmd: create a new mbuf pool <mb_pool_0>: n=32768\n";
        let why = failure_reason(probe);
        assert!(why.starts_with("rte_pmd_af_xdp_probe(): Failed"), "{why}");
        assert!(
            why.ends_with("testpmd: No probed ethernet devices"),
            "{why}"
        );
        assert_eq!(failure_reason("a\nb\n\nc\nd\n"), "b; c; d");
        assert_eq!(failure_reason(""), "no output");
    }

    #[test]
    fn forward_statistics() {
        let log = "\n  ---------------------- Forward statistics for port 0  ----------------------\n  \
                   RX-packets: 1234           RX-dropped: 0             RX-total: 1234\n  \
                   TX-packets: 5              TX-dropped: 0             TX-total: 5\n  \
                   ----------------------------------------------------------------------------\n\n  \
                   ---------------------- Forward statistics for port 1  ----------------------\n  \
                   RX-packets: 5              RX-dropped: 0             RX-total: 5\n  \
                   TX-packets: 1200           TX-dropped: 34            TX-total: 1234\n";
        assert_eq!(
            forward_stats(log),
            [(0, 1234, 5, 0), (1, 5, 1200, 34)].to_vec()
        );
    }

    #[test]
    fn a_killed_testpmd_leaves_no_xdp_program() {
        if !kxdp_tests::require_root("dpdk::a_killed_testpmd_leaves_no_xdp_program") {
            return;
        }
        let t = crate::topology::Topology::chain3("kb-dpdk", 1).unwrap();
        let ifaces = [&t.node_gen_if, &t.node_sink_if];
        let cfg = TestpmdConfig::new(ifaces, [t.gen_if.mac, t.sink_if.mac], 0);
        let mut pmd = match Testpmd::start(&t.node, ifaces, &cfg) {
            Ok(p) => p,
            Err(e) if format!("{e:#}").contains("not installed") => {
                eprintln!("skipping a_killed_testpmd_leaves_no_xdp_program: {e:#}");
                return;
            }
            Err(e) => panic!("{e:#}"),
        };
        for i in ifaces {
            assert!(xdp::attached(&t.node, i.ifindex).unwrap().is_some());
        }
        assert!(pmd.cpu().unwrap().run_ns > 0);
        let pid = Pid::from_raw(i32::try_from(pmd.pid()).unwrap());
        kill(pid, Signal::SIGKILL).unwrap();
        let stopped = pmd.stop(&t.node, ifaces).unwrap();
        for i in ifaces {
            assert_eq!(
                xdp::attached(&t.node, i.ifindex).unwrap(),
                None,
                "{}",
                i.name
            );
        }
        assert!(
            stopped.notes.iter().any(|n| n.contains("signal")),
            "{:?}",
            stopped.notes
        );
        assert!(!PathBuf::from(RUNTIME_DIR).join(&cfg.file_prefix).exists());
    }

    #[test]
    fn stat_times() {
        let stat = "4242 (dpdk testpmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 140 334 0 0 20 0 \
                    6 0 1000 0 0";
        assert_eq!(parse_stat_times(stat), Some((140, 334)));
    }
}
