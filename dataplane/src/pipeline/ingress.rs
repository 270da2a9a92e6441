//! First stage: validate the Ethernet and IPv4 headers of every received frame, as a router's
//! input path does (RFC 1812 §5.2.2), and hand valid IPv4 packets to forwarding.

use af_xdp::Umem;

use super::{Batch, Next, PacketMeta};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, Ipv4Packet};

#[inline]
pub fn run(umem: &Umem, batch: &mut Batch) {
    let Batch { frames, meta, .. } = batch;
    for (frame, m) in frames.iter_mut().zip(meta.iter_mut()) {
        let view = umem.view(frame);
        *m = classify(view.data());
    }
}

/// The next step for one frame, from its bytes alone.
#[inline]
pub fn classify(data: &[u8]) -> PacketMeta {
    let drop = |r| PacketMeta {
        next: Next::Done(Verdict::Drop(r)),
        l3: 0,
    };
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return drop(DropReason::TruncatedEthernet);
    };
    if eth.ethertype() != EtherType::IPV4 {
        return drop(DropReason::UnsupportedEthertype);
    }
    // Version 4, IHL >= 5, header <= total length <= what arrived; bytes after total_len are
    // allowed (Ethernet padding of short frames).
    let Ok(ip) = Ipv4Packet::new_checked(&data[ETHERNET_HEADER_LEN..]) else {
        return drop(DropReason::MalformedIpv4);
    };
    if !ip.verify_checksum() {
        return drop(DropReason::BadIpv4Checksum);
    }
    PacketMeta {
        next: Next::Ip4Forward,
        l3: ETHERNET_HEADER_LEN as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_frame() -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 1, 1], 64)
            .udp(1000, 2000);
        let mut v = Vec::new();
        builder.write(&mut v, &[7; 18]).expect("write to a Vec");
        v
    }

    #[test]
    fn valid_ipv4_goes_to_forwarding() {
        assert_eq!(classify(&ipv4_frame()).next, Next::Ip4Forward);
    }

    #[test]
    fn bad_headers_are_dropped_with_a_reason() {
        let reason = |d: &[u8]| match classify(d).next {
            Next::Done(Verdict::Drop(r)) => Some(r),
            _ => None,
        };
        let f = ipv4_frame();
        assert_eq!(reason(&f[..10]), Some(DropReason::TruncatedEthernet));
        assert_eq!(reason(&f[..14]), Some(DropReason::MalformedIpv4));
        assert_eq!(reason(&f[..30]), Some(DropReason::MalformedIpv4));
        let mut g = f.clone();
        g[12] = 0x86;
        g[13] = 0xdd;
        assert_eq!(reason(&g), Some(DropReason::UnsupportedEthertype));
        let mut g = f.clone();
        g[24] ^= 1;
        assert_eq!(reason(&g), Some(DropReason::BadIpv4Checksum));
        let mut g = f.clone();
        g[14] = 0x44; // IHL 4
        assert_eq!(reason(&g), Some(DropReason::MalformedIpv4));
        let mut g = f;
        g[16] = 0xff; // total length beyond the frame
        assert_eq!(reason(&g), Some(DropReason::MalformedIpv4));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = classify(&data);
        }
    }
}
