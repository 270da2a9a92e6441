//! Scenario `forward`: 60-byte UDP frames (64 on the wire) from the generator namespace through
//! the node to the sink, IPv4 forwarding with TTL decrement and MAC rewrite, measured through
//! the kernel (`ip_forward=1`) and through kxdp (one pinned worker, native XDP, copy-mode
//! AF_XDP) in one invocation, on one topology.
//!
//! The frames go to 10.200.2.100, an address in the sink's subnet that nobody holds, and the
//! node sends them to a MAC nobody holds either (a static neighbour entry; a kxdp route): the
//! sink's veth counts each frame and its IP layer drops it at once as PACKET_OTHERHOST. The
//! sink's rx counter is the result.
//!
//! Cores (two on the reference VM): the generator has its own core. Everything the node does
//! runs on the node core: the node-gen veth's NAPI thread (the whole kernel path; for kxdp the
//! XDP steering program and the copy into the UMEM), the kxdp worker, and the sink's receive,
//! which veth runs in the sender's context (netif_rx, then the backlog softirq) because the
//! sink's veth has no NAPI. That last part is the same work in both paths.
//! A threaded sink NAPI on the generator's core would cost the node nothing, but either starves
//! (a generator always has more to send) or, made real-time, wakes once per frame and takes
//! the generator's core instead. Without threaded NAPI the node's receive work would run as a
//! softirq on the generator's core (see [`crate::napi`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use af_xdp::bpf::{DstKind, SteerMode, XdpMode};
use af_xdp::{BindMode, SocketConfig};
use anyhow::{Context, Result};
use kxdp_dataplane::stats::WorkerSnapshot;
use kxdp_dataplane::{
    DropReason, Engine, EngineConfig, NextHop, PortConfig, PortId, Route, TableHandle, Tables,
};
use kxdp_tests::Topology;

use super::{Sample, Timing, ethtool_stats, measure, median};
use crate::cpu;
use crate::generator::{Generator, GeneratorChoice, GeneratorConfig, GeneratorKind};
use crate::napi::{self, ThreadedNapi};
use crate::report::{PathReport, RunResult, ScenarioReport, Setup, gbps};

const GEN_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 0);
const SINK_NET: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 0);
/// In the sink's subnet, assigned to nobody: the sink counts it and drops it.
pub const BLACKHOLE_IN_SINK: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 100);
/// 14 + 20 + 8 + 18 bytes: a minimum Ethernet frame without its FCS.
pub const FRAME_BYTES: usize = 60;
const WIRE_BYTES: usize = FRAME_BYTES + 4;
/// Flow `i` uses UDP source port `FIRST_SRC_PORT + i`.
const FIRST_SRC_PORT: u16 = 10_000;
/// The next hop's MAC for [`BLACKHOLE_IN_SINK`]: locally administered, owned by nobody, so the
/// sink counts the frame and drops it at once.
const OTHERHOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x64];
/// Name of kxdp's first worker thread (`kxdp-w<index>`).
const WORKER_THREAD: &str = "kxdp-w0";
/// Name of the generator's thread.
const GENERATOR_THREAD: &str = crate::generator::THREAD_NAME;

/// What `kxdp-bench forward` was asked for.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    pub timing: Timing,
    /// Distinct UDP source ports, one frame template (and generator program) each.
    pub flows: usize,
    pub gen_core: usize,
    /// The kxdp worker's core.
    pub node_core: usize,
    /// The core of the node-gen veth's NAPI thread (receive processing: the whole kernel path;
    /// kxdp's XDP steering and copy into the UMEM).
    pub napi_core: usize,
    pub generator: GeneratorChoice,
}

