//! The rtnetlink client against the real kernel, in throwaway network namespaces. Each test
//! cross-checks what it built with `ip` (through the test harness) where that is cheap.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use kxdp_control::netlink::{
    Ipv4Conf, NeighbourResolver, Netlink, NudState, OperState, Route, RouteScope, VethConfig,
};
use kxdp_tests::{Netns, require_root};
use nix::errno::Errno;

const MAC_A: [u8; 6] = [0x02, 0x6b, 0x78, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x6b, 0x78, 0, 0, 0x0b];
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn v4(ip: Ipv4Addr) -> IpAddr {
    IpAddr::V4(ip)
}

/// Namespace A holds `kx-a`, namespace B its peer `kx-b`; both sockets are open.
struct Pair {
    a: Netns,
    b: Netns,
    nla: Netlink,
    nlb: Netlink,
    b_file: File,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let a = Netns::new(&format!("{tag}-a")).unwrap();
        let b = Netns::new(&format!("{tag}-b")).unwrap();
        let a_file = a.open().unwrap();
        let b_file = b.open().unwrap();
        let mut nla = Netlink::open_in(a_file.as_fd()).unwrap();
        let nlb = Netlink::open_in(b_file.as_fd()).unwrap();
        let veth = VethConfig::new("kx-a", "kx-b")
            .queues(2)
            .mtu(1400)
            .mac(MAC_A)
            .peer_mac(MAC_B);
        nla.create_veth(&veth, Some(b_file.as_fd())).unwrap();
        Pair {
            a,
            b,
            nla,
            nlb,
            b_file,
        }
    }

    /// 10.99.0.1/24 on kx-a, 10.99.0.2/24 on kx-b, both up.
    fn addressed(tag: &str) -> Pair {
        let mut p = Pair::new(tag);
        p.nla.add_address("kx-a", v4(IP_A), 24).unwrap();
        p.nlb.add_address("kx-b", v4(IP_B), 24).unwrap();
        p.nla.set_link_up("kx-a").unwrap();
        p.nlb.set_link_up("kx-b").unwrap();
        p
    }
}

#[test]
fn veth_pair_with_queues_and_macs_across_namespaces() {
    if !require_root("netlink::veth_pair_with_queues_and_macs_across_namespaces") {
        return;
    }
    let Pair {
        a,
        b,
        mut nla,
        mut nlb,
        b_file,
    } = Pair::new("nl-veth");

    let la = nla.link("kx-a").unwrap();
    assert_eq!(la.mac, Some(MAC_A));
    assert_eq!((la.mtu, la.tx_queues, la.rx_queues), (1400, 2, 2));
    assert_eq!(la.kind.as_deref(), Some("veth"));
    assert!(!la.is_up());
    assert_eq!(la.oper_state, OperState::Down);
    assert!(
        nla.find_link("kx-b").unwrap().is_none(),
        "the peer was created in B"
    );
    let lb = nlb.link("kx-b").unwrap();
    assert_eq!(lb.mac, Some(MAC_B));
    assert_eq!((lb.mtu, lb.tx_queues, lb.rx_queues), (1400, 2, 2));

    // The same, seen by iproute2.
    let ip_a = a.link_info("kx-a").unwrap();
    assert_eq!((ip_a.ifindex, ip_a.mac, ip_a.mtu), (la.index, MAC_A, 1400));
    assert_eq!((ip_a.tx_queues, ip_a.rx_queues), (2, 2));
    assert_eq!(b.link_info("kx-b").unwrap().mac, MAC_B);

    // By index, and in the listing.
    assert_eq!(nla.link(la.index).unwrap().name, "kx-a");
    let names: Vec<String> = nla.links().unwrap().into_iter().map(|l| l.name).collect();
    assert!(
        names.contains(&"lo".to_owned()) && names.contains(&"kx-a".to_owned()),
        "{names:?}"
    );

    // Up, MTU, MAC.
    nla.set_link_up("kx-a").unwrap();
    nlb.set_link_up(lb.index).unwrap();
    nla.set_mtu("kx-a", 1450).unwrap();
    let new_mac = [0x02, 0x6b, 0x78, 0, 0, 0xaa];
    nla.set_mac("kx-a", new_mac).unwrap();
    let la = nla.link("kx-a").unwrap();
    assert!(la.is_up());
    assert_eq!((la.mtu, la.mac), (1450, Some(new_mac)));
    assert!(a.link_info("kx-a").unwrap().up);
    nla.set_link_down("kx-a").unwrap();
    assert!(!nla.link("kx-a").unwrap().is_up());

    // Per-interface IPv4 settings, as sysctl shows them.
    nla.set_ipv4_conf(
        "kx-a",
        &[(Ipv4Conf::AcceptLocal, 1), (Ipv4Conf::RpFilter, 2)],
    )
    .unwrap();
    assert_eq!(
        a.sysctl_get("net.ipv4.conf.kx-a.accept_local").unwrap(),
        "1"
    );
    assert_eq!(a.sysctl_get("net.ipv4.conf.kx-a.rp_filter").unwrap(), "2");

    // Errors name the operation and the object.
    let err = nla
        .create_veth(&VethConfig::new("kx-a", "kx-c"), None)
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST));
    let msg = err.to_string();
    assert!(msg.starts_with("RTM_NEWLINK veth kx-a: "), "{msg}");
    assert!(msg.contains("File exists"), "{msg}");
    let err = nla.link("nope0").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("RTM_GETLINK link nope0"), "{err}");
    assert!(nla.set_mtu("kx-a", 10).is_err(), "below the minimum MTU");

    // Move a link between namespaces.
    nla.create_veth(&VethConfig::new("kx-m0", "kx-m1"), None)
        .unwrap();
    nla.move_to_netns("kx-m1", b_file.as_fd()).unwrap();
    assert!(nla.find_link("kx-m1").unwrap().is_none());
    assert_eq!(nlb.link("kx-m1").unwrap().kind.as_deref(), Some("veth"));

    // Deleting one end deletes the pair, wherever the peer is.
    nla.delete_link("kx-a").unwrap();
    assert!(nlb.find_link("kx-b").unwrap().is_none());
    let err = nla.delete_link("kx-a").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().starts_with("RTM_DELLINK link kx-a: "),
        "{err}"
    );
    nlb.delete_link("kx-m1").unwrap();
    assert!(nla.find_link("kx-m0").unwrap().is_none());
}

