//! Service NAT through the whole pipeline: packets built and checked with etherparse.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use proptest::prelude::*;

use crate::conntrack::{
    Conntrack, TCP_ESTABLISHED_TIMEOUT, TCP_SYN_TIMEOUT, UDP_STREAM_TIMEOUT, UDP_TIMEOUT,
};
use crate::pipeline::test_support::*;
use crate::pipeline::{BATCH_SIZE, PacketBuf, PacketMeta, Pipeline, final_verdict};
use crate::tables::{
    Backend, BackendSet, Frontend, FrontendKey, FrontendKind, L4Proto, Services, SessionAffinity,
    SourceNat, Tables,
};
use crate::verdict::{DropReason, PortId, Verdict};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VPORT: u16 = 80;
const BPORT: u16 = 8080;
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn be(addr: Ipv4Addr) -> Backend {
    Backend { addr, port: BPORT }
}

/// ClusterIP VIP:80 over TCP and UDP, and a LoadBalancer LB_IP:80 (TCP), all to one set.
fn services(active: &[Backend], draining: &[Backend], tweak: impl Fn(&mut Frontend)) -> Services {
    let mut b = Services::builder();
    let set = b.add_set(Arc::new(BackendSet::new(active, draining).unwrap()));
    for (addr, proto, kind) in [
        (VIP, L4Proto::Tcp, FrontendKind::ClusterIp),
        (VIP, L4Proto::Udp, FrontendKind::ClusterIp),
        (LB_IP, L4Proto::Tcp, FrontendKind::LoadBalancer),
    ] {
        let mut fe = Frontend::new(kind, set);
        tweak(&mut fe);
        b.add_frontend(
            FrontendKey {
                addr,
                proto,
                port: VPORT,
            },
            fe,
        )
        .unwrap();
    }
    b.build()
}

fn tables(s: Services) -> Tables {
    node_tables().0.with_services(s)
}

#[derive(Clone, Copy, Default)]
struct Seg {
    syn: bool,
    ack: Option<u32>,
    fin: bool,
    rst: bool,
    seq: u32,
}

const SYN: Seg = Seg {
    syn: true,
    ack: None,
    fin: false,
    rst: false,
    seq: 1000,
};

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, s: Seg, payload: &[u8]) -> Vec<u8> {
    let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], ROUTER_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, s.seq, 1000);
    if s.syn {
        b = b.syn();
    }
    if let Some(a) = s.ack {
        b = b.ack(a);
    }
    if s.fin {
        b = b.fin();
    }
    if s.rst {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], ROUTER_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn run_at(p: &mut Pipeline, t: &Tables, port: PortId, f: &[u8], now: u32) -> (Verdict, Vec<u8>) {
    let mut pkts = vec![TestBuf::new(f)];
    let mut meta = [PacketMeta::default(); BATCH_SIZE];
    p.run_on_at(t, port, &mut pkts, &mut meta, now);
    (final_verdict(meta[0]), pkts[0].data().to_vec())
}

/// (src, sport, dst, dport) of a TCP or UDP frame, after checking the IPv4 and L4 checksums
/// with etherparse (a UDP checksum of 0 is accepted as "none").
fn tuple(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("no ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let (sport, dport) = match &p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            let want = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(th.checksum, want, "TCP checksum");
            (th.source_port, th.destination_port)
        }
        Some(etherparse::TransportSlice::Udp(u)) => {
            let uh = u.to_header();
            if uh.checksum != 0 {
                let want = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(uh.checksum, want, "UDP checksum");
            }
            (uh.source_port, uh.destination_port)
        }
        _ => panic!("no tcp/udp"),
    };
    (h.source.into(), sport, h.destination.into(), dport)
}

fn tcp_header(f: &[u8]) -> etherparse::TcpHeader {
    match etherparse::SlicedPacket::from_ethernet(f)
        .unwrap()
        .transport
    {
        Some(etherparse::TransportSlice::Tcp(t)) => t.to_header(),
        _ => panic!("no tcp"),
    }
}

#[test]
fn clusterip_flow_and_its_replies_on_another_worker() {
    let t = tables(services(&[be(POD_B_IP)], &[], |_| {}));
    let ct = Arc::new(Conntrack::new(1024, 64));
    let (mut w1, mut w2) = (Pipeline::new(ct.clone()), Pipeline::new(ct));
    // SYN from pod A to the VIP: to pod B's port 8080.
    let (v, out) = run_at(
        &mut w1,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 40000, VPORT, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_B));
    assert_eq!(tuple(&out), (POD_A_IP, 40000, POD_B_IP, BPORT));
    assert_eq!(&out[..6], &POD_B_MAC);
    // SYN-ACK from pod B, on the other worker: from the VIP again.
    let synack = Seg {
        syn: true,
        ack: Some(1001),
        seq: 5000,
        ..Seg::default()
    };
    let reply = tcp(POD_B_IP, POD_A_IP, BPORT, 40000, synack, &[]);
    let (v, out) = run_at(&mut w2, &t, POD_B, &reply, 0);
    assert_eq!(v, Verdict::Forward(POD_A));
    assert_eq!(tuple(&out), (VIP, VPORT, POD_A_IP, 40000));
    let (c1, c2) = (*w1.counters(), *w2.counters());
    assert_eq!((c1.nat_forward, c2.nat_reverse), (1, 1));
    assert_eq!(c1.ct_inserts, 2, "both directions");
    // Data both ways, many packets: same backend, payload intact.
    for i in 0..5u32 {
        let data = Seg {
            ack: Some(5001),
            seq: 1001 + i,
            ..Seg::default()
        };
        let (_, out) = run_at(
            &mut w2,
            &t,
            POD_A,
            &tcp(POD_A_IP, VIP, 40000, VPORT, data, b"hello"),
            1,
        );
        assert_eq!(tuple(&out).2, POD_B_IP);
        assert_eq!(&out[out.len() - 5..], b"hello");
    }
    // Traffic that is not for a service is left alone.
    let plain = udp(POD_A_IP, POD_B_IP, 1, BPORT, b"x");
    let (v, out) = run_at(&mut w1, &t, POD_A, &plain, 1);
    assert_eq!(v, Verdict::Forward(POD_B));
    assert_eq!(tuple(&out), (POD_A_IP, 1, POD_B_IP, BPORT));
    // A reply-looking packet with no flow behind it is left alone too.
    let stray = tcp(POD_B_IP, POD_A_IP, BPORT, 40001, synack, &[]);
    let (_, out) = run_at(&mut w1, &t, POD_B, &stray, 1);
    assert_eq!(tuple(&out).0, POD_B_IP);
}