/// Builds the topology, measures the kernel path and then kxdp, and reports both.
pub fn run(opts: &ForwardOptions) -> Result<ScenarioReport> {
    let mut notes = Vec::new();
    // This thread samples counters and forks `ip`/`ethtool`; keep that off the node's core.
    // Threads started from here (generator, namespace helpers) inherit it until they re-pin.
    cpu::pin(0, opts.gen_core).context("pinning the benchmark's main thread")?;
    let t = Topology::chain3("bench-fwd").context("building gen-node-sink namespaces")?;
    // The sink's kernel drops the frames as cheaply as an skb can be dropped: they are
    // addressed to a MAC the sink does not have, so ip_rcv discards them as PACKET_OTHERHOST
    // right after the interface counted them. A static neighbour entry gives the kernel path
    // that MAC without ARP (nobody would answer); kxdp gets it from its route.
    t.node_sink_if
        .link
        .neigh_replace(BLACKHOLE_IN_SINK.into(), OTHERHOST_MAC)?;

    let was_threaded = napi::is_threaded(&t.node, t.node_gen_if.name())?;
    // GRO gives node-gen a NAPI instance while no XDP program is attached (the kernel path):
    // that is what accepts frames sent with ndo_xdp_xmit (the generator's XDP_TX), and what
    // threaded mode turns into a thread we can pin.
    t.node
        .exec(&["ethtool", "-K", t.node_gen_if.name(), "gro", "on"])
        .context("GRO on node-gen")?;
    // veth_xmit hands an skb to the peer's NAPI only when the skb is "eligible for GRO", which
    // for a UDP frame means TSO is off on the sending end (veth_skb_is_eligible_for_gro);
    // otherwise it goes through netif_rx and is processed on the sender's core. The AF_XDP
    // fallback generator sends skbs.
    t.generator
        .exec(&["ethtool", "-K", t.gen_if.name(), "tso", "off"])
        .context("TSO off on the generator's veth")?;
    let node_napi = ThreadedNapi::enable(&t.node, t.node_gen_if.name(), opts.napi_core)?;
    let node_label = format!("napi/{}", t.node_gen_if.name());
    let napi_desc = format!(
        "node-gen NAPI threaded (was {}), its thread pinned to core {}; veth-sink has no NAPI: \
         the node's transmit delivers to the sink through netif_rx on the node's core",
        if was_threaded { "on" } else { "off" },
        node_napi.core(),
    );

    let templates: Vec<Vec<u8>> = (0..opts.flows)
        .map(|i| {
            let port = u16::try_from(i)
                .ok()
                .and_then(|i| FIRST_SRC_PORT.checked_add(i))
                .context("too many flows for distinct source ports")?;
            udp_frame(&t, BLACKHOLE_IN_SINK, port)
        })
        .collect::<Result<_>>()?;
    let gen_cfg = GeneratorConfig {
        ifname: t.gen_if.name().to_owned(),
        ifindex: t.gen_if.ifindex,
        templates,
        core: Some(opts.gen_core),
    };
    let mut choice = opts.generator;
    let mut generator_kind = None;
    // Starts a generator; the first start settles live frames vs the fallback for all runs.
    let mut start_gen = |notes: &mut Vec<String>| -> Result<Generator> {
        let g = Generator::start(&t.generator, &gen_cfg, choice)?;
        if generator_kind.is_none() {
            if let Some(why) = g.fallback_reason() {
                let note = format!(
                    "XDP live frames unavailable ({why}); FELL BACK to AF_XDP copy-mode TX \
                     (1-1.5 Mpps on veth here, not far above the node): the generator may be \
                     the bottleneck"
                );
                eprintln!("WARNING: {note}");
                notes.push(note);
            }
            generator_kind = Some(g.kind());
            choice = GeneratorChoice::Only(g.kind());
        }
        Ok(g)
    };

    // --- kernel path ---------------------------------------------------------------------
    t.enable_kernel_forwarding()?;
    let napi_threads = node_napi.repin()?;
    if napi_threads.is_empty() {
        notes.push("no NAPI thread found for node-gen: kernel path unpinned".into());
    }
    let mut kernel_runs = Vec::new();
    for run in 1..=opts.timing.runs {
        let generator = start_gen(&mut notes)?;
        let watch = Watch {
            node_core: opts.node_core,
            gen_core: opts.gen_core,
            kthreads: vec![(node_label.clone(), &napi_threads)],
        };
        let r = measure(generator, &opts.timing, |g| sample(&t, g, &watch))?;
        progress("kernel", run, opts.timing.runs, &r);
        kernel_runs.push(r);
    }
    t.disable_kernel_forwarding()?;

    // --- kxdp ------------------------------------------------------------------------------
    let engine = start_engine(&t, opts.node_core)?;
    let xdp_mode = engine
        .ports()
        .iter()
        .map(|p| p.xdp_mode.to_string())
        .collect::<Vec<_>>()
        .join("/");
    // Attaching XDP re-created the veth's NAPI thread.
    let napi_threads = node_napi.repin()?;
    if napi_threads.is_empty() {
        notes.push("no NAPI thread found for node-gen after XDP attach: unpinned".into());
    }
    let mut kxdp_runs = Vec::new();
    for run in 1..=opts.timing.runs {
        let generator = start_gen(&mut notes)?;
        let watch = Watch {
            node_core: opts.node_core,
            gen_core: opts.gen_core,
            kthreads: vec![(node_label.clone(), &napi_threads)],
        };
        let r = measure(generator, &opts.timing, |g| {
            let mut s = sample(&t, g, &watch)?;
            engine_counters(&engine.stats(), &mut s.counters);
            Ok(s)
        })?;
        progress("kxdp", run, opts.timing.runs, &r);
        kxdp_runs.push(r);
    }
    let stop = engine.stop();
    if let Some(f) = stop.frames.iter().find(|f| f.user != 0 || f.tx != 0) {
        notes.push(format!("kxdp held frames after stop: {f:?}"));
    }

    let generator = generator_kind.unwrap_or(GeneratorKind::XdpLiveFrames);
    let kernel = path_report(
        "kernel",
        "node kernel, net.ipv4.ip_forward=1, GRO on node-gen (no XDP)",
        kernel_runs,
    );
    let kxdp = path_report(
        "kxdp",
        &format!(
            "kxdp engine, 1 worker pinned to core {}, XDP {xdp_mode}, AF_XDP copy mode",
            opts.node_core
        ),
        kxdp_runs,
    );
    for p in [&kernel, &kxdp] {
        // The node is the bottleneck when its core is saturated and its ingress ring turns
        // frames away; otherwise the generator may be.
        let arrived = median(p.runs.iter().map(|r| r.node_rx_mpps));
        if p.node_core_busy_pct < 90.0 || arrived > 0.97 * p.offered_mpps {
            notes.push(format!(
                "{}: the node was not saturated (node core {:.0} % busy, {:.2} of {:.2} Mpps \
                 offered arrived): the generator may be the bottleneck",
                p.path, p.node_core_busy_pct, arrived, p.offered_mpps
            ));
        }
    }
    if let Some(note) = xsk_ring_drops(&kxdp.runs, t.node_gen_if.name()) {
        notes.push(note);
    }
    if generator == GeneratorKind::AfXdpTx {
        notes.push(
            "the AF_XDP generator sends skbs: at node-gen, kxdp's native XDP must first copy \
             each skb into an XDP buffer (live frames would arrive as XDP frames), while the \
             kernel path takes the skb as is; this fallback favours the kernel path"
                .into(),
        );
    }
    let ratio = (kernel.mpps > 0.0).then(|| kxdp.mpps / kernel.mpps);
    Ok(ScenarioReport {
        scenario: "forward".into(),
        setup: Setup {
            frame_bytes: FRAME_BYTES,
            wire_bytes: WIRE_BYTES,
            flows: opts.flows,
            generator,
            generator_core: opts.gen_core,
            node_core: opts.node_core,
            xdp_mode,
            af_xdp_bind: "copy".into(),
            napi: napi_desc,
            warmup_s: opts.timing.warmup.as_secs_f64(),
            duration_s: opts.timing.duration.as_secs_f64(),
            runs: opts.timing.runs,
        },
        paths: vec![kernel, kxdp],
        ratio_kxdp_over_kernel: ratio,
        notes,
    })
}

