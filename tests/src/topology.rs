//! The three-namespace chain used by end-to-end tests and benchmarks:
//!
//! ```text
//!  generator ns                  node ns                        sink ns
//!  veth-gen  ───────────── node-gen   node-sink ─────────────  veth-sink
//!  10.200.1.2/24           10.200.1.1/24  10.200.2.1/24        10.200.2.2/24
//!  fd00:200:1::2/64        fd00:200:1::1  fd00:200:2::1        fd00:200:2::2/64
//!  02:00:00:00:01:02       ..:01:01       ..:02:01             02:00:00:00:02:02
//! ```
//!
//! The generator and sink route the other side's subnets via the node. MACs are fixed (each
//! chain has its own namespaces, so they never clash) and, by default, every neighbour entry is
//! static and permanent: no ARP or neighbour discovery is needed, so a node under test that
//! only forwards (an AF_XDP engine) still gets traffic, and nothing but the test's packets
//! crosses the links once they are up (IPv6 link-local addresses still send a few router
//! solicitations and MLD reports right after link up). The node does not forward in the kernel
//! unless asked ([`TopologyOptions::kernel_forwarding`], [`Topology::enable_kernel_forwarding`]),
//! which is the baseline the engine is compared with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};

use crate::link::Link;
use crate::netns::Netns;
use crate::veth::{Veth, VethOptions};

/// Options for [`Topology::chain3_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyOptions {
    /// Turn on IPv4 and IPv6 forwarding in the node's kernel.
    pub kernel_forwarding: bool,
    /// Queues per veth end (see [`VethOptions::queues`]).
    pub queues: Option<u32>,
    /// MTU on all four veth ends.
    pub mtu: Option<u32>,
    /// Install permanent neighbour entries on all four ends (default true). With false, the
    /// node must answer ARP/ND itself (the kernel does, unless an XDP program eats it).
    pub static_neighbours: bool,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        TopologyOptions {
            kernel_forwarding: false,
            queues: None,
            mtu: None,
            static_neighbours: true,
        }
    }
}

/// One end of a chain link, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub link: Link,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl Iface {
    /// Interface name (namespace-local).
    pub fn name(&self) -> &str {
        self.link.name()
    }
}

/// generator ─veth─ node ─veth─ sink, addressed and routed; see the module docs for the plan.
/// Dropping it deletes the three namespaces and with them both veth pairs.
#[derive(Debug)]
pub struct Topology {
    /// Where test traffic starts (`gen` is a reserved word in Rust 2024).
    pub generator: Netns,
    /// Where the system under test runs.
    pub node: Netns,
    /// Where test traffic ends.
    pub sink: Netns,
    /// In the generator, facing the node.
    pub gen_if: Iface,
    /// In the node, facing the generator.
    pub node_gen_if: Iface,
    /// In the node, facing the sink.
    pub node_sink_if: Iface,
    /// In the sink, facing the node.
    pub sink_if: Iface,
}

struct Plan {
    name: &'static str,
    mac: [u8; 6],
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

const GEN: Plan = Plan {
    name: "veth-gen",
    mac: [0x02, 0, 0, 0, 0x01, 0x02],
    ipv4: Ipv4Addr::new(10, 200, 1, 2),
    ipv6: Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 2),
};
const NODE_GEN: Plan = Plan {
    name: "node-gen",
    mac: [0x02, 0, 0, 0, 0x01, 0x01],
    ipv4: Ipv4Addr::new(10, 200, 1, 1),
    ipv6: Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 1),
};
const NODE_SINK: Plan = Plan {
    name: "node-sink",
    mac: [0x02, 0, 0, 0, 0x02, 0x01],
    ipv4: Ipv4Addr::new(10, 200, 2, 1),
    ipv6: Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 1),
};
const SINK: Plan = Plan {
    name: "veth-sink",
    mac: [0x02, 0, 0, 0, 0x02, 0x02],
    ipv4: Ipv4Addr::new(10, 200, 2, 2),
    ipv6: Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 2),
};
const V4_PREFIX: u8 = 24;
const V6_PREFIX: u8 = 64;

impl Topology {
    /// Builds the chain with default options (no kernel forwarding, static neighbours).
    /// `tag` names the test; the namespaces are `kxdp-<tag>-{gen,node,sink}-<pid>-<n>`.
    pub fn chain3(tag: &str) -> Result<Topology> {
        Topology::chain3_with(tag, &TopologyOptions::default())
    }

    /// Builds the chain.
    pub fn chain3_with(tag: &str, opts: &TopologyOptions) -> Result<Topology> {
        // If anything fails below, the namespaces created so far drop and take the veths.
        let generator = Netns::new(&format!("{tag}-gen"))?;
        let node = Netns::new(&format!("{tag}-node"))?;
        let sink = Netns::new(&format!("{tag}-sink"))?;
        let veth_opts = VethOptions {
            queues: opts.queues,
            mtu: opts.mtu,
        };
        let left = Veth::create_with(&generator, GEN.name, &node, NODE_GEN.name, &veth_opts)
            .context("generator-node veth")?;
        let right = Veth::create_with(&node, NODE_SINK.name, &sink, SINK.name, &veth_opts)
            .context("node-sink veth")?;

        let gen_if = configure(&left.a, &GEN)?;
        let node_gen_if = configure(&left.b, &NODE_GEN)?;
        let node_sink_if = configure(&right.a, &NODE_SINK)?;
        let sink_if = configure(&right.b, &SINK)?;

        if opts.static_neighbours {
            for (link, peer) in [
                (&gen_if, &node_gen_if),
                (&node_gen_if, &gen_if),
                (&node_sink_if, &sink_if),
                (&sink_if, &node_sink_if),
            ] {
                link.link.neigh_replace(peer.ipv4.into(), peer.mac)?;
                link.link.neigh_replace(peer.ipv6.into(), peer.mac)?;
            }
        }

        for (ns, local, via, far) in [
            (&generator, &gen_if, &node_gen_if, &SINK),
            (&sink, &sink_if, &node_sink_if, &GEN),
        ] {
            let v4 = format!("{}/{V4_PREFIX}", net_of_v4(far.ipv4, V4_PREFIX));
            ns.route_add(&v4, Some(via.ipv4.into()), local.name())?;
            let v6 = format!("{}/{V6_PREFIX}", net_of_v6(far.ipv6));
            ns.route_add(&v6, Some(via.ipv6.into()), local.name())?;
        }

        let topo = Topology {
            generator,
            node,
            sink,
            gen_if,
            node_gen_if,
            node_sink_if,
            sink_if,
        };
        if opts.kernel_forwarding {
            topo.enable_kernel_forwarding()?;
        }
        Ok(topo)
    }