#[test]
fn maglev_spreads_flows_and_udp_checksum_zero_stays_zero() {
    let backends = [
        be(POD_B_IP),
        be(REMOTE_POD_IP),
        be(Ipv4Addr::new(10, 244, 3, 4)),
    ];
    let t = tables(services(&backends, &[], |_| {}));
    let mut p = Pipeline::default();
    let mut hits = [0; 3];
    for sport in 0..300u16 {
        let mut f = udp(POD_A_IP, VIP, 10000 + sport, VPORT, b"payload");
        if sport % 2 == 0 {
            f[40..42].copy_from_slice(&[0, 0]); // no checksum
        }
        let (_, out) = run_at(&mut p, &t, POD_A, &f, 0);
        // Through the tunnel for the remote pod: look at the inner frame then.
        let inner = if out.len() > f.len() {
            &out[50..]
        } else {
            &out[..]
        };
        let (_, _, dst, dport) = tuple(inner);
        assert_eq!(dport, BPORT);
        hits[backends.iter().position(|b| b.addr == dst).unwrap()] += 1;
        if sport % 2 == 0 {
            assert_eq!(&inner[40..42], &[0, 0]);
        }
    }
    assert!(hits.iter().all(|&h| h > 60), "{hits:?}");
}

#[test]
fn backend_removal_moves_the_flow_and_draining_keeps_it() {
    let (b1, b2) = (be(POD_B_IP), be(REMOTE_POD_IP));
    let ct = Arc::new(Conntrack::new(1024, 64));
    let mut p = Pipeline::new(ct);
    let both = tables(services(&[b1, b2], &[], |_| {}));
    // Find a flow on b1 and one on b2.
    let mut on = [None, None];
    for sport in 1000..1100u16 {
        let (_, out) = run_at(
            &mut p,
            &both,
            HOST,
            &udp(NODE_IP, VIP, sport, VPORT, b"a"),
            0,
        );
        let b = if out.len() > 60 { 1 } else { 0 }; // encapsulated: the remote pod
        on[b].get_or_insert(sport);
    }
    let (s1, s2) = (on[0].unwrap(), on[1].unwrap());
    let moved_before = p.counters().nat_backend_moved;
    // b1 terminating: its flow stays, new flows avoid it.
    let draining = tables(services(&[b2], &[b1], |_| {}));
    let (v, _) = run_at(
        &mut p,
        &draining,
        HOST,
        &udp(NODE_IP, VIP, s1, VPORT, b"a"),
        1,
    );
    assert_eq!(v, Verdict::Forward(POD_B));
    for sport in 2000..2050u16 {
        let (v, _) = run_at(
            &mut p,
            &draining,
            HOST,
            &udp(NODE_IP, VIP, sport, VPORT, b"a"),
            1,
        );
        assert_eq!(v, Verdict::Forward(UPLINK));
    }
    // b1 gone: its flow moves at the next packet; b2's flow does not.
    let only_b2 = tables(services(&[b2], &[], |_| {}));
    let (v, _) = run_at(
        &mut p,
        &only_b2,
        HOST,
        &udp(NODE_IP, VIP, s1, VPORT, b"a"),
        2,
    );
    assert_eq!(v, Verdict::Forward(UPLINK));
    assert_eq!(p.counters().nat_backend_moved, moved_before + 1);
    let (v, _) = run_at(
        &mut p,
        &only_b2,
        HOST,
        &udp(NODE_IP, VIP, s2, VPORT, b"a"),
        2,
    );
    assert_eq!(v, Verdict::Forward(UPLINK));
    assert_eq!(p.counters().nat_backend_moved, moved_before + 1);
    // And it stays moved when b1 comes back (conntrack now says b2).
    let (v, _) = run_at(&mut p, &both, HOST, &udp(NODE_IP, VIP, s1, VPORT, b"a"), 3);
    assert_eq!(v, Verdict::Forward(UPLINK));
}

