//! Scenario `nat-overlay`: the full path. The generator sends to a ClusterIP; the node
//! translates it to a backend pod on another node and encapsulates it in VXLAN toward that
//! node. Kernel: the kube-proxy-style nftables DNAT ([`super::nat`]) and the flannel-style
//! vxlan device ([`super::overlay`]). kxdp: services and tunnels in one pass.

use std::net::{Ipv4Addr, SocketAddrV4};

use af_xdp::bpf::DstKind;
use anyhow::Result;
use kxdp_dataplane::Tables;

use super::forward::routed_prefixes;
use super::frames::{Proto, VXLAN_BYTES};
use super::nat::{self, SERVICE_NET, SERVICE_PORT, VIP_PROBE};
use super::overlay::{self, CLUSTER_NET, REMOTE_POD, SINK_POD};
use super::{RunOptions, Spec, base_tables};
use crate::topology::Topology;

/// The `nat-overlay` scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct NatOverlay;

impl Spec for NatOverlay {
    fn name(&self) -> &'static str {
        "nat-overlay"
    }

    fn has_services(&self) -> bool {
        true
    }

    fn sink_extra_bytes(&self) -> usize {
        VXLAN_BYTES
    }

    fn prepare(&self, t: &Topology, _o: &RunOptions) -> Result<()> {
        overlay::sink_receives_probes(t)
    }

    fn load_frame(
        &self,
        t: &Topology,
        proto: Proto,
        src_port: u16,
        frame_bytes: usize,
    ) -> Result<Vec<u8>> {
        nat::load_frame(t, proto, src_port, frame_bytes)
    }

    fn probe_dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(VIP_PROBE, SERVICE_PORT)
    }

    fn kernel_description(&self, o: &RunOptions) -> String {
        nat::kernel_description(
            o,
            ", then a flannel-style vxlan device (VNI 1, port 8472) to the backend's node",
        )
    }

    fn kernel_up(&self, t: &Topology, o: &RunOptions) -> Result<Option<String>> {
        let list = nat::services(o.proto, REMOTE_POD, SINK_POD, o.extra_services);
        if let Some(why) = nat::kernel_up(t, o, self.name(), &list)? {
            return Ok(Some(why));
        }
        overlay::kernel_encap_up(t)?;
        Ok(None)
    }

    fn kernel_down(&self, t: &Topology) -> Result<()> {
        overlay::kernel_encap_down(t)?;
        nat::kernel_down(t)
    }

    fn kxdp_description(&self) -> String {
        "ClusterIP frontends (Maglev, conntrack), then VXLAN tunnel routes".into()
    }

    fn tables(&self, t: &Topology, o: &RunOptions) -> Result<Tables> {
        let list = nat::services(o.proto, REMOTE_POD, SINK_POD, o.extra_services);
        Ok(overlay::encap_tables(t, base_tables(t)).with_services(nat::kxdp_services(&list)?))
    }

    fn owned(&self, t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)> {
        let mut v = routed_prefixes(t);
        v.push((SERVICE_NET.0, SERVICE_NET.1, DstKind::All));
        v.push((CLUSTER_NET.0, CLUSTER_NET.1, DstKind::All));
        v
    }
}
