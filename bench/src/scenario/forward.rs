//! Scenario `forward`: UDP frames from the generator through the node to the sink, IPv4
//! forwarding with TTL decrement and MAC rewrite. Kernel: `net.ipv4.ip_forward=1`. kxdp: a
//! route per subnet. With `--dpdk`, DPDK testpmd too (mac forwarding over the net_af_xdp PMD,
//! no routing: the userspace I/O ceiling; see [`crate::dpdk`]). The load goes to
//! [`BLACKHOLE_IN_SINK`](super::BLACKHOLE_IN_SINK) (a MAC nobody has: the sink counts and drops
//! it), the probes to the sink's own address.

use std::net::{Ipv4Addr, SocketAddrV4};

use af_xdp::bpf::DstKind;
use anyhow::Result;
use kxdp_dataplane::Tables;

use super::frames::{Endpoint, Proto, l4};
use super::{BLACKHOLE_IN_SINK, PROBE_PORT, RunOptions, Spec, base_tables};
use crate::topology::{GEN_NET, SINK_NET, Topology};

/// The `forward` scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward;

/// The generator's end of every frame it sends to the node.
pub fn from_generator(t: &Topology) -> Endpoint {
    Endpoint {
        mac: t.gen_if.mac,
        ip: t.gen_if.ipv4,
    }
}

/// `ip` behind the node's generator-facing MAC.
pub fn via_node(t: &Topology, ip: Ipv4Addr) -> Endpoint {
    Endpoint {
        mac: t.node_gen_if.mac,
        ip,
    }
}

impl Spec for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn load_frame(
        &self,
        t: &Topology,
        proto: Proto,
        src_port: u16,
        frame_bytes: usize,
    ) -> Result<Vec<u8>> {
        l4(
            proto,
            from_generator(t),
            via_node(t, BLACKHOLE_IN_SINK),
            src_port,
            9,
            frame_bytes,
        )
    }

    fn probe_dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 200, 2, 2), PROBE_PORT)
    }

    fn kernel_description(&self, _o: &RunOptions) -> String {
        "node kernel, net.ipv4.ip_forward=1".into()
    }

    fn kernel_up(&self, t: &Topology, _o: &RunOptions) -> Result<Option<String>> {
        t.kernel_forwarding(true)?;
        Ok(None)
    }

    fn kernel_down(&self, t: &Topology) -> Result<()> {
        t.kernel_forwarding(false)
    }

    fn kxdp_description(&self) -> String {
        "a route per subnet".into()
    }

    fn tables(&self, t: &Topology, _o: &RunOptions) -> Result<Tables> {
        Ok(base_tables(t))
    }

    fn owned(&self, t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)> {
        routed_prefixes(t)
    }

    fn dpdk_path(&self) -> bool {
        true
    }
}

/// The routed prefixes are the engine's; the node's own addresses stay with the kernel.
pub fn routed_prefixes(t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)> {
    vec![
        (GEN_NET, 24, DstKind::All),
        (SINK_NET, 24, DstKind::All),
        (t.node_gen_if.ipv4, 32, DstKind::PortsOnly),
        (t.node_sink_if.ipv4, 32, DstKind::PortsOnly),
    ]
}
