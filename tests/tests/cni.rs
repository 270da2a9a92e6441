//! End-to-end: the `kxdp-cni` binary as a container runtime runs it. A kxdp node (engine and
//! overlay tables in-process in its namespace, as in `overlay.rs`) serves the local API on a
//! temporary socket; the plugin runs inside the node namespace with the runtime's `CNI_*`
//! environment, the network configuration on stdin, and the standard `host-local` IPAM
//! plugin from `/usr/lib/cni` with a temporary data directory.
//!
//! - VERSION;
//! - ADD of two pods: they ping each other and the gateway, TCP between them is intact;
//! - CHECK passes; a repeated ADD is refused and breaks nothing;
//! - DEL: the veth goes, the other pod keeps working, the address is released (host-local
//!   hands it out again); DEL twice; CHECK after DEL fails;
//! - DEL after the pod's namespace is already gone;
//! - an ADD the agent refuses after IPAM is undone: no veth, no reservation;
//! - with the agent down: ADD fails with code 11 leaving no veth and no reservation, and DEL
//!   (with prevResult) still cleans up.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use af_xdp::bpf::XdpMode;
use kxdp_control::api::{ApiServer, NodeHandler};
use kxdp_control::cni::pod_link::host_ifname;
use kxdp_control::netlink::Netlink;
use kxdp_control::overlay::{Ipv4Net, NodeConfig, NodeDataplane, OverlayMode};
use kxdp_dataplane::EngineConfig;
use kxdp_tests::{
    KxdpNodeLinks, KxdpNodeLinksOptions, Netns, Node, TransferOptions, Underlay, binaries, ping,
    require_root, tcp_transfer_with,
};
use serde_json::{Value, json};

const CLUSTER_CIDR: &str = "10.244.0.0/16";
const NET_NAME: &str = "kxdp-test";

/// A kxdp node serving the local API, as the agent runs one.
struct KxdpNode {
    // Drop order: the API server, then the dataplane, then the links and the namespace.
    server: Mutex<Option<ApiServer>>,
    dp: Option<Arc<NodeDataplane>>,
    _links: KxdpNodeLinks,
    node: Node,
    gateway: Ipv4Addr,
}

impl KxdpNode {
    fn start(underlay: &Underlay, name: &str, n: u32, socket: &Path) -> KxdpNode {
        let node = underlay.add_node(name, underlay.node_ip(n)).unwrap();
        let pod_cidr = Ipv4Net::new(Ipv4Addr::new(10, 244, n as u8, 0), 24).unwrap();
        let links = KxdpNodeLinks::create_with(
            &node.netns,
            &KxdpNodeLinksOptions {
                host_addr: Some((pod_cidr.nth(1), 32)),
                ..KxdpNodeLinksOptions::default()
            },
        )
        .unwrap();
        links.route_to_engine_arp(CLUSTER_CIDR).unwrap();
        let mut cfg = NodeConfig::new(name, node.uplink_name(), pod_cidr);
        cfg.host_port = Some((links.engine.name().to_owned(), links.host.name().to_owned()));
        cfg.mode = OverlayMode::Vxlan;
        cfg.engine = EngineConfig {
            xdp_mode: XdpMode::Native,
            ..EngineConfig::default()
        };
        let dp = Arc::new(
            node.netns
                .run(move || NodeDataplane::start(cfg))
                .unwrap()
                .unwrap(),
        );
        // Started from the node namespace, the server's threads (and so pod attachment) are
        // in it.
        let handler = Arc::new(NodeHandler::new(Arc::clone(&dp)));
        let server = node
            .netns
            .run(|| ApiServer::start(socket, handler))
            .unwrap()
            .unwrap();
        KxdpNode {
            server: Mutex::new(Some(server)),
            dp: Some(dp),
            _links: links,
            node,
            gateway: pod_cidr.nth(1),
        }
    }

    /// Whether `ifname` exists in the node namespace.
    fn has_link(&self, ifname: &str) -> bool {
        self.node
            .netns
            .run(|| Netlink::open().unwrap().find_link(ifname).unwrap())
            .unwrap()
            .is_some()
    }

    /// The agent goes away (its socket with it); the engine keeps running.
    fn stop_api(&self) {
        drop(self.server.lock().unwrap().take());
    }

