//! VXLAN decapsulation (RFC 7348) for packets ingress found addressed to our VTEP: check the
//! outer UDP and VXLAN headers and the inner frame, strip the outer bytes with `pull_head`
//! (no copy), and hand the inner IPv4 packet to forwarding as if it had arrived bare.
//!
//! Checks, each a counted drop: UDP length within the IP payload and long enough for VXLAN plus
//! an inner Ethernet header (`malformed_vxlan`); I flag set (`vxlan_bad_flags`); the overlay's
//! VNI (`vxlan_wrong_vni`); inner destination MAC = our VTEP MAC, as flannel's peers address us
//! (`vxlan_wrong_inner_mac`); inner IPv4 (`vxlan_inner_not_ipv4`) with a valid header (the
//! reasons of ingress). Outer IPv4 options are fine: the outer length comes from IHL.
//!
//! A non-zero outer UDP checksum is not verified (RFC 7348 §5 makes that optional): the inner
//! packet carries its own checksums, and the outer header is discarded here.

use super::ingress::validate_ipv4;
use super::{Next, PacketBuf, PacketMeta, Packets, PipelineCounters, for_each};
use crate::tables::Tables;
use crate::verdict::{DropReason, Verdict};
use crate::wire::{
    ETHERNET_HEADER_LEN, EtherType, EthernetFrame, Ipv4Packet, MacAddr, UDP_HEADER_LEN, UdpPacket,
    VXLAN_HEADER_LEN, VxlanHeader,
};

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
        |n| (n == Next::VxlanDecap).then_some(()),
        |buf, m, ()| match decap(tables, buf, usize::from(m.l3)) {
            Ok(()) => {
                counters.vxlan_decap += 1;
                m.next = Next::Ip4Forward;
                m.l3 = ETHERNET_HEADER_LEN as u16;
            }
            Err(r) => m.next = Next::Done(Verdict::Drop(r)),
        },
    );
}

