//! Kubernetes objects as the agent's `--source FILE` reads them, for the end-to-end tests, and
//! [`wait_for`], the polling wait those tests share.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::link::format_mac;

/// A Node as flannel annotates it (VXLAN backend), `---`-prefixed for a multi-document file.
/// `backend_data` is the JSON of `flannel.alpha.coreos.com/backend-data` ([`vtep_data`]).
pub fn node_yaml(name: &str, ip: Ipv4Addr, pod_cidr: &str, backend_data: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    flannel.alpha.coreos.com/backend-type: vxlan
    flannel.alpha.coreos.com/backend-data: '{backend_data}'
    flannel.alpha.coreos.com/public-ip: {ip}
spec:
  podCIDR: {pod_cidr}
status:
  addresses:
    - type: InternalIP
      address: {ip}
"
    )
}

/// flannel's backend-data for VNI 1 and this VtepMAC.
pub fn vtep_data(mac: [u8; 6]) -> String {
    format!(r#"{{"VNI":1,"VtepMAC":"{}"}}"#, format_mac(mac))
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
