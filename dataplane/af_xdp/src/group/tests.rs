//! Removing sockets from a running group: every frame comes back, indices are reused, the
//! UMEM is shared or registered again as needed, and a vanished interface leaks nothing.
//! Needs root (veth pairs in a throwaway namespace); skipped otherwise.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::*;
use crate::BindMode;
use crate::bpf::test_support::{TestNetns, require_root};
use crate::bpf::{SteerMode, SteeringConfig, SteeringProgram, XdpMode};

const SOCKET: SocketConfig = SocketConfig {
    rx_size: 64,
    tx_size: 64,
    fill_size: 64,
    comp_size: 64,
    bind: BindMode::Copy,
};

fn group() -> XskGroup {
    XskGroup::new(&UmemConfig {
        frame_count: 1024,
        frame_size: 2048,
        headroom: 0,
        hugepages: false,
    })
    .unwrap()
}

/// A veth pair `a`/`b` (one queue each), both up.
fn veth(ns: &TestNetns, a: &str, b: &str) -> (u32, u32) {
    ns.ip(&[
        "link",
        "add",
        a,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "type",
        "veth",
        "peer",
        "name",
        b,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
    ]);
    ns.ip(&["link", "set", a, "up"]);
    ns.ip(&["link", "set", b, "up"]);
    (ns.ifindex(a), ns.ifindex(b))
}

/// Steers every frame arriving on `ifindex` (queue 0) to XSKMAP slot 0.
fn steer_all(prog: &SteeringProgram, ifindex: u32) -> crate::bpf::XdpAttachment {
    prog.set_iface(ifindex, SteerMode::All, 0).unwrap();
    prog.attach(ifindex, XdpMode::Native).unwrap()
}

/// Puts `n` broadcast frames on `id`'s TX ring; kicks when asked.
fn send(g: &mut XskGroup, id: SocketId, n: usize, kick: bool) {
    let mut frames = Vec::new();
    for _ in 0..n {
        let mut f = g.alloc().unwrap();
        let mut v = g.umem().view(&mut f);
        assert!(v.set_len(60));
        v.data_mut().fill(0);
        v.data_mut()[..6].fill(0xff);
        v.data_mut()[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        frames.push(f);
    }
    assert_eq!(g.tx_burst(id, &mut frames) as usize, n);
    if kick {
        assert!(g.kick_tx(id));
    }
}

/// Waits until `id` has received one frame, and releases it.
fn receive_one(g: &mut XskGroup, id: SocketId) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::with_capacity(1);
    while g.rx_burst(id, &mut out, 1) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing arrived on the steered socket"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    g.release(out.pop().unwrap());
}

