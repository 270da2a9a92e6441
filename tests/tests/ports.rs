//! End-to-end: ports added and removed while the engine runs (pods come and go). The engine
//! starts on the generator-facing port only; the sink-facing port is added, used, removed under
//! traffic, added again, and deleted out from under the engine. No UMEM frame may leak.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use af_xdp::bpf::{DstKind, SteerMode, XdpMode};
use af_xdp::{FrameCounts, SocketConfig};
use kxdp_dataplane::stats::WorkerSnapshot;
use kxdp_dataplane::{
    DropReason, Engine, EngineConfig, NextHop, PortConfig, PortId, PortStatus, Route, TableHandle,
    Tables,
};
use kxdp_tests::{Topology, TopologyOptions, UdpReceiver, require_root};

const GEN_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 0);
const SINK_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 0);
const SINK_PORT: u16 = 9000;

/// Routes to the generator (port 0, always there) and, when given, to the sink port.
fn tables(t: &Topology, sink: Option<&PortStatus>) -> Tables {
    let to_gen = NextHop::new(PortId(0), t.gen_if.mac, t.node_gen_if.mac);
    let mut tables = Tables::default()
        .with_route4(GEN_NET, 24, Route::Via(to_gen))
        .with_route4(t.node_gen_if.ipv4, 32, Route::Host)
        .with_route4(t.node_sink_if.ipv4, 32, Route::Host);
    if let Some(p) = sink {
        let to_sink = NextHop::new(p.id, t.sink_if.mac, p.mac);
        tables = tables.with_route4(SINK_NET, 24, Route::Via(to_sink));
    }
    tables
}

fn port(ifname: &str) -> PortConfig {
    PortConfig {
        ifname: ifname.to_owned(),
        steer: SteerMode::ByDestination,
    }
}

/// The engine in the node namespace on the generator-facing veth only.
fn start_engine(t: &Topology, cores: Vec<usize>) -> Engine {
    let cfg = EngineConfig {
        cores,
        ports: vec![port(t.node_gen_if.name())],
        xdp_mode: XdpMode::Native,
        ..EngineConfig::default()
    };
    let handle = std::sync::Arc::new(TableHandle::new(tables(t, None)));
    let engine = t
        .node
        .run(move || Engine::start(cfg, handle))
        .unwrap()
        .expect("engine starts");
    engine.own_prefix(GEN_NET, 24, DstKind::All).unwrap();
    engine.own_prefix(SINK_NET, 24, DstKind::All).unwrap();
    for ip in [t.node_gen_if.ipv4, t.node_sink_if.ipv4] {
        engine.own_prefix(ip, 32, DstKind::PortsOnly).unwrap();
    }
    engine
}

/// Adds the sink-facing veth (from the node namespace, as add_port requires) and routes to it.
fn add_sink_port(t: &Topology, engine: &Engine) -> PortStatus {
    let status = t
        .node
        .run(|| engine.add_port(&port(t.node_sink_if.name())))
        .unwrap()
        .expect("sink port added");
    assert_eq!(status.ifname, t.node_sink_if.name());
    assert_eq!(status.ifindex, t.node_sink_if.ifindex);
    assert_eq!(
        status.mac, t.node_sink_if.mac,
        "MAC read from the interface"
    );
    assert_eq!(status.xdp_mode, XdpMode::Native);
    assert_eq!(engine.port(t.node_sink_if.name()).as_ref(), Some(&status));
    engine.tables().publish(tables(t, Some(&status)));
    status
}

fn xdp_attached(t: &Topology, ifname: &str) -> bool {
    t.node
        .ip(&["-d", "link", "show", "dev", ifname])
        .unwrap()
        .contains("prog/xdp")
}

fn sum(stats: &[WorkerSnapshot], f: impl Fn(&WorkerSnapshot) -> u64) -> u64 {
    stats.iter().map(f).sum()
}

/// Packets the engine sent out of `port`, once the counter reaches `at_least` (a worker
/// publishes right after its TX burst, which can be after the sink already has the packets).
fn tx_packets(engine: &Engine, port: PortId, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = sum(&engine.stats(), |s| s.ports[port.index()].tx_packets);
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A UDP socket in the generator namespace (it stays there when used from this thread).
fn gen_socket(t: &Topology) -> UdpSocket {
    let src = SocketAddr::new(IpAddr::V4(t.gen_if.ipv4), 0);
    t.generator.run(|| UdpSocket::bind(src)).unwrap().unwrap()
}

fn sink_addr(t: &Topology) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(t.sink_if.ipv4), SINK_PORT)
}

