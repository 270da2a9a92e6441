//! Scenario `decap`: VXLAN from another node arrives on the node's uplink (node-gen here: the
//! generator plays the remote node) for a local pod (the sink plays the pod side); the node
//! strips the outer headers and forwards the inner packet. Kernel: a flannel-style vxlan
//! device on node-gen, then IP forwarding. kxdp: the overlay's VTEP (VNI, port, MAC) in its
//! tables, the node address's UDP port 8472 steered to it.
//!
//! The load's inner destination is [`BLACKHOLE_IN_SINK`]; the probes come from a vxlan device
//! in the generator namespace (the remote node's own flannel.1), to the sink's address.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use af_xdp::bpf::DstKind;
use anyhow::{Context, Result};
use kxdp_control::netlink::Route as NlRoute;
use kxdp_dataplane::tables::Overlay as OverlayTable;
use kxdp_dataplane::{PortId, Tables};

use super::forward::routed_prefixes;
use super::frames::{Endpoint, Proto, VXLAN_BYTES, l4, vxlan};
use super::overlay::{
    self, NODE_VTEP_IP, NODE_VTEP_MAC, NODE_VXLAN, REMOTE_POD_NET, REMOTE_VTEP_MAC, RemoteNode,
    VNI, VXLAN_PORT,
};
use super::{BLACKHOLE_IN_SINK, PROBE_PORT, RunOptions, Spec, base_tables};
use crate::topology::Topology;

/// The remote pod the load comes from.
const REMOTE_POD_SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
/// The generator's vxlan device address: the probes' source.
const GEN_VTEP_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

/// The `decap` scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decap;

impl Spec for Decap {
    fn name(&self) -> &'static str {
        "decap"
    }

    fn gen_extra_bytes(&self) -> usize {
        VXLAN_BYTES
    }

    /// The generator namespace as the remote node: its flannel.1 sends the probes to the
    /// sink's address through the node's VTEP.
    fn prepare(&self, t: &Topology, _o: &RunOptions) -> Result<()> {
        let index = overlay::flannel_device(
            &t.generator,
            "kb-gvx",
            &t.gen_if,
            REMOTE_VTEP_MAC,
            GEN_VTEP_IP,
            &[],
        )?;
        let mut nl = t.generator.netlink()?;
        nl.replace_fdb_entry(index, NODE_VTEP_MAC, t.node_gen_if.ipv4)?;
        nl.replace_permanent_neighbour(index, IpAddr::V4(NODE_VTEP_IP), NODE_VTEP_MAC)?;
        nl.add_route(
            &NlRoute::new(t.sink_if.ipv4.into(), 32)
                .via(NODE_VTEP_IP.into())
                .dev(index)
                .onlink()
                .prefsrc(GEN_VTEP_IP.into()),
        )
        .context("probe route through the generator's vxlan device")?;
        Ok(())
    }

    fn load_frame(
        &self,
        t: &Topology,
        proto: Proto,
        src_port: u16,
        frame_bytes: usize,
    ) -> Result<Vec<u8>> {
        let inner = l4(
            proto,
            Endpoint {
                mac: REMOTE_VTEP_MAC,
                ip: REMOTE_POD_SRC,
            },
            Endpoint {
                mac: NODE_VTEP_MAC,
                ip: BLACKHOLE_IN_SINK,
            },
            src_port,
            9,
            frame_bytes,
        )?;
        vxlan(
            Endpoint {
                mac: t.gen_if.mac,
                ip: t.gen_if.ipv4,
            },
            Endpoint {
                mac: t.node_gen_if.mac,
                ip: t.node_gen_if.ipv4,
            },
            src_port,
            VXLAN_PORT,
            VNI,
            &inner,
        )
    }

    fn probe_dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 200, 2, 2), PROBE_PORT)
    }

    fn probe_src(&self, _t: &Topology) -> Ipv4Addr {
        GEN_VTEP_IP
    }

    fn kernel_description(&self, _o: &RunOptions) -> String {
        "node kernel, flannel-style vxlan device on node-gen (VNI 1, port 8472), then \
         ip_forward=1 to the pod side"
            .into()
    }

    fn kernel_up(&self, t: &Topology, _o: &RunOptions) -> Result<Option<String>> {
        overlay::flannel_device(
            &t.node,
            NODE_VXLAN,
            &t.node_gen_if,
            NODE_VTEP_MAC,
            NODE_VTEP_IP,
            &[RemoteNode {
                pod_net: REMOTE_POD_NET,
                vtep_mac: REMOTE_VTEP_MAC,
                node_ip: t.gen_if.ipv4,
            }],
        )?;
        t.kernel_forwarding(true)?;
        Ok(None)
    }

    fn kernel_down(&self, t: &Topology) -> Result<()> {
        overlay::kernel_encap_down(t)
    }

    fn kxdp_description(&self) -> String {
        "the overlay's VTEP (VNI 1, port 8472) on node-gen, then a route per subnet".into()
    }

    fn tables(&self, t: &Topology, _o: &RunOptions) -> Result<Tables> {
        Ok(base_tables(t).with_overlay(OverlayTable {
            local_ip: t.node_gen_if.ipv4,
            vni: VNI,
            port: VXLAN_PORT,
            vtep_mac: NODE_VTEP_MAC,
            uplink: PortId(0),
        }))
    }

    fn owned(&self, t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)> {
        routed_prefixes(t)
    }

    fn udp_ports(&self) -> Vec<u16> {
        vec![VXLAN_PORT]
    }
}
