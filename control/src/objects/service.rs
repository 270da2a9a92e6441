//! `v1 Service` → [`ServiceView`]: the frontends (ClusterIPs, NodePorts, external and
//! load-balancer IPs), ports and policies the service compiler needs, with the API server's
//! defaults applied and its checks repeated (a file is not validated by an API server).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ObjectKey;
use super::error::ObjectError;
use super::validate::Subject;
use crate::overlay::Ipv4Net;

/// Read when `spec.loadBalancerSourceRanges` is empty, as kube-proxy does.
pub const LB_SOURCE_RANGES_ANNOTATION: &str =
    "service.beta.kubernetes.io/load-balancer-source-ranges";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset: 3 hours.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The API server's upper bound for the affinity timeout: one day.
pub const MAX_AFFINITY_TIMEOUT: u32 = 86_400;

/// `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

/// A port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub(crate) fn parse(
        s: &Subject,
        field: &str,
        p: Option<&str>,
    ) -> Result<Protocol, ObjectError> {
        match p {
            None | Some("TCP") => Ok(Protocol::Tcp),
            Some("UDP") => Ok(Protocol::Udp),
            Some("SCTP") => Ok(Protocol::Sctp),
            Some(other) => Err(s.err(field, format!("{other:?} is not TCP, UDP or SCTP"))),
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// Where a service port goes on the backends: a number, or the name of a container port
/// (resolved per endpoint through the EndpointSlice's ports of the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortView {
    /// Empty for the single unnamed port; matches the EndpointSlice port of the same name.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// Defaults to `port`.
    pub target_port: TargetPort,
    pub node_port: Option<u16>,
}

/// `spec.sessionAffinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionAffinity {
    #[default]
    None,
    /// A client keeps its backend for `timeout_seconds` after its last packet.
    ClientIp { timeout_seconds: u32 },
}

/// `spec.externalTrafficPolicy` / `spec.internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    #[default]
    Cluster,
    /// Endpoints on this node only.
    Local,
}

impl TrafficPolicy {
    fn parse(s: &Subject, field: &str, p: Option<&str>) -> Result<TrafficPolicy, ObjectError> {
        match p {
            None | Some("") | Some("Cluster") => Ok(TrafficPolicy::Cluster),
            Some("Local") => Ok(TrafficPolicy::Local),
            Some(other) => Err(s.err(field, format!("{other:?} is not Cluster or Local"))),
        }
    }
}

