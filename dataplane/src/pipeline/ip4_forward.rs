//! IPv4 forwarding: route lookup, TTL check and decrement with an incremental checksum update
//! (RFC 1624), MTU check, and the way out the route names:
//!
//! - `Via`: Ethernet rewrite from the next hop's precomputed 12 bytes, out its port.
//! - `Host`: out the host port with its rewrite, TTL untouched (the host stack is this node,
//!   not a hop); without a host port, [`Verdict::ToHost`].
//! - `Vxlan`: TTL decremented here, the MTU checked against the uplink less the 50 bytes of
//!   encapsulation, then on to [`vxlan_encap`](super::vxlan_encap).
//!
//! The TTL and MTU checks come before any change to the packet, so an ICMP error quotes the
//! header as it arrived (as Linux's `ip_forward` does). A packet the engine built itself (an
//! ICMP error, `meta.local`) keeps its TTL and never causes an error in turn.

use super::{IcmpError, Next, PacketBuf, PacketMeta, Packets, for_each};
use crate::tables::{Route, Tables, VXLAN_OVERHEAD};
use crate::verdict::{DropReason, PortId, Verdict};
use crate::wire::Ipv4Packet;

/// Per-worker state: the last destination and its route, so a burst of one flow does one
/// lookup (VPP skips the lookup when a packet goes where the previous one went).
#[derive(Debug, Default)]
pub struct Ip4Forward {
    last: Option<(u64, u32, Option<Route>)>,
}

impl Ip4Forward {
    #[inline]
    pub fn run<P: Packets>(
        &mut self,
        tables: &Tables,
        in_port: PortId,
        pkts: &mut P,
        meta: &mut [PacketMeta],
    ) {
        for_each(
            pkts,
            meta,
            |n| (n == Next::Ip4Forward).then_some(()),
            |buf, m, ()| m.next = self.forward(tables, in_port, buf.data_mut(), m),
        );
    }

    #[inline]
    fn lookup(&mut self, tables: &Tables, dst: u32) -> Option<Route> {
        if let Some((generation, last_dst, route)) = self.last
            && generation == tables.generation
            && last_dst == dst
        {
            return route;
        }
        let route = tables.routes4.lookup(dst).copied();
        self.last = Some((tables.generation, dst, route));
        route
    }

