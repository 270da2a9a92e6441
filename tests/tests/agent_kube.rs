//! End-to-end: `kxdp agent --source kube` against the fake API server.
//!
//! ```text
//!   node a (192.168.77.1): kxdp agent on eth0, KUBECONFIG → fake API server on 127.0.0.1
//!                          of a's namespace (its runtime threads were started there)
//!   node b (192.168.77.2): flannel VXLAN node, pod pb 10.244.2.2
//! ```
//!
//! The agent learns its pod CIDR from Node a, writes a's flannel annotations (b's "flanneld",
//! this test, reads a's VtepMAC from them), follows Services and EndpointSlices through watch
//! resets, compactions and an outage, and serves its API socket and metrics throughout.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kxdp_tests::apiserver::fixtures::{self, Endpoint, FlannelAnnotations, Port};
use kxdp_tests::{
    ApiServer, FlannelNode, Netns, NsProcess, Underlay, binaries, format_mac, parse_mac, ping,
    require_root, wait_for,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const A_POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const A_GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1));
const METRICS: &str = "127.0.0.1:19450";
const FLANNEL: &str = "flannel.alpha.coreos.com/";

/// A scratch directory (kubeconfig, API socket), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kxdp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn xdp_attached(ns: &Netns) -> bool {
    ns.ip(&["-d", "link", "show", "dev", "eth0"])
        .unwrap()
        .contains("prog/xdp")
}

fn routes(ns: &Netns) -> String {
    ns.ip(&["-4", "route", "show"]).unwrap_or_default()
}

/// `GET path` on the agent's metrics address, from inside the node: (status code, body).
fn http_get(ns: &Netns, path: &str) -> Option<(u16, String)> {
    ns.run(|| {
        let mut s = TcpStream::connect(METRICS).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    })
    .unwrap()
}

fn readyz(ns: &Netns) -> u16 {
    http_get(ns, "/readyz").map_or(0, |(code, _)| code)
}

/// `kxdp inspect services --json` (the socket is a file: no namespace needed).
fn inspect_services(socket: &Path) -> Option<Value> {
    let out = Command::new(binaries::kxdp().unwrap())
        .args(["inspect", "services", "--json", "--api-socket"])
        .arg(socket)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The Services the agent compiled its tables from, as `namespace/name` → ports.
fn services(socket: &Path) -> Vec<(String, String)> {
    let Some(v) = inspect_services(socket) else {
        return Vec::new();
    };
    v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ports: Vec<&str> = s["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            (s["service"].as_str().unwrap().to_owned(), ports.join(","))
        })
        .collect()
}

fn names(socket: &Path) -> Vec<String> {
    services(socket).into_iter().map(|(n, _)| n).collect()
}

fn svc(name: &str, ip: &str, port: u16) -> Value {
    fixtures::service("default", name, ip, &[Port::tcp(port, 8080)])
}

fn slice(service: &str, endpoint: &str) -> Value {
    fixtures::endpoint_slice(
        "default",
        &format!("{service}-abc"),
        service,
        &[Endpoint::ready(endpoint).on_node("b")],
        &[Port::tcp(80, 8080)],
    )
}