/// The engine in the node namespace on both node-side veths (as in tests/tests/forward.rs),
/// one worker pinned to `core`, native XDP, copy-mode AF_XDP.
fn start_engine(t: &Topology, core: usize) -> Result<Engine> {
    let to_gen = NextHop::new(PortId(0), t.gen_if.mac, t.node_gen_if.mac);
    let to_sink = NextHop::new(PortId(1), t.sink_if.mac, t.node_sink_if.mac);
    let to_blackhole = NextHop::new(PortId(1), OTHERHOST_MAC, t.node_sink_if.mac);
    let tables = Tables::default()
        .with_route4(GEN_NET, 24, Route::Via(to_gen))
        .with_route4(SINK_NET, 24, Route::Via(to_sink))
        .with_route4(BLACKHOLE_IN_SINK, 32, Route::Via(to_blackhole))
        .with_route4(t.node_gen_if.ipv4, 32, Route::Host)
        .with_route4(t.node_sink_if.ipv4, 32, Route::Host);
    let cfg = EngineConfig {
        ports: [&t.node_gen_if, &t.node_sink_if]
            .iter()
            .map(|i| PortConfig {
                ifname: i.name().to_owned(),
                steer: SteerMode::ByDestination,
            })
            .collect(),
        cores: vec![core],
        xdp_mode: XdpMode::Native,
        socket: SocketConfig {
            bind: BindMode::Copy,
            ..SocketConfig::default()
        },
        ..EngineConfig::default()
    };
    let handle = Arc::new(TableHandle::new(tables));
    let engine = t
        .node
        .run(move || Engine::start(cfg, handle))?
        .context("starting the kxdp engine in the node namespace")?;
    // The routed prefixes are the engine's; the node's own addresses stay with the kernel.
    engine.own_prefix(GEN_NET, 24, DstKind::All)?;
    engine.own_prefix(SINK_NET, 24, DstKind::All)?;
    engine.own_prefix(t.node_gen_if.ipv4, 32, DstKind::PortsOnly)?;
    engine.own_prefix(t.node_sink_if.ipv4, 32, DstKind::PortsOnly)?;
    Ok(engine)
}