#[test]
fn addresses_and_routes() {
    if !require_root("netlink::addresses_and_routes") {
        return;
    }
    // Keep the whole pair: dropping B would destroy the veth (kx-a with it) in the background.
    let pair = Pair::addressed("nl-route");
    let Pair { a, mut nla, .. } = pair;
    let index = nla.link("kx-a").unwrap().index;

    let addrs = nla.addresses(Some("kx-a".into())).unwrap();
    assert!(
        addrs
            .iter()
            .any(|x| x.address == v4(IP_A) && x.prefix_len == 24 && x.index == index),
        "{addrs:?}"
    );
    let err = nla.add_address("kx-a", v4(IP_A), 24).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST), "{err}");
    let v6: IpAddr = "fd00:99::1".parse().unwrap();
    nla.add_address(index, v6, 64).unwrap();
    assert!(
        nla.addresses(Some(index.into()))
            .unwrap()
            .iter()
            .any(|x| x.address == v6 && x.prefix_len == 64)
    );
    assert!(
        a.ip(&["-6", "addr", "show", "dev", "kx-a"])
            .unwrap()
            .contains("fd00:99::1/64")
    );
    nla.delete_address(index, v6, 64).unwrap();
    assert!(
        !nla.addresses(Some(index.into()))
            .unwrap()
            .iter()
            .any(|x| x.address == v6)
    );
    let err = nla.delete_address(index, v6, 64).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // A connected destination: no gateway.
    let connected = nla.route_get(v4(IP_B)).unwrap();
    assert_eq!((connected.gateway, connected.oif), (None, Some(index)));
    assert_eq!(connected.prefsrc, Some(v4(IP_A)));

    // Through a gateway, with a metric.
    let remote = Route::new(v4(Ipv4Addr::new(10, 100, 0, 0)), 16)
        .via(v4(IP_B))
        .dev(index)
        .metric(100);
    nla.add_route(&remote).unwrap();
    let got = nla.route_get(v4(Ipv4Addr::new(10, 100, 1, 1))).unwrap();
    assert_eq!(got.gateway, Some(v4(IP_B)));
    assert_eq!(got.oif, Some(index));
    assert_eq!(got.prefsrc, Some(v4(IP_A)));
    let err = nla.add_route(&remote).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST), "{err}");
    assert!(
        err.to_string()
            .starts_with("RTM_NEWROUTE route 10.100.0.0/16 via 10.99.0.2"),
        "{err}"
    );
    nla.replace_route(&remote).unwrap();
    let listed = nla.routes().unwrap();
    let found = listed
        .iter()
        .find(|r| r.dst == remote.dst && r.prefix_len == 16)
        .unwrap();
    assert_eq!(
        (found.gateway, found.metric, found.table),
        (Some(v4(IP_B)), Some(100), 254)
    );
    assert!(
        a.ip(&["route", "show"])
            .unwrap()
            .contains("10.100.0.0/16 via 10.99.0.2 dev kx-a")
    );

    // A gateway outside every prefix needs the onlink flag.
    let outside = Route::new(v4(Ipv4Addr::new(10, 101, 0, 0)), 16)
        .via(v4(Ipv4Addr::new(192, 0, 2, 1)))
        .dev(index);
    assert!(nla.add_route(&outside).is_err());
    nla.add_route(&outside.clone().onlink()).unwrap();
    let got = nla.route_get(v4(Ipv4Addr::new(10, 101, 0, 5))).unwrap();
    assert_eq!(got.gateway, Some(v4(Ipv4Addr::new(192, 0, 2, 1))));
    let shown = a.ip(&["route", "show", "10.101.0.0/16"]).unwrap();
    assert!(
        shown.contains("via 192.0.2.1 dev kx-a") && shown.contains("onlink"),
        "{shown}"
    );

    // A link-scope route without a gateway.
    let direct = Route::new(v4(Ipv4Addr::new(10, 102, 0, 0)), 24).dev(index);
    nla.add_route(&direct).unwrap();
    let listed = nla.routes().unwrap();
    let found = listed.iter().find(|r| r.dst == direct.dst).unwrap();
    assert_eq!(found.scope, Some(RouteScope::Link));
    assert_eq!(
        nla.route_get(v4(Ipv4Addr::new(10, 102, 0, 9)))
            .unwrap()
            .gateway,
        None
    );

    // Delete, then there is no route any more.
    nla.delete_route(&remote).unwrap();
    nla.delete_route(&outside).unwrap();
    nla.delete_route(&direct).unwrap();
    let err = nla.route_get(v4(Ipv4Addr::new(10, 100, 1, 1))).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENETUNREACH), "{err}");
    assert!(
        err.to_string().starts_with("RTM_GETROUTE to 10.100.1.1: "),
        "{err}"
    );
    let err = nla.delete_route(&remote).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