/// Sends `n` datagrams and expects them all at the sink, forwarded once (TTL 63).
fn expect_delivery(t: &Topology, rx: &mut UdpReceiver, n: usize, what: &[u8]) {
    let sock = gen_socket(t);
    for _ in 0..n {
        sock.send_to(what, sink_addr(t)).unwrap();
    }
    let got = rx.recv_n(n, Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), n, "every datagram arrives");
    for d in &got {
        assert_eq!(d.payload, what);
        assert_eq!(d.ttl, Some(63), "forwarded by the engine, once");
    }
}

/// Sends datagrams to the sink from the generator until `stop`; returns how many.
fn send_until(t: &Topology, stop: &AtomicBool) -> u64 {
    let sock = gen_socket(t);
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        // ENOBUFS and friends: the point is a steady stream, not a count.
        if sock.send_to(b"stream", sink_addr(t)).is_ok() {
            sent += 1;
        }
        if sent % 64 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    sent
}

/// Waits (briefly) for the workers to publish frame counts that satisfy `ok`.
fn frames_settle(engine: &Engine, ok: impl Fn(&FrameCounts) -> bool) -> Vec<FrameCounts> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let frames: Vec<FrameCounts> = engine.stats().iter().map(|s| s.frames).collect();
        if frames.iter().all(&ok) || Instant::now() > deadline {
            return frames;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After a port is removed the worker publishes its accounting at once: balanced, nothing
/// held in userspace, and at most one fill ring (the generator port's) left with the kernel.
fn assert_one_port_left(engine: &Engine) {
    let fill_ring = u64::from(SocketConfig::default().fill_size);
    for f in frames_settle(engine, |f| f.fill <= fill_ring) {
        assert_eq!(f.user, 0, "{f:?}");
        assert_eq!(f.free + f.fill + f.tx + f.user, f.total, "{f:?}");
        assert!(
            f.fill <= fill_ring,
            "only the generator port's fill ring: {f:?}"
        );
    }
}

fn assert_stopped_clean(engine: Engine) {
    let report = engine.stop();
    for f in &report.frames {
        assert_eq!((f.user, f.tx), (0, 0), "{f:?}");
        assert_eq!(f.free + f.fill, f.total, "{f:?}");
    }
}

fn sink_receiver(t: &Topology) -> UdpReceiver {
    UdpReceiver::bind(&t.sink, sink_addr(t)).unwrap()
}

#[test]
fn a_port_added_while_running_forwards_then_is_removed_under_traffic_and_added_again() {
    if !require_root("ports::add_remove_add") {
        return;
    }
    let t = Topology::chain3("ports-add").unwrap();
    // UDP checksums must be complete when the engine takes the frame (see forward.rs).
    t.generator
        .exec(&["ethtool", "-K", t.gen_if.name(), "tx", "off"])
        .unwrap();
    let engine = start_engine(&t, Vec::new());
    let gen_port = engine.port(t.node_gen_if.name()).unwrap();
    assert_eq!((gen_port.id, gen_port.queues_bound), (PortId(0), 1));
    assert!(!xdp_attached(&t, t.node_sink_if.name()));

    let sink = add_sink_port(&t, &engine);
    assert_eq!((sink.id, sink.queues_bound), (PortId(1), 1));
    assert!(xdp_attached(&t, t.node_sink_if.name()));
    assert_eq!(engine.ports().len(), 2);
    let mut rx = sink_receiver(&t);
    expect_delivery(&t, &mut rx, 20, b"to a new port");
    assert!(tx_packets(&engine, sink.id, 20) >= 20);

    // Adding the same interface twice is refused.
    let again = t.node.run(|| engine.add_port(&port(t.node_sink_if.name())));
    assert!(again.unwrap().is_err(), "a port is added once");

    // Remove it while a stream runs towards it.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sender = s.spawn(|| send_until(&t, &stop));
        std::thread::sleep(Duration::from_millis(200));
        engine.remove_port(sink.id).unwrap();
        assert!(engine.port(t.node_sink_if.name()).is_none());
        assert!(!xdp_attached(&t, t.node_sink_if.name()), "XDP detached");
        assert_one_port_left(&engine);
        // Still routed to the removed id: the engine drops (no socket there any more).
        let before = sum(&engine.stats(), |s| {
            s.drop_count(DropReason::NoEgressSocket)
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while sum(&engine.stats(), |s| {
            s.drop_count(DropReason::NoEgressSocket)
        }) == before
        {
            assert!(
                Instant::now() < deadline,
                "stream after removal not dropped"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(sender.join().unwrap() > 0);
    });
    assert!(
        matches!(
            engine.remove_port(sink.id),
            Err(kxdp_dataplane::EngineError::NoSuchPort(_))
        ),
        "removed once"
    );
    // Drain what the stream left in the sink's socket.
    let _ = rx.recv_for(Duration::from_millis(300)).unwrap();

    // Added again: the id and its XSKMAP slots are reused, its counters start from zero.
    let sink2 = add_sink_port(&t, &engine);
    assert_eq!(sink2.id, sink.id, "the free id is reused");
    assert_eq!(sum(&engine.stats(), |s| s.ports[1].tx_packets), 0);
    expect_delivery(&t, &mut rx, 20, b"back again");
    assert_eq!(tx_packets(&engine, sink2.id, 20), 20);

    engine.remove_port(sink2.id).unwrap();
    assert_one_port_left(&engine);
    assert_stopped_clean(engine);
}

#[test]
fn a_port_whose_veth_vanished_is_removed_without_leaking() {
    if !require_root("ports::veth_vanished") {
        return;
    }
    let t = Topology::chain3("ports-gone").unwrap();
    t.generator
        .exec(&["ethtool", "-K", t.gen_if.name(), "tx", "off"])
        .unwrap();
    let engine = start_engine(&t, Vec::new());
    let sink = add_sink_port(&t, &engine);
    let mut rx = sink_receiver(&t);
    expect_delivery(&t, &mut rx, 10, b"before");

    // The pod's veth is deleted before the engine hears of it, with traffic still coming.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sender = s.spawn(|| send_until(&t, &stop));
        std::thread::sleep(Duration::from_millis(100));
        t.node
            .ip(&["link", "del", "dev", t.node_sink_if.name()])
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap();
    });
    // The worker neither crashed nor spins: idle, it goes back to sleep in epoll.
    let sleeps = sum(&engine.stats(), |s| s.sleeps);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sum(&engine.stats(), |s| s.sleeps) > sleeps,
        "idle worker sleeps"
    );

    engine.remove_port(sink.id).unwrap();
    assert!(engine.ports().iter().all(|p| p.id != sink.id));
    assert_one_port_left(&engine);
    assert_stopped_clean(engine);
}

