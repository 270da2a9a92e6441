//! VXLAN encapsulation (RFC 7348), after VPP's `vxlan/encap.c`: forwarding has routed the
//! packet into a tunnel (TTL decremented, MTU checked); here the inner frame gets the tunnel's
//! inner MACs, the tunnel's precomputed 50-byte header is copied into the headroom in front of
//! it (`push_head`, no copy of the packet), and the fields that depend on the packet are
//! patched: outer IPv4 length, DF (copied from the inner header so path MTU discovery works
//! through the tunnel) and checksum (incrementally, RFC 1624), UDP length, and the UDP source
//! port from a hash of the inner flow so ECMP and RSS spread flows (RFC 7348 §5).

use super::{Next, PacketBuf, PacketMeta, Packets, PipelineCounters, for_each};
use crate::tables::{Tables, TunnelId, VXLAN_ENCAP_LEN};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{IpProtocol, Ipv4Packet, L4Ports};

/// RFC 7348 §5: the source port SHOULD be in the dynamic/private range 49152–65535.
const SRC_PORT_BASE: u16 = 49152;
const SRC_PORT_MASK: u16 = 0x3fff;

#[inline]
pub fn run<P: Packets>(
    tables: &Tables,
    pkts: &mut P,
    meta: &mut [PacketMeta],
    counters: &mut PipelineCounters,
) {
    for_each(
        pkts,
        meta,
        |n| match n {
            Next::VxlanEncap(t) => Some(t),
            _ => None,
        },
        |buf, m, tunnel| {
            let verdict = encap(tables, tunnel, buf, usize::from(m.l3));
            if let Verdict::Forward(_) = verdict {
                counters.vxlan_encap += 1;
            }
            m.next = Next::Done(verdict);
        },
    );
}

