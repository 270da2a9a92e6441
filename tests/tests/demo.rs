//! End-to-end: `kxdp demo` as a user runs it — the real `kxdp` and `kxdp-cni` binaries, the
//! agent as a child process, `host-local` from the CNI plugins package.
//!
//! - `--json`: the run reports every check, the pod → pod checks pass, and nothing is left:
//!   no `kxdp-demo-*` namespace, no new interface (or XDP program) in the root namespace,
//!   no agent process, no temporary directory;
//! - `--keep`, then SIGINT once it says it is ready: the same cleanup;
//! - SIGINT while the cluster is being built: exit status 130, the same cleanup.
//!
//! Every check is required: pod → pod, pod → ClusterIP across both nodes, outside → NodePort
//! (source-translated to the node, answered through it, from backends on both nodes).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kxdp_control::netlink::Netlink;
use kxdp_tests::{binaries, require_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// One demo at a time (the demo itself refuses a second one: it holds a lock).
static SERIAL: Mutex<()> = Mutex::new(());

/// How long a whole run may take (setup ~5 s, traffic ~10 s, cleanup ~2 s on the 2-vCPU VM).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A running `kxdp demo`: its stderr line by line, its stdout in full at the end.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stdout: std::thread::JoinHandle<String>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let kxdp = binaries::kxdp().unwrap();
        // The demo runs the plugin from next to itself.
        binaries::kxdp_cni().unwrap();
        let mut child = Command::new(&kxdp)
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = BufReader::new(child.stderr.take().unwrap());
        let all = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("demo| {line}");
                all.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Demo {
            child,
            lines,
            stderr,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_for_line(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(e) => panic!(
                    "no line with {needle:?} from the demo ({e}); its stderr:\n{}",
                    self.stderr.lock().unwrap_or_else(PoisonError::into_inner)
                ),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits for the exit (SIGKILL after `timeout`) and returns the status and the report.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, Value) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("kxdp demo did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stdout = self.stdout.join().unwrap();
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "the demo's stdout is not a JSON report ({e}):\n{stdout}\nstderr:\n{}",
                self.stderr.lock().unwrap_or_else(PoisonError::into_inner)
            )
        });
        (status, report)
    }
}

/// Interfaces of the root namespace the demo could have leaked, by name.
fn root_links() -> BTreeSet<String> {
    Netlink::open()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// Interfaces in the root namespace with an XDP program (needs `ip`; empty without it).
fn root_xdp_links() -> BTreeSet<String> {
    let Ok(out) = Command::new("ip")
        .args(["-d", "-o", "link", "show"])
        .output()
    else {
        return BTreeSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("prog/xdp") || l.contains(" xdp"))
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        })
        .collect()
}

