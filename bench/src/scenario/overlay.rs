//! Scenario `overlay`: a pod on the node sends to a pod on another node; the node encapsulates
//! in VXLAN (VNI 1, port 8472, flannel's settings) toward that node's VTEP. The sink plays the
//! remote nodes' uplink and counts the VXLAN frames. Kernel: a Linux vxlan device set up the
//! way flannel does (FDB entry, neighbour for the remote gateway, onlink route to its pod
//! CIDR). kxdp: a tunnel route with its precomputed header.
//!
//! Two remote nodes: the load goes to pods of one whose address is
//! [`BLACKHOLE_IN_SINK`] (its frames are counted and dropped by the sink), the probes to a
//! pod address on the sink itself, which runs a vxlan device to decapsulate them.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use af_xdp::bpf::DstKind;
use anyhow::{Context, Result};
use kxdp_control::netlink::Route as NlRoute;
use kxdp_dataplane::tables::TunnelSpec;
use kxdp_dataplane::{PortId, Route, Tables};

use super::forward::{from_generator, routed_prefixes, via_node};
use super::frames::{Proto, VXLAN_BYTES, l4};
use super::{BLACKHOLE_IN_SINK, OTHERHOST_MAC, PROBE_PORT, RunOptions, Spec, base_tables};
use crate::netns::Netns;
use crate::topology::{Iface, Topology};
use kxdp_control::netlink::VxlanConfig;

pub const VNI: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;
/// The node's VTEP (flannel.1) MAC.
pub const NODE_VTEP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];
/// The VTEP MAC of the remote node that takes the load.
pub const REMOTE_VTEP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x02];
/// The sink's VTEP MAC (the remote node that takes the probes).
pub const SINK_VTEP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x03];
/// All pod CIDRs, owned by the engine.
pub const CLUSTER_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
/// The node's vxlan device address (flannel puts the pod CIDR's network address there).
pub const NODE_VTEP_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);
/// The load's remote pod CIDR and a pod in it.
pub const REMOTE_POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
pub const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 100);
/// The probes' remote pod CIDR (on the sink) and the address its vxlan device holds.
pub const SINK_POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 0);
pub const SINK_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 1);
/// The node's vxlan device.
pub const NODE_VXLAN: &str = "kb-vx";

/// A remote node as flannel knows it: pod CIDR (/24), VTEP MAC, node address.
#[derive(Debug, Clone, Copy)]
pub struct RemoteNode {
    pub pod_net: Ipv4Addr,
    pub vtep_mac: [u8; 6],
    pub node_ip: Ipv4Addr,
}

/// The two remote nodes behind the sink: the load's and the probes'.
pub fn remotes_behind_sink(t: &Topology) -> [RemoteNode; 2] {
    [
        RemoteNode {
            pod_net: REMOTE_POD_NET,
            vtep_mac: REMOTE_VTEP_MAC,
            node_ip: BLACKHOLE_IN_SINK,
        },
        RemoteNode {
            pod_net: SINK_POD_NET,
            vtep_mac: SINK_VTEP_MAC,
            node_ip: t.sink_if.ipv4,
        },
    ]
}

/// Creates a flannel-style vxlan device `name` in `ns` on `uplink` (VNI 1, port 8472, no
/// learning), with `address/32`, up, and for each remote node an FDB entry, a neighbour entry
/// for its gateway (the pod CIDR's network address) and an onlink route to its pod CIDR.
pub fn flannel_device(
    ns: &Netns,
    name: &str,
    uplink: &Iface,
    mac: [u8; 6],
    address: Ipv4Addr,
    remotes: &[RemoteNode],
) -> Result<u32> {
    let mut nl = ns.netlink()?;
    nl.create_vxlan(
        &VxlanConfig::new(name, VNI, uplink.ipv4)
            .port(VXLAN_PORT)
            .link(uplink.ifindex)
            .mac(mac),
    )
    .with_context(|| format!("creating vxlan device {name} in {}", ns.name()))?;
    let index = nl.link(name)?.index;
    nl.add_address(index, address.into(), 32)?;
    nl.set_link_up(index)?;
    for r in remotes {
        nl.replace_fdb_entry(index, r.vtep_mac, r.node_ip)?;
        nl.replace_permanent_neighbour(index, IpAddr::V4(r.pod_net), r.vtep_mac)?;
        nl.add_route(
            &NlRoute::new(r.pod_net.into(), 24)
                .via(r.pod_net.into())
                .dev(index)
                .onlink(),
        )
        .with_context(|| format!("route to {}/24 via {name}", r.pod_net))?;
    }
    Ok(index)
}

