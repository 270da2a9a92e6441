//! The underlay of a virtual cluster: one L2 segment (a Linux bridge in its own namespace) and
//! the nodes plugged into it.
//!
//! ```text
//!   underlay ns: br0 ── ul0 ┄┄┄┄┄┄┄┄┄┄┄┄ eth0  node "a" ns (192.168.77.1/24)
//!                   └── ul1 ┄┄┄┄┄┄┄┄┄┄┄┄ eth0  node "b" ns (192.168.77.2/24)
//! ```
//!
//! Each node's uplink is called `eth0`, as on a real machine, so an engine or a flannel-style
//! vxlan device can be pointed at `dev eth0` in every node alike. Nodes resolve each other
//! with ARP through the bridge (no static neighbours: the nodes' kernels, or the engine on a
//! node's uplink, answer for themselves). The bridge runs no STP, so ports forward as soon as
//! they are up, and multicast snooping is off, so IPv6 neighbour discovery floods like ARP.
//!
//! TX checksum offload is off on both ends of every uplink veth (see
//! [`Link::tx_checksum_off`]): an AF_XDP engine on a node's `eth0` must see finished checksums.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, ensure};

use crate::link::Link;
use crate::netns::Netns;
use crate::veth::{Veth, VethOptions};

/// The bridge inside the underlay namespace.
const BRIDGE: &str = "br0";
/// Every node's uplink, inside the node's namespace.
pub const UPLINK: &str = "eth0";

/// Options for [`Underlay::with_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayOptions {
    /// Network address of the segment (host bits zero).
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// MTU of every uplink unless a node overrides it.
    pub mtu: u32,
}

impl Default for UnderlayOptions {
    /// `192.168.77.0/24`, MTU 1500.
    fn default() -> Self {
        UnderlayOptions {
            subnet: Ipv4Addr::new(192, 168, 77, 0),
            prefix_len: 24,
            mtu: 1500,
        }
    }
}

/// Per-node options for [`Underlay::add_node_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOptions {
    /// Uplink MTU; `None`: the underlay's.
    pub mtu: Option<u32>,
    /// Uplink MAC; `None`: `02:4b:` followed by the node's IPv4 address.
    pub mac: Option<[u8; 6]>,
    /// Queues on both ends of the uplink veth (see [`VethOptions::queues`]), for an engine
    /// with one worker per queue.
    pub queues: Option<u32>,
}

/// A bridge in its own namespace that nodes plug into. Dropping it deletes the namespace and
/// with it the bridge-side end of every uplink (so the nodes lose their `eth0`).
#[derive(Debug)]
pub struct Underlay {
    /// Holds the bridge; it can also act as a host outside the cluster: give
    /// [`bridge`](Self::bridge) an address on the subnet.
    pub netns: Netns,
    /// `br0`, up, no address.
    pub bridge: Link,
    opts: UnderlayOptions,
    tag: String,
    next_port: AtomicU32,
}

/// One machine on the underlay: a namespace whose uplink `eth0` is addressed and up.
#[derive(Debug)]
pub struct Node {
    /// As given to [`Underlay::add_node`].
    pub name: String,
    pub netns: Netns,
    /// `eth0` in [`netns`](Self::netns).
    pub uplink: Link,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    /// Of the uplink, inside the node's namespace.
    pub ifindex: u32,
    pub mtu: u32,
    /// The underlay's tag, reused for the namespaces of this node's pods.
    pub(crate) tag: String,
}

impl Underlay {
    /// `192.168.77.0/24`, MTU 1500. `tag` names the test, as for [`Netns::new`] (at most 40
    /// bytes here, leaving room for the node names appended to it).
    pub fn new(tag: &str) -> Result<Underlay> {
        Underlay::with_options(tag, &UnderlayOptions::default())
    }

