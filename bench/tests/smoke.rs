//! Root smoke tests: `nat` (TCP load) and `overlay` (UDP) for about a second per path, checking
//! that both the kernel path and kxdp moved packets to the sink and that the probes measured
//! latency; `pktgen` alone with IPv6/TCP/VXLAN templates at a fixed rate.
//! Needs root (namespaces, XDP, AF_XDP); skipped without it unless CI=true.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kxdp_bench::generator::GeneratorChoice;
use kxdp_bench::pktgen::{Engine, PktgenOptions};
use kxdp_bench::scenario::{Proto, RunOptions, Spec, Timing, nat::Nat, overlay::Overlay, runner};

fn options(proto: Proto) -> RunOptions {
    let cpus = kxdp_bench::cpu::online_cpus().unwrap();
    RunOptions {
        timing: Timing {
            warmup: Duration::from_millis(300),
            duration: Duration::from_secs(1),
            runs: 1,
        },
        flows: 2,
        wire_bytes: 64,
        workers: 1,
        gen_cores: vec![0],
        node_cores: vec![if cpus > 1 { 1 } else { 0 }],
        generator: GeneratorChoice::Auto,
        probe_rate: 500,
        extra_services: 10,
        kernel_max_services: 1000,
        proto,
        rate: None,
        dpdk: false,
    }
}

fn check(spec: &dyn Spec, proto: Proto) {
    let r = runner::run(spec, &options(proto)).unwrap();
    assert_eq!(r.setup.proto, proto);
    assert_eq!(r.scenario, spec.name());
    assert_eq!(r.paths.len(), 2);
    for p in &r.paths {
        if let Some(why) = &p.unavailable {
            // Only the NAT baseline may be missing (no nft on the machine).
            assert_eq!(why, "nft not installed", "{}: {}", p.path, why);
            assert_eq!(p.path, "kernel");
            continue;
        }
        assert!(
            p.mpps > 0.01,
            "{} {}: {} Mpps\n{:#?}",
            r.scenario,
            p.path,
            p.mpps,
            p.runs
        );
        let lat = p
            .latency
            .unwrap_or_else(|| panic!("{} {}: no probe arrived", r.scenario, p.path));
        assert!(lat.samples > 0 && lat.p50_us > 0.0, "{lat:?}");
    }
}

#[test]
fn nat_and_overlay_move_packets_on_both_paths() {
    if !kxdp_tests::require_root("smoke::nat_and_overlay_move_packets_on_both_paths") {
        return;
    }
    check(&Nat, Proto::Tcp);
    check(&Overlay, Proto::Udp);
}

#[test]
fn pktgen_sends_every_kind_of_template_at_a_fixed_rate() {
    if !kxdp_tests::require_root("smoke::pktgen_sends_every_kind_of_template_at_a_fixed_rate") {
        return;
    }
    let o = PktgenOptions {
        engine: Engine::AfXdp,
        proto: Proto::Tcp,
        ipv6: true,
        vxlan: true,
        flows: 4,
        wire_bytes: 128,
        rate: Some(20_000),
        threads: 1,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(200),
        cpus: kxdp_bench::cpu::online_cpus().unwrap(),
    };
    let r = kxdp_bench::pktgen::run(&o).unwrap();
    assert_eq!(r.frame_bytes, 124 + 50, "VXLAN adds 50");
    // Paced: about 20k frames/s offered, and they arrive.
    assert!(
        (0.01..0.03).contains(&r.offered_mpps),
        "{} Mpps offered",
        r.offered_mpps
    );
    assert!(r.received_frames > 0 && r.loss_pct < 50.0, "{r:?}");
    // The kernel module: unavailable here is a clear error, not a hang.
    let k = PktgenOptions {
        engine: Engine::Kernel,
        proto: Proto::Udp,
        ipv6: false,
        vxlan: false,
        ..o
    };
    if !std::path::Path::new(kxdp_bench::kpktgen::PROC_DIR).exists() {
        let e = kxdp_bench::pktgen::run(&k).unwrap_err().to_string();
        assert!(e.contains("pktgen"), "{e}");
    }
}