#[test]
fn timeouts_expire_flows() {
    let t = tables(services(&[be(POD_B_IP)], &[], |_| {}));
    let mut p = Pipeline::default();
    let reply_translated = |p: &mut Pipeline, f: &[u8], now| {
        let (_, out) = run_at(p, &t, POD_B, f, now);
        tuple(&out).0 == VIP
    };
    // UDP without replies: 30 s.
    run_at(
        &mut p,
        &t,
        POD_A,
        &udp(POD_A_IP, VIP, 5000, VPORT, b"q"),
        100,
    );
    let r = udp(POD_B_IP, POD_A_IP, BPORT, 5000, b"r");
    assert!(!reply_translated(&mut p, &r, 100 + UDP_TIMEOUT));
    run_at(
        &mut p,
        &t,
        POD_A,
        &udp(POD_A_IP, VIP, 5001, VPORT, b"q"),
        100,
    );
    let r = udp(POD_B_IP, POD_A_IP, BPORT, 5001, b"r");
    assert!(reply_translated(&mut p, &r, 100 + UDP_TIMEOUT - 1));
    // Replied: a stream, 120 s from the reply.
    let at = 100 + UDP_TIMEOUT - 1;
    assert!(reply_translated(&mut p, &r, at + UDP_STREAM_TIMEOUT - 1));
    assert!(!reply_translated(&mut p, &r, at + 2 * UDP_STREAM_TIMEOUT));
    // TCP: a SYN alone lives 60 s; an established flow hours.
    run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 6000, VPORT, SYN, &[]),
        0,
    );
    let synack = Seg {
        syn: true,
        ack: Some(1001),
        ..Seg::default()
    };
    let sa = tcp(POD_B_IP, POD_A_IP, BPORT, 6000, synack, &[]);
    assert!(!reply_translated(&mut p, &sa, TCP_SYN_TIMEOUT));
    run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 6001, VPORT, SYN, &[]),
        0,
    );
    let sa = tcp(POD_B_IP, POD_A_IP, BPORT, 6001, synack, &[]);
    assert!(reply_translated(&mut p, &sa, 1));
    let ack = Seg {
        ack: Some(1),
        seq: 1001,
        ..Seg::default()
    };
    run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 6001, VPORT, ack, &[]),
        2,
    );
    let data = tcp(POD_B_IP, POD_A_IP, BPORT, 6001, ack, b"data");
    assert!(reply_translated(
        &mut p,
        &data,
        2 + TCP_ESTABLISHED_TIMEOUT - 1
    ));
    // After a FIN, 10 s.
    let fin = Seg { fin: true, ..ack };
    let f = tcp(POD_B_IP, POD_A_IP, BPORT, 6001, fin, &[]);
    let at = 2 + TCP_ESTABLISHED_TIMEOUT - 1;
    assert!(reply_translated(&mut p, &f, at));
    assert!(!reply_translated(&mut p, &data, at + 11));
}

#[test]
fn a_full_conntrack_evicts_and_still_translates() {
    let t = tables(services(&[be(POD_B_IP)], &[], |_| {}));
    // One bucket of five entries: room for two flows and a half.
    let mut p = Pipeline::new(Arc::new(Conntrack::new(5, 1)));
    for sport in 0..10u16 {
        let (v, out) = run_at(
            &mut p,
            &t,
            POD_A,
            &udp(POD_A_IP, VIP, sport, VPORT, b"a"),
            0,
        );
        assert_eq!(v, Verdict::Forward(POD_B));
        assert_eq!(tuple(&out).2, POD_B_IP);
    }
    let c = p.counters();
    assert_eq!(c.nat_forward, 10);
    assert_eq!(c.ct_inserts, 20);
    assert_eq!(c.ct_evictions, 15);
    assert_eq!(p.conntrack().live_entries(0), 5);
}

#[test]
fn session_affinity_sends_a_client_back() {
    let backends: Vec<Backend> = (1..=8).map(|i| be(Ipv4Addr::new(10, 244, 7, i))).collect();
    let s = services(&backends, &[], |fe| {
        fe.affinity = SessionAffinity::ClientIp { timeout_s: 100 };
    });
    let t = tables(s);
    let mut p = Pipeline::default();
    let dst_of = |p: &mut Pipeline, sport, now| {
        let (_, out) = run_at(p, &t, HOST, &tcp(NODE_IP, VIP, sport, VPORT, SYN, &[]), now);
        tuple(&out).2
    };
    let first = dst_of(&mut p, 1000, 0);
    for sport in 1001..1040 {
        assert_eq!(dst_of(&mut p, sport, 50), first);
    }
    // Renewed at 50; expired by 151: flows spread again.
    let later: std::collections::HashSet<_> =
        (2000..2040).map(|s| dst_of(&mut p, s, 151)).collect();
    assert!(later.len() == 1, "a new affinity is made at 151 and kept");
    let without = tables(services(&backends, &[], |_| {}));
    let mut q = Pipeline::default();
    let spread: std::collections::HashSet<_> = (0..40)
        .map(|s| {
            let (_, out) = run_at(
                &mut q,
                &without,
                HOST,
                &tcp(NODE_IP, VIP, s, VPORT, SYN, &[]),
                0,
            );
            tuple(&out).2
        })
        .collect();
    assert!(spread.len() > 3);
}

#[test]
fn no_endpoints_tcp_gets_a_rst() {
    let t = tables(services(&[], &[be(POD_B_IP)], |_| {}));
    let mut p = Pipeline::default();
    // SYN with 3 bytes of data: ack = seq + 3 + 1.
    let (v, out) = run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 4321, VPORT, SYN, b"abc"),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_A));
    assert_eq!(&out[..6], &POD_A_MAC);
    assert_eq!(out.len(), 54);
    assert_eq!(tuple(&out), (VIP, VPORT, POD_A_IP, 4321));
    let h = tcp_header(&out);
    assert!(h.rst && h.ack && !h.syn);
    assert_eq!((h.sequence_number, h.acknowledgment_number), (0, 1004));
    assert_eq!(p.counters().service_rejects, 1);
    // A segment with ACK: seq = its ack, no ACK flag. FIN counts one.
    let s = Seg {
        ack: Some(777),
        fin: true,
        seq: 5,
        ..Seg::default()
    };
    let (_, out) = run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 4321, VPORT, s, &[]),
        0,
    );
    let h = tcp_header(&out);
    assert!(h.rst && !h.ack);
    assert_eq!(h.sequence_number, 777);
    let s = Seg {
        fin: true,
        seq: 5,
        ..Seg::default()
    };
    let (_, out) = run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 4321, VPORT, s, &[]),
        0,
    );
    assert_eq!(tcp_header(&out).acknowledgment_number, 6);
    // A RST gets nothing back.
    let s = Seg {
        rst: true,
        ..Seg::default()
    };
    let (v, _) = run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 4321, VPORT, s, &[]),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::ServiceNoEndpoints));
    // From a remote pod through the tunnel: the RST goes back through it.
    let (v, _) = run_at(
        &mut p,
        &t,
        HOST,
        &tcp(REMOTE_POD_IP, VIP, 1, VPORT, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(UPLINK));
    // A frontend that drops instead.
    let quiet = tables(services(&[], &[], |fe| fe.reject_no_endpoints = false));
    let (v, _) = run_at(
        &mut p,
        &quiet,
        POD_A,
        &tcp(POD_A_IP, VIP, 1, VPORT, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::ServiceNoEndpoints));
}

