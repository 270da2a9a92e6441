//! In `kube` mode the agent publishes its own VXLAN endpoint on its Node as flannel does
//! (flannel's `pkg/subnet/kube`), so flannel nodes and other kxdp nodes find it:
//!
//! ```text
//! flannel.alpha.coreos.com/backend-type: vxlan
//! flannel.alpha.coreos.com/backend-data: {"VNI":1,"VtepMAC":"0e:6b:c0:a8:4d:01"}
//! flannel.alpha.coreos.com/public-ip: 192.168.77.1
//! flannel.alpha.coreos.com/kube-subnet-manager: "true"
//! ```
//!
//! Written with a JSON merge patch (only these keys; other annotations stay) once at start,
//! and again whenever the Node, as the watch last delivered it, lacks or differs in one of them
//! (someone edited or recreated it). A failed patch is retried with a growing delay.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::objects::{FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, FLANNEL_PUBLIC_IP, format_mac};

/// flannel sets it on nodes whose subnet comes from the Node's `spec.podCIDR`.
pub const FLANNEL_KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// How often the Node is compared with what it should carry.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// After a patch, the watch needs a moment to deliver the patched Node.
const SETTLE: Duration = Duration::from_secs(3);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The annotations this node must carry.
pub fn wanted(vni: u32, vtep_mac: [u8; 6], public_ip: Ipv4Addr) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FLANNEL_BACKEND_TYPE.to_owned(), "vxlan".to_owned()),
        (
            FLANNEL_BACKEND_DATA.to_owned(),
            json!({"VNI": vni, "VtepMAC": format_mac(vtep_mac)}).to_string(),
        ),
        (FLANNEL_PUBLIC_IP.to_owned(), public_ip.to_string()),
        (FLANNEL_KUBE_SUBNET_MANAGER.to_owned(), "true".to_owned()),
    ])
}

/// The wanted keys the Node lacks or holds another value for (`backend-data` compared as
/// JSON, so flannel's own formatting of the same values counts as equal).
pub fn differing<'a>(node: &Node, wanted: &'a BTreeMap<String, String>) -> Vec<&'a str> {
    let current = node.metadata.annotations.as_ref();
    wanted
        .iter()
        .filter(|(k, v)| {
            let have = current.and_then(|a| a.get(*k));
            match have {
                None => true,
                Some(h) if k.as_str() == FLANNEL_BACKEND_DATA => {
                    serde_json::from_str::<serde_json::Value>(h).ok()
                        != serde_json::from_str::<serde_json::Value>(v).ok()
                }
                Some(h) => h != *v,
            }
        })
        .map(|(k, _)| k.as_str())
        .collect()
}

/// The merge patch that sets them.
pub fn patch_body(wanted: &BTreeMap<String, String>) -> serde_json::Value {
    json!({"metadata": {"annotations": wanted}})
}

/// Patch the Node now, then keep it annotated (runs until aborted).
pub async fn keep_annotated(
    api: Api<Node>,
    nodes: Store<Node>,
    name: String,
    wanted: BTreeMap<String, String>,
) {
    let key = ObjectRef::<Node>::new(&name);
    let mut delay = CHECK_INTERVAL;
    let mut force = true;
    loop {
        let stale = match nodes.get(&key) {
            Some(node) => differing(&node, &wanted),
            None => Vec::new(), // not (yet) in the cache: nothing to compare
        };
        if force || !stale.is_empty() {
            if !force {
                tracing::warn!(node = %name, missing = ?stale, "the Node lost its flannel annotations: writing them again");
            }
            match api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(patch_body(&wanted)),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %name, "flannel annotations written");
                    force = false;
                    delay = CHECK_INTERVAL;
                    tokio::time::sleep(SETTLE).await;
                }
                Err(e) => {
                    tracing::warn!(node = %name, "writing the flannel annotations: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    continue;
                }
            }
        }
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn node(annotations: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        n
    }

    #[test]
    fn compares_with_what_the_node_carries() {
        let w = wanted(
            1,
            [0x0e, 0x6b, 192, 168, 77, 1],
            Ipv4Addr::new(192, 168, 77, 1),
        );
        assert_eq!(
            w[FLANNEL_BACKEND_DATA],
            r#"{"VNI":1,"VtepMAC":"0e:6b:c0:a8:4d:01"}"#
        );
        assert_eq!(differing(&node(&[]), &w).len(), 4);
        let complete = node(&[
            (FLANNEL_BACKEND_TYPE, "vxlan"),
            // Same JSON, other spacing and order.
            (
                FLANNEL_BACKEND_DATA,
                r#"{ "VtepMAC": "0e:6b:c0:a8:4d:01", "VNI": 1 }"#,
            ),
            (FLANNEL_PUBLIC_IP, "192.168.77.1"),
            (FLANNEL_KUBE_SUBNET_MANAGER, "true"),
            ("other", "kept"),
        ]);
        assert!(differing(&complete, &w).is_empty());
        let moved = node(&[
            (FLANNEL_BACKEND_TYPE, "vxlan"),
            (
                FLANNEL_BACKEND_DATA,
                r#"{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}"#,
            ),
            (FLANNEL_PUBLIC_IP, "192.168.77.1"),
        ]);
        assert_eq!(
            differing(&moved, &w),
            [FLANNEL_BACKEND_DATA, FLANNEL_KUBE_SUBNET_MANAGER]
        );
        assert_eq!(
            patch_body(&w)["metadata"]["annotations"][FLANNEL_PUBLIC_IP],
            "192.168.77.1"
        );
    }
}
