//! One service → its frontends and backend sets ([`CompiledService`]), independent of every
//! other service, so that it can be cached and compiled on any thread.
//!
//! Per TCP/UDP port of a service with an IPv4 ClusterIP (the IPv4 proxier of kube-proxy ignores
//! a service without one, NodePorts included):
//! - a **ClusterIP** frontend per IPv4 cluster IP, on the set of its `internalTrafficPolicy`;
//! - a **NodePort** frontend per address of [`ServiceContext::node_ips`],
//! - a **LoadBalancer** frontend per IPv4 `status.loadBalancer.ingress` IP (type LoadBalancer
//!   only, as kube-proxy; `loadBalancerSourceRanges` checked on these alone),
//! - an **ExternalIP** frontend per IPv4 `spec.externalIPs` entry,
//!
//!   the last three on the set of the `externalTrafficPolicy` (`Local`: this node's endpoints,
//!   `external_local`). A frontend whose set has no active backend rejects (TCP RST, ICMP port
//!   unreachable) when the port has no usable endpoint anywhere, and drops when there are some
//!   but none local (kube-proxy: REJECT vs DROP "has no local endpoints"). Cilium differs on
//!   the first: it drops unless `--service-no-backend-response=reject`.
//!
//! IPv6 addresses are left out silently (this is the IPv4 proxier's share of a dual-stack
//! service). SCTP ports are reported and left out: the data path has TCP and UDP only.
//!
//! Not expressible per frontend, so not done: kube-proxy sends pod- and node-originated
//! traffic to eTP=Local external addresses through the cluster-wide endpoints (the
//! "short-circuit"); here such traffic sees the local set like external clients do.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use kxdp_dataplane::tables::{
    BackendSet, BackendSetId, Frontend, FrontendKey, FrontendKind, L4Proto, SessionAffinity,
};

use super::ServiceContext;
use super::endpoints::{self, Selection, Viewpoint};
use crate::objects::{
    EndpointSliceView, Protocol, ServiceType, ServiceView, SessionAffinity as Affinity,
    TrafficPolicy,
};

/// A service's share of the tables. Frontends name their set by its index in `sets`; the
/// assembly renumbers them.
#[derive(Debug, Default)]
pub(super) struct CompiledService {
    pub sets: Vec<Arc<BackendSet>>,
    pub frontends: Vec<CompiledFrontend>,
    /// `(field, message)` of what was left out.
    pub skipped: Vec<(String, String)>,
    /// eTP=Local with a `healthCheckNodePort`: (port, ready endpoints on this node).
    pub health_check: Option<(u16, usize)>,
}

/// A frontend and the index of the service port it comes from (for conflict reports).
#[derive(Debug, Clone)]
pub(super) struct CompiledFrontend {
    pub key: FrontendKey,
    pub frontend: Frontend,
    pub port_index: usize,
}

impl CompiledFrontend {
    /// The service field the frontend's address comes from.
    pub fn field(&self) -> String {
        match self.frontend.kind {
            FrontendKind::ClusterIp => "spec.clusterIPs".to_owned(),
            FrontendKind::NodePort => format!("spec.ports[{}].nodePort", self.port_index),
            FrontendKind::LoadBalancer => "status.loadBalancer.ingress".to_owned(),
            FrontendKind::ExternalIp => "spec.externalIPs".to_owned(),
        }
    }
}

/// Whether the service gets any data-path entry here: not headless, not ExternalName, and an
/// IPv4 cluster IP.
pub(super) fn is_compiled(svc: &ServiceView) -> bool {
    svc.has_data_path() && svc.cluster_ips.iter().any(IpAddr::is_ipv4)
}