    /// Lets the node's kernel route between the two links (IPv4 and IPv6): the baseline.
    pub fn enable_kernel_forwarding(&self) -> Result<()> {
        self.node.sysctl("net.ipv4.ip_forward", "1")?;
        self.node.sysctl("net.ipv6.conf.all.forwarding", "1")
    }

    /// Stops kernel forwarding in the node, e.g. before attaching the engine under test.
    pub fn disable_kernel_forwarding(&self) -> Result<()> {
        self.node.sysctl("net.ipv4.ip_forward", "0")?;
        self.node.sysctl("net.ipv6.conf.all.forwarding", "0")
    }

    /// Generator address on its link (`10.200.1.2`).
    pub fn gen_ip(&self) -> IpAddr {
        self.gen_if.ipv4.into()
    }

    /// Sink address on its link (`10.200.2.2`).
    pub fn sink_ip(&self) -> IpAddr {
        self.sink_if.ipv4.into()
    }
}

fn configure(link: &Link, plan: &Plan) -> Result<Iface> {
    link.set_mac(plan.mac)?;
    link.addr_add(plan.ipv4.into(), V4_PREFIX)?;
    link.addr_add(plan.ipv6.into(), V6_PREFIX)?;
    link.up()?;
    let info = link.info()?;
    Ok(Iface {
        link: link.clone(),
        ifindex: info.ifindex,
        mac: info.mac,
        ipv4: plan.ipv4,
        ipv6: plan.ipv6,
    })
}

/// `10.200.2.2`, 24 → `10.200.2.0` (`ip route add` refuses host bits in the prefix).
fn net_of_v4(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

/// The /64 network of `addr`.
fn net_of_v6(addr: Ipv6Addr) -> Ipv6Addr {
    let bits = u128::from(addr) & !(u128::MAX >> 64);
    Ipv6Addr::from(bits)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::require_root;
    use std::path::Path;

    #[test]
    fn network_math() {
        let sink = Ipv4Addr::new(10, 200, 2, 2);
        assert_eq!(net_of_v4(sink, 24), Ipv4Addr::new(10, 200, 2, 0));
        assert_eq!(net_of_v4(sink, 32), sink);
        assert_eq!(net_of_v4(sink, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            net_of_v6("fd00:200:2::2".parse().unwrap()),
            "fd00:200:2::".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn interface_names_fit() {
        for plan in [&GEN, &NODE_GEN, &NODE_SINK, &SINK] {
            crate::link::check_ifname(plan.name).unwrap();
        }
    }

    #[test]
    fn chain3_forwards_in_the_kernel_and_cleans_up() {
        if !require_root("topology::chain3_forwards_in_the_kernel_and_cleans_up") {
            return;
        }
        let topo = Topology::chain3("chain").unwrap();
        let names: Vec<String> = [&topo.generator, &topo.node, &topo.sink]
            .iter()
            .map(|ns| ns.name().to_owned())
            .collect();
        assert_eq!(topo.gen_if.mac, GEN.mac);
        assert_eq!(topo.sink_if.mac, SINK.mac);
        assert_eq!(
            topo.node.ifindex("node-sink").unwrap(),
            topo.node_sink_if.ifindex
        );
        assert_eq!(topo.node.sysctl_get("net.ipv4.ip_forward").unwrap(), "0");

        // Node addresses answer directly; across the node needs forwarding.
        assert!(crate::ping(
            &topo.generator,
            topo.node_gen_if.ipv4.into(),
            1
        ));
        assert!(!crate::ping(&topo.generator, topo.sink_ip(), 1));
        topo.enable_kernel_forwarding().unwrap();
        assert!(crate::ping(&topo.generator, topo.sink_ip(), 2));
        assert!(crate::ping(&topo.generator, topo.sink_if.ipv6.into(), 2));
        assert!(crate::ping(&topo.sink, topo.gen_ip(), 1));

        let stats = topo.node.link_stats("node-sink").unwrap();
        assert!(stats.tx_packets >= 2, "{stats:?}");

        drop(topo);
        for name in names {
            assert!(
                !Path::new("/run/netns").join(&name).exists(),
                "{name} leaked"
            );
        }
    }

    #[test]
    fn chain3_with_options() {
        if !require_root("topology::chain3_with_options") {
            return;
        }
        let opts = TopologyOptions {
            kernel_forwarding: true,
            queues: Some(2),
            mtu: Some(2000),
            static_neighbours: false,
        };
        let topo = Topology::chain3_with("chainopt", &opts).unwrap();
        assert_eq!(topo.node.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
        let info = topo.node_gen_if.link.info().unwrap();
        assert_eq!((info.mtu, info.rx_queues), (2000, 2));
        // Dynamic neighbours: the kernel resolves them with ARP.
        assert!(crate::ping(&topo.generator, topo.sink_ip(), 2));
    }
}
