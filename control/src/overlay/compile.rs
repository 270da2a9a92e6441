//! Overlay compiler: [`OverlayState`] → the routing part of the engine's [`Tables`].
//!
//! Routes, longest prefix first:
//! - each local pod's /32 → its port (destination MAC = the pod's, source = the router MAC);
//! - the pods' gateway /32 and the node's own IP → the host kernel (the gateway address lives
//!   on the kernel end of the host port, as flannel puts it on `cni0`);
//! - the rest of the local pod CIDR → blackhole (an unattached pod IP; handing it to the
//!   kernel would only bounce it back through the host port);
//! - each remote node's pod CIDRs → a VXLAN tunnel to it (outer header template precomputed
//!   here), or the node itself as the next hop when routing directly;
//! - everything else (`0.0.0.0/0`) → the host kernel, which routes it as it would without us.
//!
//! A remote node whose underlay next hop has no MAC yet gets an unresolved route: its packets
//! are dropped and counted until the neighbour table has the MAC; a worker never waits.

use std::net::Ipv4Addr;

use kxdp_dataplane::tables::{
    Overlay, PodInfo, PortInfo, PortRole, TunnelId, TunnelSpec, VxlanTunnel,
};
use kxdp_dataplane::{NextHop, Route, Tables};

use super::model::{OverlayMode, OverlayState, RemoteNode};

/// What a compile produced besides the tables: problems worth a log line, by object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileReport {
    /// Remote nodes skipped, with the reason (e.g. no VtepMAC and not on our subnet).
    pub skipped: Vec<(String, String)>,
    /// Next hops without a MAC yet (their nodes' pod CIDRs drop until resolved).
    pub unresolved: Vec<Ipv4Addr>,
}

/// Compile the overlay state into fresh tables (generation 0; the publisher sets it).
pub fn compile(state: &OverlayState) -> (Tables, CompileReport) {
    let local = &state.local;
    let mut report = CompileReport::default();
    let mut t = Tables {
        services: std::sync::Arc::clone(&state.services),
        router_mac: local.router_mac,
        router_ip4: Some(local.ip),
        ..Tables::default()
    };

    set_port(
        &mut t,
        local.uplink.port,
        PortInfo {
            mtu: local.uplink.mtu,
            role: PortRole::Uplink,
            pod: None,
        },
    );
    t.overlay = Some(Overlay {
        local_ip: local.ip,
        vni: local.vni,
        port: local.vxlan_port,
        vtep_mac: local.vtep_mac,
        uplink: local.uplink.port,
    });

    if let Some(host) = local.host {
        set_port(
            &mut t,
            host.port,
            PortInfo {
                mtu: host.mtu,
                role: PortRole::Host,
                pod: None,
            },
        );
        t.host = Some(NextHop::new(host.port, host.kernel_mac, local.router_mac));
    }
    t.routes4.insert(Ipv4Addr::UNSPECIFIED, 0, Route::Host);
    t.routes4.insert(local.ip, 32, Route::Host);
    t.routes4.insert(local.gateway(), 32, Route::Host);
    t.routes4.insert(
        local.pod_cidr.addr(),
        local.pod_cidr.len(),
        Route::Blackhole,
    );

    for pod in state.pods.values() {
        set_port(
            &mut t,
            pod.port,
            PortInfo {
                mtu: pod.mtu,
                role: PortRole::Pod,
                pod: Some(PodInfo {
                    ip4: pod.ip,
                    mac: pod.mac,
                }),
            },
        );
        t.routes4.insert(
            pod.ip,
            32,
            Route::Via(NextHop::new(pod.port, pod.mac, local.router_mac)),
        );
    }

    for remote in state.remotes.values() {
        if remote.ip == local.ip {
            continue; // our own Node object
        }
        match remote_route(state, remote, &mut t, &mut report) {
            Ok(route) => {
                for cidr in &remote.pod_cidrs {
                    if cidr.is_default() || cidr.contains(local.ip) {
                        report.skipped.push((
                            remote.name.clone(),
                            format!("spec.podCIDRs: {cidr} overlaps the node network"),
                        ));
                        continue;
                    }
                    t.routes4.insert(cidr.addr(), cidr.len(), route);
                }
            }
            Err(why) => {
                // No way to reach its pods: drop them here (counted as `blackhole`) rather
                // than hand them to the host, whose route for them (the agent routes every
                // Node's pod CIDR into the engine) would send them straight back, until the
                // TTL runs out.
                for cidr in &remote.pod_cidrs {
                    if !cidr.is_default() && !cidr.contains(local.ip) {
                        t.routes4.insert(cidr.addr(), cidr.len(), Route::Blackhole);
                    }
                }
                report.skipped.push((remote.name.clone(), why));
            }
        }
    }
    report.unresolved.sort();
    report.unresolved.dedup();
    (t, report)
}

