//! Which endpoints of one service port take new flows, and which keep only the flows they have,
//! as kube-proxy decides it (`pkg/proxy/topology.go`, `CategorizeEndpoints`).
//!
//! - **Matching**: a service port takes, from each IPv4 slice of the service, the slice port of
//!   the same name and protocol; that port's number is the backend port (the EndpointSlice
//!   controller already resolved `targetPort`, named or not). An endpoint is its first address
//!   (the API says consumers use only the first). The same address in two slices (a slice being
//!   replaced) is one endpoint: the first ready copy, else the first copy, in slice-name order.
//! - **Ready** is `conditions.ready`, or `serving` when the service sets
//!   `publishNotReadyAddresses` (the controller marks such endpoints ready itself; this also
//!   covers slices written by hand).
//! - **Cluster scope** (iTP/eTP `Cluster`): the ready endpoints, narrowed by topology hints;
//!   none ready anywhere → the serving and terminating ones (KEP-1669, ProxyTerminatingEndpoints).
//! - **Local scope** (iTP/eTP `Local`): the ready endpoints on this node, else its serving and
//!   terminating ones. Hints are not applied (kube-proxy does not either).
//! - **Draining**: endpoints of the scope that were ready or are terminating but were not
//!   selected (terminating ones while ready ones exist, ready ones of another zone). Their
//!   existing flows continue, as conntrack keeps them with kube-proxy's iptables DNAT; Cilium
//!   keeps terminating backends in its backend map likewise, but drops the flows of backends
//!   that a topology change removes.

use std::net::{IpAddr, Ipv4Addr};

use kxdp_dataplane::tables::Backend;

use crate::objects::{AddressType, EndpointSliceView, ServicePortView};

/// One endpoint of a service port, as selection needs it.
#[derive(Debug, Clone)]
struct Candidate<'a> {
    backend: Backend,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
    for_zones: &'a [String],
}

impl Candidate<'_> {
    fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }

    fn may_drain(&self) -> bool {
        self.ready || self.terminating
    }
}

/// The backends of one scope: new flows go to `active`, existing ones may stay on `draining`.
/// Both sorted and without duplicates, and disjoint: what [`BackendSet`] holds, so a set built
/// before can be compared with them.
///
/// [`BackendSet`]: kxdp_dataplane::tables::BackendSet
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Selection {
    pub active: Vec<Backend>,
    pub draining: Vec<Backend>,
}

/// What a service port's endpoints give each scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PortEndpoints {
    /// For frontends whose traffic policy is `Cluster`.
    pub cluster: Selection,
    /// For frontends whose traffic policy is `Local`.
    pub local: Selection,
    /// Some endpoint anywhere is ready, or serving and terminating. Without one every frontend
    /// rejects; with one, an empty local scope drops (kube-proxy's `hasEndpoints`).
    pub has_any: bool,
    /// Ready endpoints on this node (the eTP=Local health check counts them).
    pub local_ready: Vec<Ipv4Addr>,
}

/// Who is asking: the node and zone that make an endpoint local or hinted for us.
#[derive(Debug, Clone, Copy)]
pub(super) struct Viewpoint<'a> {
    pub node_name: &'a str,
    pub zone: Option<&'a str>,
}