    /// Stop the API and the engine and check that every UMEM frame came back.
    fn stop(mut self) {
        self.stop_api();
        let mut dp = self.dp.take().unwrap();
        // Connection threads of the API server may hold the handler a moment longer.
        let dp = loop {
            match Arc::try_unwrap(dp) {
                Ok(dp) => break dp,
                Err(shared) => {
                    dp = shared;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let report = dp.stop();
        for (w, f) in report.frames.iter().enumerate() {
            assert_eq!(f.user, 0, "worker {w} leaked frames: {f:?}");
            assert_eq!(f.free + f.fill + f.tx, f.total, "worker {w}: {f:?}");
        }
    }
}

/// What one plugin run printed.
#[derive(Debug)]
struct Answer {
    exit: i32,
    json: Option<Value>,
    stderr: String,
}

impl Answer {
    fn ok(self) -> Option<Value> {
        assert_eq!(
            self.exit, 0,
            "plugin failed: {:?}\n{}",
            self.json, self.stderr
        );
        self.json
    }

    fn error_code(&self) -> u64 {
        assert_eq!(self.exit, 1, "plugin succeeded: {:?}", self.json);
        let doc = self.json.as_ref().expect("an error document on stdout");
        assert_eq!(doc["cniVersion"], "1.0.0");
        doc["code"].as_u64().unwrap()
    }
}

/// The runtime's side: runs `kxdp-cni` in the node namespace.
struct Runtime<'a> {
    node: &'a Netns,
    plugin: PathBuf,
    cni_path: String,
    conf: Value,
    data_dir: PathBuf,
}

impl Runtime<'_> {
    fn call(
        &self,
        command: &str,
        container: &str,
        netns: Option<&Path>,
        prev_result: Option<&Value>,
    ) -> Answer {
        let mut conf = self.conf.clone();
        if let Some(prev) = prev_result {
            conf["prevResult"] = prev.clone();
        }
        let mut cmd = self.node.command(&[self.plugin.to_str().unwrap()]);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container}"),
            )
            .env("KXDP_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match netns {
            Some(p) => cmd.env("CNI_NETNS", p),
            None => cmd.env_remove("CNI_NETNS"),
        };
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "--- kxdp-cni {command} {container}: exit {:?}\n{stderr}",
            out.status
        );
        Answer {
            exit: out.status.code().unwrap_or(-1),
            json: (!stdout.trim().is_empty()).then(|| serde_json::from_str(&stdout).unwrap()),
            stderr,
        }
    }

    /// host-local's reservations: one file per address, named by it.
    fn reserved(&self) -> Vec<String> {
        let dir = self.data_dir.join(NET_NAME);
        let mut ips: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.parse::<Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        ips.sort();
        ips
    }
}

/// A pod as the runtime sees it: its namespace and the ADD result.
struct Pod {
    container: String,
    netns: Netns,
    result: Value,
    ip: Ipv4Addr,
}

fn add_pod(rt: &Runtime<'_>, container: &str) -> Pod {
    let netns = Netns::new("cni-pod").unwrap();
    let result = rt
        .call("ADD", container, Some(&netns.path()), None)
        .ok()
        .expect("a result on stdout");
    let address = result["ips"][0]["address"].as_str().unwrap();
    let ip: Ipv4Addr = address.split_once('/').unwrap().0.parse().unwrap();
    Pod {
        container: container.to_owned(),
        netns,
        result,
        ip,
    }
}

fn pinged(from: &Pod, to: Ipv4Addr) {
    assert!(
        ping(&from.netns, IpAddr::V4(to), 5),
        "ping {} -> {to} failed",
        from.ip
    );
}

#[test]
fn version() {
    // Needs no privileges, no agent and no configuration.
    let out = std::process::Command::new(binaries::kxdp_cni().unwrap())
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc,
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]})
    );
}