#[test]
fn two_workers_and_one_queue_ports_bind_only_worker_zero() {
    if !require_root("ports::one_queue") {
        return;
    }
    let opts = TopologyOptions {
        queues: Some(1),
        ..TopologyOptions::default()
    };
    let t = Topology::chain3_with("ports-1q", &opts).unwrap();
    t.generator
        .exec(&["ethtool", "-K", t.gen_if.name(), "tx", "off"])
        .unwrap();
    let engine = start_engine(&t, vec![0, 1]);
    assert_eq!(engine.stats().len(), 2);
    assert_eq!(
        engine.port(t.node_gen_if.name()).unwrap().queues_bound,
        1,
        "worker 1's queue does not exist on a one-queue veth"
    );
    let sink = add_sink_port(&t, &engine);
    assert_eq!(sink.queues_bound, 1);
    let mut rx = sink_receiver(&t);
    expect_delivery(&t, &mut rx, 50, b"one queue");

    engine.remove_port(sink.id).unwrap();
    let report = engine.stop();
    assert_eq!(report.frames.len(), 2);
    for f in &report.frames {
        assert_eq!((f.user, f.tx), (0, 0), "{f:?}");
        assert_eq!(f.free + f.fill, f.total, "{f:?}");
    }
    assert_eq!(
        report.frames[1].free, report.frames[1].total,
        "worker 1 has no socket anywhere"
    );
    assert_eq!(report.workers[0].ports[sink.id.index()].tx_packets, 50);
}