#[test]
fn no_endpoints_udp_gets_port_unreachable() {
    let t = tables(services(&[], &[], |_| {}));
    let mut p = Pipeline::default();
    let f = udp(POD_A_IP, VIP, 5353, VPORT, b"question");
    let (v, out) = run_at(&mut p, &t, POD_A, &f, 0);
    assert_eq!(v, Verdict::Forward(POD_A));
    let e = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &e.net else {
        panic!()
    };
    assert_eq!(Ipv4Addr::from(ip.header().source()), NODE_IP);
    assert_eq!(Ipv4Addr::from(ip.header().destination()), POD_A_IP);
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &e.transport else {
        panic!()
    };
    let s = icmp.slice();
    assert_eq!((s[0], s[1]), (3, 3));
    assert_eq!(
        icmp.header().checksum,
        icmp.header().icmp_type.calc_checksum(icmp.payload())
    );
    assert_eq!(icmp.payload(), &f[14..], "the datagram as it came");
    assert_eq!(p.counters().service_rejects, 1);
    // Without a router address: just the drop.
    let mut silent = t.clone();
    silent.router_ip4 = None;
    assert_eq!(
        run_at(&mut p, &silent, POD_A, &f, 0).0,
        Verdict::Drop(DropReason::ServiceNoEndpoints)
    );
}

#[test]
fn load_balancer_source_ranges() {
    let s = services(&[be(POD_B_IP)], &[], |fe| {
        fe.source_ranges = vec![(Ipv4Addr::new(192, 0, 2, 0), 24)].into();
    });
    let t = tables(s);
    let mut p = Pipeline::default();
    let from = |src: Ipv4Addr, dst| tcp(src, dst, 1, VPORT, SYN, &[]);
    let (v, _) = run_at(
        &mut p,
        &t,
        UPLINK,
        &from(Ipv4Addr::new(192, 0, 2, 9), LB_IP),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_B));
    let (v, _) = run_at(
        &mut p,
        &t,
        UPLINK,
        &from(Ipv4Addr::new(198, 51, 100, 1), LB_IP),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::SourceRangeDenied));
    // Not checked on the ClusterIP.
    let (v, _) = run_at(
        &mut p,
        &t,
        UPLINK,
        &from(Ipv4Addr::new(198, 51, 100, 1), VIP),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_B));
}

#[test]
fn fragments() {
    let t = tables(services(&[be(POD_B_IP)], &[], |_| {}));
    let mut p = Pipeline::default();
    let set_frag = |f: &mut Vec<u8>, bits: u16| {
        f[20..22].copy_from_slice(&bits.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    };
    // A first fragment (MF, offset 0) carries the ports: translated.
    let mut first = udp(POD_A_IP, VIP, 7, VPORT, &[1; 64]);
    set_frag(&mut first, 0x2000);
    let (v, out) = run_at(&mut p, &t, POD_A, &first, 0);
    assert_eq!(v, Verdict::Forward(POD_B));
    assert_eq!(&out[30..34], &POD_B_IP.octets());
    // A later fragment has none: untouched (and routed as the VIP is: the default route).
    let mut later = udp(POD_A_IP, VIP, 7, VPORT, &[1; 64]);
    set_frag(&mut later, 0x0008);
    let (v, out) = run_at(&mut p, &t, POD_A, &later, 0);
    assert_eq!(v, Verdict::Forward(UPLINK));
    assert_eq!(&out[30..34], &VIP.octets());
}

/// An ICMP error frame: `outer_src` → `outer_dst`, type/code, quoting `quote` (an IP datagram).
fn icmp_error(outer_src: Ipv4Addr, outer_dst: Ipv4Addr, ty: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x98], ROUTER_MAC)
        .ipv4(outer_src.octets(), outer_dst.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::Unknown {
            type_u8: ty,
            code_u8: code,
            bytes5to8: [0; 4],
        });
    let mut v = Vec::new();
    b.write(&mut v, quote).unwrap();
    v
}

/// Outer (src, dst) of an ICMP error and its quote, after checking the ICMP checksum, the
/// quoted IPv4 checksum and (when whole) the quoted UDP checksum.
fn parse_icmp(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, Vec<u8>) {
    let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(
        icmp.header().checksum,
        icmp.header().icmp_type.calc_checksum(icmp.payload()),
        "ICMP checksum"
    );
    let quote = icmp.payload().to_vec();
    let qh = etherparse::Ipv4HeaderSlice::from_slice(&quote)
        .unwrap()
        .to_header();
    assert_eq!(qh.header_checksum, qh.calc_header_checksum(), "quoted IPv4");
    if let Ok(q) = etherparse::SlicedPacket::from_ip(&quote)
        && let Some(etherparse::TransportSlice::Udp(u)) = &q.transport
        && usize::from(qh.total_len) == quote.len()
    {
        let uh = u.to_header();
        assert_eq!(
            uh.checksum,
            uh.calc_checksum_ipv4(&qh, u.payload()).unwrap()
        );
    }
    (h.source.into(), h.destination.into(), quote)
}

fn quoted_tuple(q: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let port = |at: usize| u16::from_be_bytes([q[at], q[at + 1]]);
    let a = |at: usize| Ipv4Addr::new(q[at], q[at + 1], q[at + 2], q[at + 3]);
    (a(12), port(20), a(16), port(22))
}

