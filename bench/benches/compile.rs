//! Benchmark of the service compiler (`kxdp_control::compile::ServiceCompiler`) on synthetic
//! clusters of 10k and 100k services with 10 endpoints each (100k and 1M endpoints), as seen
//! from one node of 100:
//! - **full compile**: a fresh compiler (every Maglev array built), best and median of a few;
//! - **no-change recompile**: every service's cached entries reused (fingerprints + assembly:
//!   the floor of any incremental compile);
//! - **one EndpointSlice change**: one endpoint of a random service flips ready ↔ not ready,
//!   then a recompile (that service's sets rebuilt), p50/p99/max over many changes;
//! - **RSS**: `VmRSS` after building the objects and after compiling, and `VmHWM` (peak).
//!
//! Times are wall clock, with the CPU time (all threads, `getrusage`) beside them: on a shared
//! machine the CPU time is the steadier figure.
//!
//! Services: 80% ClusterIP; 10% NodePort (eTP Cluster); 10% LoadBalancer with eTP Local, an
//! ingress IP and a health check port; every fifth service has a second port. Not criterion
//! (its statistics do not give p99, and a 100k full compile takes seconds per sample): a plain
//! harness that prints its figures.
//!
//! `cargo bench -p kxdp-bench --bench compile -- --measurement-time 3` (seconds of incremental
//! changes per size; `--sizes 10000` to run one size). Other criterion options are accepted
//! and ignored. `KXDP_COMPILE_THREADS=n` sets the compiler's threads (default: up to 4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kxdp_control::compile::{ServiceCompiler, ServiceContext};
use kxdp_control::objects::{
    AddressType, DesiredState, EndpointPortView, EndpointSliceView, EndpointView, ObjectKey,
    Protocol, ServicePortView, ServiceType, ServiceView, SessionAffinity, TargetPort,
    TrafficPolicy,
};

const ENDPOINTS_PER_SERVICE: usize = 10;
const NODES: usize = 100;

fn ip(bits: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from_bits(bits))
}

fn port(name: &str, port: u16, target: u16, node_port: Option<u16>) -> ServicePortView {
    ServicePortView {
        name: name.to_owned(),
        protocol: Protocol::Tcp,
        port,
        target_port: TargetPort::Number(target),
        node_port,
    }
}