/// The route to one remote node's pods.
fn remote_route(
    state: &OverlayState,
    remote: &RemoteNode,
    t: &mut Tables,
    report: &mut CompileReport,
) -> Result<Route, String> {
    let local = &state.local;
    let same_subnet = local.subnet.contains(remote.ip);
    let direct = match local.mode {
        OverlayMode::None => true,
        OverlayMode::VxlanDirectRouting => same_subnet,
        OverlayMode::Vxlan => false,
    };
    if direct && !same_subnet {
        return Err(format!(
            "status.addresses: {} is not on the uplink subnet {}, so it cannot be routed to \
             without encapsulation",
            remote.ip, local.subnet
        ));
    }
    let Some(&hop_mac) = state.neighbours.get(&remote.ip) else {
        report.unresolved.push(remote.ip);
        return Ok(Route::Unresolved);
    };
    if direct {
        return Ok(Route::Via(NextHop::new(
            local.uplink.port,
            hop_mac,
            local.uplink.mac,
        )));
    }
    let Some(vtep_mac) = remote.vtep_mac else {
        return Err(
            "metadata.annotations[flannel.alpha.coreos.com/backend-data]: no VtepMAC".to_string(),
        );
    };
    let id = TunnelId(t.tunnels.len() as u32);
    t.tunnels.push(VxlanTunnel::new(&TunnelSpec {
        port: local.uplink.port,
        outer_dst_mac: hop_mac,
        outer_src_mac: local.uplink.mac,
        local: local.ip,
        remote: remote.ip,
        vni: local.vni,
        dst_port: local.vxlan_port,
        inner_dst_mac: vtep_mac,
        inner_src_mac: local.vtep_mac,
    }));
    Ok(Route::Vxlan(id))
}