#[test]
fn icmp_errors_about_translated_flows_are_translated() {
    let t = tables(services(&[be(POD_B_IP)], &[], |_| {}));
    let mut p = Pipeline::default();
    let (_, dnated) = run_at(
        &mut p,
        &t,
        POD_A,
        &udp(POD_A_IP, VIP, 999, VPORT, b"ping"),
        0,
    );
    // The backend answers with port unreachable about what it got (client → backend).
    let err = icmp_error(POD_B_IP, POD_A_IP, 3, 3, &dnated[14..]);
    let (v, out) = run_at(&mut p, &t, POD_B, &err, 0);
    assert_eq!(v, Verdict::Forward(POD_A));
    let (src, dst, quote) = parse_icmp(&out);
    assert_eq!((src, dst), (VIP, POD_A_IP));
    assert_eq!(quoted_tuple(&quote), (POD_A_IP, 999, VIP, VPORT));
    assert_eq!(p.counters().nat_icmp, 1);
    // A router between us and the backend (outer source not the backend): quote only.
    let hop = Ipv4Addr::new(10, 244, 1, 1);
    let mut err = icmp_error(hop, POD_A_IP, 11, 0, &dnated[14..14 + 28]);
    err.truncate(14 + 20 + 8 + 28);
    let (_, out) = run_at(&mut p, &t, HOST, &err, 0);
    let (src, _, quote) = parse_icmp(&out);
    assert_eq!(src, hop);
    assert_eq!(quoted_tuple(&quote), (POD_A_IP, 999, VIP, VPORT));
    // The client complains about a reply (VIP → client): to the backend, quoting it.
    let (_, reply) = run_at(
        &mut p,
        &t,
        POD_B,
        &udp(POD_B_IP, POD_A_IP, BPORT, 999, b"pong"),
        0,
    );
    assert_eq!(tuple(&reply).0, VIP);
    let err = icmp_error(POD_A_IP, VIP, 3, 3, &reply[14..]);
    let (v, out) = run_at(&mut p, &t, POD_A, &err, 0);
    assert_eq!(v, Verdict::Forward(POD_B));
    let (src, dst, quote) = parse_icmp(&out);
    assert_eq!((src, dst), (POD_A_IP, POD_B_IP));
    assert_eq!(quoted_tuple(&quote), (POD_B_IP, BPORT, POD_A_IP, 999));
    // Not an error (echo), or about another flow: untouched.
    let echo = icmp_error(POD_B_IP, POD_A_IP, 8, 0, &dnated[14..]);
    let (_, out) = run_at(&mut p, &t, POD_B, &echo, 0);
    assert_eq!(&out[26..30], &POD_B_IP.octets());
    assert_eq!(p.counters().nat_icmp, 3);
}

#[test]
fn our_own_errors_about_translated_packets_quote_the_frontend() {
    let t = tables(services(&[be(REMOTE_POD_IP)], &[], |_| {}));
    let mut p = Pipeline::default();
    // TTL 1 to the VIP: translated, then time exceeded at forwarding.
    let mut f = udp(POD_A_IP, VIP, 4444, VPORT, b"x");
    f[22] = 1;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let (v, out) = run_at(&mut p, &t, POD_A, &f, 0);
    assert_eq!(v, Verdict::Forward(POD_A));
    let (src, dst, quote) = parse_icmp(&out);
    assert_eq!((src, dst), (NODE_IP, POD_A_IP));
    assert_eq!(quoted_tuple(&quote), (POD_A_IP, 4444, VIP, VPORT));
    let c = p.counters();
    assert_eq!((c.icmp_time_exceeded, c.nat_icmp), (1, 1));
    // Too big for the tunnel (DF): frag needed, quoting the frontend too.
    let big = udp(POD_A_IP, VIP, 4445, VPORT, &[0; 1460]);
    let (v, out) = run_at(&mut p, &t, POD_A, &big, 0);
    assert_eq!(v, Verdict::Forward(POD_A));
    let (_, _, quote) = parse_icmp(&out);
    assert_eq!(out[34], 3);
    assert_eq!(quoted_tuple(&quote), (POD_A_IP, 4445, VIP, VPORT));
}

proptest! {
    /// DNAT, then the backend's reply reverse-translated: the client sees exactly the tuple it
    /// sent to, reversed, and every checksum stays valid.
    #[test]
    fn dnat_then_reverse_is_the_identity(
        client in any::<[u8; 4]>(),
        vip in any::<[u8; 4]>(),
        backend in any::<[u8; 4]>(),
        (cport, vport, bport) in any::<(u16, u16, u16)>(),
        udp_proto in any::<bool>(),
        no_udp_checksum in any::<bool>(),
        node_port in any::<bool>(),
        (client_in_cluster, backend_in_cluster) in any::<(bool, bool)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        reply_payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (mut client, vip, mut backend) = (Ipv4Addr::from(client), Ipv4Addr::from(vip), Ipv4Addr::from(backend));
        // Pods as often as not: the cluster network's rules apply to them.
        if client_in_cluster {
            client = Ipv4Addr::new(10, 244, 7, client.octets()[3]);
        }
        if backend_in_cluster {
            backend = Ipv4Addr::new(10, 244, 8, backend.octets()[3]);
        }
        prop_assume!(client != vip && client != backend && vip != backend);
        prop_assume!(![client, vip, backend].contains(&NODE_IP));
        // A client that is its own backend is hairpin, tested on its own.
        prop_assume!(client != backend);
        // Not through the tunnel or into the blackhole of the test node's routes.
        prop_assume!([client, backend].iter().all(|a| !matches!(a.octets(), [10, 244, 2 | 9, _])));
        let proto = if udp_proto { L4Proto::Udp } else { L4Proto::Tcp };
        let mut b = Services::builder();
        let set = b.add_set(Arc::new(BackendSet::new(&[Backend { addr: backend, port: bport }], &[]).unwrap()));
        // A NodePort with `externalTrafficPolicy: Cluster` translates the source too.
        let kind = if node_port { FrontendKind::NodePort } else { FrontendKind::ClusterIp };
        b.add_frontend(FrontendKey { addr: vip, proto, port: vport }, Frontend::new(kind, set)).unwrap();
        let mut services = b.build();
        services.set_source_nat(Some(snat_config()));
        let t = tables(services);
        let mut p = Pipeline::default();
        let build = |src, dst, sport, dport, data: &[u8]| {
            if udp_proto {
                let mut f = udp(src, dst, sport, dport, data);
                if no_udp_checksum {
                    f[40..42].copy_from_slice(&[0, 0]);
                }
                f
            } else {
                tcp(src, dst, sport, dport, Seg { ack: Some(1), ..SYN }, data)
            }
        };
        let f = build(client, vip, cport, vport, &payload);
        let (v, out) = run_at(&mut p, &t, UPLINK, &f, 0);
        prop_assert!(matches!(v, Verdict::Forward(_)));
        let (src, sport, dst, dport) = tuple(&out);
        prop_assert_eq!((dst, dport), (backend, bport));
        // Off-cluster clients are translated to the node on both kinds of frontend, and pods
        // whose backend is off the cluster network are masqueraded.
        let s = snat_config();
        let translated = !s.in_cluster(client) || node_port || !s.in_cluster(backend);
        if translated {
            prop_assert_eq!(src, NODE_IP);
            prop_assert!(snat_config().has_port(sport));
        } else {
            prop_assert_eq!((src, sport), (client, cport));
        }
        prop_assert_eq!(&out[out.len() - payload.len()..], &payload[..]);
        if udp_proto && no_udp_checksum {
            prop_assert_eq!(&out[40..42], &[0, 0]);
        }
        let r = build(backend, src, bport, sport, &reply_payload);
        let (_, back) = run_at(&mut p, &t, UPLINK, &r, 1);
        prop_assert_eq!(tuple(&back), (vip, vport, client, cport));
        prop_assert_eq!(&back[back.len() - reply_payload.len()..], &reply_payload[..]);
    }
}