/// `n` services in 10 namespaces, each with one slice of [`ENDPOINTS_PER_SERVICE`] endpoints
/// spread over [`NODES`] nodes.
fn cluster(n: usize) -> DesiredState {
    let mut state = DesiredState::default();
    let mut endpoint = 0u32;
    for i in 0..n {
        let namespace = format!("ns-{}", i % 10);
        let name = format!("svc-{i}");
        let service_type = match i % 10 {
            0 => ServiceType::NodePort,
            1 => ServiceType::LoadBalancer,
            _ => ServiceType::ClusterIp,
        };
        let external = service_type != ServiceType::ClusterIp;
        // NodePorts are unique per protocol across the cluster: one per external service.
        let node_port = external.then(|| 30000 + (i / 10 * 2 + i % 10) as u16 % 32768);
        let mut ports = vec![port("http", 80, 8080, node_port)];
        if i % 5 == 0 {
            ports.push(port("metrics", 9090, 9100, None));
        }
        let lb = service_type == ServiceType::LoadBalancer;
        let svc = ServiceView {
            namespace: namespace.clone(),
            name: name.clone(),
            service_type,
            cluster_ips: vec![ip(0x0a60_0000 + i as u32)], // 10.96.0.0/12
            headless: false,
            external_name: None,
            ports,
            external_ips: Vec::new(),
            load_balancer_ingress_ips: if lb {
                vec![ip(0xcb00_0000 + i as u32)]
            } else {
                Vec::new()
            },
            session_affinity: SessionAffinity::None,
            external_traffic_policy: if lb {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            internal_traffic_policy: TrafficPolicy::Cluster,
            load_balancer_source_ranges: Vec::new(),
            health_check_node_port: lb.then(|| 20000 + (i / 10) as u16 % 10000),
            publish_not_ready_addresses: false,
        };
        let endpoints = (0..ENDPOINTS_PER_SERVICE)
            .map(|_| {
                endpoint += 1;
                EndpointView {
                    addresses: vec![ip(0x0a80_0000 + endpoint)], // 10.128.0.0/9
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: Some(format!("node-{}", endpoint as usize % NODES)),
                    zone: None,
                    for_zones: Vec::new(),
                }
            })
            .collect();
        let slice = EndpointSliceView {
            namespace: namespace.clone(),
            name: format!("{name}-abcde"),
            service: name.clone(),
            address_type: AddressType::IPv4,
            ports: vec![
                EndpointPortView {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: Some(8080),
                },
                EndpointPortView {
                    name: "metrics".into(),
                    protocol: Protocol::Tcp,
                    port: Some(9100),
                },
            ],
            endpoints,
        };
        state.services.insert(svc.key(), svc);
        state.endpoint_slices.insert(slice.key(), slice);
    }
    state
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of the process so far, every thread included (the compiler's
/// threads end within each compile, and their time is added to the process's).
fn cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    getrusage(UsageWho::RUSAGE_SELF)
        .map_or(Duration::ZERO, |u| tv(u.user_time()) + tv(u.system_time()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run(n: usize, measurement: Duration, threads: Option<usize>) {
    let ctx = ServiceContext {
        node_name: "node-0".into(),
        node_ips: vec![Ipv4Addr::new(192, 168, 0, 1)],
        zone: None,
    };
    let new_compiler = || match threads {
        Some(t) => ServiceCompiler::with_threads(t),
        None => ServiceCompiler::new(),
    };
    println!("== {n} services, {} endpoints", n * ENDPOINTS_PER_SERVICE);
    let t = Instant::now();
    let mut state = cluster(n);
    let (rss, _) = memory();
    println!(
        "objects built in {:.0} ms; VmRSS {rss:.0} MiB",
        ms(t.elapsed())
    );

    // Full compiles: a fresh compiler each time; the last one is kept for the incremental part.
    let rounds = if n >= 50_000 { 3 } else { 5 };
    let mut full = Vec::new();
    let mut full_cpu = Duration::ZERO;
    let mut compiler = new_compiler();
    let mut kept = None;
    for _ in 0..rounds {
        drop(kept.take());
        compiler = new_compiler();
        let (t, c) = (Instant::now(), cpu());
        let (services, report) = compiler.compile(&state, &ctx);
        full.push(t.elapsed());
        full_cpu += cpu() - c;
        kept = Some((services, report));
    }
    full.sort();
    let (services, report) = kept.take().expect("at least one round");
    let (rss, hwm) = memory();
    println!(
        "full compile: best {:.1} ms, median {:.1} ms, CPU {:.1} ms ({} frontends, {} sets, {} backend entries, {} health checks)",
        ms(full[0]),
        ms(full[full.len() / 2]),
        ms(full_cpu) / rounds as f64,
        report.frontends,
        services.sets().len(),
        report.backends,
        report.health_checks.len()
    );
    println!("after compile: VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB");
    // The published tables stay alive as an agent keeps them; recompiles share their sets.
    let mut published = services;

    let mut same = Vec::new();
    let c = cpu();
    for _ in 0..5 {
        let t = Instant::now();
        let (s, r) = compiler.compile(&state, &ctx);
        same.push(t.elapsed());
        assert_eq!(r.compiled_services, 0);
        published = s;
    }
    let same_cpu = (cpu() - c) / 5;
    same.sort();
    println!(
        "no-change recompile: median {:.1} ms, CPU {:.1} ms",
        ms(same[same.len() / 2]),
        ms(same_cpu)
    );

    // One endpoint of a pseudo-random service flips ready per change.
    let keys: Vec<ObjectKey> = state.endpoint_slices.keys().cloned().collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut changes = Vec::new();
    let mut changes_cpu = Duration::ZERO;
    let start = Instant::now();
    while changes.len() < 20 || (start.elapsed() < measurement && changes.len() < 2000) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = &keys[(rng % keys.len() as u64) as usize];
        let slice = state.endpoint_slices.get_mut(key).expect("a known slice");
        let e = &mut slice.endpoints[(rng >> 32) as usize % ENDPOINTS_PER_SERVICE];
        e.ready = !e.ready;
        let (t, c) = (Instant::now(), cpu());
        let (s, r) = compiler.compile(&state, &ctx);
        changes.push(t.elapsed());
        changes_cpu += cpu() - c;
        assert_eq!(r.compiled_services, 1);
        published = s;
    }
    changes.sort();
    let (rss, hwm) = memory();
    println!(
        "one EndpointSlice change: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, mean CPU {:.1} ms ({} changes)",
        ms(percentile(&changes, 0.5)),
        ms(percentile(&changes, 0.99)),
        ms(changes[changes.len() - 1]),
        ms(changes_cpu) / changes.len() as f64,
        changes.len()
    );
    println!("after changes: VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB");
    drop(published);
}

fn main() {
    let mut measurement = Duration::from_secs(3);
    let mut sizes = vec![10_000, 100_000];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--measurement-time" => {
                if let Some(s) = args.next().and_then(|s| s.parse::<f64>().ok()) {
                    measurement = Duration::from_secs_f64(s);
                }
            }
            "--sizes" => {
                if let Some(s) = args.next() {
                    sizes = s.split(',').filter_map(|n| n.parse().ok()).collect();
                }
            }
            _ => {} // --bench, criterion's options: not used here
        }
    }
    let threads = std::env::var("KXDP_COMPILE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok());
    println!(
        "service compiler benchmark; threads: {}; cores: {}",
        threads.map_or_else(|| "default (up to 4)".to_owned(), |t: usize| t.to_string()),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for n in sizes {
        run(n, measurement, threads);
    }
}