/// A Service as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub service_type: ServiceType,
    /// `spec.clusterIPs`, else `spec.clusterIP`; empty for headless and ExternalName services.
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`: DNS only, no data-path entries.
    pub headless: bool,
    /// `spec.externalName` of an ExternalName service (DNS only, no data-path entries).
    pub external_name: Option<String>,
    pub ports: Vec<ServicePortView>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`, except entries with `ipMode: Proxy` (the load
    /// balancer terminates those itself and sends to the NodePort; kube-proxy skips them too).
    pub load_balancer_ingress_ips: Vec<IpAddr>,
    pub session_affinity: SessionAffinity,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.loadBalancerSourceRanges`, else the `service.beta.kubernetes.io/...` annotation;
    /// IPv4 ranges only (an IPv6 range never matches an IPv4 client).
    pub load_balancer_source_ranges: Vec<Ipv4Net>,
    pub health_check_node_port: Option<u16>,
    pub publish_not_ready_addresses: bool,
}

impl ServiceView {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// False for headless and ExternalName services, which get no data-path entries.
    pub fn has_data_path(&self) -> bool {
        !self.headless && self.service_type != ServiceType::ExternalName
    }

    pub fn from_object(svc: &Service) -> Result<ServiceView, ObjectError> {
        let s = Subject::namespaced("Service", &svc.metadata)?;
        let spec = svc.spec.clone().unwrap_or_default();

        let service_type = match spec.type_.as_deref() {
            None | Some("") | Some("ClusterIP") => ServiceType::ClusterIp,
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            Some(other) => {
                return Err(s.err(
                    "spec.type",
                    format!("{other:?} is not ClusterIP, NodePort, LoadBalancer or ExternalName"),
                ));
            }
        };

        let external_name = if service_type == ServiceType::ExternalName {
            match spec.external_name.as_deref() {
                Some(n) if !n.is_empty() => Some(n.to_owned()),
                _ => return Err(s.err("spec.externalName", "required for type ExternalName")),
            }
        } else {
            None
        };

        let (cluster_ips, headless) = cluster_ips(&s, &spec.cluster_ip, &spec.cluster_ips)?;
        let cluster_ips = if service_type == ServiceType::ExternalName {
            Vec::new()
        } else {
            cluster_ips
        };

        let ports = spec.ports.as_deref().unwrap_or_default();
        let ports = ports
            .iter()
            .enumerate()
            .map(|(i, p)| port(&s, i, p, service_type))
            .collect::<Result<Vec<_>, _>>()?;
        check_port_set(&s, &ports)?;

        let external_ips = ip_list(&s, "spec.externalIPs", spec.external_ips.as_deref())?;

        let mut load_balancer_ingress_ips = Vec::new();
        let ingress = svc
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_deref())
            .unwrap_or_default();
        for (i, ing) in ingress.iter().enumerate() {
            let Some(ip) = ing.ip.as_deref() else {
                continue; // a hostname-only ingress (some cloud LBs): nothing to match
            };
            let ip = s.ip(&format!("status.loadBalancer.ingress[{i}].ip"), ip)?;
            if ing.ip_mode.as_deref() != Some("Proxy") {
                load_balancer_ingress_ips.push(ip);
            }
        }

        let session_affinity = match spec.session_affinity.as_deref() {
            None | Some("") | Some("None") => SessionAffinity::None,
            Some("ClientIP") => {
                let timeout = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds);
                let timeout_seconds = match timeout {
                    None => DEFAULT_AFFINITY_TIMEOUT,
                    Some(t) => u32::try_from(t)
                        .ok()
                        .filter(|t| (1..=MAX_AFFINITY_TIMEOUT).contains(t))
                        .ok_or_else(|| {
                            s.err(
                                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                                format!("{t} is not within 1..={MAX_AFFINITY_TIMEOUT}"),
                            )
                        })?,
                };
                SessionAffinity::ClientIp { timeout_seconds }
            }
            Some(other) => {
                return Err(s.err(
                    "spec.sessionAffinity",
                    format!("{other:?} is not None or ClientIP"),
                ));
            }
        };

        let external_traffic_policy = TrafficPolicy::parse(
            &s,
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        )?;
        let internal_traffic_policy = TrafficPolicy::parse(
            &s,
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        )?;

        let mut load_balancer_source_ranges = Vec::new();
        match spec.load_balancer_source_ranges.as_deref() {
            Some(ranges) if !ranges.is_empty() => {
                for (i, r) in ranges.iter().enumerate() {
                    let field = format!("spec.loadBalancerSourceRanges[{i}]");
                    load_balancer_source_ranges.extend(s.cidr4(&field, r.trim())?);
                }
            }
            _ => {
                let annotation = svc
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LB_SOURCE_RANGES_ANNOTATION));
                if let Some(ranges) = annotation {
                    let field = format!("metadata.annotations[{LB_SOURCE_RANGES_ANNOTATION}]");
                    for r in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        load_balancer_source_ranges.extend(s.cidr4(&field, r)?);
                    }
                }
            }
        }

        let health_check_node_port =
            s.optional_port("spec.healthCheckNodePort", spec.health_check_node_port)?;

        Ok(ServiceView {
            namespace: s.namespace,
            name: s.name,
            service_type,
            cluster_ips,
            headless,
            external_name,
            ports,
            external_ips,
            load_balancer_ingress_ips,
            session_affinity,
            external_traffic_policy,
            internal_traffic_policy,
            load_balancer_source_ranges,
            health_check_node_port,
            publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        })
    }
}

/// `spec.clusterIPs` (its first entry must equal `spec.clusterIP` when both are set), else
/// `spec.clusterIP`; `None` makes the service headless.
fn cluster_ips(
    s: &Subject,
    single: &Option<String>,
    list: &Option<Vec<String>>,
) -> Result<(Vec<IpAddr>, bool), ObjectError> {
    let single = single.as_deref().filter(|ip| !ip.is_empty());
    let (field, entries): (&str, Vec<&str>) = match list.as_deref() {
        Some(l) if !l.is_empty() => {
            if let Some(one) = single
                && one != l[0]
            {
                return Err(s.err(
                    "spec.clusterIPs[0]",
                    format!("{:?} differs from spec.clusterIP {one:?}", l[0]),
                ));
            }
            ("spec.clusterIPs", l.iter().map(String::as_str).collect())
        }
        _ => ("spec.clusterIP", single.into_iter().collect()),
    };
    if entries.first() == Some(&"None") {
        return Ok((Vec::new(), true));
    }
    let ips = entries
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let f = if field == "spec.clusterIP" {
                field.to_owned()
            } else {
                format!("{field}[{i}]")
            };
            s.ip(&f, ip)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ips, false))
}

fn ip_list(s: &Subject, field: &str, list: Option<&[String]>) -> Result<Vec<IpAddr>, ObjectError> {
    list.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, ip)| s.ip(&format!("{field}[{i}]"), ip))
        .collect()
}

fn port(
    s: &Subject,
    i: usize,
    p: &ServicePort,
    service_type: ServiceType,
) -> Result<ServicePortView, ObjectError> {
    let field = |f: &str| format!("spec.ports[{i}].{f}");
    let port = s.port(&field("port"), p.port)?;
    let protocol = Protocol::parse(s, &field("protocol"), p.protocol.as_deref())?;
    // The API server's defaulting: an unset, zero or empty target port is the port itself.
    let target_port = match &p.target_port {
        None | Some(IntOrString::Int(0)) => TargetPort::Number(port),
        Some(IntOrString::String(n)) if n.is_empty() => TargetPort::Number(port),
        Some(IntOrString::Int(n)) => TargetPort::Number(s.port(&field("targetPort"), *n)?),
        Some(IntOrString::String(n)) if is_port_name(n) => TargetPort::Name(n.clone()),
        Some(IntOrString::String(n)) => {
            return Err(s.err(
                field("targetPort"),
                format!(
                    "{n:?} is not a valid port name (1-15 lowercase letters, digits and \
                     single '-', at least one letter)"
                ),
            ));
        }
    };
    let node_port = s.optional_port(&field("nodePort"), p.node_port)?;
    if node_port.is_some()
        && !matches!(
            service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        )
    {
        return Err(s.err(
            field("nodePort"),
            "may not be used unless type is NodePort or LoadBalancer",
        ));
    }
    Ok(ServicePortView {
        name: p.name.clone().unwrap_or_default(),
        protocol,
        port,
        target_port,
        node_port,
    })
}

/// IANA_SVC_NAME (RFC 6335), which the API server requires of named ports: 1-15 characters of
/// `a-z0-9-`, at least one letter, no `-` at either end or twice in a row. A quoted number such
/// as `"8080"` is therefore refused, as the API server refuses it.
fn is_port_name(n: &str) -> bool {
    (1..=15).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && n.bytes().any(|b| b.is_ascii_lowercase())
        && !n.starts_with('-')
        && !n.ends_with('-')
        && !n.contains("--")
}

/// The API server's rules across ports: names unique and required when there are several,
/// no port or node port twice for one protocol.
fn check_port_set(s: &Subject, ports: &[ServicePortView]) -> Result<(), ObjectError> {
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        if ports.len() > 1 && p.name.is_empty() {
            return Err(s.err(
                format!("spec.ports[{i}].name"),
                "required when the service has more than one port",
            ));
        }
        if !names.insert(p.name.as_str()) {
            return Err(s.err(
                format!("spec.ports[{i}].name"),
                format!("duplicate name {:?}", p.name),
            ));
        }
        if !numbers.insert((p.port, p.protocol)) {
            return Err(s.err(
                format!("spec.ports[{i}]"),
                format!("duplicate port {}/{}", p.port, p.protocol),
            ));
        }
        if let Some(np) = p.node_port
            && !node_ports.insert((np, p.protocol))
        {
            return Err(s.err(
                format!("spec.ports[{i}].nodePort"),
                format!("duplicate node port {np}/{}", p.protocol),
            ));
        }
    }
    Ok(())
}