/// The node's source NAT in these tests: ten ports, the 10.244.0.0/16 cluster network.
fn snat_config() -> SourceNat {
    SourceNat {
        addr: NODE_IP,
        ports: (61000, 61009),
        cluster: vec![(Ipv4Addr::new(10, 244, 0, 0), 16)].into(),
        masquerade: true,
    }
}

const NODE_PORT: u16 = 30080;
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

/// The ClusterIP and LoadBalancer frontends of [`services`], plus a NodePort on the node IP,
/// all to `active`; `etp_local` on the external ones; the node's source NAT on.
fn snat_services(active: &[Backend], etp_local: bool) -> Tables {
    let mut b = Services::builder();
    let set = b.add_set(Arc::new(BackendSet::new(active, &[]).unwrap()));
    for (addr, port, kind) in [
        (VIP, VPORT, FrontendKind::ClusterIp),
        (LB_IP, VPORT, FrontendKind::LoadBalancer),
        (NODE_IP, NODE_PORT, FrontendKind::NodePort),
    ] {
        let mut fe = Frontend::new(kind, set);
        fe.external_local = etp_local && kind != FrontendKind::ClusterIp;
        for proto in [L4Proto::Tcp, L4Proto::Udp] {
            b.add_frontend(FrontendKey { addr, proto, port }, fe.clone())
                .unwrap();
        }
    }
    let mut s = b.build();
    s.set_source_nat(Some(snat_config()));
    tables(s)
}

