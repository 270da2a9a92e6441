//! The node-level desired state the overlay compiler reads: this node, the other nodes of the
//! cluster (from their Node objects and flannel annotations), the pods attached here, and the
//! underlay neighbours the kernel resolved for us.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use kxdp_dataplane::PortId;

/// An IPv4 prefix such as `10.244.1.0/24`. Host bits are cleared on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 prefix {0:?} (expected a.b.c.d/len with len 0..=32)")]
pub struct BadPrefix(pub String);

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, BadPrefix> {
        if len > 32 {
            return Err(BadPrefix(format!("{addr}/{len}")));
        }
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length (not a count, so there is no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for `0.0.0.0/0`.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        Ipv4Net::new(ip, self.len).map(|n| n.addr) == Ok(self.addr)
    }

    /// The n-th address of the prefix (`.0` is 0, the usual gateway `.1` is 1).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = BadPrefix;

    fn from_str(s: &str) -> Result<Self, BadPrefix> {
        let bad = || BadPrefix(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        Ipv4Net::new(addr, len).map_err(|_| bad())
    }
}

/// How traffic to other nodes' pods travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayMode {
    /// VXLAN to every node (flannel `vxlan`).
    #[default]
    Vxlan,
    /// VXLAN, but plain routing to nodes on the uplink's own subnet (flannel's `DirectRouting`).
    VxlanDirectRouting,
    /// No encapsulation: the remote node is the next hop for its pod CIDR (`--overlay none`);
    /// every node must be on the uplink's subnet.
    None,
}

/// This node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node's underlay address: source of VXLAN packets, ICMP errors, NodePort target.
    pub ip: Ipv4Addr,
    /// The uplink's subnet (decides which nodes are directly reachable).
    pub subnet: Ipv4Net,
    pub pod_cidr: Ipv4Net,
    /// Our VTEP MAC (flannel's `VtepMAC`): inner source MAC of what we encapsulate, inner
    /// destination MAC of what remote nodes send us.
    pub vtep_mac: [u8; 6],
    /// The MAC the engine shows pods and the host port (their gateway's MAC).
    pub router_mac: [u8; 6],
    pub vni: u32,
    pub vxlan_port: u16,
    pub mode: OverlayMode,
    pub uplink: UplinkPort,
    pub host: Option<HostPort>,
}

impl LocalNode {
    /// The pods' gateway: the first address of the pod CIDR (as flannel's cni0 and host-local's
    /// default gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        self.pod_cidr.nth(1)
    }
}

/// The uplink as the engine attached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkPort {
    pub port: PortId,
    pub mac: [u8; 6],
    /// Underlay MTU (pod MTU is this − 50).
    pub mtu: u16,
}

/// The engine's path into the host kernel: a veth pair whose kernel end carries the gateway
/// address and the routes to pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub port: PortId,
    /// MAC of the kernel's end of the pair (destination of frames we hand to the kernel).
    pub kernel_mac: [u8; 6],
    pub mtu: u16,
}

/// Another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    pub name: String,
    /// flannel's `public-ip` annotation, else the InternalIP.
    pub ip: Ipv4Addr,
    pub pod_cidrs: Vec<Ipv4Net>,
    /// flannel's `backend-data` VtepMAC; without it the node is reachable only by direct
    /// routing.
    pub vtep_mac: Option<[u8; 6]>,
}

/// A pod attached to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAttachment {
    /// Who asked for it (the CNI container id, or a test's name).
    pub id: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Host-side interface.
    pub ifname: String,
    pub port: PortId,
    pub mtu: u16,
}

/// Everything the overlay compiler reads.
#[derive(Debug, Clone)]
pub struct OverlayState {
    pub local: LocalNode,
    pub remotes: BTreeMap<String, RemoteNode>,
    pub pods: BTreeMap<String, PodAttachment>,
    /// For each remote node IP, the MAC of the underlay next hop towards it (the node itself
    /// on our subnet, else the gateway the kernel routes through), from the kernel's
    /// neighbour table.
    pub neighbours: HashMap<Ipv4Addr, [u8; 6]>,
    /// Service frontends and backends, compiled separately (they change independently of the
    /// overlay and are shared between publishes as one `Arc`).
    pub services: std::sync::Arc<kxdp_dataplane::tables::Services>,
}

impl OverlayState {
    pub fn new(local: LocalNode) -> Self {
        OverlayState {
            local,
            remotes: BTreeMap::new(),
            pods: BTreeMap::new(),
            neighbours: HashMap::new(),
            services: std::sync::Arc::default(),
        }
    }

    /// Every remote node IP the tables need a next-hop MAC for.
    pub fn wanted_neighbours(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self.remotes.values().map(|r| r.ip).collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_clear_host_bits() {
        let n: Ipv4Net = "10.244.1.7/24".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.to_string(), "10.244.1.0/24");
        assert!(n.contains(Ipv4Addr::new(10, 244, 1, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 244, 2, 1)));
        assert_eq!(n.nth(1), Ipv4Addr::new(10, 244, 1, 1));
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
        assert!("0.0.0.0/0".parse::<Ipv4Net>().is_ok_and(|n| n.is_default()));
    }
}
