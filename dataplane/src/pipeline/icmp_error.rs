//! ICMP errors built in place (RFC 792, RFC 1812 §4.3): time exceeded (type 11 code 0) and
//! fragmentation needed (type 3 code 4, with the RFC 1191 next-hop MTU), for packets that
//! forwarding could not send on, and port unreachable (type 3 code 3) for UDP to a service
//! frontend without endpoints ([`service_nat`](super::service_nat)).
//!
//! The offending frame becomes the error: 28 bytes are pushed in front of its IPv4 header
//! (`push_head`) for the new IPv4 and ICMP headers, the original datagram stays where it is as
//! the quote, and `set_len` cuts it so the error is at most 576 bytes of IP (RFC 1812
//! §4.3.2.3). The source is the node IP (`Tables::router_ip4`), the destination the offending
//! packet's source. The error is then routed like any packet (to a pod, the host, or through a
//! tunnel), marked `local`: no TTL decrement, and never an error about it.
//!
//! No error is sent (the packet is dropped with its original reason) about an ICMP error
//! (RFC 1122 §3.2.2), a non-first fragment, a source that is not one host (0.0.0.0, loopback,
//! multicast, class E, broadcast) or a multicast/broadcast destination (RFC 1812 §4.3.2.7), nor
//! when `router_ip4` is unset. There is no rate limit: an error is one packet out for one in,
//! smaller than it, so it amplifies nothing.

use super::{IcmpError, Next, PacketBuf, PacketMeta, Packets, PipelineCounters, for_each};
use crate::tables::Tables;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{
    DstUnreachableCode, ETHERNET_HEADER_LEN, EtherType, EthernetFrame, ICMPV4_ERROR_QUOTE_MAX,
    ICMPV4_HEADER_LEN, IPV4_MIN_HEADER_LEN, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Packet,
    Ipv4Repr, MacAddr, TimeExceededCode,
};

/// Bytes pushed in front of the offending datagram: the new IPv4 and ICMP headers.
const ERROR_HEADERS_LEN: usize = IPV4_MIN_HEADER_LEN + ICMPV4_HEADER_LEN;

/// RFC 1812 §4.3.2.5: ICMP errors SHOULD carry precedence 6 (internetwork control), which is
/// DSCP CS6, as Linux sends them.
const DSCP_CS6: u8 = 48;

/// TTL of the errors we originate (RFC 1700's default, Linux's too).
const ERROR_TTL: u8 = 64;

/// Turns every packet waiting for an ICMP error into that error, or drops it. Returns how many
/// errors were built (and left for another forwarding pass).
#[inline]
pub fn run<P: Packets>(
    tables: &Tables,
    pkts: &mut P,
    meta: &mut [PacketMeta],
    counters: &mut PipelineCounters,
) -> usize {
    let mut built = 0;
    for_each(
        pkts,
        meta,
        |n| match n {
            Next::IcmpError(e) => Some(e),
            _ => None,
        },
        |buf, m, err| match build(tables, buf, m, err) {
            Ok(()) => {
                built += 1;
                match err {
                    IcmpError::TimeExceeded => counters.icmp_time_exceeded += 1,
                    IcmpError::FragNeeded { .. } => counters.icmp_frag_needed += 1,
                    IcmpError::PortUnreachable => counters.service_rejects += 1,
                }
                m.next = Next::Ip4Forward;
                m.local = true;
            }
            Err(r) => m.next = Next::Done(Verdict::Drop(r)),
        },
    );
    built
}

