//! End-to-end: the overlay. kxdp nodes run the engine in-process in their node namespace
//! (uplink `eth0`, host port `kxdp0e`, one port per pod), with tables compiled from the node
//! model exactly as the agent does; the underlay is a Linux bridge; the interop peer is a node
//! built the way flannel's VXLAN backend builds one (kernel `vxlan` device).
//!
//! - two pods on one kxdp node: ping, TCP, the gateway and the node IP through the host port,
//!   anti-spoofing;
//! - interop with a flannel node: ping and 10 MB of TCP checked byte for byte, both ways;
//! - two kxdp nodes over VXLAN, and in underlay mode (no encapsulation);
//! - PMTU discovery: a pod with a 1500-byte MTU sends TCP across a 1500-byte underlay; the
//!   engine's fragmentation-needed reaches the sender and the transfer completes;
//! - malformed VXLAN is dropped and counted, and the node keeps working.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use af_xdp::bpf::XdpMode;
use kxdp_control::overlay::{Ipv4Net, NodeConfig, NodeDataplane, OverlayMode, PodSpec, RemoteNode};
use kxdp_dataplane::stats::WorkerSnapshot;
use kxdp_dataplane::{DropReason, EngineConfig};
use kxdp_tests::{
    Direction, FlannelNode, KxdpNodeLinks, KxdpNodeLinksOptions, Node, Pod, PodOptions,
    TransferOptions, Underlay, ping, require_root, tcp_transfer_with,
};

const TEN_MB: u64 = 10 << 20;
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// A kxdp node: its namespace and links, and the running dataplane.
struct KxdpNode {
    // Drop order: the dataplane goes before the links and the namespace it runs in.
    dp: Option<NodeDataplane>,
    _links: KxdpNodeLinks,
    node: Node,
    pod_net: Ipv4Addr,
}

impl KxdpNode {
    fn start(underlay: &Underlay, name: &str, n: u32, mode: OverlayMode) -> KxdpNode {
        let node = underlay.add_node(name, underlay.node_ip(n)).unwrap();
        let pod_net = Ipv4Addr::new(10, 244, n as u8, 0);
        let pod_cidr = Ipv4Net::new(pod_net, 24).unwrap();
        // The kernel end of the host port holds the pods' gateway address (as flannel's cni0
        // does); the cluster CIDR is routed into the engine, which answers the kernel's ARP.
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
        cfg.mode = mode;
        cfg.engine = EngineConfig {
            xdp_mode: XdpMode::Native,
            ..EngineConfig::default()
        };
        let dp = node
            .netns
            .run(move || NodeDataplane::start(cfg))
            .unwrap()
            .unwrap();
        KxdpNode {
            dp: Some(dp),
            _links: links,
            node,
            pod_net,
        }
    }

    fn dp(&self) -> &NodeDataplane {
        self.dp.as_ref().unwrap()
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_net) + 1)
    }

    /// A pod as kxdp-cni makes one: a veth with the pod end configured (/24, gateway .1,
    /// MTU underlay − 50), registered with the dataplane.
    fn add_pod(&self, name: &str, host_octet: u8, mtu: u32) -> Pod {
        let o = self.pod_net.octets();
        let ip = Ipv4Addr::new(o[0], o[1], o[2], host_octet);
        let mut opts = PodOptions::new(ip, 24, self.gateway());
        opts.mtu = mtu;
        let host_if = format!("v{}{}", self.node.name, name);
        let pod = Pod::create(&self.node.netns, name, &host_if, &opts).unwrap();
        let spec = PodSpec {
            id: format!("{}/{}", self.node.name, name),
            ifname: host_if,
            ip,
            mac: pod.mac,
            mtu: mtu as u16,
        };
        self.node
            .netns
            .run(|| self.dp().attach_pod(&spec))
            .unwrap()
            .unwrap();
        pod
    }

    /// This node as other nodes see it (its Node object with flannel's annotations).
    fn as_remote(&self) -> RemoteNode {
        RemoteNode {
            name: self.node.name.clone(),
            ip: self.node.ip,
            pod_cidrs: vec![Ipv4Net::new(self.pod_net, 24).unwrap()],
            vtep_mac: Some(self.dp().local().vtep_mac),
        }
    }

    fn set_remotes(&self, remotes: Vec<RemoteNode>) {
        self.dp().set_remotes(remotes);
        assert!(
            self.dp().wait_resolved(Duration::from_secs(5)),
            "{}: underlay next hops not resolved",
            self.node.name
        );
    }

    fn stats(&self) -> Vec<WorkerSnapshot> {
        self.dp().engine().stats()
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.stats().iter().map(|s| s.drop_count(reason)).sum()
    }

    /// Stop the engine and check that every UMEM frame came back.
    fn stop(mut self) {
        let report = self.dp.take().unwrap().stop();
        for (w, f) in report.frames.iter().enumerate() {
            assert_eq!(f.user, 0, "worker {w} leaked frames: {f:?}");
            assert_eq!(f.free + f.fill + f.tx, f.total, "worker {w}: {f:?}");
        }
    }
}

