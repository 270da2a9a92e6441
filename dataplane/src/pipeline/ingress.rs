//! First stage: validate the Ethernet and IPv4 headers of every received frame, as a router's
//! input path does (RFC 1812 §5.2.2), and send each packet where its port's role allows:
//!
//! | port   | ARP             | IPv4                                                        | other |
//! |--------|-----------------|-------------------------------------------------------------|-------|
//! | uplink | drop            | VXLAN to our VTEP (on the overlay uplink) → decap; else fwd | drop  |
//! | pod    | → ARP responder | source must be the pod's address → forward                  | drop  |
//! | host   | → ARP responder | → forward                                                   | drop  |
//!
//! IPv6 is not supported yet: it is a counted drop (`unsupported_ethertype`) on every port.

use super::{Next, PacketBuf, PacketMeta, Packets, for_each};
use crate::tables::{PortRole, Tables};
use crate::verdict::{DropReason, PortId};
use crate::wire::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, L4Ports};

#[inline]
pub fn run<P: Packets>(tables: &Tables, in_port: PortId, pkts: &mut P, meta: &mut [PacketMeta]) {
    // Every received packet starts here, whatever a previous batch left in `meta`.
    for_each(
        pkts,
        meta,
        |_| Some(()),
        |buf, m, ()| {
            *m = classify(tables, in_port, buf.data());
        },
    );
}

/// The next step for one frame received on `in_port`.
#[inline]
pub fn classify(tables: &Tables, in_port: PortId, data: &[u8]) -> PacketMeta {
    let port = tables.port(in_port);
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return PacketMeta::dropped(DropReason::TruncatedEthernet);
    };
    match (eth.ethertype(), port.role) {
        (EtherType::IPV4, _) => {}
        (EtherType::ARP, PortRole::Pod | PortRole::Host) => {
            return PacketMeta {
                next: Next::Arp,
                ..PacketMeta::default()
            };
        }
        _ => return PacketMeta::dropped(DropReason::UnsupportedEthertype),
    }
    let ip = match validate_ipv4(eth.payload()) {
        Ok(ip) => ip,
        Err(r) => return PacketMeta::dropped(r),
    };
    let next = match port.role {
        PortRole::Pod => {
            // Anti-spoofing: a pod may only use its own address. A pod port whose address the
            // control plane has not set yet accepts nothing.
            if port.pod.map(|p| p.ip4) != Some(ip.src_addr()) {
                return PacketMeta::dropped(DropReason::Spoofed);
            }
            Next::Ip4Forward
        }
        PortRole::Host => Next::Ip4Forward,
        PortRole::Uplink if is_for_our_vtep(tables, in_port, &ip) => Next::VxlanDecap,
        PortRole::Uplink => Next::Ip4Forward,
    };
    PacketMeta {
        next,
        l3: ETHERNET_HEADER_LEN as u16,
        local: false,
    }
}

/// The IPv4 checks of a router's input path: version 4, IHL ≥ 5, header ≤ total length ≤ what
/// arrived (bytes after the total length are Ethernet padding), valid header checksum.
#[inline]
pub fn validate_ipv4(l3: &[u8]) -> Result<Ipv4Packet<&[u8]>, DropReason> {
    let ip = Ipv4Packet::new_checked(l3).map_err(|_| DropReason::MalformedIpv4)?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadIpv4Checksum);
    }
    Ok(ip)
}

