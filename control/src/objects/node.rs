//! `v1 Node` → [`NodeView`]: the node's addresses, pod CIDRs and flannel's VXLAN annotations
//! (what a flannel node publishes about itself, so kxdp and flannel nodes find each other).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use super::error::ObjectError;
use super::validate::{Subject, parse_mac};
use crate::overlay::Ipv4Net;

/// `vxlan` (or `host-gw`, ...): which flannel backend the node runs.
pub const FLANNEL_BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
/// `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`: the node's VXLAN endpoint.
pub const FLANNEL_BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// The underlay address other nodes send VXLAN to (defaults to the InternalIP).
pub const FLANNEL_PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
/// The node's topology zone (what `hints.forZones` of EndpointSlices name).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A Node as the overlay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// The first IPv4 `InternalIP` of `status.addresses`.
    pub internal_ip: Option<Ipv4Addr>,
    /// flannel's `public-ip` annotation, else [`internal_ip`](Self::internal_ip): where VXLAN
    /// to this node goes.
    pub public_ip: Option<Ipv4Addr>,
    /// `spec.podCIDRs`, else `spec.podCIDR`; IPv4 entries only (IPv6 ones are left out).
    pub pod_cidrs: Vec<Ipv4Net>,
    /// `VtepMAC` of flannel's `backend-data`.
    pub vtep_mac: Option<[u8; 6]>,
    /// `VNI` of flannel's `backend-data`.
    pub vni: Option<u32>,
    /// flannel's `backend-type` annotation.
    pub backend_type: Option<String>,
    /// The `topology.kubernetes.io/zone` label.
    pub zone: Option<String>,
}

impl NodeView {
    pub fn from_object(node: &Node) -> Result<NodeView, ObjectError> {
        let s = Subject::cluster("Node", &node.metadata)?;
        let annotation = |key: &str| {
            node.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::as_str)
        };

        let mut internal_ip = None;
        let addresses = node
            .status
            .as_ref()
            .and_then(|st| st.addresses.as_deref())
            .unwrap_or_default();
        for (i, a) in addresses.iter().enumerate() {
            if a.type_ != "InternalIP" {
                continue;
            }
            let field = format!("status.addresses[{i}].address");
            // Dual-stack nodes list an IPv6 InternalIP too; the overlay is IPv4.
            if let std::net::IpAddr::V4(ip) = s.ip(&field, &a.address)? {
                internal_ip = internal_ip.or(Some(ip));
            }
        }

        let public_ip = match annotation(FLANNEL_PUBLIC_IP) {
            Some(ip) => Some(s.ipv4(&annotation_field(FLANNEL_PUBLIC_IP), ip.trim())?),
            None => internal_ip,
        };

        let spec = node.spec.as_ref();
        let mut pod_cidrs = Vec::new();
        match spec.and_then(|sp| sp.pod_cidrs.as_deref()) {
            Some(cidrs) if !cidrs.is_empty() => {
                for (i, c) in cidrs.iter().enumerate() {
                    pod_cidrs.extend(s.cidr4(&format!("spec.podCIDRs[{i}]"), c)?);
                }
            }
            _ => {
                if let Some(c) = spec.and_then(|sp| sp.pod_cidr.as_deref()) {
                    pod_cidrs.extend(s.cidr4("spec.podCIDR", c)?);
                }
            }
        }

        let (vtep_mac, vni) = match annotation(FLANNEL_BACKEND_DATA) {
            Some(data) => backend_data(&s, data)?,
            None => (None, None),
        };

        Ok(NodeView {
            name: s.name,
            internal_ip,
            public_ip,
            pod_cidrs,
            vtep_mac,
            vni,
            backend_type: annotation(FLANNEL_BACKEND_TYPE).map(str::to_owned),
            zone: node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL))
                .filter(|z| !z.is_empty())
                .cloned(),
        })
    }
}

fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// flannel's `backend-data`: `{"VNI":1,"VtepMAC":"..."}` for vxlan, `null` for host-gw.
fn backend_data(s: &Subject, data: &str) -> Result<(Option<[u8; 6]>, Option<u32>), ObjectError> {
    let field = annotation_field(FLANNEL_BACKEND_DATA);
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| s.err(&field, format!("invalid JSON: {e}")))?;
    let map = match value {
        serde_json::Value::Null => return Ok((None, None)),
        serde_json::Value::Object(map) => map,
        other => {
            return Err(s.err(&field, format!("expected a JSON object, found {other}")));
        }
    };
    let vtep_mac = match map.get("VtepMAC") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(mac)) => Some(
            parse_mac(mac)
                .ok_or_else(|| s.err(&field, format!("VtepMAC {mac:?} is not a MAC address")))?,
        ),
        Some(other) => {
            return Err(s.err(&field, format!("VtepMAC {other} is not a string")));
        }
    };
    let vni = match map.get("VNI") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v < 1 << 24)
                .ok_or_else(|| s.err(&field, format!("VNI {v} is not a 24-bit number")))?,
        ),
    };
    Ok((vtep_mac, vni))
}
