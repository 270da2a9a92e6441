//! Scenario `nat`: ClusterIP destination NAT. The generator sends UDP to a service address
//! (VIP:80); the node translates it to the service's backend (`:8080`) on the sink side and
//! forwards it. Kernel: `ip_forward` plus an nftables ruleset written like kube-proxy's
//! nftables mode ([`crate::nft`]). kxdp: the same services in its tables (Maglev arrays,
//! conntrack). `--services N` loads N more services with 10 backends each into both, to show
//! whether the lookup cost grows with the table.
//!
//! The measured service has one backend, [`BLACKHOLE_IN_SINK`] (the sink counts and drops);
//! a second service takes the latency probes to the sink's own address.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use af_xdp::bpf::DstKind;
use anyhow::{Context, Result};
use kxdp_dataplane::{
    Backend, BackendSet, Frontend, FrontendKey, FrontendKind, L4Proto, Services, Tables,
};

use super::forward::{from_generator, routed_prefixes, via_node};
use super::frames::{Proto, l4};
use super::runner::progress;
use super::{BLACKHOLE_IN_SINK, PROBE_PORT, RunOptions, Spec, base_tables};
use crate::nft::{self, Applied, NatService};
use crate::topology::Topology;

/// The measured service's address.
pub const VIP_LOAD: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The probes' service.
pub const VIP_PROBE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
/// The service CIDR the engine owns (kube's default 10.96.0.0/12).
pub const SERVICE_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);
pub const SERVICE_PORT: u16 = 80;
/// Backends of every service listen here (the probe receiver too).
pub const BACKEND_PORT: u16 = PROBE_PORT;
/// Extra services: VIP `10.97.0.0 + i`, backends `10.128.0.0 + 10 i + j`, never hit.
const EXTRA_VIP_BASE: u32 = 0x0a61_0000;
const EXTRA_BACKEND_BASE: u32 = 0x0a80_0000;
const EXTRA_BACKENDS: u32 = 10;
/// Most extra services: their VIPs stay inside [`SERVICE_NET`], their backends below
/// 10.190.0.0, away from the benchmark's own subnets.
pub const MAX_EXTRA_SERVICES: u32 = 400_000;

/// The `nat` scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nat;

/// The measured service to `load_backend`, the probe service to `probe_backend`, and `extra`
/// services with 10 backends each.
pub fn services(
    proto: Proto,
    load_backend: Ipv4Addr,
    probe_backend: Ipv4Addr,
    extra: u32,
) -> Vec<NatService> {
    let one = |vip, proto: Proto, backend| NatService {
        vip,
        proto: proto.name(),
        port: SERVICE_PORT,
        endpoints: vec![(backend, BACKEND_PORT)],
    };
    // The probes are UDP whatever the load is.
    let mut v = vec![
        one(VIP_LOAD, proto, load_backend),
        one(VIP_PROBE, Proto::Udp, probe_backend),
    ];
    v.extend((0..extra.min(MAX_EXTRA_SERVICES)).map(|i| {
        NatService {
            vip: Ipv4Addr::from_bits(EXTRA_VIP_BASE + i),
            proto: "udp",
            port: SERVICE_PORT,
            endpoints: (0..EXTRA_BACKENDS)
                .map(|j| {
                    (
                        Ipv4Addr::from_bits(EXTRA_BACKEND_BASE + i * EXTRA_BACKENDS + j),
                        BACKEND_PORT,
                    )
                })
                .collect(),
        }
    }));
    v
}

/// The same services as kxdp's tables hold them (ClusterIP frontends).
pub fn kxdp_services(list: &[NatService]) -> Result<Services> {
    let mut b = Services::builder();
    for s in list {
        let backends: Vec<Backend> = s
            .endpoints
            .iter()
            .map(|&(addr, port)| Backend { addr, port })
            .collect();
        let set = b.add_set(Arc::new(BackendSet::new(&backends, &[])?));
        let key = FrontendKey {
            addr: s.vip,
            proto: if s.proto == "tcp" {
                L4Proto::Tcp
            } else {
                L4Proto::Udp
            },
            port: s.port,
        };
        b.add_frontend(key, Frontend::new(FrontendKind::ClusterIp, set))?;
    }
    Ok(b.build())
}

/// The load frame to the measured VIP.
pub fn load_frame(
    t: &Topology,
    proto: Proto,
    src_port: u16,
    frame_bytes: usize,
) -> Result<Vec<u8>> {
    l4(
        proto,
        from_generator(t),
        via_node(t, VIP_LOAD),
        src_port,
        SERVICE_PORT,
        frame_bytes,
    )
}