/// Which cores and threads [`sample`] reads.
struct Watch<'a> {
    node_core: usize,
    gen_core: usize,
    /// Kernel threads by label: the NAPI threads.
    kthreads: Vec<(String, &'a [u32])>,
}

/// Threads of this process whose CPU time a run reports, by name.
const OWN_THREADS: [&str; 2] = [WORKER_THREAD, GENERATOR_THREAD];

/// Reads every counter of the forward topology. The sink counter and the generator's count are
/// read first and together, so the window's rates use matching instants.
fn sample(t: &Topology, generator: &Generator, watch: &Watch<'_>) -> Result<Sample> {
    let delivered = t.sink.link_stats(t.sink_if.name())?.rx_packets;
    let at = std::time::Instant::now();
    let offered = generator.sent();
    let node_rx = t.node.link_stats(t.node_gen_if.name())?.rx_packets;
    let node_core = cpu::core_times(watch.node_core)?;
    let gen_core = cpu::core_times(watch.gen_core)?;
    let mut threads = BTreeMap::new();
    for (label, pids) in &watch.kthreads {
        for &pid in *pids {
            // A thread that vanished (re-created) counts as zero rather than failing the run.
            let ns = cpu::thread_runtime_ns(pid, pid).unwrap_or(0);
            *threads.entry(label.clone()).or_insert(0) += ns;
        }
    }
    for name in OWN_THREADS {
        for tid in cpu::own_threads(name)? {
            let ns = cpu::thread_runtime_ns(std::process::id(), tid).unwrap_or(0);
            *threads.entry(name.to_owned()).or_insert(0) += ns;
        }
    }
    let mut counters = BTreeMap::new();
    for (ns, iface) in [
        (&t.generator, &t.gen_if),
        (&t.node, &t.node_gen_if),
        (&t.node, &t.node_sink_if),
        (&t.sink, &t.sink_if),
    ] {
        counters.extend(ethtool_stats(ns, iface.name()));
        let st = ns.link_stats(iface.name())?;
        counters.insert(format!("{}:link_tx_dropped", iface.name()), st.tx_dropped);
        counters.insert(format!("{}:link_rx_dropped", iface.name()), st.rx_dropped);
    }
    Ok(Sample {
        at,
        offered,
        node_rx,
        delivered,
        node_core,
        gen_core,
        threads,
        counters,
    })
}