/// The demo's namespaces (not the harness's `kxdp-<tag>-<pid>-<n>` ones).
fn demo_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("kxdp-demo-"))
                .filter(|n| {
                    let mut p = n.rsplitn(3, '-');
                    let digits =
                        |s: Option<&str>| s.is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()));
                    !(digits(p.next()) && digits(p.next()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line mentions `needle` (the demo's temporary directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(needle)
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// Nothing of run `pid` is left, and the report says its cleanup went well.
fn assert_nothing_left(
    pid: u32,
    report: &Value,
    links_before: &BTreeSet<String>,
    xdp_before: &BTreeSet<String>,
) {
    let cleanup = report["cleanup"].as_array().unwrap();
    assert!(!cleanup.is_empty(), "the report lists no cleanup");
    for step in cleanup {
        assert_eq!(step["ok"], true, "cleanup step failed: {step}");
    }
    assert_eq!(
        demo_namespaces(),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let temp = std::env::temp_dir().join(format!("kxdp-demo-{pid}"));
    assert!(!temp.exists(), "{} left behind", temp.display());
    assert_eq!(
        processes_mentioning(&format!("kxdp-demo-{pid}/")),
        Vec::<String>::new(),
        "processes of the demo left running"
    );
    let new_links: Vec<String> = root_links().difference(links_before).cloned().collect();
    let demo_like = |n: &&String| {
        ["ul-", "kx", "veth-", "flannel", "cni0", "br0", "eth0"]
            .iter()
            .any(|p| n.starts_with(p))
    };
    let leaked: Vec<&String> = new_links.iter().filter(demo_like).collect();
    assert!(
        leaked.is_empty(),
        "interfaces left in the root namespace: {leaked:?}"
    );
    let new_xdp: Vec<String> = root_xdp_links().difference(xdp_before).cloned().collect();
    assert!(
        new_xdp.is_empty(),
        "XDP programs left in the root namespace: {new_xdp:?}"
    );
}

/// The checks by id; asserts the pod → pod ones passed (and, with services in the data path,
/// all of them).
fn assert_checks(report: &Value) {
    let checks = report["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "pod_to_pod_udp_local",
            "pod_to_pod_udp_kxdp_to_flannel",
            "pod_to_pod_udp_flannel_to_kxdp",
            "pod_to_pod_tcp",
            "cluster_ip",
            "node_port",
            "udp_flood",
        ]
    );
    for c in checks {
        assert_eq!(c["ok"], true, "check failed: {c:#}");
    }
    // Backends see the client pod on the ClusterIP, and the node (source NAT, eTP=Cluster) on
    // the NodePort from outside.
    let seen = |id: &str| checks.iter().find(|c| c["id"] == id).unwrap()["data"]["seen_as"].clone();
    assert_eq!(seen("cluster_ip"), serde_json::json!(["10.244.1.10"]));
    assert_eq!(seen("node_port"), serde_json::json!(["192.168.77.1"]));
    let tcp = checks.iter().find(|c| c["id"] == "pod_to_pod_tcp").unwrap();
    assert_eq!(tcp["data"]["intact"], true);
    assert!(tcp["data"]["mbit_per_s"].as_f64().unwrap() > 0.0);
    let flood = checks.iter().find(|c| c["id"] == "udp_flood").unwrap();
    assert!(flood["data"]["delivered_pps"].as_f64().unwrap() > 0.0);
    // The engine's counters came through the API: VXLAN both ways.
    let events = &report["engine"]["events"];
    assert!(events["vxlan_encap"].as_u64().unwrap() > 0, "{events}");
    assert!(events["vxlan_decap"].as_u64().unwrap() > 0, "{events}");
}

#[test]
fn demo_runs_reports_and_leaves_nothing_behind() {
    if !require_root("demo::demo_runs_reports_and_leaves_nothing_behind") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (links, xdp) = (root_links(), root_xdp_links());
    let demo = Demo::start(&["--json"]);
    let pid = demo.pid();
    let (status, report) = demo.finish(RUN_TIMEOUT);
    eprintln!("{report:#}");

    assert_eq!(report["error"], Value::Null, "the run failed");
    assert_eq!(report["interrupted"], Value::Null);
    assert_eq!(report["pods"].as_array().unwrap().len(), 3);
    assert_checks(&report);
    let all_passed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true);
    assert_eq!(report["ok"], all_passed);
    assert_eq!(
        status.success(),
        all_passed,
        "exit status {status} with ok={all_passed}"
    );
    assert!(status.success(), "exit status {status}");
    assert_nothing_left(pid, &report, &links, &xdp);
}

#[test]
fn sigint_while_kept_removes_everything() {
    if !require_root("demo::sigint_while_kept_removes_everything") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (links, xdp) = (root_links(), root_xdp_links());
    let demo = Demo::start(&["--keep", "--json"]);
    let pid = demo.pid();
    demo.wait_for_line("kxdp demo: ready", RUN_TIMEOUT);
    // While kept, the cluster is there for a user to look at.
    assert!(demo_namespaces().contains(&"kxdp-demo-client-a".to_owned()));
    demo.signal(Signal::SIGINT);
    let (status, report) = demo.finish(Duration::from_secs(60));

    // The checks had finished: a SIGINT is how a kept run ends, not an interruption.
    assert_eq!(report["interrupted"], Value::Null);
    assert_eq!(report["error"], Value::Null);
    assert_checks(&report);
    assert!(status.success(), "exit status {status}");
    assert_nothing_left(pid, &report, &links, &xdp);
}

#[test]
fn sigint_during_the_build_removes_everything() {
    if !require_root("demo::sigint_during_the_build_removes_everything") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (links, xdp) = (root_links(), root_xdp_links());
    let demo = Demo::start(&["--json"]);
    let pid = demo.pid();
    // The agent runs and a pod is attached through it: the most there is to undo.
    demo.wait_for_line("pod web-a", RUN_TIMEOUT);
    demo.signal(Signal::SIGINT);
    let (status, report) = demo.finish(Duration::from_secs(60));

    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert_eq!(report["interrupted"], "SIGINT");
    assert_eq!(report["ok"], false);
    assert_nothing_left(pid, &report, &links, &xdp);
}
