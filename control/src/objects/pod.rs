//! `v1 Pod` → [`PodView`]: only what the node needs to know about pods (where they run and
//! their addresses), e.g. to tell its own pods from the rest.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

use super::ObjectKey;
use super::error::ObjectError;
use super::validate::Subject;

/// A Pod as the node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    /// `spec.nodeName`: `None` until scheduled.
    pub node_name: Option<String>,
    /// `status.podIPs`, else `status.podIP`.
    pub pod_ips: Vec<IpAddr>,
    /// `spec.hostNetwork`: the pod uses the node's addresses and no pod veth.
    pub host_network: bool,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: Option<String>,
}

impl PodView {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    pub fn from_object(pod: &Pod) -> Result<PodView, ObjectError> {
        let s = Subject::namespaced("Pod", &pod.metadata)?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut pod_ips = Vec::new();
        match status.and_then(|st| st.pod_ips.as_deref()) {
            Some(ips) if !ips.is_empty() => {
                for (i, ip) in ips.iter().enumerate() {
                    pod_ips.push(s.ip(&format!("status.podIPs[{i}].ip"), &ip.ip)?);
                }
            }
            _ => {
                if let Some(ip) = status
                    .and_then(|st| st.pod_ip.as_deref())
                    .filter(|ip| !ip.is_empty())
                {
                    pod_ips.push(s.ip("status.podIP", ip)?);
                }
            }
        }
        Ok(PodView {
            namespace: s.namespace,
            name: s.name,
            node_name: spec
                .and_then(|sp| sp.node_name.clone())
                .filter(|n| !n.is_empty()),
            pod_ips,
            host_network: spec.and_then(|sp| sp.host_network).unwrap_or(false),
            phase: status.and_then(|st| st.phase.clone()),
        })
    }
}
