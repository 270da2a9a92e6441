//! Builders for the Kubernetes objects kxdp reads, as the JSON the API server serves (what
//! `kubectl get -o json` shows, minus server-set metadata). Adjust further with
//! [`merge_patch`](super::patch::merge_patch) or by indexing the returned `Value`.

use serde_json::{Value, json};

/// A Service or EndpointSlice port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub port: u16,
    /// The Service's `targetPort` (also the EndpointSlice port when built from this).
    pub target_port: u16,
    /// A Service's `nodePort`, if any.
    pub node_port: Option<u16>,
}

impl Port {
    pub fn tcp(port: u16, target_port: u16) -> Self {
        Self {
            name: String::new(),
            protocol: "TCP".into(),
            port,
            target_port,
            node_port: None,
        }
    }

    pub fn udp(port: u16, target_port: u16) -> Self {
        Self {
            protocol: "UDP".into(),
            ..Self::tcp(port, target_port)
        }
    }

    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    #[must_use]
    pub fn node_port(mut self, node_port: u16) -> Self {
        self.node_port = Some(node_port);
        self
    }
}

/// A ClusterIP Service (type `NodePort` when any port has a node port), selecting pods
/// `app=<name>` and labelled `app=<name>`. `cluster_ip` "None" makes it headless.
pub fn service(namespace: &str, name: &str, cluster_ip: &str, ports: &[Port]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut port =
                json!({ "protocol": p.protocol, "port": p.port, "targetPort": p.target_port });
            if !p.name.is_empty() {
                port["name"] = p.name.clone().into();
            }
            if let Some(node_port) = p.node_port {
                port["nodePort"] = node_port.into();
            }
            port
        })
        .collect();
    let kind = if ports.iter().any(|p| p.get("nodePort").is_some()) {
        "NodePort"
    } else {
        "ClusterIP"
    };
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": {
            "type": kind,
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "selector": { "app": name },
            "ports": ports,
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
        },
        "status": { "loadBalancer": {} },
    })
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: String,
    pub node_name: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub zone: Option<String>,
}

impl Endpoint {
    /// A ready, serving endpoint.
    pub fn ready(ip: &str) -> Self {
        Self {
            ip: ip.into(),
            node_name: None,
            ready: true,
            serving: true,
            terminating: false,
            zone: None,
        }
    }

    #[must_use]
    pub fn on_node(mut self, node: &str) -> Self {
        self.node_name = Some(node.into());
        self
    }

    /// Terminating but still serving (graceful shutdown).
    #[must_use]
    pub fn terminating(mut self) -> Self {
        self.ready = false;
        self.terminating = true;
        self
    }

    #[must_use]
    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self.serving = false;
        self
    }

    #[must_use]
    pub fn zone(mut self, zone: &str) -> Self {
        self.zone = Some(zone.into());
        self
    }
}

/// An IPv4 EndpointSlice `name` of Service `service` (label `kubernetes.io/service-name`),
/// with the ports' target ports as its ports.
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    endpoints: &[Endpoint],
    ports: &[Port],
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            let mut endpoint = json!({
                "addresses": [e.ip],
                "conditions": { "ready": e.ready, "serving": e.serving, "terminating": e.terminating },
            });
            if let Some(node) = &e.node_name {
                endpoint["nodeName"] = node.clone().into();
            }
            if let Some(zone) = &e.zone {
                endpoint["zone"] = zone.clone().into();
                endpoint["hints"] = json!({ "forZones": [{ "name": zone }] });
            }
            endpoint
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({ "name": p.name, "protocol": p.protocol, "port": p.target_port }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    })
}

/// Flannel's VXLAN backend annotations on a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlannelAnnotations {
    pub vni: u32,
    pub vtep_mac: String,
    /// `flannel.alpha.coreos.com/public-ip`; `None` leaves it out (readers fall back to the
    /// InternalIP).
    pub public_ip: Option<String>,
}

impl FlannelAnnotations {
    /// VNI 1, as flannel's default.
    pub fn vxlan(vtep_mac: &str, public_ip: Option<&str>) -> Self {
        Self {
            vni: 1,
            vtep_mac: vtep_mac.into(),
            public_ip: public_ip.map(Into::into),
        }
    }
}

/// A Ready Node with InternalIP `ip`, `spec.podCIDR(s)` `pod_cidr`, and flannel's annotations
/// when given.
pub fn node(name: &str, ip: &str, pod_cidr: &str, flannel: Option<&FlannelAnnotations>) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(f) = flannel {
        let backend_data = json!({ "VNI": f.vni, "VtepMAC": f.vtep_mac }).to_string();
        annotations.insert(
            "flannel.alpha.coreos.com/backend-type".into(),
            "vxlan".into(),
        );
        annotations.insert(
            "flannel.alpha.coreos.com/backend-data".into(),
            backend_data.into(),
        );
        annotations.insert(
            "flannel.alpha.coreos.com/kube-subnet-manager".into(),
            "true".into(),
        );
        if let Some(public_ip) = &f.public_ip {
            annotations.insert(
                "flannel.alpha.coreos.com/public-ip".into(),
                public_ip.clone().into(),
            );
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" },
            "annotations": annotations,
        },
        "spec": { "podCIDR": pod_cidr, "podCIDRs": [pod_cidr] },
        "status": {
            "addresses": [
                { "type": "InternalIP", "address": ip },
                { "type": "Hostname", "address": name },
            ],
            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    #[test]
    fn fixtures_deserialize_as_k8s_types() {
        let svc: Service = serde_json::from_value(service(
            "ns",
            "web",
            "10.96.0.10",
            &[Port::tcp(80, 8080).named("http").node_port(30080)],
        ))
        .unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.ports.unwrap()[0].node_port, Some(30080));

        let slice: EndpointSlice = serde_json::from_value(endpoint_slice(
            "ns",
            "web-abc",
            "web",
            &[
                Endpoint::ready("10.244.1.5").on_node("n1").zone("a"),
                Endpoint::ready("10.244.2.5").terminating(),
            ],
            &[Port::tcp(80, 8080)],
        ))
        .unwrap();
        let endpoints = slice.endpoints.unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(
            endpoints[1].conditions.as_ref().unwrap().terminating,
            Some(true)
        );

        let flannel = FlannelAnnotations::vxlan("aa:bb:cc:dd:ee:ff", Some("192.0.2.10"));
        let node: Node =
            serde_json::from_value(node("n1", "192.0.2.10", "10.244.1.0/24", Some(&flannel)))
                .unwrap();
        let annotations = node.metadata.annotations.unwrap();
        assert_eq!(
            annotations["flannel.alpha.coreos.com/backend-data"],
            r#"{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}"#
        );
        assert_eq!(
            node.spec.unwrap().pod_cidr.as_deref(),
            Some("10.244.1.0/24")
        );
    }
}