#[test]
fn agent_follows_the_api_server() {
    if !require_root("agent_kube::agent_follows_the_api_server") {
        return;
    }
    let underlay = Underlay::new("agkube").unwrap();
    let a = underlay.add_node("a", underlay.node_ip(1)).unwrap();
    let b = FlannelNode::new(
        &underlay,
        "b",
        underlay.node_ip(2),
        Ipv4Addr::new(10, 244, 2, 0),
    )
    .unwrap();
    let pb = b.add_pod("pb").unwrap();
    // The server's listener and runtime threads are created inside a's namespace, where the
    // agent reaches it on 127.0.0.1; the test drives it in-process.
    let server = a.netns.run(ApiServer::start).unwrap();
    let scratch = Scratch::new("agent-kube");
    let kubeconfig = scratch.0.join("kubeconfig");
    let socket = scratch.0.join("kxdp.sock");
    server.kubeconfig(&kubeconfig).unwrap();

    // Node a has no annotations yet: the agent derives its VtepMAC and writes them.
    server
        .create(fixtures::node(
            "a",
            &a.ip.to_string(),
            "10.244.1.0/24",
            None,
        ))
        .unwrap();
    server
        .create(fixtures::node(
            "b",
            &b.node_ip().to_string(),
            &b.pod_cidr(),
            Some(&FlannelAnnotations::vxlan(
                &format_mac(b.vtep_mac),
                Some(&b.node_ip().to_string()),
            )),
        ))
        .unwrap();
    server.create(svc("web", "10.96.0.10", 80)).unwrap();
    server.create(slice("web", "10.244.2.5")).unwrap();

    let kxdp = binaries::kxdp().unwrap();
    let mut agent: NsProcess = a
        .netns
        .spawn(&[
            "env",
            "NO_COLOR=1",
            &format!("KUBECONFIG={}", kubeconfig.display()),
            kxdp.to_str().unwrap(),
            "agent",
            "--source",
            "kube",
            "--node-name",
            "a",
            "--uplink",
            "eth0",
            "--xdp-mode",
            "native",
            "--api-socket",
            socket.to_str().unwrap(),
            "--metrics-addr",
            METRICS,
            "--stale-after",
            "2s",
        ])
        .unwrap();
    wait_for("the agent to be ready", Duration::from_secs(30), || {
        readyz(&a.netns) == 200
    });
    assert!(xdp_attached(&a.netns));
    assert!(routes(&a.netns).contains("10.244.2.0/24 dev kxdp0"));

    // (a) a's flannel annotations, as flanneld would write them.
    let mut annotations = Value::Null;
    wait_for("a's flannel annotations", Duration::from_secs(10), || {
        annotations = server.get("Node", "", "a").unwrap()["metadata"]["annotations"].clone();
        annotations[format!("{FLANNEL}backend-data")].is_string()
    });
    assert_eq!(annotations[format!("{FLANNEL}backend-type")], "vxlan");
    assert_eq!(annotations[format!("{FLANNEL}public-ip")], a.ip.to_string());
    assert_eq!(annotations[format!("{FLANNEL}kube-subnet-manager")], "true");
    let data: Value = serde_json::from_str(
        annotations[format!("{FLANNEL}backend-data")]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["VNI"], 1);
    let a_vtep = parse_mac(data["VtepMAC"].as_str().unwrap()).unwrap();

    // (b) b's flanneld reads them; b's pod reaches a's kernel across the overlay.
    b.add_remote(a.ip, a_vtep, A_POD_NET).unwrap();
    assert!(
        ping(&pb.netns, A_GATEWAY, 5),
        "pb -> 10.244.1.1 (kxdp0 on a)"
    );

    // The annotations come back when someone removes them.
    server
        .patch(
            "Node",
            "",
            "a",
            &serde_json::json!({"metadata": {"annotations": {format!("{FLANNEL}kube-subnet-manager"): null}}}),
        )
        .unwrap();
    wait_for(
        "the annotation to be rewritten",
        Duration::from_secs(10),
        || {
            server.get("Node", "", "a").unwrap()["metadata"]["annotations"]
                [format!("{FLANNEL}kube-subnet-manager")]
                == "true"
        },
    );

    // (c) Services appear, change and disappear.
    wait_for(
        "web in the agent's services",
        Duration::from_secs(10),
        || services(&socket) == [("default/web".to_owned(), "80/TCP".to_owned())],
    );
    let v = inspect_services(&socket).unwrap();
    // The ClusterIP is a frontend, and the host routes it into the engine.
    let frontends = v["frontends"].as_array().unwrap();
    assert!(
        frontends
            .iter()
            .any(|f| f["frontend"] == "10.96.0.10:80/TCP"),
        "{v:#}"
    );
    wait_for("the ClusterIP route", Duration::from_secs(10), || {
        routes(&a.netns).contains("10.96.0.10 dev kxdp0")
    });
    let mut web = server.get("Service", "default", "web").unwrap();
    web["spec"]["ports"][0]["port"] = 81.into();
    server.update(web).unwrap();
    wait_for("web's new port", Duration::from_secs(10), || {
        services(&socket) == [("default/web".to_owned(), "81/TCP".to_owned())]
    });
    server.create(svc("api", "10.96.0.11", 80)).unwrap();
    server.create(slice("api", "10.244.2.6")).unwrap();
    wait_for("api to appear", Duration::from_secs(10), || {
        names(&socket) == ["default/api", "default/web"]
    });
    server.delete("Service", "default", "api").unwrap();
    server
        .delete("EndpointSlice", "default", "api-abc")
        .unwrap();
    wait_for("api to disappear", Duration::from_secs(10), || {
        names(&socket) == ["default/web"]
    });

    // (d) Watches reset mid-stream: they resume from their resourceVersion.
    server.drop_watches();
    server.create(svc("d1", "10.96.0.21", 80)).unwrap();
    wait_for("d1 after a watch reset", Duration::from_secs(10), || {
        names(&socket) == ["default/d1", "default/web"]
    });
    // History compacted and watches reset: resuming gets 410 Gone, the watchers re-list, and
    // what changed meanwhile (d1 deleted, d2 created) is neither lost nor doubled.
    let lists_before = server.lists("services");
    server.compact();
    server.drop_watches();
    server.delete("Service", "default", "d1").unwrap();
    server.create(svc("d2", "10.96.0.22", 80)).unwrap();
    wait_for("the re-list", Duration::from_secs(15), || {
        names(&socket) == ["default/d2", "default/web"]
    });
    assert!(server.lists("services") > lists_before, "re-listed");

    // (e) Outage: the tables stay, readiness goes once the last sync is older than 2 s, and
    // comes back with what changed meanwhile.
    server.set_refusing(true);
    let down = Instant::now();
    server.create(svc("outage", "10.96.0.30", 80)).unwrap();
    wait_for("/readyz to turn 503", Duration::from_secs(10), || {
        readyz(&a.netns) == 503
    });
    // Staleness counts from the last successful sync (which may precede the outage by a second
    // or two, and is kept in whole seconds), so only an upper bound is asserted here.
    assert!(down.elapsed() < Duration::from_secs(10));
    let (_, why) = http_get(&a.netns, "/readyz").unwrap();
    assert!(why.contains("stale"), "{why}");
    assert_eq!(
        names(&socket),
        ["default/d2", "default/web"],
        "the last good state stays"
    );
    assert!(ping(&pb.netns, A_GATEWAY, 2), "the overlay keeps working");
    server.set_refusing(false);
    wait_for("/readyz to recover", Duration::from_secs(30), || {
        readyz(&a.netns) == 200
    });
    wait_for(
        "the change made during the outage",
        Duration::from_secs(40),
        || names(&socket) == ["default/d2", "default/outage", "default/web"],
    );

    // (f) Metrics.
    let (code, metrics) = http_get(&a.netns, "/metrics").unwrap();
    assert_eq!(code, 200);
    for want in [
        "kxdp_rx_packets_total{",
        "kxdp_drops_total{",
        "kxdp_table_generation ",
        "kxdp_sync_latency_seconds_bucket{",
        "kxdp_sync_latency_seconds_count ",
        "kxdp_conntrack_entries ",
        "kxdp_last_publish_timestamp_seconds ",
        "kxdp_ready 1",
    ] {
        assert!(
            metrics.contains(want),
            "/metrics lacks {want:?}:\n{metrics}"
        );
    }
    let generation: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kxdp_table_generation "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(generation > 1, "{generation}");

    // (g) SIGTERM: exit 0, nothing left.
    agent.signal(Signal::SIGTERM).unwrap();
    assert!(
        agent
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .is_some(),
        "the agent exits on SIGTERM"
    );
    let out = agent.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent exits 0 on SIGTERM: {stderr}");
    for want in [
        "derived from the node IP; written to the Node's flannel annotations",
        "flannel annotations written",
        "XDP programs detached",
    ] {
        assert!(
            stderr.contains(want),
            "agent stderr lacks {want:?}:\n{stderr}"
        );
    }
    assert!(!socket.exists(), "API socket removed");
    assert!(!xdp_attached(&a.netns), "no XDP program left on eth0");
    assert!(a.netns.ip(&["link", "show", "dev", "kxdp0"]).is_err());
    let r = routes(&a.netns);
    assert!(
        !r.contains("10.244.") && !r.contains("10.96."),
        "routes removed: {r}"
    );
    drop(server);
}

