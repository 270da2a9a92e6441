//! IPv4 forwarding: route lookup, TTL decrement with an incremental checksum update
//! (RFC 1624), MTU check and Ethernet rewrite from the next hop's precomputed 12 bytes.

use af_xdp::Umem;

use super::{Batch, Next};
use crate::tables::{Route, Tables};
use crate::verdict::{DropReason, Verdict};
use crate::wire::Ipv4Packet;

/// Per-worker state: the last destination and its route, so a burst of one flow does one
/// lookup (VPP skips the lookup when a packet goes where the previous one went).
#[derive(Debug, Default)]
pub struct Ip4Forward {
    last: Option<(u64, u32, Option<Route>)>,
}

impl Ip4Forward {
    #[inline]
    pub fn run(&mut self, tables: &Tables, umem: &Umem, batch: &mut Batch) {
        let Batch { frames, meta, .. } = batch;
        for (frame, m) in frames.iter_mut().zip(meta.iter_mut()) {
            if m.next != Next::Ip4Forward {
                continue;
            }
            let mut view = umem.view(frame);
            let verdict = self.forward(tables, view.data_mut(), usize::from(m.l3));
            m.next = Next::Done(verdict);
        }
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

    /// Forward one packet whose Ethernet and IPv4 headers `ingress` validated.
    #[inline]
    fn forward(&mut self, tables: &Tables, data: &mut [u8], l3: usize) -> Verdict {
        let Some(Ok(mut ip)) = data.get_mut(l3..).map(Ipv4Packet::new_checked) else {
            return Verdict::Drop(DropReason::MalformedIpv4);
        };
        let nh = match self.lookup(tables, u32::from(ip.dst_addr())) {
            Some(Route::Via(nh)) => nh,
            Some(Route::Host) => return Verdict::ToHost,
            Some(Route::Blackhole) => return Verdict::Drop(DropReason::Blackhole),
            None => return Verdict::Drop(DropReason::NoRoute),
        };
        if ip.total_len() > tables.port(nh.port).mtu {
            return Verdict::Drop(DropReason::TooBig);
        }
        // RFC 1624 update of the header checksum; None when the TTL would reach zero.
        if ip.decrement_ttl().is_none() {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        data[..12].copy_from_slice(&nh.l2);
        Verdict::Forward(nh.port)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pipeline::ingress;
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
        let m = ingress::classify(data);
        assert_eq!(m.next, Next::Ip4Forward);
        Ip4Forward::default().forward(&tables(), data, usize::from(m.l3))
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
