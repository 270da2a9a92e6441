//! End-to-end: frames sent from the generator namespace go through the engine (L3 forward with
//! TTL decrement and MAC rewrite) in the node namespace and arrive in the sink namespace.
//! Native XDP on veth, copy-mode AF_XDP, one worker.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use af_xdp::bpf::{DstKind, SteerMode, XdpMode};
use kxdp_dataplane::stats::WorkerSnapshot;
use kxdp_dataplane::{
    DropReason, Engine, EngineConfig, NextHop, PortConfig, PortId, Route, TableHandle, Tables,
};
use kxdp_tests::xsk_sender::send_frames;
use kxdp_tests::{Topology, TopologyOptions, UdpReceiver, require_root, udp_send_from};

const GEN_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 0);
const SINK_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 0);
/// Not assigned anywhere: the sink's kernel drops it silently (forwarding is off there), so a
/// million frames cost the sink nothing but its interface counter.
const BLACKHOLE_IN_SINK: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 100);

fn tables(t: &Topology) -> Tables {
    let to_gen = NextHop::new(PortId(0), t.gen_if.mac, t.node_gen_if.mac);
    let to_sink = NextHop::new(PortId(1), t.sink_if.mac, t.node_sink_if.mac);
    Tables::default()
        .with_route4(GEN_NET, 24, Route::Via(to_gen))
        .with_route4(SINK_NET, 24, Route::Via(to_sink))
        .with_route4(t.node_gen_if.ipv4, 32, Route::Host)
        .with_route4(t.node_sink_if.ipv4, 32, Route::Host)
}

/// Start the engine inside the node namespace on both node-side veths, native XDP.
fn start_engine(t: &Topology) -> Engine {
    start_engine_on(t, Vec::new())
}

/// As [`start_engine`], with one pinned worker per core in `cores`.
fn start_engine_on(t: &Topology, cores: Vec<usize>) -> Engine {
    let cfg = EngineConfig {
        cores,
        ports: vec![
            PortConfig {
                ifname: t.node_gen_if.name().to_owned(),
                steer: SteerMode::ByDestination,
            },
            PortConfig {
                ifname: t.node_sink_if.name().to_owned(),
                steer: SteerMode::ByDestination,
            },
        ],
        xdp_mode: XdpMode::Native,
        ..EngineConfig::default()
    };
    let handle = Arc::new(TableHandle::new(tables(t)));
    let engine = t
        .node
        .run(move || Engine::start(cfg, handle))
        .unwrap()
        .expect("engine starts");
    for p in engine.ports() {
        assert_eq!(p.xdp_mode, XdpMode::Native, "veth supports native XDP");
    }
    // The routed prefixes are the engine's; the node's own addresses stay with the kernel.
    engine.own_prefix(GEN_NET, 24, DstKind::All).unwrap();
    engine.own_prefix(SINK_NET, 24, DstKind::All).unwrap();
    engine
        .own_prefix(t.node_gen_if.ipv4, 32, DstKind::PortsOnly)
        .unwrap();
    engine
        .own_prefix(t.node_sink_if.ipv4, 32, DstKind::PortsOnly)
        .unwrap();
    engine
}

fn udp_frame(t: &Topology, dst: Ipv4Addr, ttl: u8, src_port: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(t.gen_if.mac, t.node_gen_if.mac)
        .ipv4(t.gen_if.ipv4.octets(), dst.octets(), ttl)
        .udp(src_port, 9);
    let mut v = Vec::new();
    // 14 + 20 + 8 + 18 = 60 bytes: a minimum-size (64-byte with FCS) Ethernet frame.
    b.write(&mut v, &[0u8; 18]).unwrap();
    v
}

/// Sum of one counter over workers.
fn sum(stats: &[WorkerSnapshot], f: impl Fn(&WorkerSnapshot) -> u64) -> u64 {
    stats.iter().map(f).sum()
}

/// Wait until the engine's counters stop moving (the RX ring is drained).
fn settle(engine: &Engine) -> Vec<WorkerSnapshot> {
    let mut last = engine.stats();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = engine.stats();
        if sum(&now, |s| s.rx_packets()) == sum(&last, |s| s.rx_packets()) {
            return now;
        }
        last = now;
    }
}

fn xdp_attached(t: &Topology, ifname: &str) -> bool {
    let out = t.node.ip(&["-d", "link", "show", "dev", ifname]).unwrap();
    out.contains("prog/xdp")
}