    /// An underlay with the given subnet and MTU.
    pub fn with_options(tag: &str, opts: &UnderlayOptions) -> Result<Underlay> {
        ensure!(tag.len() <= 40, "underlay tag {tag:?} is over 40 bytes");
        ensure!(
            (8..=30).contains(&opts.prefix_len)
                && network(opts.subnet, opts.prefix_len) == opts.subnet,
            "underlay subnet {}/{} is not a network address with a /8../30 prefix",
            opts.subnet,
            opts.prefix_len
        );
        let netns = Netns::new(&format!("{tag}-ul"))?;
        netns.ip(&[
            "link",
            "add",
            "name",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        let bridge = netns.link(BRIDGE);
        bridge.up()?;
        Ok(Underlay {
            netns,
            bridge,
            opts: opts.clone(),
            tag: tag.to_owned(),
            next_port: AtomicU32::new(0),
        })
    }

    /// The `n`th address of the subnet: `node_ip(1)` is `192.168.77.1` by default.
    pub fn node_ip(&self, n: u32) -> Ipv4Addr {
        nth_address(self.opts.subnet, n)
    }

    /// Subnet prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.opts.prefix_len
    }

    /// Default uplink MTU.
    pub fn mtu(&self) -> u32 {
        self.opts.mtu
    }

    /// Plugs a new node into the bridge: namespace `kxdp-<tag>-<name>-...`, uplink `eth0` with
    /// `ip`/prefix, up. `name`: letters, digits, `_`, `-`.
    pub fn add_node(&self, name: &str, ip: Ipv4Addr) -> Result<Node> {
        self.add_node_with(name, ip, &NodeOptions::default())
    }

    /// [`add_node`](Self::add_node) with MTU, MAC and queue count.
    pub fn add_node_with(&self, name: &str, ip: Ipv4Addr, opts: &NodeOptions) -> Result<Node> {
        ensure!(
            network(ip, self.opts.prefix_len) == self.opts.subnet,
            "node {name}: {ip} is outside {}/{}",
            self.opts.subnet,
            self.opts.prefix_len
        );
        let netns = Netns::new(&format!("{}-{name}", self.tag))?;
        let port = format!("ul{}", self.next_port.fetch_add(1, Ordering::Relaxed));
        let mtu = opts.mtu.unwrap_or(self.opts.mtu);
        let veth_opts = VethOptions {
            queues: opts.queues,
            mtu: Some(mtu),
        };
        let veth = Veth::create_with(&netns, UPLINK, &self.netns, &port, &veth_opts)
            .with_context(|| format!("uplink of node {name}"))?;
        let (uplink, bridge_port) = (veth.a, veth.b);
        let octets = ip.octets();
        let mac = opts
            .mac
            .unwrap_or([0x02, 0x4b, octets[0], octets[1], octets[2], octets[3]]);
        uplink.set_mac(mac)?;
        bridge_port.set_master(BRIDGE)?;
        uplink.tx_checksum_off()?;
        bridge_port.tx_checksum_off()?;
        uplink.addr_add(ip.into(), self.opts.prefix_len)?;
        bridge_port.up()?;
        uplink.up()?;
        let info = uplink.info()?;
        Ok(Node {
            name: name.to_owned(),
            netns,
            uplink,
            ip,
            prefix_len: self.opts.prefix_len,
            mac: info.mac,
            ifindex: info.ifindex,
            mtu: info.mtu,
            tag: self.tag.clone(),
        })
    }
}

impl Node {
    /// `eth0`.
    pub fn uplink_name(&self) -> &str {
        self.uplink.name()
    }

    /// `net.ipv4.ip_forward = 1` in the node's namespace.
    pub fn enable_ip_forward(&self) -> Result<()> {
        self.netns.sysctl("net.ipv4.ip_forward", "1")
    }
}

/// `addr` with the host bits cleared.
pub(crate) fn network(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

/// `net + n` (`10.244.1.0`, 2 → `10.244.1.2`).
pub(crate) fn nth_address(net: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net).wrapping_add(n))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn address_math() {
        let ip = Ipv4Addr::new(192, 168, 77, 9);
        assert_eq!(network(ip, 24), Ipv4Addr::new(192, 168, 77, 0));
        assert_eq!(network(ip, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(network(ip, 32), ip);
        assert_eq!(
            nth_address(Ipv4Addr::new(10, 244, 1, 0), 2),
            Ipv4Addr::new(10, 244, 1, 2)
        );
    }

    #[test]
    fn bad_subnets_are_refused() {
        let opts = UnderlayOptions {
            subnet: Ipv4Addr::new(192, 168, 77, 1),
            ..UnderlayOptions::default()
        };
        // Refused before any namespace is made, so this needs no root.
        assert!(Underlay::with_options("bad", &opts).is_err());
        assert!(Underlay::new(&"x".repeat(41)).is_err());
    }
}
