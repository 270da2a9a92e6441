//! Feeds arbitrary frames through every parser the way the engine walks a packet:
//! Ethernet → ARP | IPv4 | IPv6 → UDP | TCP | ICMPv4 → (UDP port 4789) VXLAN → inner frame.
//!
//! Beyond "no panic", it checks the invariants callers rely on: a `Repr` parses whenever
//! `new_checked` accepted, payloads stay within their length fields, and the incremental
//! rewrites (TTL, addresses, ports) keep a valid checksum valid.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use kxdp_dataplane::wire::{
    ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, L4Ports, TcpPacket, TcpRepr, UdpPacket,
    UdpRepr, VXLAN_UDP_PORT, VxlanHeader, VxlanRepr,
};
use libfuzzer_sys::fuzz_target;

/// VXLAN in VXLAN is legal; two levels are enough to reach every parser from the inside.
const MAX_DEPTH: u8 = 2;

#[derive(Clone, Copy)]
enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

fuzz_target!(|data: &[u8]| {
    frame(data, 0);
});

fn frame(data: &[u8], depth: u8) {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    EthernetRepr::parse(&eth).expect("checked frame parses");
    match eth.ethertype() {
        EtherType::ARP => {
            if let Ok(arp) = ArpPacket::new_checked(eth.payload()) {
                let _ = ArpRepr::parse(&arp);
            }
        }
        EtherType::IPV4 => ipv4(eth.payload(), depth),
        EtherType::IPV6 => ipv6(eth.payload(), depth),
        _ => {}
    }
}

fn ipv4(data: &[u8], depth: u8) {
    let Ok(ip) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let repr = Ipv4Repr::parse(&ip).expect("checked packet parses");
    assert_eq!(repr.payload_len, ip.payload().len());
    assert!(ip.payload().len() + ip.header_len() <= data.len());
    let _ = ip.options();

    // Forwarding and NAT rewrites keep a valid header checksum valid.
    let valid = ip.verify_checksum();
    let mut owned = data.to_vec();
    let mut rw = Ipv4Packet::new_checked(&mut owned[..]).expect("same bytes");
    let _ = rw.decrement_ttl();
    rw.rewrite_src_addr(Ipv4Addr::new(10, 96, 0, 1));
    rw.rewrite_dst_addr(Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(
        rw.verify_checksum(),
        valid,
        "incremental update changed validity"
    );

    if ip.frag_offset() != 0 {
        return; // only the first fragment carries the L4 header
    }
    transport(
        ip.protocol(),
        ip.payload(),
        Addrs::V4(ip.src_addr(), ip.dst_addr()),
        depth,
    );
}

fn ipv6(data: &[u8], depth: u8) {
    let Ok(ip) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let repr = Ipv6Repr::parse(&ip).expect("checked packet parses");
    assert_eq!(repr.payload_len, ip.payload().len());
    transport(
        ip.next_header(),
        ip.payload(),
        Addrs::V6(ip.src_addr(), ip.dst_addr()),
        depth,
    );
}

fn transport(protocol: IpProtocol, data: &[u8], addrs: Addrs, depth: u8) {
    let _ = L4Ports::read(data, 0);
    match protocol {
        IpProtocol::UDP => udp(data, addrs, depth),
        IpProtocol::TCP => tcp(data, addrs),
        IpProtocol::ICMP => icmpv4(data),
        _ => {}
    }
}

fn udp(data: &[u8], addrs: Addrs, depth: u8) {
    let Ok(udp) = UdpPacket::new_checked(data) else {
        return;
    };
    let repr = UdpRepr::parse(&udp).expect("checked datagram parses");
    assert_eq!(repr.payload_len, udp.payload().len());

    let mut owned = data.to_vec();
    let mut rw = UdpPacket::new_checked(&mut owned[..]).expect("same bytes");
    rw.rewrite_src_port(40000);
    rw.rewrite_dst_port(8080);
    match addrs {
        Addrs::V4(src, dst) => {
            let valid = udp.verify_checksum_v4(src, dst);
            let new_src = Ipv4Addr::new(10, 244, 1, 9);
            rw.update_checksum_for_addr(&src.octets(), &new_src.octets());
            assert_eq!(rw.verify_checksum_v4(new_src, dst), valid);
        }
        Addrs::V6(src, dst) => {
            let valid = udp.verify_checksum_v6(&src, &dst);
            let new_dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);
            rw.update_checksum_for_addr(&dst.octets(), &new_dst.octets());
            assert_eq!(rw.verify_checksum_v6(&src, &new_dst), valid);
        }
    }

    if udp.dst_port() == VXLAN_UDP_PORT
        && depth < MAX_DEPTH
        && let Ok(vxlan) = VxlanHeader::new_checked(udp.payload())
        && VxlanRepr::parse(&vxlan).is_ok()
    {
        frame(vxlan.payload(), depth + 1);
    }
}

fn tcp(data: &[u8], addrs: Addrs) {
    let Ok(tcp) = TcpPacket::new_checked(data) else {
        return;
    };
    let repr = TcpRepr::parse(&tcp).expect("checked segment parses");
    assert_eq!(repr.header_len(), tcp.header_len());
    assert_eq!(repr.payload_len, tcp.payload().len());
    let _ = (tcp.flags(), tcp.syn(), tcp.ack(), tcp.fin(), tcp.rst());

    let mut owned = data.to_vec();
    let mut rw = TcpPacket::new_checked(&mut owned[..]).expect("same bytes");
    rw.rewrite_dst_port(8443);
    match addrs {
        Addrs::V4(src, dst) => {
            let valid = tcp.verify_checksum_v4(src, dst);
            let new_dst = Ipv4Addr::new(10, 244, 2, 3);
            rw.update_checksum_for_addr(&dst.octets(), &new_dst.octets());
            assert_eq!(rw.verify_checksum_v4(src, new_dst), valid);
        }
        Addrs::V6(src, dst) => {
            let valid = tcp.verify_checksum_v6(&src, &dst);
            let new_src = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
            rw.update_checksum_for_addr(&src.octets(), &new_src.octets());
            assert_eq!(rw.verify_checksum_v6(&new_src, &dst), valid);
        }
    }
}

fn icmpv4(data: &[u8]) {
    let Ok(icmp) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        icmp.verify_checksum(),
        icmp.echo_ident(),
        icmp.next_hop_mtu(),
    );
    if let Ok(repr) = Icmpv4Repr::parse(&icmp) {
        // Emitting what was parsed gives a message that verifies and parses back the same.
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        let again = Icmpv4Packet::new_checked(&out[..]).expect("emitted message is long enough");
        assert!(again.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&again), Ok(repr));
    }
    if let Ok(quoted) = icmp.quoted_ipv4() {
        let _ = (quoted.src_addr(), quoted.dst_addr(), quoted.protocol());
        let _ = L4Ports::read(quoted.payload(), 0);
    }
}
