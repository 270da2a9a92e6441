//! This node, and the other Nodes as the overlay takes them: remote VTEPs for the engine and
//! the pod CIDRs the kernel routes into `kxdp0`.

use std::collections::BTreeSet;

use crate::objects::{DesiredState, NodeView, format_mac};
use crate::overlay::{Ipv4Net, RemoteNode};

/// What the agent started with; changes to this node's own Node need a restart.
#[derive(Debug, Clone)]
pub struct ThisNode {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub vtep_mac: [u8; 6],
}

/// The overlay's view of the cluster's Nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remotes {
    pub remotes: Vec<RemoteNode>,
    /// Every pod CIDR the kernel routes into `kxdp0` (ours included).
    pub routes: BTreeSet<Ipv4Net>,
    /// Nodes (or CIDRs of them) left out, and why.
    pub notes: Vec<String>,
}

impl ThisNode {
    /// Why this node's own Node, as the source now has it, differs from what the agent runs
    /// with (each needs a restart to apply).
    pub fn drift(&self, state: &DesiredState) -> Vec<String> {
        let Some(me) = state.nodes.get(&self.name) else {
            return vec![format!(
                "Node {} is gone from the source: keeping the configuration it started with",
                self.name
            )];
        };
        let mut out = Vec::new();
        if me.pod_cidrs.first() != Some(&self.pod_cidr) {
            out.push(format!(
                "Node {}: spec.podCIDR changed to {:?}; restart the agent to apply it (still using {})",
                self.name, me.pod_cidrs, self.pod_cidr
            ));
        }
        if me.vtep_mac.is_some_and(|m| m != self.vtep_mac) {
            out.push(format!(
                "Node {}: the VtepMAC in its backend-data changed; restart the agent to apply it \
                 (still using {})",
                self.name,
                format_mac(self.vtep_mac)
            ));
        }
        out
    }

    /// The other nodes as the engine takes them, and every pod CIDR the kernel routes into
    /// `kxdp0` (ours included).
    pub fn remotes<'a>(&self, nodes: impl Iterator<Item = &'a NodeView>) -> Remotes {
        let mut out = Remotes {
            routes: BTreeSet::from([self.pod_cidr]),
            ..Remotes::default()
        };
        for node in nodes.filter(|n| n.name != self.name) {
            let Some(ip) = node.public_ip else {
                out.notes.push(format!(
                    "Node {}: no IPv4 InternalIP and no flannel public-ip: unreachable, skipped",
                    node.name
                ));
                continue;
            };
            let mut pod_cidrs = Vec::new();
            for cidr in &node.pod_cidrs {
                if overlaps(*cidr, self.pod_cidr) {
                    out.notes.push(format!(
                        "Node {}: pod CIDR {cidr} overlaps ours ({}): not routed",
                        node.name, self.pod_cidr
                    ));
                } else {
                    pod_cidrs.push(*cidr);
                }
            }
            if pod_cidrs.is_empty() {
                continue; // nothing to route to it (yet)
            }
            out.routes.extend(pod_cidrs.iter().copied());
            out.remotes.push(RemoteNode {
                name: node.name.clone(),
                ip,
                pod_cidrs,
                vtep_mac: node.vtep_mac,
            });
        }
        out
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn node(name: &str, ip: Option<[u8; 4]>, cidrs: &[&str]) -> NodeView {
        NodeView {
            name: name.into(),
            internal_ip: ip.map(Ipv4Addr::from),
            public_ip: ip.map(Ipv4Addr::from),
            pod_cidrs: cidrs
                .iter()
                .map(|c| c.parse().unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            vtep_mac: Some([0x0e, 0, 0, 0, 0, 1]),
            vni: Some(1),
            backend_type: Some("vxlan".into()),
            zone: None,
        }
    }

    #[test]
    fn remotes_and_routes_from_nodes() {
        let this = ThisNode {
            name: "a".into(),
            pod_cidr: "10.244.1.0/24".parse().unwrap_or_else(|e| panic!("{e}")),
            vtep_mac: [0; 6],
        };
        let nodes = [
            node("a", Some([192, 168, 77, 1]), &["10.244.1.0/24"]),
            node("b", Some([192, 168, 77, 2]), &["10.244.2.0/24"]),
            node("c", None, &["10.244.3.0/24"]), // unreachable
            node("d", Some([192, 168, 77, 4]), &[]), // no pod CIDR yet
            node(
                "e",
                Some([192, 168, 77, 5]),
                &["10.244.0.0/16", "10.244.5.0/24"],
            ), // overlaps ours
        ];
        let r = this.remotes(nodes.iter());
        let names: Vec<&str> = r.remotes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "e"]);
        assert_eq!(r.remotes[1].pod_cidrs.len(), 1);
        let routes: Vec<String> = r.routes.iter().map(Ipv4Net::to_string).collect();
        assert_eq!(routes, ["10.244.1.0/24", "10.244.2.0/24", "10.244.5.0/24"]);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    }
}