/// Encapsulates the frame in `buf` (its IPv4 header at `l3`) into `tunnel`.
#[inline]
pub fn encap<B: PacketBuf>(tables: &Tables, tunnel: TunnelId, buf: &mut B, l3: usize) -> Verdict {
    let Some(t) = tables.tunnel(tunnel) else {
        return Verdict::Drop(DropReason::NoTunnel);
    };
    let Some(Ok(ip)) = buf.data().get(l3..).map(Ipv4Packet::new_checked) else {
        return Verdict::Drop(DropReason::MalformedIpv4);
    };
    let inner_len = l3 + usize::from(ip.total_len());
    let dont_frag = ip.dont_frag();
    let src_port = flow_src_port(&ip);
    // Trims Ethernet padding, which would otherwise travel inside the tunnel; cannot fail
    // (shorter than the data) and neither can the rewrite below (l3 ≥ 14, checked by the view).
    if !buf.set_len(inner_len) {
        return Verdict::Drop(DropReason::MalformedIpv4);
    }
    let Some(l2) = buf.data_mut().get_mut(..12) else {
        return Verdict::Drop(DropReason::MalformedIpv4);
    };
    l2.copy_from_slice(t.inner_l2());
    if !buf.push_head(VXLAN_ENCAP_LEN) {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    if !t.write_header(buf.data_mut(), inner_len, dont_frag, src_port) {
        // Only for a frame of nearly 64 KiB, which no UMEM frame holds.
        return Verdict::Drop(DropReason::TooBig);
    }
    Verdict::Forward(t.port())
}

/// The outer UDP source port: a hash of the inner 5-tuple (addresses and protocol only for
/// fragments and non-TCP/UDP), stable per flow, in 49152..=65535.
#[inline]
pub fn flow_src_port<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> u16 {
    let proto = ip.protocol();
    let ports = if (proto == IpProtocol::TCP || proto == IpProtocol::UDP) && !ip.is_fragment() {
        L4Ports::read(ip.payload(), 0).unwrap_or_default()
    } else {
        L4Ports::default()
    };
    let addrs = (u64::from(ip.src_addr().to_bits()) << 32) | u64::from(ip.dst_addr().to_bits());
    let rest = (u64::from(proto.0) << 32) | (u64::from(ports.src) << 16) | u64::from(ports.dst);
    let h = mix(addrs ^ mix(rest));
    // The low bits of a full-avalanche mix are as good as any.
    SRC_PORT_BASE | (h as u16 & SRC_PORT_MASK)
}

/// The splitmix64 finaliser: every input bit affects every output bit.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pipeline::test_support::*;
    use crate::pipeline::{BATCH_SIZE, PacketMeta as Meta, Pipeline, final_verdict};
    use crate::verdict::PortId;
    use proptest::prelude::*;

    /// Checks the outer headers with etherparse; returns (UDP source port, inner frame).
    fn check_outer(f: &[u8]) -> (u16, Vec<u8>) {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("no eth")
        };
        assert_eq!(eth.destination(), GATEWAY_MAC);
        assert_eq!(eth.source(), UPLINK_MAC);
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("no ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(usize::from(h.total_len), f.len() - 14);
        assert_eq!(
            (h.source, h.destination),
            (NODE_IP.octets(), REMOTE_NODE_IP.octets())
        );
        let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
            panic!("no udp")
        };
        assert_eq!(usize::from(udp.length()), f.len() - 34);
        assert_eq!(udp.checksum(), 0);
        assert_eq!(udp.destination_port(), VXLAN_PORT);
        assert!(udp.source_port() >= 49152);
        let vx = udp.payload();
        assert_eq!(&vx[..8], &[0x08, 0, 0, 0, 0, 0, VNI as u8, 0]);
        (udp.source_port(), vx[8..].to_vec())
    }

    #[test]
    fn pod_to_remote_pod_is_encapsulated() {
        let (t, _) = node_tables();
        let f = udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 4000, 100);
        let (v, out) = run_one(&t, POD_A, &f);
        assert_eq!(v, Verdict::Forward(UPLINK));
        assert_eq!(out.len(), f.len() + 50);
        let (sport, inner) = check_outer(&out);
        assert_eq!(&inner[..6], &REMOTE_VTEP_MAC);
        assert_eq!(&inner[6..12], &VTEP_MAC);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&inner[14..])
            .unwrap()
            .to_header();
        assert_eq!(ip.time_to_live, 63);
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let outer_df = etherparse::Ipv4HeaderSlice::from_slice(&out[14..])
            .unwrap()
            .dont_fragment();
        assert!(outer_df, "DF copied from the inner header");
        // Same flow, same port; another flow, (almost surely) another.
        let (_, again) = run_one(&t, POD_A, &f);
        assert_eq!(check_outer(&again).0, sport);
        let (_, other) = run_one(
            &t,
            POD_A,
            &udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 4001, 100),
        );
        assert_ne!(check_outer(&other).0, sport);
    }

    #[test]
    fn padding_is_not_encapsulated_and_headroom_is_needed() {
        let (t, tunnel) = node_tables();
        let f = udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 4000, 2);
        let mut padded = f.clone();
        padded.resize(60, 0);
        let (v, out) = run_one(&t, POD_A, &padded);
        assert_eq!(v, Verdict::Forward(UPLINK));
        assert_eq!(out.len(), f.len() + 50);
        let mut buf = TestBuf::with_headroom(&f, 49);
        assert_eq!(
            encap(&t, tunnel, &mut buf, 14),
            Verdict::Drop(DropReason::NoHeadroom)
        );
        assert_eq!(
            encap(&t, TunnelId(7), &mut buf, 14),
            Verdict::Drop(DropReason::NoTunnel)
        );
    }

    /// Decapsulating on the remote node: tables of a node whose overlay matches our tunnel.
    fn remote_node_tables() -> crate::tables::Tables {
        let spec = tunnel_spec();
        crate::tables::Tables::default()
            .with_overlay(crate::tables::Overlay {
                local_ip: spec.remote,
                vni: spec.vni,
                port: spec.dst_port,
                vtep_mac: spec.inner_dst_mac,
                uplink: PortId(0),
            })
            .with_route4(
                REMOTE_POD_IP,
                32,
                crate::tables::Route::Via(crate::tables::NextHop::new(
                    PortId(1),
                    [0x0a; 6],
                    ROUTER_MAC,
                )),
            )
    }

    proptest! {
        /// Encap here, decap on the remote node: the inner IP packet comes out as it went in
        /// but for the TTL (decremented once per node) and its checksum.
        #[test]
        fn encap_then_decap_is_identity(payload in 0usize..1400, sport: u16, host in 2u8..250,
                                        tcp: bool, df: bool) {
            let (t, _) = node_tables();
            let dst = Ipv4Addr::new(10, 244, 2, host);
            let remote = remote_node_tables().with_route4(dst, 32,
                crate::tables::Route::Via(crate::tables::NextHop::new(PortId(1), [0x0a; 6], ROUTER_MAC)));
            let mut f = if tcp {
                let b = etherparse::PacketBuilder::ethernet2(POD_A_MAC, ROUTER_MAC)
                    .ipv4(POD_A_IP.octets(), dst.octets(), 64)
                    .tcp(sport, 443, 1, 1000);
                let mut v = Vec::new();
                b.write(&mut v, &vec![0x33; payload]).unwrap();
                v
            } else {
                udp_frame(POD_A_IP, dst, 64, sport, payload)
            };
            if !df {
                f[20] &= !0x40;
                let c = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap().to_header().calc_header_checksum();
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
            let (v, out) = run_one(&t, POD_A, &f);
            prop_assert_eq!(v, Verdict::Forward(UPLINK));
            let (port, _) = check_outer(&out);
            prop_assert_eq!(port, flow_src_port(&Ipv4Packet::new_checked(&f[14..]).unwrap()));
            let outer_df = etherparse::Ipv4HeaderSlice::from_slice(&out[14..]).unwrap().dont_fragment();
            prop_assert_eq!(outer_df, df);
            // Remote node: decap and deliver to its pod, decrementing the TTL once more.
            let mut p = Pipeline::default();
            let mut pkts = vec![TestBuf::new(&out)];
            let mut meta = [Meta::default(); BATCH_SIZE];
            p.run_on(&remote, PortId(0), &mut pkts, &mut meta);
            prop_assert_eq!(final_verdict(meta[0]), Verdict::Forward(PortId(1)));
            let back = pkts[0].data();
            prop_assert_eq!(back.len(), f.len());
            let mut expect = f[14..].to_vec();
            let mut got = back[14..].to_vec();
            prop_assert_eq!(got[8], 62);
            // Identity up to TTL and header checksum.
            for b in [&mut expect, &mut got] {
                b[8] = 0;
                b[10] = 0;
                b[11] = 0;
            }
            prop_assert_eq!(got, expect);
            let h = etherparse::Ipv4HeaderSlice::from_slice(&back[14..]).unwrap().to_header();
            prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
        }
    }
}