/// Compile one service. `previous`: its entries of the last compile, whose backend sets are
/// reused where the backends are the same (no Maglev rebuild).
pub(super) fn compile(
    svc: &ServiceView,
    slices: &[&EndpointSliceView],
    ctx: &ServiceContext,
    previous: Option<&CompiledService>,
) -> CompiledService {
    let mut out = CompiledService::default();
    if !is_compiled(svc) {
        return out;
    }
    let mut sets = SetInterner {
        previous: previous.map(|p| p.sets.as_slice()).unwrap_or_default(),
        built: Vec::new(),
    };
    let at = Viewpoint {
        node_name: &ctx.node_name,
        zone: ctx.zone.as_deref(),
    };
    let affinity = match svc.session_affinity {
        Affinity::None => SessionAffinity::None,
        Affinity::ClientIp { timeout_seconds } => SessionAffinity::ClientIp {
            timeout_s: timeout_seconds,
        },
    };
    let cluster_ips = v4(&svc.cluster_ips);
    let external_ips = v4(&svc.external_ips);
    let lb_ips = if svc.service_type == ServiceType::LoadBalancer {
        v4(&svc.load_balancer_ingress_ips)
    } else {
        Vec::new()
    };
    let source_ranges: Box<[(Ipv4Addr, u8)]> = svc
        .load_balancer_source_ranges
        .iter()
        .map(|n| (n.addr(), n.len()))
        .collect();
    let mut local_ready: Vec<Ipv4Addr> = Vec::new();

    for (i, port) in svc.ports.iter().enumerate() {
        let proto = match port.protocol {
            Protocol::Tcp => L4Proto::Tcp,
            Protocol::Udp => L4Proto::Udp,
            Protocol::Sctp => {
                out.skipped.push((
                    format!("spec.ports[{i}] ({}/SCTP)", port.port),
                    "SCTP is not supported".to_owned(),
                ));
                continue;
            }
        };
        let eps = endpoints::select(slices, port, svc.publish_not_ready_addresses, at);
        local_ready.extend(&eps.local_ready);
        let set_for = |policy: TrafficPolicy, sets: &mut SetInterner<'_>| {
            sets.intern(match policy {
                TrafficPolicy::Cluster => &eps.cluster,
                TrafficPolicy::Local => &eps.local,
            })
        };
        let has_external =
            port.node_port.is_some() || !external_ips.is_empty() || !lb_ips.is_empty();
        let internal = set_for(svc.internal_traffic_policy, &mut sets);
        let external = if has_external {
            Some(set_for(svc.external_traffic_policy, &mut sets))
        } else {
            None
        };
        // Pods reaching an eTP=Local external frontend use every endpoint (kube-proxy's
        // short-circuit of in-cluster traffic).
        let cluster_wide = (has_external && svc.external_traffic_policy == TrafficPolicy::Local)
            .then(|| sets.intern(&eps.cluster));
        let (internal, external, cluster_wide) =
            match (internal, external.transpose(), cluster_wide.transpose()) {
                (Ok(i), Ok(e), Ok(c)) => (i, e, c),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    out.skipped
                        .push((format!("spec.ports[{i}]"), e.to_string()));
                    continue;
                }
            };
        let reject = !eps.has_any;
        let make = |kind: FrontendKind, set: BackendSetId| Frontend {
            affinity,
            reject_no_endpoints: reject,
            external_local: kind != FrontendKind::ClusterIp
                && svc.external_traffic_policy == TrafficPolicy::Local,
            cluster_backends: if kind == FrontendKind::ClusterIp {
                None
            } else {
                cluster_wide
            },
            source_ranges: if kind == FrontendKind::LoadBalancer {
                source_ranges.clone()
            } else {
                Box::new([])
            },
            ..Frontend::new(kind, set)
        };
        let mut push = |addr: Ipv4Addr, port: u16, kind: FrontendKind, set| {
            out.frontends.push(CompiledFrontend {
                key: FrontendKey { addr, proto, port },
                frontend: make(kind, set),
                port_index: i,
            });
        };
        for &ip in &cluster_ips {
            push(ip, port.port, FrontendKind::ClusterIp, internal);
        }
        let Some(external) = external else { continue };
        if let Some(node_port) = port.node_port {
            for &ip in &ctx.node_ips {
                push(ip, node_port, FrontendKind::NodePort, external);
            }
        }
        for &ip in &lb_ips {
            push(ip, port.port, FrontendKind::LoadBalancer, external);
        }
        for &ip in &external_ips {
            push(ip, port.port, FrontendKind::ExternalIp, external);
        }
    }

    if svc.external_traffic_policy == TrafficPolicy::Local
        && let Some(port) = svc.health_check_node_port
    {
        local_ready.sort_unstable();
        local_ready.dedup();
        out.health_check = Some((port, local_ready.len()));
    }
    out.sets = sets.built;
    out
}

fn v4(ips: &[IpAddr]) -> Vec<Ipv4Addr> {
    ips.iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// The service's backend sets, one per distinct selection (a service whose policies are both
/// `Cluster` has one set per port, shared by all its frontends).
struct SetInterner<'a> {
    previous: &'a [Arc<BackendSet>],
    built: Vec<Arc<BackendSet>>,
}

impl SetInterner<'_> {
    /// The index of the set for `sel`: one built already for this service, else one of the
    /// previous compile with the same backends (its Maglev array reused), else a new one.
    fn intern(
        &mut self,
        sel: &Selection,
    ) -> Result<BackendSetId, kxdp_dataplane::tables::ServicesError> {
        let same = |s: &&Arc<BackendSet>| s.active() == sel.active && s.draining() == sel.draining;
        if let Some(i) = self.built.iter().position(|s| same(&s)) {
            return Ok(local_id(i));
        }
        let set = match self.previous.iter().find(same) {
            Some(set) => Arc::clone(set),
            None => Arc::new(BackendSet::new(&sel.active, &sel.draining)?),
        };
        self.built.push(set);
        Ok(local_id(self.built.len() - 1))
    }
}

/// A set's index within its service (a service has a handful of sets).
fn local_id(i: usize) -> BackendSetId {
    BackendSetId(u32::try_from(i).unwrap_or(u32::MAX))
}