fn complete_all(g: &mut XskGroup, id: SocketId) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while g.tx_outstanding() > 0 {
        assert!(Instant::now() < deadline, "transmissions never completed");
        g.kick_tx(id);
        g.complete(id);
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn assert_balanced(g: &XskGroup) -> FrameCounts {
    let c = g.counts();
    assert_eq!(c.user, 0, "{c:?}");
    assert_eq!(c.free + c.fill + c.tx, c.total, "{c:?}");
    c
}

#[test]
fn removed_sockets_give_back_fill_rx_and_tx_frames_and_their_index() {
    if !require_root() {
        return;
    }
    let ns = TestNetns::new();
    let (xa, xb) = veth(&ns, "xa", "xb");
    let prog = SteeringProgram::load(&SteeringConfig {
        max_ifaces: 4,
        max_queues: 4,
        max_dst4: 4,
        max_ports: 4,
        ..SteeringConfig::default()
    })
    .unwrap();
    let _att = ns.run_inside(|| steer_all(&prog, xb));
    ns.run_inside(|| {
        let mut g = group();
        let a = g.add_socket(xa, 0, &SOCKET).unwrap();
        let b = g.add_socket(xb, 0, &SOCKET).unwrap();
        prog.set_socket(0, g.socket(b).unwrap().as_fd()).unwrap();
        assert_eq!(g.counts().fill, 128);

        // 32 frames a → b: they complete on a and land in b's RX ring, where one is read.
        send(&mut g, a, 32, true);
        complete_all(&mut g, a);
        receive_one(&mut g, b);
        assert_eq!(g.counts().fill, 127);
        assert_eq!(g.socket_frames(b), Some((63, 0)));

        // b goes: its fill ring, the 31 frames in its RX ring and any the kernel kept are back.
        prog.clear_socket(0).unwrap();
        let r = g.remove_socket(b, Duration::from_millis(100)).unwrap();
        assert_eq!(r, Reclaimed { fill: 63, tx: 0 });
        let c = assert_balanced(&g);
        assert_eq!((c.fill, c.tx), (64, 0), "only a's fill ring is left");
        assert!(g.socket(b).is_none() && g.socket_frames(b).is_none());
        assert_eq!(g.remove_socket(b, Duration::ZERO), None);
        assert_eq!(
            g.tx_burst(b, &mut Vec::new()),
            0,
            "a removed id takes nothing"
        );

        // Its index is reused; a keeps its own, and the new socket shares a's UMEM.
        let b2 = g.add_socket(xb, 0, &SOCKET).unwrap();
        assert_eq!(b2, b);
        assert_eq!(g.socket(a).unwrap().ifindex(), xa);
        assert_eq!(g.sockets().count(), 2);

        // Frames on a's TX ring that never completed (never kicked) come back too.
        send(&mut g, a, 10, false);
        assert_eq!(g.counts().tx, 10);
        let r = g.remove_socket(a, Duration::ZERO).unwrap();
        assert_eq!(r, Reclaimed { fill: 64, tx: 10 });
        let c = assert_balanced(&g);
        assert_eq!((c.fill, c.tx), (64, 0));

        // a was the socket the UMEM was registered on; b2 still shares it, so a new socket
        // can bind (sharing b2's) ...
        let a2 = g.add_socket(xa, 0, &SOCKET).unwrap();
        assert_eq!(a2, a);
        g.remove_socket(a2, Duration::from_millis(100)).unwrap();
        g.remove_socket(b2, Duration::from_millis(100)).unwrap();
        let c = assert_balanced(&g);
        assert_eq!(c.free, c.total, "an empty group holds every frame");
        assert_eq!(g.sockets().count(), 0);

        // ... and with no socket left, the area is registered again for the next one.
        let a3 = g.add_socket(xa, 0, &SOCKET).unwrap();
        let b3 = g.add_socket(xb, 0, &SOCKET).unwrap();
        prog.set_socket(0, g.socket(b3).unwrap().as_fd()).unwrap();
        send(&mut g, a3, 8, true);
        complete_all(&mut g, a3);
        receive_one(&mut g, b3);
        prog.clear_socket(0).unwrap();
        g.remove_socket(a3, Duration::from_millis(100)).unwrap();
        g.remove_socket(b3, Duration::from_millis(100)).unwrap();
        let c = assert_balanced(&g);
        assert_eq!(c.free, c.total);
    });
}

#[test]
fn a_socket_whose_interface_vanished_is_removed_without_leaking() {
    if !require_root() {
        return;
    }
    let ns = TestNetns::new();
    let (xa, xb) = veth(&ns, "xa", "xb");
    let (xc, xd) = veth(&ns, "xc", "xd");
    let prog = SteeringProgram::load(&SteeringConfig {
        max_ifaces: 4,
        max_queues: 4,
        max_dst4: 4,
        max_ports: 4,
        ..SteeringConfig::default()
    })
    .unwrap();
    let att = ns.run_inside(|| steer_all(&prog, xb));
    ns.run_inside(|| {
        let mut g = group();
        // a registered the UMEM; b and c share it.
        let a = g.add_socket(xa, 0, &SOCKET).unwrap();
        let b = g.add_socket(xb, 0, &SOCKET).unwrap();
        let c = g.add_socket(xc, 0, &SOCKET).unwrap();
        prog.set_socket(0, g.socket(b).unwrap().as_fd()).unwrap();
        send(&mut g, a, 16, true);
        complete_all(&mut g, a);
        receive_one(&mut g, b);

        // The pair goes away under a and b: the kernel unbinds both sockets.
        ns.ip(&["link", "del", "xa"]);
        send(&mut g, a, 4, false);
        assert!(
            !g.kick_tx(a),
            "a kick on an unbound socket fails hard (ENXIO)"
        );

        // A new socket cannot share the UMEM through a (EBADF: not bound) and uses c instead.
        let d = g.add_socket(xd, 0, &SOCKET).unwrap();
        assert_eq!(g.socket_frames(d), Some((64, 0)));

        for id in [a, b, c, d] {
            g.remove_socket(id, Duration::from_millis(100)).unwrap();
        }
        let counts = assert_balanced(&g);
        assert_eq!(counts.free, counts.total, "{counts:?}");
    });
    drop(att);
}

#[test]
fn binding_a_queue_the_interface_lacks_is_queue_unavailable() {
    if !require_root() {
        return;
    }
    let ns = TestNetns::new();
    let (xa, _) = veth(&ns, "xa", "xb");
    ns.run_inside(|| {
        let mut g = group();
        let err = g.add_socket(xa, 1, &SOCKET).unwrap_err();
        assert!(
            matches!(err, XskError::QueueUnavailable { queue: 1, .. }),
            "{err}"
        );
        // The failed bind consumed the spare registration; queue 0 still binds.
        g.add_socket(xa, 0, &SOCKET).unwrap();
        let err = g.add_socket(xa, 1, &SOCKET).unwrap_err();
        assert!(
            matches!(err, XskError::QueueUnavailable { queue: 1, .. }),
            "{err}"
        );
        assert_eq!(g.counts().fill, 64);
    });
}
