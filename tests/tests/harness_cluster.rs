//! The virtual-cluster harness on its own, with the kernel doing all forwarding: if these
//! fail, an overlay end-to-end test built on the harness cannot tell an engine bug from a
//! wiring bug.
//! - two flannel VXLAN nodes on one underlay: pod to pod across the overlay (ping, 10 MB of
//!   TCP both ways, UDP echo), really through `flannel.1`;
//! - one node with two routed pods (Calico-style /32 routes and proxy ARP);
//! - the kxdp host-port pair and its routes and sysctls.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use kxdp_tests::flannel::VXLAN_IF;
use kxdp_tests::kxdp_node::{ENGINE_NEXT_HOP, KXDP_ENGINE_IF, KXDP_HOST_IF};
use kxdp_tests::{
    Direction, FlannelNode, KxdpNodeLinks, KxdpNodeLinksOptions, Pod, PodOptions, TransferOptions,
    UdpEchoServer, Underlay, UnderlayOptions, format_mac, ping, require_root, tcp_transfer,
    tcp_transfer_with, udp_echo,
};

const TEN_MB: u64 = 10 << 20;

fn assert_gone(names: &[String]) {
    for name in names {
        assert!(
            !Path::new("/run/netns").join(name).exists(),
            "{name} leaked"
        );
    }
}