/// A kxdp node (a, pods 10.244.1.0/24) and a flannel VXLAN node (b, 10.244.2.0/24) that know
/// each other from their Node objects: flannel writes the FDB entry, neighbour and route;
/// kxdp compiles a tunnel.
fn kxdp_and_flannel(underlay: &Underlay) -> (KxdpNode, FlannelNode) {
    let a = KxdpNode::start(underlay, "a", 1, OverlayMode::Vxlan);
    let b = FlannelNode::new(
        underlay,
        "b",
        underlay.node_ip(2),
        Ipv4Addr::new(10, 244, 2, 0),
    )
    .unwrap();
    let ra = a.as_remote();
    b.add_remote(ra.ip, ra.vtep_mac.unwrap(), a.pod_net)
        .unwrap();
    a.set_remotes(vec![flannel_remote(&b)]);
    (a, b)
}

fn flannel_remote(f: &FlannelNode) -> RemoteNode {
    RemoteNode {
        name: f.node.name.clone(),
        ip: f.node_ip(),
        pod_cidrs: vec![Ipv4Net::new(f.pod_net, 24).unwrap()],
        vtep_mac: Some(f.vtep_mac),
    }
}

/// Frames the engine received from a pod's port.
fn pod_rx(node: &KxdpNode, pod: &Pod) -> u64 {
    let port = node.dp().engine().port(pod.host_ifname()).unwrap().id;
    node.stats()
        .iter()
        .map(|w| w.ports[port.index()].rx_packets)
        .sum()
}

fn pinged(from: &Pod, to: Ipv4Addr) {
    assert!(
        ping(&from.netns, IpAddr::V4(to), 5),
        "ping {} -> {to} failed",
        from.ip
    );
}

fn transfer(server: &Pod, client: &Pod, direction: Direction) {
    let report = tcp_transfer_with(
        &server.netns,
        SocketAddr::new(IpAddr::V4(server.ip), 0),
        &client.netns,
        &TransferOptions {
            bytes: TEN_MB,
            direction,
            ..TransferOptions::default()
        },
    )
    .unwrap();
    assert!(
        report.is_intact(),
        "{} <-> {} {direction:?}: {report:?}",
        client.ip,
        server.ip
    );
    eprintln!(
        "{} <-> {} {direction:?}: {} bytes intact, {:.0} Mbit/s",
        client.ip,
        server.ip,
        report.received,
        report.mbit_per_s()
    );
}