#[test]
fn forwards_udp_with_ttl_decrement_and_mac_rewrite() {
    if !require_root("forwards_udp_with_ttl_decrement_and_mac_rewrite") {
        return;
    }
    let t = Topology::chain3("fwd-udp").unwrap();
    // The kernel leaves UDP checksums to the "hardware" on veth (CHECKSUM_PARTIAL); a frame
    // taken by XDP carries the partial sum, so the sender must compute it (as a pod's veth
    // will be configured by kxdp-cni).
    t.generator
        .exec(&["ethtool", "-K", t.gen_if.name(), "tx", "off"])
        .unwrap();
    let engine = start_engine(&t);
    assert!(
        xdp_attached(&t, t.node_gen_if.name()),
        "XDP attached while running"
    );
    let mut rx =
        UdpReceiver::bind(&t.sink, SocketAddr::new(IpAddr::V4(t.sink_if.ipv4), 9000)).unwrap();
    let dst = SocketAddr::new(IpAddr::V4(t.sink_if.ipv4), 9000);
    udp_send_from(
        &t.generator,
        SocketAddr::new(IpAddr::V4(t.gen_if.ipv4), 0),
        dst,
        b"through kxdp",
        20,
    )
    .unwrap();
    let got = rx.recv_n(20, Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 20, "every datagram arrives");
    for d in &got {
        assert_eq!(d.payload, b"through kxdp");
        assert_eq!(d.src.ip(), IpAddr::V4(t.gen_if.ipv4));
        // Linux sends with TTL 64; one router hop.
        assert_eq!(d.ttl, Some(63), "TTL decremented exactly once");
    }
    // An idle engine does not spin: it goes to sleep in epoll.
    std::thread::sleep(Duration::from_millis(500));
    let stats = engine.stats();
    assert!(sum(&stats, |s| s.sleeps) > 0, "idle worker sleeps");
    assert!(
        sum(&stats, |s| s.ports[1].tx_packets) >= 20,
        "went through the engine, not the kernel"
    );
    let report = engine.stop();
    assert_eq!(report.frames[0].user, 0);
    assert!(
        !xdp_attached(&t, t.node_gen_if.name()),
        "XDP detached on stop"
    );
}

#[test]
fn a_million_frames_forwarded_with_no_frame_leaked() {
    if !require_root("a_million_frames_forwarded_with_no_frame_leaked") {
        return;
    }
    let t = Topology::chain3("fwd-1m").unwrap();
    let engine = start_engine(&t);
    let sink_before = t.sink.link_stats(t.sink_if.name()).unwrap();
    // 64 flows (source ports), 60-byte frames; one flow in 64 arrives with TTL 1, so drops
    // are part of the accounting too.
    let templates: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            udp_frame(
                &t,
                BLACKHOLE_IN_SINK,
                if i == 0 { 1 } else { 64 },
                10000 + i,
            )
        })
        .collect();
    let gen_if = t.gen_if.name().to_owned();
    let start = Instant::now();
    let mut sent = 0u64;
    // The generator and the engine share two cores; the engine's RX ring overflows now and
    // then (counted by the kernel), so send until a million have gone through.
    while sum(&engine.stats(), |s| s.ports[1].tx_packets) < 1_000_000 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "forwarding too slow: {:?}",
            engine.stats()
        );
        let tpl = templates.clone();
        let ifn = gen_if.clone();
        let r = t
            .generator
            .run(move || send_frames(&ifn, &tpl, 250_000, Duration::from_secs(60)))
            .unwrap()
            .unwrap();
        assert_eq!(
            r.frames.user + r.frames.tx,
            0,
            "the sender's own frames all came back"
        );
        sent += r.sent;
        settle(&engine);
    }
    let elapsed = start.elapsed();
    let stats = settle(&engine);
    let forwarded = sum(&stats, |s| s.ports[1].tx_packets);
    let received = sum(&stats, |s| s.ports[0].rx_packets);
    let ring_full: u64 = sum(&stats, |s| s.xsk.rx_ring_full);
    eprintln!(
        "sent {sent}, engine received {received} (kernel dropped {ring_full} on a full RX ring), \
         forwarded {forwarded} in {elapsed:.2?} ({:.0} frames/s)",
        forwarded as f64 / elapsed.as_secs_f64()
    );
    assert!(forwarded >= 1_000_000);
    let expired = sum(&stats, |s| s.drop_count(DropReason::TtlExceeded));
    assert!(
        expired > 0 && expired < received / 32,
        "about 1 in 64 expired: {expired} of {received}"
    );
    assert_eq!(
        received,
        forwarded + sum(&stats, |s| s.total_drops()),
        "every received frame has a fate"
    );
    let report = engine.stop();
    for f in &report.frames {
        assert_eq!(f.user, 0, "no frame held in userspace after stop: {f:?}");
        assert_eq!(f.tx, 0, "every transmitted frame completed: {f:?}");
        assert_eq!(
            f.free + f.fill,
            f.total,
            "UMEM accounting returns to its start: {f:?}"
        );
    }
    let sink = t
        .sink
        .link_stats(t.sink_if.name())
        .unwrap()
        .since(&sink_before);
    assert!(
        sink.rx_packets >= forwarded,
        "sink saw {} of {forwarded} forwarded frames",
        sink.rx_packets
    );
}

