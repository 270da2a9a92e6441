//! Micro-benchmark of the whole [`Pipeline`] over one 64-packet batch, without sockets (the
//! unit tests' buffers), for three kinds of traffic — plain forwarding (uplink → pod), service
//! NAT with a conntrack hit (pod → ClusterIP, translated to a backend), and VXLAN encapsulation
//! (pod → remote pod) — with tables holding 10 services or 100k services with 10 backends each
//! (1M endpoints). Criterion reports time per batch and packets per second
//! (`Throughput::Elements(64)`): ns/packet is the batch time divided by 64. Each batch starts
//! by copying its 64 frames back into their buffers (what `copy_only` measures alone).
//!
//! `cargo bench -p kxdp-bench --bench pipeline -- --warm-up-time 1 --measurement-time 2`

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kxdp_dataplane::pipeline::test_support::{
    POD_A, POD_A_IP, REMOTE_POD_IP, ROUTER_MAC, TestBuf, UPLINK, node_tables,
};
use kxdp_dataplane::pipeline::{BATCH_SIZE, PacketMeta, Pipeline};
use kxdp_dataplane::{
    Backend, BackendSet, Conntrack, Frontend, FrontendKey, FrontendKind, L4Proto, PortId, Services,
    Tables,
};

const BACKENDS_PER_SERVICE: u32 = 10;
const VIP_BASE: u32 = 0x0a60_0000; // 10.96.0.0
const BACKEND_BASE: u32 = 0x0a80_0000; // 10.128.0.0/9: routed out the uplink

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from_bits(VIP_BASE + i)
}

/// `n` ClusterIP services (TCP port 80), 10 backends each on port 8080.
fn services(n: u32) -> Services {
    let mut b = Services::builder();
    for i in 0..n {
        let backends: Vec<Backend> = (0..BACKENDS_PER_SERVICE)
            .map(|j| Backend {
                addr: Ipv4Addr::from_bits(BACKEND_BASE + i * BACKENDS_PER_SERVICE + j),
                port: 8080,
            })
            .collect();
        let set = b.add_set(Arc::new(BackendSet::new(&backends, &[]).unwrap()));
        let key = FrontendKey {
            addr: vip(i),
            proto: L4Proto::Tcp,
            port: 80,
        };
        b.add_frontend(key, Frontend::new(FrontendKind::ClusterIp, set))
            .unwrap();
    }
    b.build()
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], ROUTER_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1, 1000)
        .ack(1);
    let mut v = Vec::new();
    b.write(&mut v, &[0x5a; 64]).unwrap();
    v
}

struct Case {
    name: &'static str,
    in_port: PortId,
    frames: Vec<Vec<u8>>,
}

fn cases(n_services: u32) -> Vec<Case> {
    // Spread the NAT flows over the services, as many clients of many services would.
    let step = (n_services / BATCH_SIZE as u32).max(1);
    vec![
        Case {
            name: "forward",
            in_port: UPLINK,
            frames: (0..BATCH_SIZE as u16)
                .map(|i| tcp(Ipv4Addr::new(192, 0, 2, i as u8), POD_A_IP, 1000 + i, 80))
                .collect(),
        },
        Case {
            name: "nat_conntrack_hit",
            in_port: POD_A,
            frames: (0..BATCH_SIZE as u32)
                .map(|i| tcp(POD_A_IP, vip((i * step) % n_services), 20000 + i as u16, 80))
                .collect(),
        },
        Case {
            name: "encap",
            in_port: POD_A,
            frames: (0..BATCH_SIZE as u16)
                .map(|i| tcp(POD_A_IP, REMOTE_POD_IP, 30000 + i, 80))
                .collect(),
        },
    ]
}

fn run(p: &mut Pipeline, t: &Tables, case: &Case) -> (Vec<TestBuf>, [PacketMeta; BATCH_SIZE]) {
    let mut pkts: Vec<TestBuf> = case.frames.iter().map(|f| TestBuf::new(f)).collect();
    let mut meta = [PacketMeta::default(); BATCH_SIZE];
    p.run_on(t, case.in_port, &mut pkts, &mut meta);
    (pkts, meta)
}

fn bench_pipeline(c: &mut Criterion) {
    for n_services in [10u32, 100_000] {
        let tables = node_tables().0.with_services(services(n_services));
        let mut group = c.benchmark_group(format!("pipeline/{n_services}_services"));
        group.throughput(Throughput::Elements(BATCH_SIZE as u64));
        for case in cases(n_services) {
            // The engine's conntrack size, shared as between workers.
            let mut p = Pipeline::new(Arc::new(Conntrack::default()));
            // Warm-up batch: creates the flows, so the measured batches hit the conntrack.
            let (_, meta) = run(&mut p, &tables, &case);
            assert!(
                meta.iter().all(|m| matches!(
                    kxdp_dataplane::pipeline::final_verdict(*m),
                    kxdp_dataplane::Verdict::Forward(_)
                )),
                "{}: every packet forwarded",
                case.name
            );
            // Frames are recycled as UMEM frames are: rewritten in place, no allocation. The
            // copy of the 64 frames is part of the measured time (see `copy_only`).
            let mut pkts: Vec<TestBuf> = case.frames.iter().map(|f| TestBuf::new(f)).collect();
            let mut meta = [PacketMeta::default(); BATCH_SIZE];
            group.bench_function(case.name, |b| {
                b.iter(|| {
                    for (buf, f) in pkts.iter_mut().zip(&case.frames) {
                        buf.reset(f);
                    }
                    p.run_on(&tables, case.in_port, &mut pkts, &mut meta);
                })
            });
            if case.name == "nat_conntrack_hit" {
                let c = p.counters();
                assert_eq!(c.ct_insert_failures, 0);
                assert!(c.nat_forward > 0);
            }
        }
        let frames = cases(n_services).swap_remove(0).frames;
        let mut pkts: Vec<TestBuf> = frames.iter().map(|f| TestBuf::new(f)).collect();
        group.bench_function("copy_only", |b| {
            b.iter(|| {
                for (buf, f) in pkts.iter_mut().zip(&frames) {
                    buf.reset(std::hint::black_box(f));
                }
                std::hint::black_box(&mut pkts);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