#[test]
fn two_pods_on_one_node() {
    if !require_root("overlay::two_pods_on_one_node") {
        return;
    }
    let underlay = Underlay::new("ov1").unwrap();
    let a = KxdpNode::start(&underlay, "a", 1, OverlayMode::Vxlan);
    let p1 = a.add_pod("p1", 2, 1450);
    let p2 = a.add_pod("p2", 3, 1450);

    pinged(&p1, p2.ip);
    pinged(&p2, p1.ip);
    let rx_before = pod_rx(&a, &p1);
    // The gateway and the node's own IP are the host kernel's, through the host port.
    pinged(&p1, a.gateway());
    pinged(&p1, a.node.ip);
    transfer(&p2, &p1, Direction::ClientToServer);
    transfer(&p2, &p1, Direction::ServerToClient);
    // The transfers went through the engine, not a kernel fallback.
    assert!(
        pod_rx(&a, &p1) - rx_before > 7000,
        "the engine carried the TCP transfers"
    );
    let arp: u64 = a.stats().iter().map(|s| s.events.arp_replies).sum();
    assert!(
        arp >= 2,
        "the pods resolved their gateway through the engine"
    );

    // Anti-spoofing: a pod sending from an address that is not its own is dropped.
    let before = a.drops(DropReason::Spoofed);
    p1.netns
        .ip(&["addr", "add", "10.244.1.99/32", "dev", "eth0"])
        .unwrap();
    let p2_ip = p2.ip;
    p1.netns
        .run(move || {
            let s = UdpSocket::bind("10.244.1.99:0").unwrap();
            for _ in 0..10 {
                s.send_to(b"spoofed", (p2_ip, 9)).unwrap();
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        a.drops(DropReason::Spoofed) >= before + 10,
        "spoofed packets counted"
    );
    // ... and shows in the Prometheus metrics.
    let mut metrics = String::new();
    kxdp_control::metrics::render_engine(a.dp().engine(), &mut metrics);
    let spoofed: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("kxdp_drops_total{") && l.contains("reason=\"spoofed\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(spoofed >= 10, "{metrics}");
    assert!(metrics.contains("kxdp_rx_packets_total{worker=\"0\",iface=\"vap1\"}"));

    // Detaching a pod takes its route and port away; the other pod is unaffected.
    let id = format!("a/{}", "p2");
    assert!(
        a.node
            .netns
            .run(|| a.dp().detach_pod(&id))
            .unwrap()
            .unwrap()
    );
    assert!(!ping(&p1.netns, IpAddr::V4(p2.ip), 1));
    pinged(&p1, a.gateway());
    a.stop();
}

#[test]
fn interop_with_a_flannel_vxlan_node() {
    if !require_root("overlay::interop_with_a_flannel_vxlan_node") {
        return;
    }
    let underlay = Underlay::new("ov2").unwrap();
    let (a, b) = kxdp_and_flannel(&underlay);

    let pa = a.add_pod("pa", 2, 1450);
    let pb = b.add_pod("pb").unwrap();
    pinged(&pa, pb.ip);
    pinged(&pb, pa.ip);
    transfer(&pb, &pa, Direction::ClientToServer);
    transfer(&pb, &pa, Direction::ServerToClient);
    transfer(&pa, &pb, Direction::ClientToServer);
    let s = a.stats();
    let encap: u64 = s.iter().map(|w| w.events.vxlan_encap).sum();
    let decap: u64 = s.iter().map(|w| w.events.vxlan_decap).sum();
    assert!(encap > 7000 && decap > 7000, "encap {encap}, decap {decap}");
    // The flannel side really used its VXLAN device.
    let vx = b.node.netns.link_stats("flannel.1").unwrap();
    assert!(vx.rx_packets > 7000 && vx.tx_packets > 7000, "{vx:?}");
    a.stop();
}

#[test]
fn two_kxdp_nodes_over_vxlan_and_underlay() {
    if !require_root("overlay::two_kxdp_nodes_over_vxlan_and_underlay") {
        return;
    }
    for mode in [OverlayMode::Vxlan, OverlayMode::None] {
        let underlay = Underlay::new("ov3").unwrap();
        let a = KxdpNode::start(&underlay, "a", 1, mode);
        let b = KxdpNode::start(&underlay, "b", 2, mode);
        a.set_remotes(vec![b.as_remote()]);
        b.set_remotes(vec![a.as_remote()]);
        let pa = a.add_pod("pa", 2, 1450);
        let pb = b.add_pod("pb", 2, 1450);
        pinged(&pa, pb.ip);
        pinged(&pb, pa.ip);
        transfer(&pb, &pa, Direction::ClientToServer);
        transfer(&pb, &pa, Direction::ServerToClient);
        let encap: u64 = a.stats().iter().map(|w| w.events.vxlan_encap).sum();
        match mode {
            OverlayMode::None => assert_eq!(encap, 0, "underlay mode never encapsulates"),
            _ => assert!(encap > 7000, "encap {encap}"),
        }
        b.stop();
        a.stop();
    }
}

#[test]
fn pmtu_discovery_through_the_overlay() {
    if !require_root("overlay::pmtu_discovery_through_the_overlay") {
        return;
    }
    let underlay = Underlay::new("ov4").unwrap();
    let (a, b) = kxdp_and_flannel(&underlay);
    // Both pods think their link carries 1500 bytes (a misconfigured MTU): the sender's
    // full-sized segments do not fit the tunnel once VXLAN adds its 50 bytes.
    let pa = a.add_pod("pa", 2, 1500);
    let mut opts = b.pod_options(Ipv4Addr::new(10, 244, 2, 2));
    opts.mtu = 1500;
    let pb = b.add_pod_with("pb", &opts).unwrap();
    transfer(&pb, &pa, Direction::ClientToServer);
    let frag: u64 = a.stats().iter().map(|w| w.events.icmp_frag_needed).sum();
    assert!(frag >= 1, "the engine sent fragmentation-needed");
    let route = pa
        .netns
        .exec_stdout(&["ip", "route", "get", &pb.ip.to_string()])
        .unwrap();
    assert!(
        route.contains("mtu 1450"),
        "the sender learned the path MTU: {route}"
    );
    a.stop();
}

#[test]
fn malformed_vxlan_is_dropped_and_counted() {
    if !require_root("overlay::malformed_vxlan_is_dropped_and_counted") {
        return;
    }
    let underlay = Underlay::new("ov5").unwrap();
    let a = KxdpNode::start(&underlay, "a", 1, OverlayMode::Vxlan);
    let b = KxdpNode::start(&underlay, "b", 2, OverlayMode::Vxlan);
    a.set_remotes(vec![b.as_remote()]);
    b.set_remotes(vec![a.as_remote()]);
    let pa = a.add_pod("pa", 2, 1450);
    let pb = b.add_pod("pb", 2, 1450);
    pinged(&pb, pa.ip);

    let vtep = a.dp().local().vtep_mac;
    let inner = |dst_mac: [u8; 6], ethertype: u16, ip: &[u8]| {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    };
    let mut good_ip = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 244, 2, 2], pa.ip.octets(), 64)
        .udp(1000, 9)
        .write(&mut good_ip, b"hello")
        .unwrap();
    let vx = |flags: u8, vni: u32, inner: Vec<u8>| {
        let mut p = vec![flags, 0, 0, 0];
        p.extend_from_slice(&(vni << 8).to_be_bytes());
        p.extend(inner);
        p
    };
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![0x08, 0, 0], DropReason::MalformedVxlan),
        (
            vx(0x08, 7, inner(vtep, 0x0800, &good_ip)),
            DropReason::VxlanWrongVni,
        ),
        (
            vx(0x00, 1, inner(vtep, 0x0800, &good_ip)),
            DropReason::VxlanBadFlags,
        ),
        (
            vx(0x08, 1, inner([2, 9, 9, 9, 9, 9], 0x0800, &good_ip)),
            DropReason::VxlanWrongInnerMac,
        ),
        (
            vx(0x08, 1, inner(vtep, 0x0806, &[0; 28])),
            DropReason::VxlanInnerNotIpv4,
        ),
        (
            vx(0x08, 1, inner(vtep, 0x0800, &good_ip[..10])),
            DropReason::MalformedIpv4,
        ),
    ];
    let before: Vec<u64> = cases.iter().map(|(_, r)| a.drops(*r)).collect();
    let target = SocketAddr::new(IpAddr::V4(a.node.ip), 8472);
    let payloads: Vec<Vec<u8>> = cases.iter().map(|(p, _)| p.clone()).collect();
    b.node
        .netns
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for p in &payloads {
                for _ in 0..5 {
                    s.send_to(p, target).unwrap();
                }
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for ((_, reason), b0) in cases.iter().zip(before) {
        assert!(
            a.drops(*reason) >= b0 + 5,
            "{reason:?}: {} after {b0}",
            a.drops(*reason)
        );
    }
    // The worker lives: traffic still flows both ways.
    pinged(&pb, pa.ip);
    pinged(&pa, pb.ip);
    b.stop();
    a.stop();
}