/// Removes a vxlan device (its addresses, routes and FDB go with it).
pub fn remove_device(ns: &Netns, name: &str) -> Result<()> {
    ns.netlink()?
        .delete_link(name)
        .with_context(|| format!("deleting {name}"))
}

/// The sink as the probes' remote node: a vxlan device holding [`SINK_POD`] that
/// decapsulates what the node sends to its VTEP.
pub fn sink_receives_probes(t: &Topology) -> Result<()> {
    flannel_device(&t.sink, "kb-svx", &t.sink_if, SINK_VTEP_MAC, SINK_POD, &[])?;
    Ok(())
}

/// kxdp's tunnels to the remote nodes behind the sink, out of port 1, and their routes.
pub fn encap_tables(t: &Topology, mut tables: Tables) -> Tables {
    for r in remotes_behind_sink(t) {
        let outer_dst_mac = if r.node_ip == BLACKHOLE_IN_SINK {
            OTHERHOST_MAC
        } else {
            t.sink_if.mac
        };
        let id = tables.add_tunnel(&TunnelSpec {
            port: PortId(1),
            outer_dst_mac,
            outer_src_mac: t.node_sink_if.mac,
            local: t.node_sink_if.ipv4,
            remote: r.node_ip,
            vni: VNI,
            dst_port: VXLAN_PORT,
            inner_dst_mac: r.vtep_mac,
            inner_src_mac: NODE_VTEP_MAC,
        });
        tables = tables.with_route4(r.pod_net, 24, Route::Vxlan(id));
    }
    tables
}

/// The kernel's encapsulation path: the node's flannel.1 toward both remote nodes.
pub fn kernel_encap_up(t: &Topology) -> Result<()> {
    flannel_device(
        &t.node,
        NODE_VXLAN,
        &t.node_sink_if,
        NODE_VTEP_MAC,
        NODE_VTEP_IP,
        &remotes_behind_sink(t),
    )?;
    t.kernel_forwarding(true)
}

pub fn kernel_encap_down(t: &Topology) -> Result<()> {
    t.kernel_forwarding(false)?;
    remove_device(&t.node, NODE_VXLAN)
}

/// The `overlay` scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overlay;

impl Spec for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn sink_extra_bytes(&self) -> usize {
        VXLAN_BYTES
    }

    fn prepare(&self, t: &Topology, _o: &RunOptions) -> Result<()> {
        sink_receives_probes(t)
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
            via_node(t, REMOTE_POD),
            src_port,
            9,
            frame_bytes,
        )
    }

    fn probe_dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(SINK_POD, PROBE_PORT)
    }

    fn kernel_description(&self, _o: &RunOptions) -> String {
        "node kernel, ip_forward=1, flannel-style vxlan device (VNI 1, port 8472, FDB entry, \
         onlink route to the remote pod CIDR)"
            .into()
    }

    fn kernel_up(&self, t: &Topology, _o: &RunOptions) -> Result<Option<String>> {
        kernel_encap_up(t)?;
        Ok(None)
    }

    fn kernel_down(&self, t: &Topology) -> Result<()> {
        kernel_encap_down(t)
    }

    fn kxdp_description(&self) -> String {
        "VXLAN tunnel routes to the remote pod CIDRs (precomputed headers)".into()
    }

    fn tables(&self, t: &Topology, _o: &RunOptions) -> Result<Tables> {
        Ok(encap_tables(t, base_tables(t)))
    }

    fn owned(&self, t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)> {
        let mut v = routed_prefixes(t);
        v.push((CLUSTER_NET.0, CLUSTER_NET.1, DstKind::All));
        v
    }
}