/// Select the endpoints of `port` among `slices` (the service's, in name order).
pub(super) fn select(
    slices: &[&EndpointSliceView],
    port: &ServicePortView,
    publish_not_ready: bool,
    at: Viewpoint<'_>,
) -> PortEndpoints {
    let candidates = gather(slices, port, publish_not_ready, at.node_name);
    let has_any = candidates
        .iter()
        .any(|c| c.ready || c.serving_terminating());
    let local_ready = candidates
        .iter()
        .filter(|c| c.local && c.ready)
        .map(|c| c.backend.addr)
        .collect();

    let hinted = at
        .zone
        .filter(|zone| use_topology(&candidates, zone))
        .map(|zone| move |c: &Candidate<'_>| c.for_zones.iter().any(|z| z == zone));
    let cluster = pick(&candidates, |c| {
        c.ready && hinted.as_ref().is_none_or(|in_zone| in_zone(c))
    });

    let local: Vec<Candidate<'_>> = candidates.iter().filter(|c| c.local).cloned().collect();
    let local = pick(&local, |c| c.ready);

    PortEndpoints {
        cluster,
        local,
        has_any,
        local_ready,
    }
}

/// kube-proxy's `canUseTopology`: this node has a zone, every ready endpoint carries hints,
/// and some ready endpoint is hinted for this zone (else hints would leave nothing).
fn use_topology(candidates: &[Candidate<'_>], zone: &str) -> bool {
    let mut for_us = false;
    for c in candidates.iter().filter(|c| c.ready) {
        if c.for_zones.is_empty() {
            return false;
        }
        for_us |= c.for_zones.iter().any(|z| z == zone);
    }
    for_us
}

/// The candidates `first` accepts; if none, the serving and terminating ones. The others that
/// were ready or are terminating drain.
fn pick(candidates: &[Candidate<'_>], first: impl Fn(&Candidate<'_>) -> bool) -> Selection {
    let mut chosen: Vec<bool> = candidates.iter().map(&first).collect();
    if !chosen.contains(&true) {
        chosen = candidates
            .iter()
            .map(Candidate::serving_terminating)
            .collect();
    }
    let mut s = Selection::default();
    for (c, chosen) in candidates.iter().zip(chosen) {
        if chosen {
            s.active.push(c.backend);
        } else if c.may_drain() {
            s.draining.push(c.backend);
        }
    }
    // Candidates are unique and sorted by backend already.
    s
}

/// The port's endpoints across the slices, one per backend, sorted by backend.
fn gather<'a>(
    slices: &[&'a EndpointSliceView],
    port: &ServicePortView,
    publish_not_ready: bool,
    node_name: &str,
) -> Vec<Candidate<'a>> {
    let mut all = Vec::new();
    for slice in slices {
        if slice.address_type != AddressType::IPv4 {
            continue;
        }
        let Some(number) = slice
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in &slice.endpoints {
            let Some(IpAddr::V4(addr)) = e.addresses.first() else {
                continue;
            };
            all.push(Candidate {
                backend: Backend {
                    addr: *addr,
                    port: number,
                },
                ready: e.ready || (publish_not_ready && e.serving),
                serving: e.serving,
                terminating: e.terminating,
                local: e.node_name.as_deref() == Some(node_name),
                for_zones: &e.for_zones,
            });
        }
    }
    // Stable: within one backend, slice order is kept, so "first" below means first listed.
    all.sort_by_key(|c| c.backend);
    let mut out: Vec<Candidate<'a>> = Vec::with_capacity(all.len());
    for c in all {
        match out.last_mut() {
            Some(last) if last.backend == c.backend => {
                if c.ready && !last.ready {
                    *last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::objects::{EndpointPortView, EndpointView, Protocol, TargetPort};

    fn ep(last: u8, ready: bool, serving: bool, terminating: bool, node: &str) -> EndpointView {
        EndpointView {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 244, 0, last))],
            ready,
            serving,
            terminating,
            node_name: Some(node.to_owned()),
            zone: None,
            for_zones: Vec::new(),
        }
    }

    fn slice(name: &str, endpoints: Vec<EndpointView>) -> EndpointSliceView {
        EndpointSliceView {
            namespace: "default".into(),
            name: name.into(),
            service: "web".into(),
            address_type: AddressType::IPv4,
            ports: vec![EndpointPortView {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: Some(8080),
            }],
            endpoints,
        }
    }

    fn port() -> ServicePortView {
        ServicePortView {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Name("http".into()),
            node_port: None,
        }
    }

    fn at<'a>(zone: Option<&'a str>) -> Viewpoint<'a> {
        Viewpoint {
            node_name: "a",
            zone,
        }
    }

    fn lasts(b: &[Backend]) -> Vec<u8> {
        b.iter().map(|b| b.addr.octets()[3]).collect()
    }

    #[test]
    fn duplicates_across_slices_prefer_a_ready_copy() {
        let s1 = slice("web-1", vec![ep(1, false, false, true, "a")]);
        let s2 = slice("web-2", vec![ep(1, true, true, false, "a")]);
        let p = select(&[&s1, &s2], &port(), false, at(None));
        assert_eq!(lasts(&p.cluster.active), [1]);
        assert!(p.cluster.draining.is_empty());
    }

    #[test]
    fn hints_need_every_ready_endpoint_hinted() {
        let mut a = ep(1, true, true, false, "a");
        a.for_zones = vec!["z1".into()];
        let mut b = ep(2, true, true, false, "b");
        b.for_zones = vec!["z2".into()];
        let s = slice("web-1", vec![a.clone(), b.clone()]);
        let p = select(&[&s], &port(), false, at(Some("z1")));
        assert_eq!(lasts(&p.cluster.active), [1]);
        assert_eq!(lasts(&p.cluster.draining), [2]);
        // Not hinted for our zone at all: every ready endpoint.
        let p = select(&[&s], &port(), false, at(Some("z3")));
        assert_eq!(lasts(&p.cluster.active), [1, 2]);
        // One without hints: hints ignored.
        b.for_zones.clear();
        let s = slice("web-1", vec![a, b]);
        let p = select(&[&s], &port(), false, at(Some("z1")));
        assert_eq!(lasts(&p.cluster.active), [1, 2]);
    }
}