/// Rewrites the frame in `buf` into the ICMP error `err` about it; the new IPv4 header is at
/// `m.l3`, as the old one was. On error the packet is to be dropped with the returned reason.
#[inline]
pub fn build<B: PacketBuf>(
    tables: &Tables,
    buf: &mut B,
    m: &PacketMeta,
    err: IcmpError,
) -> Result<(), DropReason> {
    let reason = err.drop_reason();
    let Some(router_ip) = tables.router_ip4 else {
        return Err(reason);
    };
    let l3 = usize::from(m.l3);
    // The Ethernet header is rewritten below; other L2 framings do not reach this stage.
    if m.local || l3 != ETHERNET_HEADER_LEN {
        return Err(reason);
    }
    let (dst, quote_len) = {
        let Some(Ok(ip)) = buf.data().get(l3..).map(Ipv4Packet::new_checked) else {
            return Err(reason);
        };
        if !may_send_error_about(&ip) {
            return Err(reason);
        }
        let quote_len = usize::from(ip.total_len()).min(ICMPV4_ERROR_QUOTE_MAX);
        (ip.src_addr(), quote_len)
    };
    if !buf.push_head(ERROR_HEADERS_LEN) {
        return Err(DropReason::NoHeadroom);
    }
    // Only shortens: the datagram (at least `quote_len` bytes) is now behind the new headers.
    let icmp_len = ICMPV4_HEADER_LEN + quote_len;
    if !buf.set_len(l3 + IPV4_MIN_HEADER_LEN + icmp_len) {
        return Err(reason);
    }
    let Some((l2, rest)) = buf.data_mut().split_at_mut_checked(l3) else {
        return Err(reason);
    };
    // Forwarding writes both MACs; clear what the headroom held meanwhile.
    let mut eth = EthernetFrame::new_unchecked(l2);
    eth.set_dst_addr(MacAddr::ZERO);
    eth.set_src_addr(MacAddr::ZERO);
    eth.set_ethertype(EtherType::IPV4);
    let Some((ip_hdr, icmp)) = rest.split_at_mut_checked(IPV4_MIN_HEADER_LEN) else {
        return Err(reason);
    };
    Ipv4Repr {
        src_addr: router_ip,
        dst_addr: dst,
        protocol: IpProtocol::ICMP,
        payload_len: icmp_len,
        ttl: ERROR_TTL,
        dscp: DSCP_CS6,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(ip_hdr));
    // `icmp` is the 8-byte header then the quote: what the checksum covers.
    let mut icmp = Icmpv4Packet::new_unchecked(icmp);
    icmp.clear_rest_of_header();
    match err {
        IcmpError::TimeExceeded => {
            icmp.set_msg_type(Icmpv4Type::TIME_EXCEEDED);
            icmp.set_msg_code(TimeExceededCode::TTL_EXCEEDED.0);
        }
        IcmpError::FragNeeded { mtu } => {
            icmp.set_msg_type(Icmpv4Type::DST_UNREACHABLE);
            icmp.set_msg_code(DstUnreachableCode::FRAG_NEEDED.0);
            icmp.set_next_hop_mtu(mtu);
        }
        IcmpError::PortUnreachable => {
            icmp.set_msg_type(Icmpv4Type::DST_UNREACHABLE);
            icmp.set_msg_code(DstUnreachableCode::PORT_UNREACHABLE.0);
        }
    }
    icmp.fill_checksum();
    Ok(())
}