fn set_port(t: &mut Tables, port: kxdp_dataplane::PortId, info: PortInfo) {
    let i = port.index();
    if t.ports.len() <= i {
        t.ports.resize(i + 1, PortInfo::default());
    }
    t.ports[i] = info;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use kxdp_dataplane::PortId;

    use super::*;
    use crate::overlay::model::*;

    fn state(mode: OverlayMode) -> OverlayState {
        let mut s = OverlayState::new(LocalNode {
            name: "a".into(),
            ip: Ipv4Addr::new(192, 168, 77, 1),
            subnet: "192.168.77.0/24".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            vtep_mac: [2, 0, 0, 0, 0, 0xaa],
            router_mac: [2, 0, 0, 0, 0, 0xee],
            vni: 1,
            vxlan_port: 8472,
            mode,
            uplink: UplinkPort {
                port: PortId(0),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: 1500,
            },
            host: Some(HostPort {
                port: PortId(1),
                kernel_mac: [2, 0, 0, 0, 0, 0x10],
                mtu: 1500,
            }),
        });
        s.pods.insert(
            "p1".into(),
            PodAttachment {
                id: "p1".into(),
                ip: Ipv4Addr::new(10, 244, 1, 5),
                mac: [2, 0, 0, 0, 1, 5],
                ifname: "vp1".into(),
                port: PortId(2),
                mtu: 1450,
            },
        );
        s.remotes.insert(
            "b".into(),
            RemoteNode {
                name: "b".into(),
                ip: Ipv4Addr::new(192, 168, 77, 2),
                pod_cidrs: vec!["10.244.2.0/24".parse().unwrap()],
                vtep_mac: Some([2, 0, 0, 0, 0, 0xbb]),
            },
        );
        s.remotes.insert(
            "c".into(),
            RemoteNode {
                name: "c".into(),
                ip: Ipv4Addr::new(172, 16, 0, 3),
                pod_cidrs: vec!["10.244.3.0/24".parse().unwrap()],
                vtep_mac: Some([2, 0, 0, 0, 0, 0xcc]),
            },
        );
        // c is behind a router: the kernel resolved its next hop to the gateway's MAC.
        s.neighbours = HashMap::from([
            (Ipv4Addr::new(192, 168, 77, 2), [2, 0, 0, 0, 0, 2]),
            (Ipv4Addr::new(172, 16, 0, 3), [2, 0, 0, 0, 0, 0xfe]),
        ]);
        s
    }

    fn route(t: &Tables, ip: [u8; 4]) -> Option<Route> {
        t.routes4.lookup(u32::from(Ipv4Addr::from(ip))).copied()
    }

    #[test]
    fn vxlan_routes_pods_host_and_tunnels() {
        let (t, report) = compile(&state(OverlayMode::Vxlan));
        assert!(
            report.skipped.is_empty() && report.unresolved.is_empty(),
            "{report:?}"
        );
        assert_eq!(
            route(&t, [10, 244, 1, 5]),
            Some(Route::Via(NextHop::new(
                PortId(2),
                [2, 0, 0, 0, 1, 5],
                [2, 0, 0, 0, 0, 0xee]
            )))
        );
        assert_eq!(route(&t, [10, 244, 1, 1]), Some(Route::Host));
        assert_eq!(route(&t, [10, 244, 1, 9]), Some(Route::Blackhole));
        assert_eq!(route(&t, [8, 8, 8, 8]), Some(Route::Host));
        assert_eq!(route(&t, [192, 168, 77, 1]), Some(Route::Host));
        let Some(Route::Vxlan(b)) = route(&t, [10, 244, 2, 9]) else {
            panic!("no tunnel to b")
        };
        let Some(Route::Vxlan(c)) = route(&t, [10, 244, 3, 9]) else {
            panic!("no tunnel to c")
        };
        let sb = t.tunnels[b.0 as usize].spec();
        assert_eq!(sb.remote, Ipv4Addr::new(192, 168, 77, 2));
        assert_eq!(sb.outer_dst_mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(sb.inner_dst_mac, [2, 0, 0, 0, 0, 0xbb]);
        // c is behind a router: the outer frame goes to the gateway's MAC.
        assert_eq!(
            t.tunnels[c.0 as usize].spec().outer_dst_mac,
            [2, 0, 0, 0, 0, 0xfe]
        );
        assert_eq!(t.port(PortId(2)).role, PortRole::Pod);
        assert_eq!(t.port(PortId(1)).role, PortRole::Host);
        assert_eq!(t.host.map(|h| h.port), Some(PortId(1)));
    }

    #[test]
    fn direct_routing_and_unresolved_neighbours() {
        let mut s = state(OverlayMode::VxlanDirectRouting);
        let (t, _) = compile(&s);
        assert_eq!(
            route(&t, [10, 244, 2, 9]),
            Some(Route::Via(NextHop::new(
                PortId(0),
                [2, 0, 0, 0, 0, 2],
                [2, 0, 0, 0, 0, 1]
            )))
        );
        assert!(matches!(route(&t, [10, 244, 3, 9]), Some(Route::Vxlan(_))));

        s.local.mode = OverlayMode::None;
        let (t, report) = compile(&s);
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert!(report.skipped[0].1.contains("not on the uplink subnet"));
        // Unreachable: dropped in the engine, not bounced between it and the host.
        assert_eq!(route(&t, [10, 244, 3, 9]), Some(Route::Blackhole));

        s.local.mode = OverlayMode::Vxlan;
        s.neighbours.clear();
        let (t, report) = compile(&s);
        assert_eq!(route(&t, [10, 244, 2, 9]), Some(Route::Unresolved));
        assert_eq!(report.unresolved.len(), 2);
    }
}