#[test]
fn node_port_from_outside_is_source_translated_and_answered_through_the_node() {
    let t = snat_services(&[be(POD_B_IP)], false);
    let ct = Arc::new(Conntrack::new(1024, 64));
    let (mut w1, mut w2) = (Pipeline::new(ct.clone()), Pipeline::new(ct));
    // Outside client → node IP:30080, through the uplink: to pod B, from the node.
    let (v, out) = run_at(
        &mut w1,
        &t,
        UPLINK,
        &tcp(OUTSIDE, NODE_IP, 5555, NODE_PORT, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_B));
    let (src, sport, dst, dport) = tuple(&out);
    assert_eq!((src, dst, dport), (NODE_IP, POD_B_IP, BPORT));
    assert!(snat_config().has_port(sport), "{sport}");
    // Pod B answers the node; the other worker sends it to the client from the NodePort.
    let synack = Seg {
        syn: true,
        ack: Some(1001),
        seq: 5000,
        ..Seg::default()
    };
    let (v, back) = run_at(
        &mut w2,
        &t,
        POD_B,
        &tcp(POD_B_IP, NODE_IP, BPORT, sport, synack, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(UPLINK), "default route");
    assert_eq!(tuple(&back), (NODE_IP, NODE_PORT, OUTSIDE, 5555));
    // More data: the same node port; the state advanced to established on both sides.
    let data = Seg {
        ack: Some(5001),
        seq: 1001,
        ..Seg::default()
    };
    let (_, out) = run_at(
        &mut w2,
        &t,
        UPLINK,
        &tcp(OUTSIDE, NODE_IP, 5555, NODE_PORT, data, b"GET /"),
        1,
    );
    assert_eq!(tuple(&out), (NODE_IP, sport, POD_B_IP, BPORT));
    assert_eq!(&out[out.len() - 5..], b"GET /");
    let (c1, c2) = (*w1.counters(), *w2.counters());
    assert_eq!((c1.nat_snat, c2.nat_snat, c2.nat_reverse), (1, 1, 1));
    // A second client gets another node port (the reply entries must differ).
    let (_, out2) = run_at(
        &mut w1,
        &t,
        UPLINK,
        &tcp(OUTSIDE, NODE_IP, 5556, NODE_PORT, SYN, &[]),
        1,
    );
    assert_ne!(tuple(&out2).1, sport);
    // The LoadBalancer IP too; UDP too.
    let (_, out) = run_at(
        &mut w1,
        &t,
        UPLINK,
        &udp(OUTSIDE, LB_IP, 53, VPORT, b"q"),
        1,
    );
    let (src, sport, ..) = tuple(&out);
    assert_eq!(src, NODE_IP);
    let (_, back) = run_at(
        &mut w1,
        &t,
        POD_B,
        &udp(POD_B_IP, NODE_IP, BPORT, sport, b"a"),
        1,
    );
    assert_eq!(tuple(&back), (LB_IP, VPORT, OUTSIDE, 53));
    // A pod on the ClusterIP keeps its address; an off-cluster client (the host) does not.
    let (_, out) = run_at(&mut w1, &t, POD_A, &udp(POD_A_IP, VIP, 999, VPORT, b"q"), 1);
    assert_eq!(tuple(&out).0, POD_A_IP);
    let (_, out) = run_at(&mut w1, &t, HOST, &udp(NODE_IP, VIP, 999, VPORT, b"q"), 1);
    let (src, sport, ..) = tuple(&out);
    assert_eq!(src, NODE_IP);
    assert_ne!(sport, 999);
    assert!(snat_config().has_port(sport));
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let t = snat_services(&[be(POD_B_IP)], true);
    let mut p = Pipeline::default();
    let (v, out) = run_at(
        &mut p,
        &t,
        UPLINK,
        &tcp(OUTSIDE, NODE_IP, 5555, NODE_PORT, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_B));
    assert_eq!(tuple(&out), (OUTSIDE, 5555, POD_B_IP, BPORT));
    let (v, back) = run_at(
        &mut p,
        &t,
        POD_B,
        &tcp(
            POD_B_IP,
            OUTSIDE,
            BPORT,
            5555,
            Seg {
                ack: Some(1001),
                ..SYN
            },
            &[],
        ),
        0,
    );
    assert_eq!(v, Verdict::Forward(UPLINK));
    assert_eq!(tuple(&back), (NODE_IP, NODE_PORT, OUTSIDE, 5555));
    assert_eq!(p.counters().nat_snat, 0);
}

#[test]
fn pods_reach_an_external_local_frontend_through_every_endpoint() {
    // The LB frontend's own set: this node's endpoint only; its cluster-wide set: remote too.
    let mut b = Services::builder();
    let local = b.add_set(Arc::new(BackendSet::new(&[be(POD_B_IP)], &[]).unwrap()));
    let cluster = b.add_set(Arc::new(
        BackendSet::new(&[be(REMOTE_POD_IP)], &[]).unwrap(),
    ));
    let mut fe = Frontend::new(FrontendKind::LoadBalancer, local);
    fe.external_local = true;
    fe.cluster_backends = Some(cluster);
    let key = FrontendKey {
        addr: LB_IP,
        proto: L4Proto::Udp,
        port: VPORT,
    };
    b.add_frontend(key, fe).unwrap();
    let mut s = b.build();
    s.set_source_nat(Some(snat_config()));
    let t = tables(s);
    let mut p = Pipeline::default();
    // From outside: the local endpoint, the client's address kept.
    let (v, out) = run_at(&mut p, &t, UPLINK, &udp(OUTSIDE, LB_IP, 7, VPORT, b"x"), 0);
    assert_eq!(v, Verdict::Forward(POD_B));
    assert_eq!(tuple(&out), (OUTSIDE, 7, POD_B_IP, BPORT));
    // From a pod: the cluster-wide set (through the tunnel), not masqueraded.
    let (v, out) = run_at(&mut p, &t, POD_A, &udp(POD_A_IP, LB_IP, 7, VPORT, b"x"), 0);
    assert_eq!(
        v,
        Verdict::Forward(UPLINK),
        "encapsulated to the remote node"
    );
    assert_eq!(tuple(&out[50..]), (POD_A_IP, 7, REMOTE_POD_IP, BPORT));
}

#[test]
fn hairpin_a_pod_reaching_itself_through_its_service() {
    let t = snat_services(&[be(POD_A_IP)], false);
    let mut p = Pipeline::default();
    let (v, out) = run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(POD_A_IP, VIP, 40000, VPORT, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_A), "back to itself");
    let (src, sport, dst, dport) = tuple(&out);
    assert_eq!((src, dst, dport), (NODE_IP, POD_A_IP, BPORT));
    // The pod answers the node, and gets the answer from the ClusterIP.
    let (v, back) = run_at(
        &mut p,
        &t,
        POD_A,
        &tcp(
            POD_A_IP,
            NODE_IP,
            BPORT,
            sport,
            Seg {
                ack: Some(1001),
                ..SYN
            },
            &[],
        ),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_A));
    assert_eq!(tuple(&back), (VIP, VPORT, POD_A_IP, 40000));
}