/// Polls the neighbour table of `kx-a` until `ip` is resolved or `timeout` passes.
fn wait_resolved(nl: &mut Netlink, ip: Ipv4Addr, timeout: Duration) -> Option<[u8; 6]> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = nl
            .neighbours(Some("kx-a".into()))
            .unwrap()
            .into_iter()
            .find(|n| n.ip == v4(ip) && n.is_resolved());
        if let Some(n) = found {
            return n.mac;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn permanent_and_managed_neighbours() {
    if !require_root("netlink::permanent_and_managed_neighbours") {
        return;
    }
    // Keep the whole pair: dropping B would destroy the veth (kx-a with it) in the background.
    let pair = Pair::addressed("nl-neigh");
    let Pair { a, mut nla, .. } = pair;
    let index = nla.link("kx-a").unwrap().index;

    // Permanent.
    let static_ip = v4(Ipv4Addr::new(10, 99, 0, 50));
    let static_mac = [0x02, 0, 0, 0, 0, 0x50];
    nla.add_permanent_neighbour("kx-a", static_ip, static_mac)
        .unwrap();
    let n = nla
        .neighbours(Some(index.into()))
        .unwrap()
        .into_iter()
        .find(|n| n.ip == static_ip)
        .unwrap();
    assert_eq!(
        (n.ifindex, n.mac, n.state),
        (index, Some(static_mac), NudState::PERMANENT)
    );
    assert!(n.is_resolved() && !n.is_managed());
    assert!(
        a.ip(&["neigh", "show", "dev", "kx-a"])
            .unwrap()
            .contains("10.99.0.50 lladdr 02:00:00:00:00:50 PERMANENT")
    );
    let err = nla
        .add_permanent_neighbour("kx-a", static_ip, static_mac)
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST), "{err}");
    assert!(
        err.to_string()
            .starts_with("RTM_NEWNEIGH 10.99.0.50 dev kx-a: "),
        "{err}"
    );
    let other_mac = [0x02, 0, 0, 0, 0, 0x51];
    nla.replace_permanent_neighbour(index, static_ip, other_mac)
        .unwrap();
    assert_eq!(
        wait_resolved(
            &mut nla,
            Ipv4Addr::new(10, 99, 0, 50),
            Duration::from_millis(100)
        ),
        Some(other_mac)
    );

    // Managed: the kernel resolves the peer (which answers ARP) by itself, with no traffic.
    nla.add_managed_neighbour("kx-a", v4(IP_B)).unwrap();
    let started = Instant::now();
    let mac = wait_resolved(&mut nla, IP_B, Duration::from_secs(2));
    assert_eq!(mac, Some(MAC_B), "not resolved within 2 s");
    eprintln!("managed neighbour resolved in {:?}", started.elapsed());
    let n = nla
        .neighbours(Some(index.into()))
        .unwrap()
        .into_iter()
        .find(|n| n.ip == v4(IP_B))
        .unwrap();
    assert!(n.is_managed(), "{n:?}");
    assert!(
        a.ip(&["neigh", "show", "dev", "kx-a"])
            .unwrap()
            .contains("managed")
    );

    // Delete.
    nla.delete_neighbour("kx-a", static_ip).unwrap();
    nla.delete_neighbour(index, v4(IP_B)).unwrap();
    let left: Vec<_> = nla.neighbours(Some(index.into())).unwrap();
    assert!(
        !left.iter().any(|n| n.ip == static_ip || n.ip == v4(IP_B)),
        "{left:?}"
    );
    let err = nla.delete_neighbour("kx-a", static_ip).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .starts_with("RTM_DELNEIGH 10.99.0.50 dev kx-a: "),
        "{err}"
    );
}

