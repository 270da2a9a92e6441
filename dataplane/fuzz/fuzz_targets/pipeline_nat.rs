//! Arbitrary frames through the whole pipeline of a node with services and source NAT: a
//! ClusterIP to a local and a remote pod, a NodePort (eTP=Cluster, source-translated), a
//! LoadBalancer IP with eTP=Local, egress masquerade on. One pipeline and its conntrack live
//! across inputs, so later frames hit the flows, node ports and replies earlier ones created.
//!
//! Checked for every frame: no panic; the frame stays within its buffer; a forwarded IPv4
//! frame (the inner one when encapsulated) has a valid IPv4 header checksum; and when the input
//! was an unfragmented UDP or TCP datagram with valid checksums, the forwarded one's L4
//! checksum is still valid (NAT rewrites patch checksums incrementally, RFC 1624).

#![no_main]

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::sync::Arc;

use kxdp_dataplane::pipeline::test_support::{
    NODE_IP, POD_A_IP, POD_B_IP, REMOTE_POD_IP, TestBuf, node_tables,
};
use kxdp_dataplane::pipeline::{BATCH_SIZE, PacketBuf, PacketMeta, Pipeline, final_verdict};
use kxdp_dataplane::{
    Backend, BackendSet, Conntrack, Frontend, FrontendKey, FrontendKind, L4Proto, PortId,
    Services, SourceNat, Tables, Verdict,
};
use libfuzzer_sys::fuzz_target;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn tables() -> Tables {
    let mut b = Services::builder();
    let be = |addr| Backend { addr, port: 8080 };
    let all = b.add_set(Arc::new(
        BackendSet::new(&[be(POD_A_IP), be(POD_B_IP), be(REMOTE_POD_IP)], &[]).expect("set"),
    ));
    let local = b.add_set(Arc::new(BackendSet::new(&[be(POD_B_IP)], &[]).expect("set")));
    for proto in [L4Proto::Tcp, L4Proto::Udp] {
        let key = |addr, port| FrontendKey { addr, proto, port };
        b.add_frontend(key(VIP, 80), Frontend::new(FrontendKind::ClusterIp, all))
            .expect("frontend");
        b.add_frontend(key(NODE_IP, 30080), Frontend::new(FrontendKind::NodePort, all))
            .expect("frontend");
        let mut lb = Frontend::new(FrontendKind::LoadBalancer, local);
        lb.external_local = true;
        lb.cluster_backends = Some(all);
        b.add_frontend(key(LB_IP, 80), lb).expect("frontend");
    }
    let mut s = b.build();
    s.set_source_nat(Some(SourceNat {
        addr: NODE_IP,
        // Few ports, so exhaustion is reached too.
        ports: (61000, 61015),
        cluster: vec![(Ipv4Addr::new(10, 244, 0, 0), 16)].into(),
        masquerade: true,
    }));
    node_tables().0.with_services(s)
}

thread_local! {
    static STATE: RefCell<(Tables, Pipeline)> = RefCell::new((
        tables(),
        Pipeline::new(Arc::new(Conntrack::new(1 << 12, 1 << 8))),
    ));
}

/// Whether `ip` (an IPv4 packet) has a valid header checksum and, when it is an unfragmented
/// UDP or TCP datagram, a valid L4 checksum (`None`: not such a packet).
fn checksums_valid(ip: &[u8]) -> Option<(bool, Option<bool>)> {
    let (h, rest) = etherparse::Ipv4Header::from_slice(ip).ok()?;
    // Over the raw bytes: etherparse's recomputation drops the reserved flag bit.
    let header_ok = ones_complement_sum(ip.get(..h.header_len())?) == 0xffff;
    let payload_len = usize::from(h.total_len).checked_sub(h.header_len())?;
    let payload = rest.get(..payload_len)?;
    if h.is_fragmenting_payload() {
        return Some((header_ok, None));
    }
    let l4 = match h.protocol {
        etherparse::IpNumber::UDP => etherparse::UdpHeader::from_slice(payload)
            .ok()
            .map(|(u, data)| {
                u.checksum == 0 || u.calc_checksum_ipv4(&h, data).ok() == Some(u.checksum)
            }),
        etherparse::IpNumber::TCP => etherparse::TcpHeader::from_slice(payload)
            .ok()
            .map(|(t, data)| t.calc_checksum_ipv4(&h, data).ok() == Some(t.checksum)),
        _ => None,
    };
    Some((header_ok, l4))
}

/// The RFC 1071 one's complement sum of 16-bit words (0xffff over a valid header).
fn ones_complement_sum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(w.get(1).copied().unwrap_or(0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    // Ports 0..=3: uplink, pod A, pod B, host; the clock moves in coarse steps.
    let port = PortId(u16::from(sel & 3));
    let now = u32::from(sel >> 2) * 16;
    let before = frame.get(14..).and_then(checksums_valid);
    STATE.with(|s| {
        let (tables, pipeline) = &mut *s.borrow_mut();
        let mut pkts = vec![TestBuf::new(frame)];
        let mut meta = [PacketMeta::default(); BATCH_SIZE];
        pipeline.run_on_at(tables, port, &mut pkts, &mut meta, now);
        let out = pkts[0].data();
        assert!(out.len() <= 4096, "frame grew past its buffer: {}", out.len());
        if let Verdict::Forward(_) = final_verdict(meta[0]) {
            // Encapsulated (50 bytes longer, UDP to 8472): the inner frame follows the headers.
            let outer = out.get(14..).and_then(checksums_valid);
            let inner = if out.len() == frame.len() + 50
                && out.get(14 + 9) == Some(&17)
                && out.get(36..38) == Some(&[0x21, 0x18])
            {
                out.get(64..).and_then(checksums_valid)
            } else {
                None
            };
            if let Some((header_ok, _)) = outer {
                assert!(header_ok, "forwarded with a bad IPv4 header checksum");
            }
            let after = inner.or(outer);
            if let (Some((true, Some(true))), Some((header_ok, l4))) = (before, after) {
                assert!(header_ok, "inner IPv4 header checksum broken");
                assert_ne!(l4, Some(false), "a valid L4 checksum was broken");
            }
        }
    });
});