    /// Forward one packet whose Ethernet and IPv4 headers were validated (ingress, decap, or
    /// built by the engine).
    #[inline]
    pub fn forward(
        &mut self,
        tables: &Tables,
        in_port: PortId,
        data: &mut [u8],
        m: &PacketMeta,
    ) -> Next {
        let done = |v| Next::Done(v);
        let Some(Ok(mut ip)) = data
            .get_mut(usize::from(m.l3)..)
            .map(Ipv4Packet::new_checked)
        else {
            return done(Verdict::Drop(DropReason::MalformedIpv4));
        };
        let route = self.lookup(tables, u32::from(ip.dst_addr()));
        // The host stack is this node, not a hop: its packets keep their TTL. Neither does the
        // engine age what it built itself.
        let mut hop = !m.local;
        // (egress port, bytes the way out adds to the L3 size, L2 rewrite or tunnel)
        let (egress, overhead, out) = match route {
            Some(Route::Via(nh)) => (nh.port, 0, Ok(nh.l2)),
            Some(Route::Vxlan(t)) => match tables.tunnel(t) {
                Some(tunnel) => (tunnel.port(), VXLAN_OVERHEAD, Err(t)),
                None => return done(Verdict::Drop(DropReason::NoTunnel)),
            },
            Some(Route::Host) => {
                let Some(host) = tables.host else {
                    return done(Verdict::ToHost);
                };
                // The host sent us a packet for the host: back out would loop.
                if host.port == in_port && !m.local {
                    return done(Verdict::Drop(DropReason::Hairpin));
                }
                hop = false;
                (host.port, 0, Ok(host.l2))
            }
            Some(Route::Blackhole) => return done(Verdict::Drop(DropReason::Blackhole)),
            Some(Route::Unresolved) => return done(Verdict::Drop(DropReason::NoNeighbour)),
            None => return done(Verdict::Drop(DropReason::NoRoute)),
        };
        // RFC 1812 §5.3.1: a datagram whose TTL would reach zero is not forwarded.
        if hop && ip.ttl() <= 1 {
            return Next::IcmpError(IcmpError::TimeExceeded);
        }
        let mtu = usize::from(tables.port(egress).mtu);
        if usize::from(ip.total_len()) + overhead > mtu {
            // No fragmentation here: with DF clear the packet is dropped (and counted).
            if ip.dont_frag() && !m.local {
                // Fits: mtu ≤ u16::MAX.
                let mtu = mtu.saturating_sub(overhead) as u16;
                return Next::IcmpError(IcmpError::FragNeeded { mtu });
            }
            return done(Verdict::Drop(DropReason::TooBig));
        }
        if hop {
            // Cannot fail: the TTL is above 1.
            let _ = ip.decrement_ttl();
        }
        match out {
            Ok(l2) => {
                if let Some(dst) = data.get_mut(..12) {
                    dst.copy_from_slice(&l2);
                }
                done(Verdict::Forward(egress))
            }
            Err(tunnel) => Next::VxlanEncap(tunnel),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pipeline::{final_verdict, ingress};
    use crate::tables::NextHop;
    use crate::verdict::PortId;

    fn frame(dst: [u8; 4], ttl: u8, payload: usize) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], dst, ttl)
            .udp(1000, 2000);
        let mut v = Vec::new();
        b.write(&mut v, &vec![0x5a; payload]).unwrap();
        v
    }

    fn tables() -> Tables {
        let nh = NextHop::new(PortId(1), [0xaa; 6], [0xbb; 6]);
        Tables::default()
            .with_route4(Ipv4Addr::new(10, 0, 1, 0), 24, Route::Via(nh))
            .with_route4(Ipv4Addr::new(10, 0, 1, 1), 32, Route::Host)
            .with_route4(Ipv4Addr::new(10, 0, 9, 0), 24, Route::Blackhole)
    }

    fn run(data: &mut [u8]) -> Verdict {
        let t = tables();
        let mut m = ingress::classify(&t, PortId(0), data);
        assert_eq!(m.next, Next::Ip4Forward);
        m.next = Ip4Forward::default().forward(&t, PortId(0), data, &m);
        // Without a router address no ICMP error is built: the drop reason is what remains.
        final_verdict(m)
    }

    #[test]
    fn forwards_with_ttl_decrement_and_mac_rewrite() {
        let mut f = frame([10, 0, 1, 7], 64, 18);
        assert_eq!(run(&mut f), Verdict::Forward(PortId(1)));
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!("no ethernet")
        };
        assert_eq!(eth.destination(), [0xaa; 6]);
        assert_eq!(eth.source(), [0xbb; 6]);
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("no ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.time_to_live, 63);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }

    #[test]
    fn host_blackhole_noroute_ttl_and_mtu() {
        assert_eq!(run(&mut frame([10, 0, 1, 1], 64, 18)), Verdict::ToHost);
        assert_eq!(
            run(&mut frame([10, 0, 9, 1], 64, 18)),
            Verdict::Drop(DropReason::Blackhole)
        );
        assert_eq!(
            run(&mut frame([192, 0, 2, 1], 64, 18)),
            Verdict::Drop(DropReason::NoRoute)
        );
        assert_eq!(
            run(&mut frame([10, 0, 1, 7], 1, 18)),
            Verdict::Drop(DropReason::TtlExceeded)
        );
        assert_eq!(
            run(&mut frame([10, 0, 1, 7], 64, 1500)),
            Verdict::Drop(DropReason::TooBig)
        );
    }

    #[test]
    fn host_route_goes_out_the_host_port_without_a_hop() {
        use crate::pipeline::test_support::*;
        let (t, _) = node_tables();
        // TTL 1 is fine: the host is this node.
        let f = udp_frame(POD_A_IP, NODE_IP, 1, 1000, 10);
        let (v, out) = run_one(&t, POD_A, &f);
        assert_eq!(v, Verdict::Forward(HOST));
        assert_eq!(&out[..6], &HOST_VETH_MAC);
        assert_eq!(&out[6..12], &ROUTER_MAC);
        assert_eq!(&out[12..], &f[12..], "IP packet untouched");
        // From the host, for the host: a loop.
        let (v, _) = run_one(&t, HOST, &udp_frame(NODE_IP, NODE_IP, 64, 1000, 10));
        assert_eq!(v, Verdict::Drop(DropReason::Hairpin));
        // Pod to pod on this node: a hop.
        let (v, out) = run_one(&t, POD_A, &udp_frame(POD_A_IP, POD_B_IP, 64, 1000, 10));
        assert_eq!(v, Verdict::Forward(POD_B));
        assert_eq!(&out[..6], &POD_B_MAC);
        assert_eq!(out[22], 63);
    }

    proptest::proptest! {
        /// The header checksum after forwarding is what a recomputation gives, for any header.
        #[test]
        fn checksum_stays_valid(ttl in 2u8.., id in 0u16.., tos in 0u8.., len in 0usize..200, dst in 0u8..) {
            let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4([10, 0, 0, 1], [10, 0, 1, dst], ttl)
                .udp(1, 2);
            let mut f = Vec::new();
            b.write(&mut f, &vec![1; len]).unwrap();
            f[15] = tos;
            f[18..20].copy_from_slice(&id.to_be_bytes());
            let c = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap().to_header().calc_header_checksum();
            f[24..26].copy_from_slice(&c.to_be_bytes());
            let v = run(&mut f);
            proptest::prop_assert_eq!(v, if dst == 1 { Verdict::ToHost } else { Verdict::Forward(PortId(1)) });
            let h = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap().to_header();
            proptest::prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
        }
    }
}
