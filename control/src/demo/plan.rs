//! What the demo builds and tests, read from the embedded default objects
//! ([`DEFAULT_OBJECTS`](crate::objects::DEFAULT_OBJECTS)) plus the pods the demo creates.
//!
//! The objects name the nodes (addresses, pod CIDRs, VtepMACs) and the services; the pods
//! are the demo's own (a cluster would have a scheduler and a runtime for that). Their
//! addresses must be the EndpointSlices' ready endpoints: [`Plan::from_objects`] refuses
//! objects and pods that disagree, so an edit to one without the other fails loudly.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use anyhow::{Context, anyhow, bail, ensure};

use crate::objects::{DesiredState, NodeView, ObjectKey, Protocol, ServiceType, format_mac};
use crate::overlay::Ipv4Net;

/// The node running kxdp.
pub const KXDP_NODE: &str = "kxdp-a";
/// The node configured like flannel's VXLAN backend.
pub const FLANNEL_NODE: &str = "flannel-b";
/// A host on the underlay outside the cluster (a NodePort client).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 10);
/// Underlay prefix length (the nodes' InternalIPs share a /24).
pub const UNDERLAY_PREFIX: u8 = 24;
/// The ClusterIP service the pod → ClusterIP check calls, and its port name.
pub const CLUSTER_IP_SERVICE: (&str, &str) = ("web", "http");
/// The NodePort service the outside → NodePort check calls.
pub const NODE_PORT_SERVICE: &str = "web-nodeport";
/// Where backend pods serve HTTP (the services' targetPort).
pub const HTTP_PORT: u16 = 8080;

/// What a pod does in the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PodRole {
    /// Serves HTTP (its name), UDP echo, a TCP sink and a UDP counter.
    Backend,
    /// Runs the checks.
    Client,
}

/// A pod the demo creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSpec {
    pub name: &'static str,
    pub node: &'static str,
    pub ip: Ipv4Addr,
    pub role: PodRole,
}

/// The demo's pods. Those on kxdp-a are attached by `kxdp-cni`, those on flannel-b to its
/// `cni0` bridge as flannel's CNI configuration (the `bridge` plugin) would.
pub const PODS: [PodSpec; 3] = [
    PodSpec {
        name: "web-a",
        node: KXDP_NODE,
        ip: Ipv4Addr::new(10, 244, 1, 2),
        role: PodRole::Backend,
    },
    PodSpec {
        name: "client-a",
        node: KXDP_NODE,
        ip: Ipv4Addr::new(10, 244, 1, 10),
        role: PodRole::Client,
    },
    PodSpec {
        name: "web-b",
        node: FLANNEL_NODE,
        ip: Ipv4Addr::new(10, 244, 2, 2),
        role: PodRole::Backend,
    },
];

/// A node as the objects describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub vtep_mac: [u8; 6],
}

impl NodePlan {
    fn from_view(n: &NodeView) -> anyhow::Result<NodePlan> {
        Ok(NodePlan {
            name: n.name.clone(),
            ip: n
                .public_ip
                .with_context(|| format!("Node {}: no InternalIP", n.name))?,
            pod_cidr: *n
                .pod_cidrs
                .first()
                .with_context(|| format!("Node {}: no pod CIDR", n.name))?,
            vtep_mac: n.vtep_mac.with_context(|| {
                format!("Node {}: no VtepMAC in its flannel backend-data", n.name)
            })?,
        })
    }

    /// The pods' gateway (`.1` of the pod CIDR).
    pub fn gateway(&self) -> Ipv4Addr {
        self.pod_cidr.nth(1)
    }
}

/// A service for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePlan {
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub cluster_ip: Option<Ipv4Addr>,
    /// `80/TCP→8080`, with `:30080` for a NodePort.
    pub ports: Vec<String>,
    /// Ready endpoint addresses.
    pub endpoints: Vec<Ipv4Addr>,
}

/// Everything the demo builds and calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kxdp: NodePlan,
    pub flannel: NodePlan,
    pub pods: Vec<PodSpec>,
    /// The ClusterIP check's target.
    pub cluster_ip: SocketAddrV4,
    /// Its ready endpoints: the backend pods.
    pub backends: Vec<Ipv4Addr>,
    /// The NodePort check's target: kxdp-a's address and the node port.
    pub node_port: SocketAddrV4,
    /// The services with data-path entries, for the report.
    pub services: Vec<ServicePlan>,
}

