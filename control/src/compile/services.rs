//! Services + EndpointSlices → [`Services`] tables.
//!
//! (Skeleton: the full compiler lands in the next change; this keeps the signature the
//! controller is written against.)

use std::net::Ipv4Addr;

use kxdp_dataplane::tables::Services;

use crate::objects::DesiredState;

/// Facts about this node the service compiler needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceContext {
    /// This node's name: endpoints with this `nodeName` are local (eTP/iTP=Local).
    pub node_name: String,
    /// The node's addresses NodePorts answer on (the InternalIP / flannel public IP).
    pub node_ips: Vec<Ipv4Addr>,
    /// `topology.kubernetes.io/zone` of this node, for `hints.forZones`.
    pub zone: Option<String>,
}

/// What a compile produced besides the tables: what the agent must steer and serve, and what
/// was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceReport {
    pub frontends: usize,
    pub backends: usize,
    /// Services or ports skipped, with the reason (`namespace/name`, message).
    pub skipped: Vec<(String, String)>,
    /// (IP protocol number, port) of every NodePort (steered on the node IP).
    pub node_ports: Vec<(u8, u16)>,
    /// LoadBalancer ingress IPs and externalIPs (steered to the engine on the uplink), with
    /// their (IP protocol, port) pairs.
    pub external_ips: Vec<Ipv4Addr>,
    pub external_ports: Vec<(u8, u16)>,
    /// ClusterIPs (routed from the host kernel into the engine).
    pub cluster_ips: Vec<Ipv4Addr>,
    /// eTP=Local services' health check node ports: (port, `namespace/name`, local ready
    /// endpoints) — answered 200 when that count is above zero, else 503.
    pub health_checks: Vec<(u16, String, usize)>,
}

/// Compiles services, keeping per-service results between compiles so that one
/// EndpointSlice change rebuilds only its service's Maglev arrays.
#[derive(Debug, Default)]
pub struct ServiceCompiler {}

impl ServiceCompiler {
    pub fn new() -> Self {
        ServiceCompiler::default()
    }

    /// Compile the whole desired state (reusing unchanged services' results).
    pub fn compile(
        &mut self,
        _state: &DesiredState,
        _ctx: &ServiceContext,
    ) -> (Services, ServiceReport) {
        (Services::default(), ServiceReport::default())
    }
}