/// Kernel path: forwarding on, the ruleset loaded (or unavailable without nft).
pub fn kernel_up(
    t: &Topology,
    o: &RunOptions,
    scenario: &str,
    list: &[NatService],
) -> Result<Option<String>> {
    if list.len() > o.kernel_max_services as usize {
        return Ok(Some(format!(
            "not measured with {} services: nft's load time for kube-proxy's ruleset grows \
             faster than linearly (about 4.5 min for 10k services on the 2-vCPU VM); \
             --kernel-max-services {} allows it",
            list.len(),
            list.len()
        )));
    }
    let rules = nft::ruleset(list);
    let started = Instant::now();
    match nft::apply(&t.node, &rules).context("loading the kube-proxy-style ruleset")? {
        Applied::Unavailable(why) => return Ok(Some(why)),
        Applied::Loaded => progress(
            scenario,
            &format!(
                "nft ruleset of {} services loaded in {:.1} s",
                list.len(),
                started.elapsed().as_secs_f64()
            ),
        ),
    }
    t.kernel_forwarding(true)?;
    Ok(None)
}

pub fn kernel_down(t: &Topology) -> Result<()> {
    t.kernel_forwarding(false)?;
    nft::remove(&t.node)
}

pub fn kernel_description(o: &RunOptions, then: &str) -> String {
    format!(
        "node kernel, ip_forward=1, nftables DNAT as kube-proxy writes it (service-ips vmap → \
         service chain → endpoint chain `dnat to`), {} services{then}",
        2 + o.extra_services
    )
}

impl Spec for Nat {
    fn name(&self) -> &'static str {
        "nat"
    }

    fn has_services(&self) -> bool {
        true
    }

    fn load_frame(
        &self,
        t: &Topology,
        proto: Proto,
        src_port: u16,
        frame_bytes: usize,
    ) -> Result<Vec<u8>> {
        load_frame(t, proto, src_port, frame_bytes)
    }

    fn probe_dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(VIP_PROBE, SERVICE_PORT)
    }

    fn kernel_description(&self, o: &RunOptions) -> String {
        kernel_description(o, "")
    }

    fn kernel_up(&self, t: &Topology, o: &RunOptions) -> Result<Option<String>> {
        let list = services(o.proto, BLACKHOLE_IN_SINK, t.sink_if.ipv4, o.extra_services);
        kernel_up(t, o, self.name(), &list)
    }

    fn kernel_down(&self, t: &Topology) -> Result<()> {
        kernel_down(t)
    }

    fn kxdp_description(&self) -> String {
        "ClusterIP frontends (Maglev, conntrack) and a route per subnet".into()
    }

    fn tables(&self, t: &Topology, o: &RunOptions) -> Result<Tables> {
        let list = services(o.proto, BLACKHOLE_IN_SINK, t.sink_if.ipv4, o.extra_services);
        Ok(base_tables(t).with_services(kxdp_services(&list)?))
    }

    fn owned(&self, t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)> {
        let mut v = routed_prefixes(t);
        v.push((SERVICE_NET.0, SERVICE_NET.1, DstKind::All));
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn extra_services_have_ten_backends_and_stay_in_the_service_cidr() {
        let list = services(
            Proto::Udp,
            BLACKHOLE_IN_SINK,
            Ipv4Addr::new(10, 200, 2, 2),
            1000,
        );
        assert_eq!(list.len(), 1002);
        assert_eq!(list[0].endpoints, [(BLACKHOLE_IN_SINK, 8080)]);
        assert!(list[2..].iter().all(|s| s.endpoints.len() == 10));
        let last = Ipv4Addr::from_bits(EXTRA_VIP_BASE + MAX_EXTRA_SERVICES);
        let mask = u32::MAX << (32 - SERVICE_NET.1);
        assert_eq!(last.to_bits() & mask, SERVICE_NET.0.to_bits());
        let k = kxdp_services(&list).unwrap();
        assert_eq!(k.len(), 1002);
        let fe = k
            .frontend(FrontendKey {
                addr: VIP_LOAD,
                proto: L4Proto::Udp,
                port: 80,
            })
            .unwrap();
        assert_eq!(
            k.set(fe.backends).unwrap().active(),
            [Backend {
                addr: BLACKHOLE_IN_SINK,
                port: 8080
            }]
        );
    }
}