impl Plan {
    /// Reads `text` (the default objects) and checks the demo's pods against it.
    pub fn from_objects(text: &str) -> anyhow::Result<Plan> {
        let (state, report) = DesiredState::parse(text).context("parsing the default objects")?;
        if let Some(e) = report.errors.first() {
            bail!("the default objects have errors: {e}");
        }
        let node = |name: &str| {
            state
                .nodes
                .get(name)
                .with_context(|| format!("the default objects have no Node {name}"))
                .and_then(NodePlan::from_view)
        };
        let (kxdp, flannel) = (node(KXDP_NODE)?, node(FLANNEL_NODE)?);
        ensure!(
            Ipv4Net::new(kxdp.ip, UNDERLAY_PREFIX)?.contains(flannel.ip)
                && Ipv4Net::new(kxdp.ip, UNDERLAY_PREFIX)?.contains(OUTSIDE_IP),
            "the nodes' InternalIPs ({}, {}) and the outside host ({OUTSIDE_IP}) must share a \
             /{UNDERLAY_PREFIX}",
            kxdp.ip,
            flannel.ip
        );
        for pod in PODS {
            let cidr = if pod.node == KXDP_NODE {
                kxdp.pod_cidr
            } else {
                flannel.pod_cidr
            };
            ensure!(
                cidr.contains(pod.ip) && pod.ip != cidr.nth(1),
                "pod {} ({}) is not a pod address of {}'s pod CIDR {cidr}",
                pod.name,
                pod.ip,
                pod.node
            );
        }

        let services = service_plans(&state);
        let (web, port_name) = CLUSTER_IP_SERVICE;
        let web_plan = services
            .iter()
            .find(|s| s.name == web)
            .with_context(|| format!("the default objects have no Service {web}"))?;
        let web_view = &state.services[&ObjectKey::new("default", web)];
        let port = web_view
            .ports
            .iter()
            .find(|p| p.name == port_name)
            .with_context(|| format!("Service {web} has no port named {port_name}"))?;
        let cluster_ip = web_plan
            .cluster_ip
            .with_context(|| format!("Service {web} has no IPv4 ClusterIP"))?;
        let backends: BTreeSet<Ipv4Addr> = PODS
            .iter()
            .filter(|p| p.role == PodRole::Backend)
            .map(|p| p.ip)
            .collect();
        let endpoints: BTreeSet<Ipv4Addr> = web_plan.endpoints.iter().copied().collect();
        ensure!(
            endpoints == backends,
            "Service {web}'s ready endpoints {endpoints:?} are not the demo's backend pods \
             {backends:?}: keep default-objects.yaml and demo/plan.rs in step"
        );
        let node_port = state
            .services
            .get(&ObjectKey::new("default", NODE_PORT_SERVICE))
            .and_then(|s| s.ports.iter().find_map(|p| p.node_port))
            .ok_or_else(|| anyhow!("Service {NODE_PORT_SERVICE} has no nodePort"))?;
        Ok(Plan {
            node_port: SocketAddrV4::new(kxdp.ip, node_port),
            kxdp,
            flannel,
            pods: PODS.to_vec(),
            cluster_ip: SocketAddrV4::new(cluster_ip, port.port),
            backends: backends.into_iter().collect(),
            services,
        })
    }

    /// The node plan a pod is on.
    pub fn node_of(&self, pod: &PodSpec) -> &NodePlan {
        if pod.node == KXDP_NODE {
            &self.kxdp
        } else {
            &self.flannel
        }
    }

    /// The backend pod's name at `ip`, if any.
    pub fn pod_at(&self, ip: Ipv4Addr) -> Option<&PodSpec> {
        self.pods.iter().find(|p| p.ip == ip)
    }

    /// `0e:6b:...` of kxdp-a, as flannel-b's FDB and neighbour entries carry it.
    pub fn kxdp_vtep(&self) -> String {
        format_mac(self.kxdp.vtep_mac)
    }
}

/// Every service with data-path entries, its ports and ready IPv4 endpoints.
fn service_plans(state: &DesiredState) -> Vec<ServicePlan> {
    state
        .services
        .values()
        .filter(|s| s.has_data_path())
        .map(|s| {
            let endpoints: BTreeSet<Ipv4Addr> = state
                .slices_of(&s.key())
                .flat_map(|slice| slice.endpoints.iter())
                .filter(|e| e.ready)
                .flat_map(|e| e.addresses.iter())
                .filter_map(|a| match a {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                })
                .collect();
            ServicePlan {
                name: s.name.clone(),
                service_type: match s.service_type {
                    ServiceType::ClusterIp => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                    ServiceType::ExternalName => "ExternalName",
                }
                .to_owned(),
                cluster_ip: s.cluster_ips.iter().find_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                }),
                ports: s
                    .ports
                    .iter()
                    .map(|p| {
                        let target = match &p.target_port {
                            crate::objects::TargetPort::Number(n) => n.to_string(),
                            crate::objects::TargetPort::Name(n) => n.clone(),
                        };
                        let protocol = match p.protocol {
                            Protocol::Tcp => "TCP",
                            Protocol::Udp => "UDP",
                            Protocol::Sctp => "SCTP",
                        };
                        let node_port = p
                            .node_port
                            .map(|n| format!(" nodePort {n}"))
                            .unwrap_or_default();
                        format!("{}/{protocol}→{target}{node_port}", p.port)
                    })
                    .collect(),
                endpoints: endpoints.into_iter().collect(),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::objects::DEFAULT_OBJECTS;

    #[test]
    fn default_objects_fit_the_demo() {
        let plan = Plan::from_objects(DEFAULT_OBJECTS).unwrap();
        assert_eq!(plan.kxdp.ip, Ipv4Addr::new(192, 168, 77, 1));
        assert_eq!(plan.flannel.ip, Ipv4Addr::new(192, 168, 77, 2));
        assert_eq!(plan.kxdp_vtep(), "0e:6b:c0:a8:4d:01");
        assert_eq!(plan.cluster_ip.to_string(), "10.96.0.10:80");
        assert_eq!(plan.node_port.to_string(), "192.168.77.1:30080");
        assert_eq!(
            plan.backends,
            [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2)]
        );
        let web = plan.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web.ports, ["80/TCP→8080", "9090/TCP→metrics"]);
        let np = plan
            .services
            .iter()
            .find(|s| s.name == NODE_PORT_SERVICE)
            .unwrap();
        assert_eq!(np.ports, ["80/TCP→8080 nodePort 30080"]);
        // Headless and ExternalName services have no data path, so no place in the report.
        assert!(plan.services.iter().all(|s| s.name != "database"));
    }

    #[test]
    fn objects_that_disagree_with_the_pods_are_refused() {
        let moved = DEFAULT_OBJECTS.replace("addresses: [10.244.2.2]", "addresses: [10.244.2.7]");
        let e = Plan::from_objects(&moved).unwrap_err().to_string();
        assert!(e.contains("are not the demo's backend pods"), "{e}");
    }
}