#[test]
fn add_check_del_through_the_agent() {
    if !require_root("cni::add_check_del_through_the_agent") {
        return;
    }
    let plugin = binaries::kxdp_cni().unwrap();
    let tmp = std::env::temp_dir().join(format!("kxdp-cni-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let socket = tmp.join("kxdp.sock");
    let data_dir = tmp.join("ipam");

    let underlay = Underlay::new("cni").unwrap();
    let node = KxdpNode::start(&underlay, "a", 1, &socket);
    let rt = Runtime {
        node: &node.node.netns,
        cni_path: format!(
            "/usr/lib/cni:{}",
            plugin.parent().unwrap().to_str().unwrap()
        ),
        plugin,
        conf: json!({
            "cniVersion": "1.0.0", "name": NET_NAME, "type": "kxdp-cni",
            "apiSocket": socket,
            "ipam": {"type": "host-local", "dataDir": data_dir},
        }),
        data_dir: data_dir.clone(),
    };

    // ADD two pods.
    let a = add_pod(&rt, "ctr-a");
    let b = add_pod(&rt, "ctr-b");
    let host_a = host_ifname("ctr-a", "eth0");
    let host_b = host_ifname("ctr-b", "eth0");
    assert_eq!(a.result["cniVersion"], "1.0.0");
    assert_eq!(a.result["interfaces"][0]["name"], host_a.as_str());
    assert_eq!(a.result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        a.result["interfaces"][1]["sandbox"],
        a.netns.path().to_str().unwrap()
    );
    assert_eq!(a.result["ips"][0]["interface"], 1);
    assert_eq!(a.result["ips"][0]["gateway"], node.gateway.to_string());
    assert_eq!(
        a.result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": node.gateway.to_string()}])
    );
    assert!(
        a.result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .ends_with("/24")
    );
    assert_ne!(a.ip, b.ip);
    assert!(node.has_link(&host_a) && node.has_link(&host_b));
    // The pod side is as ADD says: MTU the agent's pod MTU, offload off on both ends.
    let eth0 = a.netns.link_info("eth0").unwrap();
    assert_eq!(eth0.mtu, underlay.mtu() - 50);
    let offload = |ns: &Netns, ifname: &str| {
        ns.run(|| af_xdp::tx_checksum_offload(ifname).unwrap())
            .unwrap()
    };
    assert!(
        !offload(&a.netns, "eth0"),
        "TX checksum offload off in the pod"
    );
    assert!(!offload(&node.node.netns, &host_a), "and on the host end");
    assert_eq!(rt.reserved().len(), 2);

    // Traffic: pod to pod, pod to gateway, TCP intact.
    pinged(&a, b.ip);
    pinged(&b, a.ip);
    pinged(&a, node.gateway);
    let report = tcp_transfer_with(
        &b.netns,
        SocketAddr::new(IpAddr::V4(b.ip), 0),
        &a.netns,
        &TransferOptions {
            bytes: 4 << 20,
            ..TransferOptions::default()
        },
    )
    .unwrap();
    assert!(report.is_intact(), "{report:?}");

    // CHECK passes; a second ADD of the same container is refused and breaks nothing.
    for pod in [&a, &b] {
        rt.call(
            "CHECK",
            &pod.container,
            Some(&pod.netns.path()),
            Some(&pod.result),
        )
        .ok();
    }
    let again = rt.call("ADD", "ctr-a", Some(&a.netns.path()), None);
    assert_eq!(again.error_code(), 100, "{again:?}");
    assert!(node.has_link(&host_a));
    pinged(&a, b.ip);

    // DEL b: its veth goes, a keeps working, the address is released; DEL twice is fine.
    rt.call("DEL", "ctr-b", Some(&b.netns.path()), Some(&b.result))
        .ok();
    assert!(!node.has_link(&host_b));
    assert!(b.netns.link_info("eth0").is_err(), "the pod end went too");
    assert_eq!(rt.reserved(), vec![a.ip.to_string()]);
    pinged(&a, node.gateway);
    assert!(!ping(&a.netns, IpAddr::V4(b.ip), 1));
    rt.call("DEL", "ctr-b", Some(&b.netns.path()), Some(&b.result))
        .ok();
    rt.call("DEL", "ctr-b", None, None).ok();
    let check = rt.call("CHECK", "ctr-b", Some(&b.netns.path()), Some(&b.result));
    assert_eq!(check.error_code(), 104);
    assert!(
        check.json.unwrap()["msg"]
            .as_str()
            .unwrap()
            .contains(&host_b)
    );
    // host-local hands addresses out round-robin after the last one it reserved; forgetting
    // that makes it scan from the start of the range, where b's address is the first free.
    std::fs::remove_file(data_dir.join(NET_NAME).join("last_reserved_ip.0")).unwrap();
    let c = add_pod(&rt, "ctr-c");
    assert_eq!(c.ip, b.ip, "b's released address is handed out again");
    pinged(&c, a.ip);
    drop(b);

    // DEL after the runtime already deleted the pod's namespace.
    let c_path = c.netns.path();
    let c_result = c.result.clone();
    drop(c.netns);
    rt.call("DEL", "ctr-c", Some(&c_path), Some(&c_result)).ok();
    assert!(!node.has_link(&host_ifname("ctr-c", "eth0")));
    assert_eq!(rt.reserved(), vec![a.ip.to_string()]);
    pinged(&a, node.gateway);

    // A failure after IPAM is undone in reverse: an address outside the node's pod CIDR
    // (the configuration names its own range) makes the agent refuse the attachment; the
    // veth goes and the address is released.
    let mut foreign = rt.conf.clone();
    foreign["ipam"]["ranges"] = json!([[{"subnet": "10.99.0.0/24"}]]);
    let rt_foreign = Runtime {
        conf: foreign,
        plugin: rt.plugin.clone(),
        cni_path: rt.cni_path.clone(),
        data_dir: data_dir.clone(),
        node: rt.node,
    };
    let e = Netns::new("cni-pod").unwrap();
    let refused = rt_foreign.call("ADD", "ctr-e", Some(&e.path()), None);
    assert_eq!(refused.error_code(), 102, "{refused:?}");
    assert!(!node.has_link(&host_ifname("ctr-e", "eth0")));
    assert!(e.link_info("eth0").is_err());
    assert_eq!(rt.reserved(), vec![a.ip.to_string()]);

    // The agent goes down: ADD fails with "try again later" and leaves nothing behind.
    node.stop_api();
    let d = Netns::new("cni-pod").unwrap();
    let down = rt.call("ADD", "ctr-d", Some(&d.path()), None);
    assert_eq!(down.error_code(), 11, "{down:?}");
    let msg = down.json.as_ref().unwrap()["msg"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("kxdp agent not reachable at"), "{msg}");
    assert!(!node.has_link(&host_ifname("ctr-d", "eth0")));
    assert!(d.link_info("eth0").is_err());
    assert_eq!(rt.reserved(), vec![a.ip.to_string()]);
    // DEL still cleans up what is local, learning the range from prevResult.
    rt.call("DEL", "ctr-a", Some(&a.netns.path()), Some(&a.result))
        .ok();
    assert!(!node.has_link(&host_a));
    assert!(rt.reserved().is_empty());

    node.stop();
    let _ = std::fs::remove_dir_all(&tmp);
}
