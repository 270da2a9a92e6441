//! The benchmark's three namespaces, built through rtnetlink (no `ip` tool):
//!
//! ```text
//!  generator ns               node ns                         sink ns
//!  kb-gen  ──────────── kb-ngen      kb-nsink ──────────────  kb-sink
//!  10.200.1.2/24        10.200.1.1/24  10.200.2.1/24          10.200.2.2/24
//!  02:00:00:00:01:02    ..:01:01       ..:02:01               02:00:00:00:02:02
//! ```
//!
//! MACs are fixed (each run has its own namespaces) and every neighbour entry is permanent, so
//! no ARP crosses the links. The generator and sink route the other side's subnet via the
//! node. Interface names are distinct from the test harness's (`node-gen`, ...) so that veth
//! NAPI threads (`napi/<dev>-<id>`) of a test running beside a benchmark are never taken for
//! ours. Dropping the topology drops the namespaces, and the kernel deletes the veths with them
//! once nothing of ours is left inside.

use std::net::{IpAddr, Ipv4Addr};

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kxdp_control::netlink::{OperState, Route, VethConfig};

use crate::netns::Netns;

/// One end of a link, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
}

/// generator ─veth─ node ─veth─ sink.
#[derive(Debug)]
pub struct Topology {
    pub generator: Netns,
    pub node: Netns,
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
}

const GEN: Plan = Plan {
    name: "kb-gen",
    mac: [0x02, 0, 0, 0, 0x01, 0x02],
    ipv4: Ipv4Addr::new(10, 200, 1, 2),
};
const NODE_GEN: Plan = Plan {
    name: "kb-ngen",
    mac: [0x02, 0, 0, 0, 0x01, 0x01],
    ipv4: Ipv4Addr::new(10, 200, 1, 1),
};
const NODE_SINK: Plan = Plan {
    name: "kb-nsink",
    mac: [0x02, 0, 0, 0, 0x02, 0x01],
    ipv4: Ipv4Addr::new(10, 200, 2, 1),
};
const SINK: Plan = Plan {
    name: "kb-sink",
    mac: [0x02, 0, 0, 0, 0x02, 0x02],
    ipv4: Ipv4Addr::new(10, 200, 2, 2),
};
/// The generator's subnet.
pub const GEN_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 0);
/// The sink's subnet.
pub const SINK_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 0);
const PREFIX: u8 = 24;

impl Topology {
    /// Builds the chain with `queues` TX and RX queues on every veth end (active channels too).
    pub fn chain3(tag: &str, queues: u32) -> Result<Topology> {
        let generator = Netns::new(&format!("{tag}-gen"))?;
        let node = Netns::new(&format!("{tag}-node"))?;
        let sink = Netns::new(&format!("{tag}-sink"))?;
        for (ns, a, peer_ns, b) in [
            (&generator, &GEN, &node, &NODE_GEN),
            (&node, &NODE_SINK, &sink, &SINK),
        ] {
            let cfg = VethConfig::new(a.name, b.name)
                .mac(a.mac)
                .peer_mac(b.mac)
                .queues(queues.max(1));
            ns.netlink()?
                .create_veth(&cfg, Some(peer_ns.fd()))
                .with_context(|| format!("veth {}-{}", a.name, b.name))?;
        }
        let gen_if = configure(&generator, &GEN)?;
        let node_gen_if = configure(&node, &NODE_GEN)?;
        let node_sink_if = configure(&node, &NODE_SINK)?;
        let sink_if = configure(&sink, &SINK)?;
        for (ns, local, peer) in [
            (&generator, &gen_if, &node_gen_if),
            (&node, &node_gen_if, &gen_if),
            (&node, &node_sink_if, &sink_if),
            (&sink, &sink_if, &node_sink_if),
        ] {
            ns.netlink()?
                .replace_permanent_neighbour(local.ifindex, peer.ipv4.into(), peer.mac)?;
        }
        for (ns, local, via, far) in [
            (&generator, &gen_if, &node_gen_if, SINK_NET),
            (&sink, &sink_if, &node_sink_if, GEN_NET),
        ] {
            ns.netlink()?.add_route(
                &Route::new(far.into(), PREFIX)
                    .via(via.ipv4.into())
                    .dev(local.ifindex),
            )?;
        }
        for (ns, iface) in [
            (&generator, &gen_if),
            (&node, &node_gen_if),
            (&node, &node_sink_if),
            (&sink, &sink_if),
        ] {
            wait_oper_up(ns, iface)?;
        }
        Ok(Topology {
            generator,
            node,
            sink,
            gen_if,
            node_gen_if,
            node_sink_if,
            sink_if,
        })
    }

    /// Turns the node's kernel IPv4 forwarding on or off (the baseline path).
    pub fn kernel_forwarding(&self, on: bool) -> Result<()> {
        self.node
            .sysctl("net.ipv4.ip_forward", if on { "1" } else { "0" })
    }

    /// A permanent neighbour entry `ip` → `mac` on one of the node's interfaces.
    pub fn node_neighbour(&self, iface: &Iface, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        self.node
            .netlink()?
            .replace_permanent_neighbour(iface.ifindex, IpAddr::V4(ip), mac)
            .with_context(|| format!("neighbour {ip} on {}", iface.name))
    }
}

/// Waits until the kernel has processed the link's carrier-on event (linkwatch): only then is
/// its qdisc attached; until then every frame sent is dropped.
fn wait_oper_up(ns: &Netns, iface: &Iface) -> Result<()> {
    let mut nl = ns.netlink()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = nl.link(iface.ifindex)?;
        if info.oper_state == OperState::Up {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} not up after 5 s: {:?}",
            iface.name,
            info.oper_state
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn configure(ns: &Netns, plan: &Plan) -> Result<Iface> {
    let mut nl = ns.netlink()?;
    let info = nl.link(plan.name)?;
    nl.add_address(info.index, plan.ipv4.into(), PREFIX)?;
    nl.set_link_up(info.index)?;
    Ok(Iface {
        name: plan.name.to_owned(),
        ifindex: info.index,
        mac: info.mac.unwrap_or(plan.mac),
        ipv4: plan.ipv4,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn chain_is_built_and_forwards_in_the_kernel() {
        if !kxdp_tests::require_root("topology::chain_is_built_and_forwards_in_the_kernel") {
            return;
        }
        let t = Topology::chain3("kb-topo", 2).unwrap();
        let info = t.node.netlink().unwrap().link("kb-ngen").unwrap();
        assert_eq!((info.rx_queues, info.tx_queues), (2, 2));
        assert_eq!(info.mac, Some(NODE_GEN.mac));
        t.kernel_forwarding(true).unwrap();
        // A UDP datagram from the generator reaches a socket in the sink through the node.
        let rx = t
            .sink
            .run(|| std::net::UdpSocket::bind((SINK.ipv4, 9999)))
            .unwrap()
            .unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        t.generator
            .run(|| {
                let s = std::net::UdpSocket::bind((GEN.ipv4, 0)).unwrap();
                s.send_to(b"hi", (SINK.ipv4, 9999)).unwrap();
            })
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.ip()), (&b"hi"[..], IpAddr::V4(GEN.ipv4)));
        assert!(t.sink.link_stats("kb-sink").unwrap().rx_packets >= 1);
    }
}