#[test]
fn pods_leaving_the_cluster_are_masqueraded() {
    let t = snat_services(&[be(POD_B_IP)], false);
    let ct = Arc::new(Conntrack::new(1024, 64));
    let (mut w1, mut w2) = (Pipeline::new(ct.clone()), Pipeline::new(ct));
    let (v, out) = run_at(
        &mut w1,
        &t,
        POD_A,
        &tcp(POD_A_IP, OUTSIDE, 41000, 443, SYN, &[]),
        0,
    );
    assert_eq!(v, Verdict::Forward(UPLINK));
    let (src, sport, dst, dport) = tuple(&out);
    assert_eq!((src, dst, dport), (NODE_IP, OUTSIDE, 443));
    assert!(snat_config().has_port(sport));
    // The answer, through the uplink on the other worker, reaches the pod.
    let (v, back) = run_at(
        &mut w2,
        &t,
        UPLINK,
        &tcp(
            OUTSIDE,
            NODE_IP,
            443,
            sport,
            Seg {
                ack: Some(1001),
                ..SYN
            },
            &[],
        ),
        0,
    );
    assert_eq!(v, Verdict::Forward(POD_A));
    assert_eq!(tuple(&back), (OUTSIDE, 443, POD_A_IP, 41000));
    // The next packet keeps its port.
    let (_, out) = run_at(
        &mut w2,
        &t,
        POD_A,
        &tcp(
            POD_A_IP,
            OUTSIDE,
            41000,
            443,
            Seg {
                ack: Some(1),
                ..Seg::default()
            },
            b"x",
        ),
        1,
    );
    assert_eq!(tuple(&out), (NODE_IP, sport, OUTSIDE, 443));
    assert_eq!(
        w1.counters().nat_masquerade + w2.counters().nat_masquerade,
        2
    );
    // Inside the cluster, and to the node itself: untouched.
    for dst in [POD_B_IP, NODE_IP] {
        let (_, out) = run_at(&mut w1, &t, POD_A, &udp(POD_A_IP, dst, 7, 9, b"x"), 1);
        assert_eq!(tuple(&out).0, POD_A_IP, "{dst}");
    }
    // Through the tunnel: the inner packet keeps the pod's address.
    let (_, out) = run_at(
        &mut w1,
        &t,
        POD_A,
        &udp(POD_A_IP, REMOTE_POD_IP, 7, 9, b"x"),
        1,
    );
    assert_eq!(tuple(&out[50..]).0, POD_A_IP);
    // A service whose backend is outside the cluster network: masqueraded after the DNAT.
    let mut b = Services::builder();
    let set = b.add_set(Arc::new(BackendSet::new(&[be(OUTSIDE)], &[]).unwrap()));
    b.add_frontend(
        FrontendKey {
            addr: VIP,
            proto: L4Proto::Udp,
            port: VPORT,
        },
        Frontend::new(FrontendKind::ClusterIp, set),
    )
    .unwrap();
    let mut s = b.build();
    s.set_source_nat(Some(snat_config()));
    let ext = tables(s);
    let (_, out) = run_at(&mut w1, &ext, POD_A, &udp(POD_A_IP, VIP, 7, VPORT, b"x"), 1);
    let (src, sport, dst, _) = tuple(&out);
    assert_eq!((src, dst), (NODE_IP, OUTSIDE));
    let (_, back) = run_at(
        &mut w1,
        &ext,
        UPLINK,
        &udp(OUTSIDE, NODE_IP, BPORT, sport, b"y"),
        1,
    );
    assert_eq!(tuple(&back), (VIP, VPORT, POD_A_IP, 7));
    // Off: pods leave with their own address.
    let mut services = (*t.services).clone();
    services.set_source_nat(Some(SourceNat {
        masquerade: false,
        ..snat_config()
    }));
    let off = tables(services);
    let (_, out) = run_at(&mut w1, &off, POD_A, &udp(POD_A_IP, OUTSIDE, 7, 9, b"x"), 1);
    assert_eq!(tuple(&out).0, POD_A_IP);
}

#[test]
fn node_ports_run_out_and_free_up_again() {
    let t = snat_services(&[be(POD_B_IP)], false);
    let mut p = Pipeline::default();
    let mut ports = std::collections::BTreeSet::new();
    let mut exhausted = 0;
    // Ten ports for one backend: the eleventh client (and a few unlucky earlier ones, whose
    // sixteen probes all hit taken ports) is refused.
    for client in 0..40u16 {
        let (v, out) = run_at(
            &mut p,
            &t,
            UPLINK,
            &udp(OUTSIDE, NODE_IP, 1000 + client, NODE_PORT, b"q"),
            0,
        );
        match v {
            Verdict::Forward(_) => {
                assert!(ports.insert(tuple(&out).1), "a port is never given twice");
            }
            Verdict::Drop(DropReason::SnatPortsExhausted) => exhausted += 1,
            v => panic!("{v:?}"),
        }
    }
    assert!(ports.len() <= 10 && ports.len() >= 8, "{ports:?}");
    assert_eq!(exhausted, 40 - ports.len());
    // Once those flows expire, the ports are free again.
    let (v, _) = run_at(
        &mut p,
        &t,
        UPLINK,
        &udp(OUTSIDE, NODE_IP, 2000, NODE_PORT, b"q"),
        UDP_TIMEOUT + 1,
    );
    assert!(matches!(v, Verdict::Forward(_)));
}

#[test]
fn icmp_errors_about_source_translated_flows_are_translated_both_ways() {
    let t = snat_services(&[be(POD_B_IP)], false);
    let mut p = Pipeline::default();
    let (_, fwd) = run_at(
        &mut p,
        &t,
        UPLINK,
        &udp(OUTSIDE, NODE_IP, 5353, NODE_PORT, b"q"),
        0,
    );
    let (_, sport, ..) = tuple(&fwd);
    // The backend refuses what it got (node:sport → backend): the client hears it from the
    // NodePort, about client → NodePort.
    let err = icmp_error(POD_B_IP, NODE_IP, 3, 3, &fwd[14..]);
    let (v, out) = run_at(&mut p, &t, POD_B, &err, 0);
    assert_eq!(v, Verdict::Forward(UPLINK));
    let (src, dst, quote) = parse_icmp(&out);
    assert_eq!((src, dst), (NODE_IP, OUTSIDE));
    assert_eq!(quoted_tuple(&quote), (OUTSIDE, 5353, NODE_IP, NODE_PORT));
    // A router on the client's side cannot take a reply (NodePort → client): the backend
    // hears it, about backend → node port.
    let (_, reply) = run_at(
        &mut p,
        &t,
        POD_B,
        &udp(POD_B_IP, NODE_IP, BPORT, sport, b"a"),
        0,
    );
    assert_eq!(tuple(&reply), (NODE_IP, NODE_PORT, OUTSIDE, 5353));
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let err = icmp_error(router, NODE_IP, 3, 4, &reply[14..]);
    let (v, out) = run_at(&mut p, &t, UPLINK, &err, 0);
    assert_eq!(v, Verdict::Forward(POD_B));
    let (src, dst, quote) = parse_icmp(&out);
    assert_eq!((src, dst), (router, POD_B_IP));
    assert_eq!(quoted_tuple(&quote), (POD_B_IP, BPORT, NODE_IP, sport));
}