/// Strips the outer headers of the VXLAN packet whose outer IPv4 header (validated by ingress)
/// starts at `l3`, leaving the inner Ethernet frame as the data. Nothing changes on error.
#[inline]
pub fn decap<B: PacketBuf>(tables: &Tables, buf: &mut B, l3: usize) -> Result<(), DropReason> {
    let Some(overlay) = &tables.overlay else {
        // Ingress sends nothing here without an overlay; tables swapped under us cannot happen
        // within a batch, so this is a bug, counted rather than trusted.
        return Err(DropReason::MalformedVxlan);
    };
    let data = buf.data();
    let Some(Ok(ip)) = data.get(l3..).map(Ipv4Packet::new_checked) else {
        return Err(DropReason::MalformedIpv4);
    };
    // new_checked: 8 ≤ UDP length ≤ IP payload (which ends at the IP total length).
    let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::MalformedVxlan)?;
    let vxlan = VxlanHeader::new_checked(udp.payload()).map_err(|_| DropReason::MalformedVxlan)?;
    if !vxlan.i_flag() {
        return Err(DropReason::VxlanBadFlags);
    }
    if vxlan.vni() != overlay.vni {
        return Err(DropReason::VxlanWrongVni);
    }
    let inner = vxlan.payload();
    let eth = EthernetFrame::new_checked(inner).map_err(|_| DropReason::MalformedVxlan)?;
    if eth.dst_addr() != MacAddr(overlay.vtep_mac) {
        return Err(DropReason::VxlanWrongInnerMac);
    }
    if eth.ethertype() != EtherType::IPV4 {
        return Err(DropReason::VxlanInnerNotIpv4);
    }
    validate_ipv4(eth.payload())?;
    let outer_len = l3 + ip.header_len() + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
    let inner_len = inner.len();
    // Both fit: the inner frame lies inside the data, `outer_len` bytes in.
    if !buf.pull_head(outer_len) {
        return Err(DropReason::MalformedVxlan);
    }
    // Drops outer Ethernet padding and anything past the UDP length.
    if !buf.set_len(inner_len) {
        return Err(DropReason::MalformedVxlan);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;

    /// A VXLAN frame to our VTEP carrying `inner` (an Ethernet frame), with `options` bytes of
    /// outer IPv4 options.
    pub(crate) fn vxlan_frame(vni: u32, flags: u8, inner: &[u8], options: usize) -> Vec<u8> {
        let mut vx = vec![
            flags,
            0,
            0,
            0,
            (vni >> 16) as u8,
            (vni >> 8) as u8,
            vni as u8,
            0,
        ];
        vx.extend_from_slice(inner);
        let mut ip = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::UDP,
            REMOTE_NODE_IP.octets(),
            NODE_IP.octets(),
        )
        .unwrap();
        // NOP options, then end of list.
        let mut opts = vec![1u8; options];
        if let Some(l) = opts.last_mut() {
            *l = 0;
        }
        ip.options = etherparse::Ipv4Options::try_from(&opts[..]).unwrap();
        let b = etherparse::PacketBuilder::ethernet2(GATEWAY_MAC, UPLINK_MAC)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(50000, VXLAN_PORT);
        let mut v = Vec::new();
        b.write(&mut v, &vx).unwrap();
        v
    }

    fn inner_frame(dst_mac: [u8; 6]) -> Vec<u8> {
        let mut f = udp_frame(REMOTE_POD_IP, POD_A_IP, 64, 1234, 40);
        f[..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&REMOTE_VTEP_MAC);
        f
    }

    fn dropped(f: &[u8]) -> DropReason {
        let (t, _) = node_tables();
        match run_one(&t, UPLINK, f).0 {
            Verdict::Drop(r) => r,
            other => panic!("not dropped: {other:?}"),
        }
    }

    #[test]
    fn decapsulates_to_a_local_pod_with_and_without_outer_options() {
        let (t, _) = node_tables();
        let inner = inner_frame(VTEP_MAC);
        for options in [0, 4, 12] {
            let mut f = vxlan_frame(VNI, 0x08, &inner, options);
            f.extend_from_slice(&[0; 7]); // trailing padding is cut off
            let (v, out) = run_one(&t, UPLINK, &f);
            assert_eq!(v, Verdict::Forward(POD_A));
            assert_eq!(out.len(), inner.len());
            assert_eq!(&out[..6], &POD_A_MAC);
            assert_eq!(&out[6..12], &ROUTER_MAC);
            assert_eq!(&out[14 + 20..], &inner[14 + 20..]);
            assert_eq!(out[14 + 8], 63, "TTL decremented once");
        }
    }

    #[test]
    fn drops_each_with_its_reason() {
        let inner = inner_frame(VTEP_MAC);
        let good = vxlan_frame(VNI, 0x08, &inner, 0);
        // Cut short: outer IP total length beyond the frame, or UDP with no room for VXLAN.
        assert_eq!(dropped(&good[..good.len() - 1]), DropReason::MalformedIpv4);
        assert_eq!(
            dropped(&vxlan_frame(VNI, 0x08, &[], 0)[..]),
            DropReason::MalformedVxlan
        );
        let short = vxlan_frame(VNI, 0x08, &inner[..10], 0);
        assert_eq!(dropped(&short), DropReason::MalformedVxlan);
        // UDP length larger than the IP payload.
        let mut bad_len = good.clone();
        bad_len[38..40].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(dropped(&bad_len), DropReason::MalformedVxlan);
        assert_eq!(
            dropped(&vxlan_frame(VNI + 1, 0x08, &inner, 0)),
            DropReason::VxlanWrongVni
        );
        assert_eq!(
            dropped(&vxlan_frame(VNI, 0x00, &inner, 0)),
            DropReason::VxlanBadFlags
        );
        assert_eq!(
            dropped(&vxlan_frame(
                VNI,
                0x08,
                &inner_frame([0x0a, 0, 0, 0, 0, 0x99]),
                0
            )),
            DropReason::VxlanWrongInnerMac
        );
        let mut arp = inner.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            dropped(&vxlan_frame(VNI, 0x08, &arp, 0)),
            DropReason::VxlanInnerNotIpv4
        );
        assert_eq!(
            dropped(&vxlan_frame(VNI, 0x08, &inner[..30], 0)),
            DropReason::MalformedIpv4
        );
        let mut bad_sum = inner.clone();
        bad_sum[24] ^= 0x40;
        assert_eq!(
            dropped(&vxlan_frame(VNI, 0x08, &bad_sum, 0)),
            DropReason::BadIpv4Checksum
        );
    }

    proptest::proptest! {
        /// Whatever follows a valid outer header, decap drops or forwards, never panics.
        #[test]
        fn garbage_inside_never_panics(inner in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
                                       flags in proptest::prelude::any::<u8>()) {
            let (t, _) = node_tables();
            let _ = run_one(&t, UPLINK, &vxlan_frame(VNI, flags, &inner, 0));
        }
    }
}