#[test]
fn resolver_follows_routes_and_notifications() {
    if !require_root("netlink::resolver_follows_routes_and_notifications") {
        return;
    }
    // Keep the whole pair: dropping B would destroy the veth (kx-a with it) in the background.
    let pair = Pair::addressed("nl-resolver");
    let Pair { a, mut nla, .. } = pair;
    let index = nla.link("kx-a").unwrap().index;
    // A remote node behind kx-b (the gateway), one on the link, one unreachable.
    let behind = Ipv4Addr::new(10, 100, 1, 1);
    let unreachable = Ipv4Addr::new(203, 0, 113, 9);
    nla.add_route(
        &Route::new(v4(Ipv4Addr::new(10, 100, 0, 0)), 16)
            .via(v4(IP_B))
            .dev(index),
    )
    .unwrap();

    // Traffic leaves an ordinary (unmanaged) entry behind; the resolver converts it.
    assert!(kxdp_tests::ping(&a, v4(IP_B), 1));
    let before = nla.neighbours(Some(index.into())).unwrap();
    let ordinary = before.iter().find(|n| n.ip == v4(IP_B)).unwrap();
    assert!(
        ordinary.is_resolved() && !ordinary.is_managed(),
        "{ordinary:?}"
    );

    let socket = Netlink::open_in(a.open().unwrap().as_fd()).unwrap();
    let mut resolver = NeighbourResolver::subscribed(socket).unwrap();
    resolver.set_targets([IP_B, behind, unreachable]).unwrap();
    let converted = nla.neighbours(Some(index.into())).unwrap();
    let converted = converted.iter().find(|n| n.ip == v4(IP_B)).unwrap();
    assert!(
        converted.is_managed() && converted.is_resolved(),
        "{converted:?}"
    );
    assert_eq!(converted.mac, Some(MAC_B));
    let deadline = Instant::now() + Duration::from_secs(3);
    while resolver.resolved().len() < 2 && Instant::now() < deadline {
        resolver.poll(Duration::from_millis(200)).unwrap();
    }
    let hop = resolver.resolved()[&behind];
    assert_eq!((hop.ifindex, hop.neighbour, hop.mac), (index, IP_B, MAC_B));
    assert_eq!(resolver.mac(IP_B), Some(MAC_B));
    assert_eq!(resolver.unresolved().collect::<Vec<_>>(), [unreachable]);

    // Someone flushes the entry: the resolver notices (RTM_DELNEIGH) and puts it back.
    nla.delete_neighbour(index, v4(IP_B)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut saw_gone = false;
    loop {
        resolver.poll(Duration::from_millis(200)).unwrap();
        saw_gone |= resolver.mac(IP_B).is_none();
        let back = nla
            .neighbours(Some(index.into()))
            .unwrap()
            .into_iter()
            .any(|n| n.ip == v4(IP_B) && n.is_managed() && n.is_resolved());
        if back && resolver.mac(IP_B) == Some(MAC_B) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "managed entry not restored (saw_gone {saw_gone})"
        );
    }

    // A polling resolver sees the same.
    let mut polling = NeighbourResolver::new(Netlink::open_in(a.open().unwrap().as_fd()).unwrap());
    polling.set_targets([behind]).unwrap();
    assert_eq!(polling.mac(behind), Some(MAC_B));
    assert!(!polling.poll(Duration::ZERO).unwrap(), "nothing changed");

    // Shutdown removes the entries the resolver created.
    resolver.release().unwrap();
    assert!(resolver.resolved().is_empty());
    assert!(
        !nla.neighbours(Some(index.into()))
            .unwrap()
            .iter()
            .any(|n| n.ip == v4(IP_B) && n.is_managed())
    );
}
