//! `discovery.k8s.io/v1 EndpointSlice` → [`EndpointSliceView`]: a service's backends, their
//! ports and conditions, with the API's nil defaults applied (ready and serving: true,
//! terminating: false).

use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::ObjectKey;
use super::error::ObjectError;
use super::service::Protocol;
use super::validate::Subject;

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `addressType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    IPv4,
    IPv6,
    /// Hostnames; the data path does not use FQDN slices (neither does kube-proxy).
    Fqdn,
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPortView {
    /// Empty for the unnamed port; matches the service port of the same name.
    pub name: String,
    pub protocol: Protocol,
    /// `None`: not restricted (the API allows it; the data path has nothing to translate to).
    pub port: Option<u16>,
}

/// One entry of `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// Of the slice's address type; empty for FQDN slices.
    pub addresses: Vec<IpAddr>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// `hints.forZones[].name`: topology-aware routing.
    pub for_zones: Vec<String>,
}

/// An EndpointSlice as the service compiler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSliceView {
    pub namespace: String,
    pub name: String,
    /// The `kubernetes.io/service-name` label: the Service (same namespace) it serves.
    pub service: String,
    pub address_type: AddressType,
    pub ports: Vec<EndpointPortView>,
    pub endpoints: Vec<EndpointView>,
}

impl EndpointSliceView {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// The Service it belongs to.
    pub fn service_key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.service)
    }

    pub fn from_object(slice: &EndpointSlice) -> Result<EndpointSliceView, ObjectError> {
        let s = Subject::namespaced("EndpointSlice", &slice.metadata)?;
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|n| !n.is_empty())
            .cloned()
            .ok_or_else(|| {
                s.err(
                    format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
                    "missing: a slice without it belongs to no Service",
                )
            })?;
        let address_type = match slice.address_type.as_str() {
            "IPv4" => AddressType::IPv4,
            "IPv6" => AddressType::IPv6,
            "FQDN" => AddressType::Fqdn,
            // k8s-openapi reads a missing required string as empty.
            "" => return Err(s.err("addressType", "missing (IPv4, IPv6 or FQDN)")),
            other => {
                return Err(s.err(
                    "addressType",
                    format!("{other:?} is not IPv4, IPv6 or FQDN"),
                ));
            }
        };

        let ports = slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(EndpointPortView {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: Protocol::parse(
                        &s,
                        &format!("ports[{i}].protocol"),
                        p.protocol.as_deref(),
                    )?,
                    port: match p.port {
                        None => None,
                        Some(n) => Some(s.port(&format!("ports[{i}].port"), n)?),
                    },
                })
            })
            .collect::<Result<Vec<_>, ObjectError>>()?;

        let mut endpoints = Vec::new();
        for (i, e) in slice
            .endpoints
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let mut addresses = Vec::new();
            if address_type != AddressType::Fqdn {
                for (j, a) in e.addresses.iter().enumerate() {
                    let field = format!("endpoints[{i}].addresses[{j}]");
                    let ip = s.ip(&field, a)?;
                    if ip.is_ipv4() != (address_type == AddressType::IPv4) {
                        return Err(s.err(
                            field,
                            format!("{a:?} does not match addressType {}", slice.address_type),
                        ));
                    }
                    addresses.push(ip);
                }
            }
            let conditions = e.conditions.clone().unwrap_or_default();
            endpoints.push(EndpointView {
                addresses,
                ready: conditions.ready.unwrap_or(true),
                serving: conditions.serving.unwrap_or(true),
                terminating: conditions.terminating.unwrap_or(false),
                node_name: e.node_name.clone(),
                zone: e.zone.clone(),
                for_zones: e
                    .hints
                    .as_ref()
                    .and_then(|h| h.for_zones.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .map(|z| z.name.clone())
                    .collect(),
            });
        }

        Ok(EndpointSliceView {
            namespace: s.namespace,
            name: s.name,
            service,
            address_type,
            ports,
            endpoints,
        })
    }
}