/// kxdp's own counters, summed over workers, keyed `engine:<name>`.
fn engine_counters(stats: &[WorkerSnapshot], out: &mut BTreeMap<String, u64>) {
    let sum = |f: &dyn Fn(&WorkerSnapshot) -> u64| stats.iter().map(f).sum::<u64>();
    out.insert(
        "engine:rx_node_gen".into(),
        sum(&|s| s.ports.first().map_or(0, |p| p.rx_packets)),
    );
    out.insert(
        "engine:tx_node_sink".into(),
        sum(&|s| s.ports.get(1).map_or(0, |p| p.tx_packets)),
    );
    out.insert("engine:to_host".into(), sum(&|s| s.to_host));
    out.insert("engine:batches".into(), sum(&|s| s.batches));
    out.insert("engine:idle_polls".into(), sum(&|s| s.idle_polls));
    out.insert("engine:sleeps".into(), sum(&|s| s.sleeps));
    for &r in DropReason::ALL {
        out.insert(
            format!("engine:drop_{}", r.label()),
            sum(&|s| s.drop_count(r)),
        );
    }
}

/// How many of the frames kxdp's steering program redirected failed to reach the AF_XDP
/// socket (veth counts a failed XDP_REDIRECT as an rx drop): the RX ring was full (the worker
/// fell behind) or the fill ring was empty. The sockets' own XDP_STATISTICS are not reachable
/// from here, and this kernel has no XDP socket diag for `ss --xdp`.
fn xsk_ring_drops(runs: &[RunResult], ifname: &str) -> Option<String> {
    let get = |r: &RunResult, k: &str| {
        r.counters
            .get(&format!("{ifname}:{k}"))
            .copied()
            .unwrap_or(0)
    };
    let drops: u64 = runs.iter().map(|r| get(r, "rx_queue_0_drops")).sum();
    let seen: u64 = runs.iter().map(|r| get(r, "rx_queue_0_xdp_packets")).sum();
    (drops > 0 && seen > 0).then(|| {
        format!(
            "kxdp: {:.0} % of the frames node-gen's XDP program saw were dropped at the AF_XDP \
             socket (RX ring full: the worker fell behind), counted as {ifname} \
             rx_queue_0_drops; they cost node-core time in the NAPI thread before being dropped",
            100.0 * drops as f64 / seen as f64
        )
    })
}

fn path_report(path: &str, description: &str, runs: Vec<RunResult>) -> PathReport {
    let mpps = median(runs.iter().map(|r| r.delivered_mpps));
    let ns = median(runs.iter().filter_map(|r| r.node_core_ns_per_pkt));
    PathReport {
        path: path.into(),
        description: description.into(),
        mpps,
        gbps: gbps(mpps, WIRE_BYTES),
        offered_mpps: median(runs.iter().map(|r| r.offered_mpps)),
        node_core_ns_per_pkt: (!ns.is_nan()).then_some(ns),
        node_core_busy_pct: median(runs.iter().map(|r| r.node_core_busy_pct)),
        runs,
    }
}

fn progress(path: &str, run: u32, runs: u32, r: &RunResult) {
    eprintln!(
        "[forward/{path}] run {run}/{runs}: {:.3} Mpps delivered (offered {:.2}, arrived at \
         node {:.3}), node core {:.0} % busy{}",
        r.delivered_mpps,
        r.offered_mpps,
        r.node_rx_mpps,
        r.node_core_busy_pct,
        r.node_core_ns_per_pkt
            .map_or(String::new(), |ns| format!(", {ns:.0} ns/pkt")),
    );
}

/// A 60-byte UDP frame from the generator to `dst` with source port `src_port`, addressed to
/// the node's MAC, TTL 64, checksums valid.
fn udp_frame(t: &Topology, dst: Ipv4Addr, src_port: u16) -> Result<Vec<u8>> {
    let b = etherparse::PacketBuilder::ethernet2(t.gen_if.mac, t.node_gen_if.mac)
        .ipv4(t.gen_if.ipv4.octets(), dst.octets(), 64)
        .udp(src_port, 9);
    let payload = [0u8; FRAME_BYTES - 14 - 20 - 8];
    let mut v = Vec::with_capacity(FRAME_BYTES);
    b.write(&mut v, &payload).context("building a UDP frame")?;
    Ok(v)
}