#[test]
fn bad_and_expiring_packets_are_dropped_and_counted() {
    if !require_root("bad_and_expiring_packets_are_dropped_and_counted") {
        return;
    }
    let t = Topology::chain3("fwd-drop").unwrap();
    let engine = start_engine(&t);
    let mut bad_csum = udp_frame(&t, BLACKHOLE_IN_SINK, 64, 1);
    bad_csum[24] ^= 0xff;
    let mut truncated_ip = udp_frame(&t, BLACKHOLE_IN_SINK, 64, 2);
    truncated_ip[16] = 0x05; // total length 1280+ beyond the frame
    let frames = vec![
        udp_frame(&t, BLACKHOLE_IN_SINK, 1, 3), // TTL expires here
        bad_csum,
        truncated_ip,
        udp_frame(&t, Ipv4Addr::new(10, 200, 1, 77), 64, 4), // back out of the port it came in on
    ];
    let gen_if = t.gen_if.name().to_owned();
    t.generator
        .run(move || send_frames(&gen_if, &frames, 400, Duration::from_secs(30)))
        .unwrap()
        .unwrap();
    let stats = settle(&engine);
    let drops = |r| sum(&stats, |s| s.drop_count(r));
    assert_eq!(drops(DropReason::TtlExceeded), 100);
    assert_eq!(drops(DropReason::BadIpv4Checksum), 100);
    assert_eq!(drops(DropReason::MalformedIpv4), 100);
    // A router sends a packet back out of its ingress interface when the route says so.
    assert_eq!(sum(&stats, |s| s.ports[0].tx_packets), 100);
    let report = engine.stop();
    assert_eq!(report.frames[0].user, 0);
    assert_eq!(report.frames[0].tx, 0);
}

#[test]
fn two_pinned_workers_each_own_a_queue_and_account_for_their_frames() {
    if !require_root("two_pinned_workers_each_own_a_queue_and_account_for_their_frames") {
        return;
    }
    let opts = TopologyOptions {
        queues: Some(2),
        ..TopologyOptions::default()
    };
    let t = Topology::chain3_with("fwd-2w", &opts).unwrap();
    t.generator
        .exec(&["ethtool", "-K", t.gen_if.name(), "tx", "off"])
        .unwrap();
    let engine = start_engine_on(&t, vec![0, 1]);
    assert_eq!(engine.stats().len(), 2, "one worker per core");
    let mut rx =
        UdpReceiver::bind(&t.sink, SocketAddr::new(IpAddr::V4(t.sink_if.ipv4), 9000)).unwrap();
    let dst = SocketAddr::new(IpAddr::V4(t.sink_if.ipv4), 9000);
    udp_send_from(
        &t.generator,
        SocketAddr::new(IpAddr::V4(t.gen_if.ipv4), 0),
        dst,
        b"two workers",
        50,
    )
    .unwrap();
    assert_eq!(rx.recv_n(50, Duration::from_secs(5)).unwrap().len(), 50);
    let report = engine.stop();
    assert_eq!(report.frames.len(), 2);
    for f in &report.frames {
        assert_eq!((f.user, f.tx), (0, 0), "{f:?}");
        assert_eq!(f.free + f.fill, f.total, "{f:?}");
    }
    let forwarded: u64 = report.workers.iter().map(|w| w.ports[1].tx_packets).sum();
    assert_eq!(
        forwarded, 50,
        "each datagram forwarded once, by whichever worker owns its queue"
    );
}
