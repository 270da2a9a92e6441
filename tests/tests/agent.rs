//! End-to-end: the `kxdp agent` binary attaches to its uplink, keeps the node's own traffic
//! working, and leaves nothing attached when it stops, whether by SIGTERM or by SIGKILL.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use kxdp_tests::{Netns, NsProcess, Veth, binaries, ping, require_root, wait_for};
use nix::sys::signal::Signal;

struct Node {
    node: Netns,
    peer: Netns,
}

/// A node namespace whose uplink `uplink0` (10.200.9.1/24) faces a peer namespace (10.200.9.2).
fn node() -> Node {
    let node = Netns::new("agent-node").unwrap();
    let peer = Netns::new("agent-peer").unwrap();
    let v = Veth::create(&node, "uplink0", &peer, "peer0").unwrap();
    v.a.addr_add("10.200.9.1".parse().unwrap(), 24).unwrap();
    v.b.addr_add("10.200.9.2".parse().unwrap(), 24).unwrap();
    v.up().unwrap();
    Node { node, peer }
}

fn xdp_attached(ns: &Netns) -> bool {
    ns.ip(&["-d", "link", "show", "dev", "uplink0"])
        .unwrap()
        .contains("prog/xdp")
}

fn start_agent(n: &Node) -> NsProcess {
    let kxdp = binaries::kxdp().unwrap();
    let agent = n
        .node
        .spawn(&[
            kxdp.to_str().unwrap(),
            "agent",
            "--uplink",
            "uplink0",
            "--xdp-mode",
            "native",
            "--source",
            "kube",
        ])
        .unwrap();
    wait_for("the agent to attach XDP", Duration::from_secs(20), || {
        xdp_attached(&n.node)
    });
    agent
}

#[test]
fn sigterm_stops_cleanly_and_detaches() {
    if !require_root("sigterm_stops_cleanly_and_detaches") {
        return;
    }
    let n = node();
    let agent = start_agent(&n);
    // The node's own address is not the engine's: the kernel still answers.
    assert!(
        ping(&n.peer, "10.200.9.1".parse().unwrap(), 3),
        "node stays reachable with the agent running"
    );
    let out = agent.stop().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent exits 0 on SIGTERM: {stderr}");
    assert!(stderr.contains("XDP programs detached"), "{stderr}");
    assert!(!xdp_attached(&n.node), "no XDP program left after SIGTERM");
}

#[test]
fn sigkill_leaves_no_xdp_program_attached() {
    if !require_root("sigkill_leaves_no_xdp_program_attached") {
        return;
    }
    let n = node();
    let mut agent = start_agent(&n);
    agent.signal(Signal::SIGKILL).unwrap();
    assert!(
        agent
            .wait_timeout(Duration::from_secs(5))
            .unwrap()
            .is_some(),
        "agent died"
    );
    // bpf_link attachments die with the process: the kernel detaches when the last fd closes.
    wait_for(
        "XDP to detach after SIGKILL",
        Duration::from_secs(5),
        || !xdp_attached(&n.node),
    );
    assert!(
        ping(&n.peer, "10.200.9.1".parse().unwrap(), 1),
        "node reachable after the crash"
    );
}
