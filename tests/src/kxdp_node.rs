//! The links a node running kxdp needs besides its uplink and pod veths: the host-port veth
//! pair through which the node's own kernel reaches pods and services via the engine.
//!
//! ```text
//!   node ns:  kernel stack ── kxdp0 ════ kxdp0e ── engine (AF_XDP) ── pod veths, eth0
//!             ip route <cidr> via 169.254.77.1 dev kxdp0 onlink
//!             neigh 169.254.77.1 lladdr <kxdp0e MAC> permanent
//! ```
//!
//! Routes to the engine go through a link-local next hop with a permanent neighbour entry
//! naming `kxdp0e`'s MAC, so the kernel never ARPs on `kxdp0` and the engine does not have to
//! answer ARP there; [`KxdpNodeLinks::route_to_engine_arp`] installs the plain
//! `<cidr> dev kxdp0` route instead, for an engine that does. Either way the frames the engine
//! receives on `kxdp0e` carry `kxdp0`'s MAC as source and `kxdp0e`'s as destination, and the
//! engine sends to the host with `kxdp0`'s MAC as destination.
//!
//! Until an engine holds `kxdp0e`, the node's kernel receives there what it sent out of
//! `kxdp0` and, forwarding being on, routes it straight back out of `kxdp0` until the TTL
//! runs out: harmless, but `kxdp0e`'s counters say nothing about an engine before it starts.
//!
//! Reverse-path filtering is turned off (all, default, `kxdp0`) because replies from pods and
//! services reach the host on `kxdp0` while the same addresses may also be reachable, as far
//! as the kernel's tables know, through the uplink; forwarding is turned on.

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::link::Link;
use crate::netns::Netns;
use crate::veth::{Veth, VethOptions};

/// The kernel's end of the host-port veth.
pub const KXDP_HOST_IF: &str = "kxdp0";
/// The engine's end of the host-port veth.
pub const KXDP_ENGINE_IF: &str = "kxdp0e";
/// Next hop of [`KxdpNodeLinks::route_to_engine`] routes; resolved by a permanent neighbour.
pub const ENGINE_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);

/// Options for [`KxdpNodeLinks::create_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KxdpNodeLinksOptions {
    /// Address on `kxdp0` (the engine does not need one).
    pub host_addr: Option<(Ipv4Addr, u8)>,
    /// Prefixes routed to the engine with [`KxdpNodeLinks::route_to_engine`], e.g. the
    /// cluster CIDR `10.244.0.0/16` or the node's pod CIDR.
    pub routes: Vec<String>,
    /// MTU of both ends; `None`: 1500.
    pub mtu: Option<u32>,
    /// Queues on both ends (see [`VethOptions::queues`]).
    pub queues: Option<u32>,
    pub host_mac: [u8; 6],
    pub engine_mac: [u8; 6],
}

impl Default for KxdpNodeLinksOptions {
    /// No address, no routes, MACs `02:6b:78:00:00:01` (`kxdp0`) and `..:02` (`kxdp0e`).
    fn default() -> Self {
        KxdpNodeLinksOptions {
            host_addr: None,
            routes: Vec::new(),
            mtu: None,
            queues: None,
            host_mac: [0x02, 0x6b, 0x78, 0, 0, 0x01],
            engine_mac: [0x02, 0x6b, 0x78, 0, 0, 0x02],
        }
    }
}

/// `kxdp0` ═ `kxdp0e` in a node namespace, up, TX checksum offload off on both. They live
/// and die with the namespace (no Drop of their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KxdpNodeLinks {
    /// `kxdp0`, the kernel's end.
    pub host: Link,
    /// `kxdp0e`, the engine's end.
    pub engine: Link,
    pub host_mac: [u8; 6],
    pub engine_mac: [u8; 6],
    pub host_ifindex: u32,
    pub engine_ifindex: u32,
}

impl KxdpNodeLinks {
    /// The pair with default options (no address, no routes).
    pub fn create(node: &Netns) -> Result<KxdpNodeLinks> {
        KxdpNodeLinks::create_with(node, &KxdpNodeLinksOptions::default())
    }

    /// Creates the pair, sets the sysctls (forwarding on, rp_filter off) and the routes.
    pub fn create_with(node: &Netns, opts: &KxdpNodeLinksOptions) -> Result<KxdpNodeLinks> {
        let veth_opts = VethOptions {
            queues: opts.queues,
            mtu: opts.mtu,
        };
        let veth = Veth::create_with(node, KXDP_HOST_IF, node, KXDP_ENGINE_IF, &veth_opts)?;
        let (host, engine) = (veth.a, veth.b);
        host.set_mac(opts.host_mac)?;
        engine.set_mac(opts.engine_mac)?;
        host.tx_checksum_off()?;
        engine.tx_checksum_off()?;
        if let Some((addr, prefix_len)) = opts.host_addr {
            host.addr_add(addr.into(), prefix_len)?;
        }
        node.sysctl("net.ipv4.ip_forward", "1")?;
        for conf in ["all", "default", KXDP_HOST_IF] {
            node.sysctl(&format!("net/ipv4/conf/{conf}/rp_filter"), "0")?;
        }
        engine.up()?;
        host.up()?;
        // The neighbour entry needs the device up to stay (a down device flushes it).
        host.neigh_replace(ENGINE_NEXT_HOP.into(), opts.engine_mac)?;
        let links = KxdpNodeLinks {
            host_ifindex: host.ifindex()?,
            engine_ifindex: engine.ifindex()?,
            host,
            engine,
            host_mac: opts.host_mac,
            engine_mac: opts.engine_mac,
        };
        for cidr in &opts.routes {
            links.route_to_engine(cidr)?;
        }
        Ok(links)
    }

    /// `ip route replace <cidr> via 169.254.77.1 dev kxdp0 onlink`: the host sends traffic
    /// for `cidr` straight to the engine's MAC, no ARP involved.
    pub fn route_to_engine(&self, cidr: &str) -> Result<()> {
        let via = ENGINE_NEXT_HOP.to_string();
        self.host
            .ip(&[
                "route",
                "replace",
                cidr,
                "via",
                &via,
                "dev",
                KXDP_HOST_IF,
                "onlink",
            ])
            .map(drop)
    }

    /// `ip route replace <cidr> dev kxdp0`: the host ARPs on `kxdp0` for every destination in
    /// `cidr`, and the engine must answer.
    pub fn route_to_engine_arp(&self, cidr: &str) -> Result<()> {
        self.host
            .ip(&["route", "replace", cidr, "dev", KXDP_HOST_IF])
            .map(drop)
    }
}