#[test]
fn flannel_pods_reach_each_other_over_vxlan() {
    if !require_root("harness_cluster::flannel_pods_reach_each_other_over_vxlan") {
        return;
    }
    let underlay = Underlay::new("flan").unwrap();
    let a = FlannelNode::new(
        &underlay,
        "a",
        underlay.node_ip(1),
        Ipv4Addr::new(10, 244, 1, 0),
    )
    .unwrap();
    let b = FlannelNode::new(
        &underlay,
        "b",
        underlay.node_ip(2),
        Ipv4Addr::new(10, 244, 2, 0),
    )
    .unwrap();
    let pod_a = a.add_pod("pa").unwrap();
    let pod_b = b.add_pod("pb").unwrap();

    // What the nodes look like.
    assert_eq!(a.node.uplink_name(), "eth0");
    assert_eq!(a.node.ip, Ipv4Addr::new(192, 168, 77, 1));
    assert_eq!(a.node.mac, a.node.uplink.mac().unwrap());
    assert_eq!(a.pod_mtu, 1450);
    assert_eq!(a.vxlan.info().unwrap().mtu, 1450);
    assert_eq!(a.vxlan.mac().unwrap(), a.vtep_mac);
    assert_eq!(pod_a.ip, Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(pod_a.mtu, 1450);
    assert_eq!(pod_a.host_ifname(), "veth2");
    let details = a
        .netns()
        .ip(&["-d", "link", "show", "dev", VXLAN_IF])
        .unwrap();
    for want in [
        "vxlan id 1",
        "local 192.168.77.1",
        "dev eth0",
        "dstport 8472",
        "nolearning",
    ] {
        assert!(details.contains(want), "{want:?} missing from {details}");
    }

    // The underlay works on its own; the overlay does not until the nodes know each other.
    assert!(ping(&a.node.netns, b.node_ip().into(), 2));
    assert!(!ping(&pod_a.netns, pod_b.ip.into(), 1));
    a.add_remote_node(&b).unwrap();
    b.add_remote_node(&a).unwrap();
    let fdb = a.fdb().unwrap();
    let entry = format!("{} dst 192.168.77.2", format_mac(b.vtep_mac));
    assert!(fdb.contains(&entry), "{entry:?} missing from {fdb}");
    assert_eq!(a.netns().route_dev(pod_b.ip.into()).unwrap(), VXLAN_IF);

    let vxlan_before = a.vxlan.stats().unwrap();
    assert!(ping(&pod_a.netns, pod_b.ip.into(), 3));
    assert!(ping(&pod_b.netns, pod_a.ip.into(), 1));

    let up = tcp_transfer(&pod_b.netns, pod_b.ip.into(), 0, &pod_a.netns, TEN_MB).unwrap();
    assert!(up.is_intact(), "{up:?}");
    let opts = TransferOptions {
        bytes: TEN_MB,
        direction: Direction::ServerToClient,
        seed: 2,
        ..TransferOptions::default()
    };
    let listen = SocketAddr::new(pod_b.ip.into(), 0);
    let down = tcp_transfer_with(&pod_b.netns, listen, &pod_a.netns, &opts).unwrap();
    assert!(down.is_intact(), "{down:?}");
    eprintln!(
        "flannel pod to pod: {:.0} Mbit/s up, {:.0} Mbit/s down",
        up.mbit_per_s(),
        down.mbit_per_s()
    );

    let echo = UdpEchoServer::start(&pod_b.netns, SocketAddr::new(pod_b.ip.into(), 0)).unwrap();
    let wait = Duration::from_secs(1);
    assert_eq!(
        udp_echo(&pod_a.netns, echo.local_addr(), 10, 1400, wait).unwrap(),
        10
    );
    assert_eq!(echo.stop(), 10);

    // It all went through flannel.1 (20 MB are ~14,000 full frames each way).
    let vxlan = a.vxlan.stats().unwrap().since(&vxlan_before);
    assert!(
        vxlan.tx_packets > 7_000 && vxlan.rx_packets > 7_000,
        "{vxlan:?}"
    );

    // Everything goes away on drop.
    let names: Vec<String> = [
        &underlay.netns,
        a.netns(),
        b.netns(),
        &pod_a.netns,
        &pod_b.netns,
    ]
    .iter()
    .map(|ns| ns.name().to_owned())
    .collect();
    drop((pod_a, pod_b, a, b, underlay));
    assert_gone(&names);
}

#[test]
fn routed_pods_on_one_node() {
    if !require_root("harness_cluster::routed_pods_on_one_node") {
        return;
    }
    let opts = UnderlayOptions {
        subnet: Ipv4Addr::new(172, 31, 9, 0),
        mtu: 9000,
        ..UnderlayOptions::default()
    };
    let underlay = Underlay::with_options("routed", &opts).unwrap();
    let node = underlay.add_node("n", underlay.node_ip(7)).unwrap();
    assert_eq!((node.mtu, node.prefix_len), (9000, 24));
    assert_eq!(node.mac, [0x02, 0x4b, 172, 31, 9, 7]);

    // Calico style: /32 pods, a gateway that only the node holds.
    let gateway = Ipv4Addr::new(10, 77, 0, 1);
    node.netns
        .ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"])
        .unwrap();
    node.enable_ip_forward().unwrap();
    let mut pods = Vec::new();
    for (i, host_if) in [(2u8, "cali-a"), (3, "cali-b")] {
        let mut opts = PodOptions::new(Ipv4Addr::new(10, 77, 0, i), 32, gateway);
        opts.queues = Some(2);
        if i == 3 {
            opts.mac = Some([0x02, 0, 0, 0, 0, 0x33]);
            opts.host_mac = Some([0x02, 0, 0, 0, 0, 0x34]);
        }
        let pod = Pod::create(&node.netns, &format!("routed-p{i}"), host_if, &opts).unwrap();
        pod.route_from_host(&node.netns).unwrap();
        pods.push(pod);
    }
    let (p2, p3) = (&pods[0], &pods[1]);
    assert_eq!(p2.mac, [0x0a, 0x58, 10, 77, 0, 2]);
    assert_eq!(p3.mac, [0x02, 0, 0, 0, 0, 0x33]);
    let info = p3.host_if.info().unwrap();
    assert!(info.up);
    assert_eq!((info.rx_queues, info.tx_queues), (2, 2));
    assert_eq!(p3.host_ifindex, info.ifindex);
    assert_eq!(p3.host_mac, [0x02, 0, 0, 0, 0, 0x34]);
    assert_eq!(p3.host_mac, info.mac);
    assert_eq!(node.netns.route_dev(p3.ip.into()).unwrap(), "cali-b");

    assert!(ping(&p2.netns, gateway.into(), 2));
    assert!(ping(&p2.netns, p3.ip.into(), 2));
    assert!(ping(&p3.netns, node.ip.into(), 1));
    let report = tcp_transfer(&p3.netns, p3.ip.into(), 5201, &p2.netns, TEN_MB).unwrap();
    assert!(report.is_intact(), "{report:?}");
    // The pod resolved its gateway to the host end's MAC by ARP.
    let neigh = p2.netns.ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    assert!(neigh.contains(&format_mac(p2.host_mac)), "{neigh}");
    // A pinned gateway works the same way, without ARP.
    p3.set_gateway_neigh(p3.host_mac).unwrap();
    let neigh = p3.netns.ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    assert!(neigh.contains("PERMANENT"), "{neigh}");
    assert!(ping(&p3.netns, p2.ip.into(), 1));
}

#[test]
fn kxdp_host_port_pair_and_routes() {
    if !require_root("harness_cluster::kxdp_host_port_pair_and_routes") {
        return;
    }
    let underlay = Underlay::new("kxlinks").unwrap();
    let node = underlay.add_node("k", underlay.node_ip(3)).unwrap();
    let opts = KxdpNodeLinksOptions {
        host_addr: Some((Ipv4Addr::new(169, 254, 77, 2), 32)),
        routes: vec!["10.244.0.0/16".to_owned()],
        ..KxdpNodeLinksOptions::default()
    };
    let links = KxdpNodeLinks::create_with(&node.netns, &opts).unwrap();
    links.route_to_engine_arp("10.96.0.0/12").unwrap();

    for (link, mac, ifindex) in [
        (&links.host, links.host_mac, links.host_ifindex),
        (&links.engine, links.engine_mac, links.engine_ifindex),
    ] {
        let info = link.info().unwrap();
        assert!(info.up, "{info:?}");
        assert_eq!((info.mac, info.ifindex), (mac, ifindex));
    }
    assert_eq!(links.host.name(), KXDP_HOST_IF);
    assert_eq!(links.engine.name(), KXDP_ENGINE_IF);
    let pod: IpAddr = "10.244.3.4".parse().unwrap();
    assert_eq!(node.netns.route_dev(pod).unwrap(), KXDP_HOST_IF);
    let route = node.netns.ip(&["route", "get", "10.244.3.4"]).unwrap();
    assert!(route.contains(&format!("via {ENGINE_NEXT_HOP}")), "{route}");
    let service: IpAddr = "10.96.0.10".parse().unwrap();
    assert_eq!(node.netns.route_dev(service).unwrap(), KXDP_HOST_IF);
    // Anything else still leaves through the uplink.
    assert_eq!(
        node.netns.route_dev(underlay.node_ip(9).into()).unwrap(),
        "eth0"
    );
    let neigh = links
        .host
        .ip(&["neigh", "show", "dev", KXDP_HOST_IF])
        .unwrap();
    let want = format!("{ENGINE_NEXT_HOP} lladdr {}", format_mac(links.engine_mac));
    assert!(neigh.contains(&want), "{want:?} missing from {neigh}");
    assert_eq!(node.netns.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    for conf in ["all", "default", KXDP_HOST_IF] {
        let key = format!("net/ipv4/conf/{conf}/rp_filter");
        assert_eq!(node.netns.sysctl_get(&key).unwrap(), "0", "{key}");
    }
    // The node's own packets for a pod really leave on kxdp0 towards the engine's MAC:
    // nothing answers, but kxdp0e receives them.
    let before = links.engine.stats().unwrap();
    assert!(!ping(&node.netns, pod, 2));
    let got = links.engine.stats().unwrap().since(&before);
    assert!(got.rx_packets >= 2, "{got:?}");
}