/// UDP to our VTEP's address and port, on the overlay's uplink. Fragments are left to the host
/// stack, which can reassemble them (VXLAN senders set DF, so they are rare).
#[inline]
fn is_for_our_vtep(tables: &Tables, in_port: PortId, ip: &Ipv4Packet<&[u8]>) -> bool {
    let Some(overlay) = &tables.overlay else {
        return false;
    };
    overlay.uplink == in_port
        && ip.protocol() == IpProtocol::UDP
        && ip.dst_addr() == overlay.local_ip
        && !ip.is_fragment()
        // Too short to hold the ports: let decap count it as malformed VXLAN.
        && L4Ports::read(ip.payload(), 0).is_none_or(|p| p.dst == overlay.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;
    use crate::tables::PortInfo;
    use crate::verdict::Verdict;

    fn ipv4_frame() -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 1, 1], 64)
            .udp(1000, 2000);
        let mut v = Vec::new();
        builder.write(&mut v, &[7; 18]).expect("write to a Vec");
        v
    }

    fn uplink(d: &[u8]) -> PacketMeta {
        classify(&Tables::default(), PortId(0), d)
    }

    fn reason(m: PacketMeta) -> Option<DropReason> {
        match m.next {
            Next::Done(Verdict::Drop(r)) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn valid_ipv4_goes_to_forwarding() {
        assert_eq!(uplink(&ipv4_frame()).next, Next::Ip4Forward);
    }

    #[test]
    fn bad_headers_are_dropped_with_a_reason() {
        let reason = |d: &[u8]| reason(uplink(d));
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

    #[test]
    fn port_roles_decide_where_packets_go() {
        let (t, _) = node_tables();
        let (pod, host, up) = (POD_A, HOST, UPLINK);
        let mut arp = ipv4_frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(classify(&t, pod, &arp).next, Next::Arp);
        assert_eq!(classify(&t, host, &arp).next, Next::Arp);
        assert_eq!(
            reason(classify(&t, up, &arp)),
            Some(DropReason::UnsupportedEthertype)
        );
        let mut v6 = ipv4_frame();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        for p in [&pod, &host, &up] {
            assert_eq!(
                reason(classify(&t, *p, &v6)),
                Some(DropReason::UnsupportedEthertype)
            );
        }
        let from_a = udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 1, 10);
        assert_eq!(classify(&t, pod, &from_a).next, Next::Ip4Forward);
        assert_eq!(classify(&t, host, &from_a).next, Next::Ip4Forward);
        let vxlan = udp_frame(REMOTE_NODE_IP, NODE_IP, 64, 1, 10);
        let mut vxlan = vxlan;
        vxlan[36..38].copy_from_slice(&VXLAN_PORT.to_be_bytes());
        let c = etherparse::Ipv4HeaderSlice::from_slice(&vxlan[14..]).unwrap();
        assert_eq!(c.destination_addr(), NODE_IP);
        assert_eq!(classify(&t, up, &vxlan).next, Next::VxlanDecap);
        // Only on the overlay's uplink.
        let t2 = t.clone().with_port(PortId(4), PortInfo::default());
        assert_eq!(classify(&t2, PortId(4), &vxlan).next, Next::Ip4Forward);
        // Not to the overlay port, or to another address: plain forwarding.
        assert_eq!(
            classify(&t, up, &udp_frame(REMOTE_NODE_IP, NODE_IP, 64, 1, 10)).next,
            Next::Ip4Forward
        );
    }

    #[test]
    fn anti_spoofing_on_pod_ports() {
        let (t, _) = node_tables();
        let spoofed = udp_frame(POD_B_IP, REMOTE_POD_IP, 64, 1, 10);
        assert_eq!(
            reason(classify(&t, POD_A, &spoofed)),
            Some(DropReason::Spoofed)
        );
        assert_eq!(classify(&t, POD_B, &spoofed).next, Next::Ip4Forward);
        // A pod port with no address yet accepts nothing.
        let unset = PortInfo {
            pod: None,
            ..t.port(POD_A)
        };
        let t2 = t.clone().with_port(POD_A, unset);
        let own = udp_frame(POD_A_IP, REMOTE_POD_IP, 64, 1, 10);
        assert_eq!(
            reason(classify(&t2, POD_A, &own)),
            Some(DropReason::Spoofed)
        );
        assert_eq!(classify(&t, POD_A, &own).next, Next::Ip4Forward);
        // Through the whole pipeline.
        let (v, _) = run_one(&t, POD_A, &spoofed);
        assert_eq!(v, Verdict::Drop(DropReason::Spoofed));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let (t, _) = node_tables();
            for p in [UPLINK, POD_A, HOST] {
                let _ = classify(&t, p, &data);
            }
        }
    }
}