#[test]
fn an_unreachable_api_server_delays_neither_start_nor_stop() {
    if !require_root("agent_kube::an_unreachable_api_server_delays_neither_start_nor_stop") {
        return;
    }
    let underlay = Underlay::new("agkube2").unwrap();
    let a = underlay.add_node("a", underlay.node_ip(1)).unwrap();
    let scratch = Scratch::new("agent-kube-down");
    let kubeconfig = scratch.0.join("kubeconfig");
    // Nothing listens on port 1.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n",
    )
    .unwrap();
    let kxdp = binaries::kxdp().unwrap();
    let mut agent = a
        .netns
        .spawn(&[
            "env",
            &format!("KUBECONFIG={}", kubeconfig.display()),
            kxdp.to_str().unwrap(),
            "agent",
            "--source",
            "kube",
            "--node-name",
            "a",
            "--uplink",
            "eth0",
            "--xdp-mode",
            "native",
            "--api-socket",
            scratch.0.join("kxdp.sock").to_str().unwrap(),
            "--metrics-addr",
            METRICS,
        ])
        .unwrap();
    // The engine runs with empty tables; the agent is live but not ready.
    wait_for("XDP attached", Duration::from_secs(20), || {
        xdp_attached(&a.netns)
    });
    wait_for("/healthz", Duration::from_secs(10), || {
        http_get(&a.netns, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    std::thread::sleep(Duration::from_secs(2));
    let (code, why) = http_get(&a.netns, "/readyz").unwrap();
    assert_eq!(code, 503, "{why}");
    agent.signal(Signal::SIGTERM).unwrap();
    assert!(
        agent
            .wait_timeout(Duration::from_secs(5))
            .unwrap()
            .is_some(),
        "SIGTERM while the API server is unreachable"
    );
    let out = agent.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("XDP programs detached"), "{stderr}");
    assert!(!xdp_attached(&a.netns));
}