/// RFC 1122 §3.2.2 and RFC 1812 §4.3.2.7: the datagrams an ICMP error must not be sent about.
#[inline]
fn may_send_error_about<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> bool {
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    // Class E (240/4) includes the limited broadcast address.
    let one_host = !(src.is_unspecified()
        || src.is_loopback()
        || src.is_multicast()
        || src.octets()[0] >= 240);
    if !one_host || dst.is_multicast() || dst.is_broadcast() || ip.frag_offset() != 0 {
        return false;
    }
    if ip.protocol() == IpProtocol::ICMP {
        // Only an informational message (echo, ...) may get an error; a cut-short one is not
        // known to be informational.
        return ip
            .payload()
            .first()
            .is_some_and(|&t| !Icmpv4Type(t).is_error());
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pipeline::test_support::*;
    use crate::pipeline::{Pipeline, vxlan_decap};
    use crate::tables::{NextHop, PortInfo, Route};
    use crate::verdict::PortId;
    use proptest::prelude::*;

    /// Parses an error frame with etherparse; checks both checksums and the fixed fields.
    /// Returns (destination, ICMP type, code, bytes 4..8, quote).
    fn parse_error(f: &[u8]) -> (Ipv4Addr, u8, u8, [u8; 4], Vec<u8>) {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("no ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.source, NODE_IP.octets());
        assert_eq!(h.protocol, etherparse::IpNumber::ICMP);
        assert!(!h.dont_fragment);
        assert!(usize::from(h.total_len) <= 576);
        assert_eq!(usize::from(h.total_len), f.len() - 14);
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("no icmp")
        };
        let header = icmp.header();
        let payload = icmp.payload();
        assert_eq!(
            header.checksum,
            header.icmp_type.calc_checksum(payload),
            "ICMP checksum"
        );
        let s = icmp.slice();
        (
            Ipv4Addr::from(h.destination),
            s[0],
            s[1],
            [s[4], s[5], s[6], s[7]],
            payload.to_vec(),
        )
    }

    #[test]
    fn ttl_exceeded_goes_back_to_the_pod() {
        let (t, _) = node_tables();
        let f = udp_frame(POD_A_IP, REMOTE_POD_IP, 1, 1000, 900);
        let mut p = Pipeline::default();
        let (v, out) = run_with(&mut p, &t, POD_A, &f);
        assert_eq!(v, Verdict::Forward(POD_A));
        assert_eq!(&out[..6], &POD_A_MAC);
        assert_eq!(&out[6..12], &ROUTER_MAC);
        let (dst, ty, code, rest, quote) = parse_error(&out);
        assert_eq!((dst, ty, code, rest), (POD_A_IP, 11, 0, [0; 4]));
        // As much of the original as fits in 576 bytes, unchanged (TTL still 1).
        assert_eq!(quote.len(), 576 - 28);
        assert_eq!(&quote[..], &f[14..14 + 548]);
        assert_eq!(out[14 + 8], 64, "our own TTL, not decremented");
        assert_eq!(p.counters().icmp_time_exceeded, 1);
        // A short datagram is quoted whole, padding excluded.
        let mut short = udp_frame(POD_A_IP, REMOTE_POD_IP, 1, 1000, 2);
        short.resize(60, 0);
        let (_, out) = run_one(&t, POD_A, &short);
        assert_eq!(parse_error(&out).4, &short[14..14 + 30]);
    }

    #[test]
    fn frag_needed_for_the_tunnel_and_for_a_small_link() {
        let (t, _) = node_tables();
        // 1480 bytes of IP + 50 > 1500: next-hop MTU 1450.
        let f = udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 1000, 1480 - 28);
        let (v, out) = run_one(&t, POD_A, &f);
        assert_eq!(v, Verdict::Forward(POD_A));
        let (dst, ty, code, rest, quote) = parse_error(&out);
        assert_eq!((dst, ty, code), (POD_A_IP, 3, 4));
        assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1450);
        assert_eq!(&quote[..], &f[14..14 + 548]);
        // 1450 fits.
        let f = udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 1000, 1450 - 28);
        assert_eq!(run_one(&t, POD_A, &f).0, Verdict::Forward(UPLINK));
        // A Via route whose port has a smaller MTU: that MTU.
        let t2 = t.clone().with_port(
            POD_B,
            PortInfo {
                mtu: 1000,
                ..PortInfo::pod(POD_B_IP, POD_B_MAC)
            },
        );
        let f = udp_frame(POD_A_IP, POD_B_IP, 64, 1000, 1200);
        let (v, out) = run_one(&t2, POD_A, &f);
        assert_eq!(v, Verdict::Forward(POD_A));
        let (_, ty, code, rest, _) = parse_error(&out);
        assert_eq!(
            (ty, code, u16::from_be_bytes([rest[2], rest[3]])),
            (3, 4, 1000)
        );
        // DF clear: dropped, no error.
        let mut nodf = f.clone();
        nodf[20] &= !0x40;
        nodf[24..26].copy_from_slice(&[0, 0]);
        let c = etherparse::Ipv4HeaderSlice::from_slice(&nodf[14..])
            .unwrap()
            .to_header()
            .calc_header_checksum();
        nodf[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            run_one(&t2, POD_A, &nodf).0,
            Verdict::Drop(DropReason::TooBig)
        );
    }

    #[test]
    fn errors_reach_the_host_and_remote_pods() {
        let (t, _) = node_tables();
        // From the host (node IP) to a pod, TTL 1: the error goes back out the host port.
        let f = udp_frame(NODE_IP, POD_A_IP, 1, 1000, 10);
        let (v, out) = run_one(&t, HOST, &f);
        assert_eq!(v, Verdict::Forward(HOST));
        assert_eq!(&out[..6], &HOST_VETH_MAC);
        assert_eq!(parse_error(&out).0, NODE_IP);
        // From a remote pod through the tunnel, TTL 1 inside: the error is encapsulated back.
        let mut inner = udp_frame(REMOTE_POD_IP, POD_A_IP, 1, 1000, 10);
        inner[..6].copy_from_slice(&VTEP_MAC);
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, VNI as u8, 0];
        vx.extend_from_slice(&inner);
        let b = etherparse::PacketBuilder::ethernet2(GATEWAY_MAC, UPLINK_MAC)
            .ipv4(REMOTE_NODE_IP.octets(), NODE_IP.octets(), 64)
            .udp(50000, VXLAN_PORT);
        let mut outer = Vec::new();
        b.write(&mut outer, &vx).unwrap();
        let mut p = Pipeline::default();
        let (v, out) = run_with(&mut p, &t, UPLINK, &outer);
        assert_eq!(v, Verdict::Forward(UPLINK));
        let c = *p.counters();
        assert_eq!(
            (c.vxlan_decap, c.icmp_time_exceeded, c.vxlan_encap),
            (1, 1, 1)
        );
        // Decap it as the remote node would, and read the error inside.
        let remote = Tables::default().with_overlay(crate::tables::Overlay {
            local_ip: REMOTE_NODE_IP,
            vni: VNI,
            port: VXLAN_PORT,
            vtep_mac: REMOTE_VTEP_MAC,
            uplink: PortId(0),
        });
        let mut buf = TestBuf::new(&out);
        vxlan_decap::decap(&remote, &mut buf, 14).unwrap();
        let (dst, ty, _, _, quote) = parse_error(buf.data());
        assert_eq!((dst, ty), (REMOTE_POD_IP, 11));
        assert_eq!(&quote[..], &inner[14..]);
    }

    #[test]
    fn no_error_about_errors_fragments_or_odd_sources() {
        let (t, _) = node_tables();
        let ttl1 = |src: Ipv4Addr, dst: Ipv4Addr| udp_frame(src, dst, 1, 1000, 10);
        let dropped = Verdict::Drop(DropReason::TtlExceeded);
        // An ICMP error (time exceeded) with TTL 1, from the host port.
        let icmp = |ty: u8| {
            let b = etherparse::PacketBuilder::ethernet2([2; 6], ROUTER_MAC)
                .ipv4(NODE_IP.octets(), POD_A_IP.octets(), 1)
                .icmpv4(etherparse::Icmpv4Type::Unknown {
                    type_u8: ty,
                    code_u8: 0,
                    bytes5to8: [0; 4],
                });
            let mut v = Vec::new();
            b.write(&mut v, &[0; 28]).unwrap();
            v
        };
        assert_eq!(run_one(&t, HOST, &icmp(11)).0, dropped);
        assert_eq!(run_one(&t, HOST, &icmp(3)).0, dropped);
        // An echo request does get one.
        let (v, out) = run_one(&t, HOST, &icmp(8));
        assert_eq!(v, Verdict::Forward(HOST));
        assert_eq!(parse_error(&out).1, 11);
        // A non-first fragment.
        let mut frag = ttl1(NODE_IP, POD_A_IP);
        frag[20..22].copy_from_slice(&[0x00, 0x10]);
        let c = etherparse::Ipv4HeaderSlice::from_slice(&frag[14..])
            .unwrap()
            .to_header()
            .calc_header_checksum();
        frag[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(run_one(&t, HOST, &frag).0, dropped);
        // Sources that are not one host; a multicast destination.
        let t2 = t.clone().with_route4(
            Ipv4Addr::new(224, 0, 0, 0),
            4,
            Route::Via(NextHop::new(POD_B, [1; 6], ROUTER_MAC)),
        );
        for (src, dst) in [
            (Ipv4Addr::UNSPECIFIED, POD_A_IP),
            (Ipv4Addr::new(127, 0, 0, 1), POD_A_IP),
            (Ipv4Addr::new(240, 0, 0, 1), POD_A_IP),
            (NODE_IP, Ipv4Addr::new(224, 0, 0, 5)),
        ] {
            assert_eq!(
                run_one(&t2, HOST, &ttl1(src, dst)).0,
                dropped,
                "{src} -> {dst}"
            );
        }
        // No router address: just the drop.
        let mut t3 = t.clone();
        t3.router_ip4 = None;
        assert_eq!(
            run_one(&t3, POD_A, &ttl1(POD_A_IP, REMOTE_POD_IP)).0,
            dropped
        );
        // An error that cannot be routed is dropped as what caused it... here: no route.
        let lonely = Tables::default()
            .with_router(ROUTER_MAC, Some(NODE_IP))
            .with_route4(
                POD_B_IP,
                32,
                Route::Via(NextHop::new(POD_B, POD_B_MAC, ROUTER_MAC)),
            );
        assert_eq!(
            run_one(&lonely, UPLINK, &ttl1(POD_A_IP, POD_B_IP)).0,
            Verdict::Drop(DropReason::NoRoute)
        );
    }

    proptest! {
        /// For any size and TTL-1 packet, the error validates and quotes the original prefix.
        #[test]
        fn errors_always_validate(payload in 0usize..1472, options in 0usize..3) {
            let (t, _) = node_tables();
            let mut f = udp_frame(POD_A_IP, REMOTE_POD_IP, 1, 7, payload);
            if options > 0 {
                // Grow the header by `options` words of NOP options.
                let mut g = f[..34].to_vec();
                g.extend(std::iter::repeat_n(1u8, options * 4));
                g.extend_from_slice(&f[34..]);
                g[14] = 0x45 + options as u8;
                let tl = u16::from_be_bytes([g[16], g[17]]) + 4 * options as u16;
                g[16..18].copy_from_slice(&tl.to_be_bytes());
                g[24..26].copy_from_slice(&[0, 0]);
                let c = crate::wire::checksum::checksum(&g[14..14 + 20 + 4 * options]);
                g[24..26].copy_from_slice(&c.to_be_bytes());
                f = g;
            }
            let (v, out) = run_one(&t, POD_A, &f);
            prop_assert_eq!(v, Verdict::Forward(POD_A));
            let (_, ty, _, _, quote) = parse_error(&out);
            prop_assert_eq!(ty, 11);
            let ip_len = f.len() - 14;
            prop_assert_eq!(quote.len(), ip_len.min(548));
            prop_assert_eq!(&quote[..], &f[14..14 + quote.len()]);
        }
    }
}
