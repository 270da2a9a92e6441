//! The messages of the local API: one JSON request per connection, one JSON response, each a
//! single line. Small enough to speak with `socat` when debugging:
//!
//! ```text
//! echo '{"op":"node_info"}' | socat - UNIX-CONNECT:/run/kxdp/kxdp.sock
//! ```

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The node's pod network facts (what `kxdp-cni` needs before IPAM).
    NodeInfo,
    /// Register a pod whose veth exists and is configured.
    AttachPod(PodAttach),
    /// Forget a pod; not an error if it is unknown (CNI DEL is idempotent).
    DetachPod { id: String },
    /// What the data path holds now.
    Inspect { what: InspectWhat },
    /// Copies of the frames the engine handles (on `iface` only, if given), as pcapng after
    /// the answer line, until `count` frames (0: no limit) or `seconds` (0: no limit) or the
    /// client hangs up.
    Capture {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iface: Option<String>,
        #[serde(default)]
        count: u64,
        #[serde(default)]
        seconds: u64,
    },
}

/// A pod attachment as `kxdp-cni` registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAttach {
    /// Unique per attachment: the CNI container id and interface name.
    pub id: String,
    /// The host-side interface of the pod's veth.
    pub ifname: String,
    pub ip: Ipv4Addr,
    /// The pod-side MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub mtu: u16,
    /// Kubernetes pod namespace/name when the runtime passed them (CNI_ARGS), for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// The node's pod network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_name: String,
    /// `10.244.1.0/24`
    pub pod_cidr: String,
    /// The pods' default gateway (answered by the engine's proxy ARP).
    pub gateway: Ipv4Addr,
    /// Underlay MTU − 50 in VXLAN mode.
    pub pod_mtu: u16,
    /// Queues a pod veth needs (one per worker).
    pub queues: u32,
    /// The MAC pods see for their gateway.
    pub router_mac: String,
}

/// The answer to an attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The engine port the pod got.
    pub port: u16,
    pub generation: u64,
}

/// What `kxdp inspect` can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum InspectWhat {
    Services,
    Backends,
    Conntrack,
    Nodes,
    Attachments,
    Routes,
    Stats,
}

/// The server's answer: `{"ok": ...}` or `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Error(String),
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(mac)
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_json_form() {
        let r = Request::DetachPod {
            id: "c1/eth0".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"detach_pod","id":"c1/eth0"}"#
        );
        let r: Request = serde_json::from_str(r#"{"op":"node_info"}"#).unwrap();
        assert_eq!(r, Request::NodeInfo);
        let r: Request = serde_json::from_str(r#"{"op":"inspect","what":"attachments"}"#).unwrap();
        assert_eq!(
            r,
            Request::Inspect {
                what: InspectWhat::Attachments
            }
        );
        let ok = serde_json::to_string(&Response::Error("boom".into())).unwrap();
        assert_eq!(ok, r#"{"error":"boom"}"#);
    }

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("0a:58:0A:f4:01:02").unwrap();
        assert_eq!(format_mac(m), "0a:58:0a:f4:01:02");
        assert!(parse_mac("0a:58").is_err());
        assert!(parse_mac("zz:58:0a:f4:01:02").is_err());
    }
}
