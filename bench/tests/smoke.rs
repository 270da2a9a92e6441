//! Root smoke test: `nat` and `overlay` for about a second per path, checking that both the
//! kernel path and kxdp moved packets to the sink and that the probes measured latency.
//! Needs root (namespaces, XDP, AF_XDP); skipped without it unless CI=true.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use kxdp_bench::generator::GeneratorChoice;
use kxdp_bench::scenario::{RunOptions, Spec, Timing, nat::Nat, overlay::Overlay, runner};

fn options() -> RunOptions {
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
        kernel_max_services: 20_000,
        proto: kxdp_bench::scenario::Proto::Udp,
        rate: None,
        dpdk: false,
    }
}

fn check(spec: &dyn Spec) {
    let r = runner::run(spec, &options()).unwrap();
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
    check(&Nat);
    check(&Overlay);
}
