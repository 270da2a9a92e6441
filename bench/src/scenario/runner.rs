//! Runs one scenario: builds the topology, measures the kernel path, then kxdp, then (where
//! asked, `forward --dpdk`) DPDK testpmd, on the same namespaces and veths, and reports them.
//!
//! Cores (two on the reference VM): generator thread `i` has core `gen_cores[i]`; everything
//! the node does for queue `i` runs on `node_cores[i]`: the node-gen veth's NAPI thread of that
//! queue (the whole kernel path; for kxdp the XDP steering program and the copy into the UMEM),
//! kxdp worker `i`, and the sink's receive, which veth runs in the sender's context (netif_rx,
//! then the backlog softirq) because the sink's veth has no NAPI: the same work in both paths.
//! The probe threads and this thread (sampling counters) share the first generator core.
//! testpmd's lcores both run on the first node core, as kxdp's worker does.
//! Live frames enter node-gen's RX queue `sending CPU % queues`, so generator `i` feeds queue
//! `i` when the generator cores are 0..workers.
//!
//! The sink counts frames on its interface; load frames are addressed to a MAC it does not
//! have (or carry an outer destination that is not its own), so its IP layer drops them at
//! once as PACKET_OTHERHOST. Only the probes reach a socket.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use af_xdp::bpf::{SteerMode, XdpMode};
use af_xdp::{BindMode, SocketConfig};
use anyhow::{Context, Result, ensure};
use hdrhistogram::Histogram;
use kxdp_control::netlink::Route;
use kxdp_dataplane::stats::WorkerSnapshot;
use kxdp_dataplane::{DropReason, Engine, EngineConfig, PortConfig, TableHandle};

use super::{
    BLACKHOLE_IN_SINK, FIRST_SRC_PORT, OTHERHOST_MAC, PROBE_PORT, RunOptions, Sample, Spec, median,
};
use crate::cpu::{self, CoreTimes};
use crate::dpdk::{self, Testpmd, TestpmdConfig};
use crate::generator::{Generator, GeneratorChoice, GeneratorConfig, GeneratorKind};
use crate::latency::{LatencySummary, ProbeReceiver, ProbeSender, new_histogram};
use crate::napi::{self, ThreadedNapi};
use crate::netns::Netns;
use crate::offload;
use crate::report::{PathReport, RunResult, ScenarioReport, Setup, ThreadCpu, gbps};
use crate::topology::Topology;
use crate::xdp;

/// Label of the node-gen NAPI threads' CPU time.
const NAPI_LABEL: &str = "napi/node-gen";
/// kxdp worker threads are `kxdp-w<index>`.
const WORKER_PREFIX: &str = "kxdp-w";
/// The DPDK path's name, and the label of testpmd's CPU time.
const DPDK_PATH: &str = "dpdk-testpmd";

/// What forwards in the node during a path's runs: where its own counters come from.
#[derive(Clone, Copy)]
enum Forwarder<'a> {
    Kernel,
    Kxdp(&'a Engine),
    Testpmd(&'a Testpmd),
}

/// Builds the topology, measures the kernel path, kxdp and (with `o.dpdk`, where the
/// scenario has it) DPDK testpmd, and reports them.
pub fn run(spec: &dyn Spec, o: &RunOptions) -> Result<ScenarioReport> {
    ensure!(
        o.workers >= 1 && o.gen_cores.len() == o.workers && o.node_cores.len() == o.workers,
        "one generator core and one node core per worker"
    );
    ensure!(
        o.wire_bytes >= 64 && o.wire_bytes + spec.gen_extra_bytes() <= 1518,
        "--size {}: need 64..={} for {}",
        o.wire_bytes,
        1518 - spec.gen_extra_bytes(),
        spec.name()
    );
    let name = spec.name();
    let mut notes = Vec::new();
    // This thread samples counters and starts helper threads; keep it off the node's cores.
    cpu::pin(0, o.gen_cores[0]).context("pinning the benchmark's main thread")?;
    progress(name, "building gen → node → sink namespaces");
    let t = Topology::chain3(&format!("kb-{name}"), o.workers as u32)
        .context("building gen-node-sink namespaces")?;
    common_setup(&t)?;
    let was_threaded = napi::is_threaded(&t.node, &t.node_gen_if.name)?;
    let node_napi = ThreadedNapi::enable(&t.node, &t.node_gen_if.name, &o.node_cores)?;
    let napi_desc = format!(
        "node-gen NAPI threaded (was {}), queue i's thread pinned to node core i ({:?}); \
         node-sink's peer has no NAPI: the node's transmit delivers to the sink through \
         netif_rx on the node's cores",
        if was_threaded { "on" } else { "off" },
        node_napi.cores(),
    );
    spec.prepare(&t, o)?;

    let gen_frame = o.frame_bytes() + spec.gen_extra_bytes();
    let templates: Vec<Vec<u8>> = (0..o.flows)
        .map(|i| {
            let port = u16::try_from(i)
                .ok()
                .and_then(|i| FIRST_SRC_PORT.checked_add(i))
                .context("too many flows for distinct source ports")?;
            spec.load_frame(&t, o.proto, port, o.frame_bytes())
        })
        .collect::<Result<_>>()?;
    ensure!(
        templates.iter().all(|f| f.len() == gen_frame),
        "{name}: a template is not {gen_frame} bytes"
    );
    let probes = if o.probe_rate > 0 {
        Some(ProbeReceiver::start(&t.sink, PROBE_PORT, o.gen_cores[0])?)
    } else {
        None
    };
    let mut ctx = Ctx {
        t: &t,
        o,
        name,
        templates,
        choice: o.generator,
        generator_kind: None,
        probes: probes.as_ref(),
        probe_src: spec.probe_src(&t),
        probe_dst: spec.probe_dst(),
        ethtool: has_ethtool(&t.node),
    };

    // --- kernel path -------------------------------------------------------------------
    progress(name, "kernel path: setting up");
    let kernel = match spec.kernel_up(&t, o)? {
        Some(why) => {
            progress(name, &format!("kernel path unavailable: {why}"));
            notes.push(format!("kernel path not measured: {why}"));
            unavailable("kernel", &spec.kernel_description(o), &why)
        }
        None => {
            let napi_threads = node_napi.repin()?;
            if napi_threads.is_empty() {
                notes.push("no NAPI thread found for node-gen: kernel path unpinned".into());
            }
            let measured = ctx.path("kernel", Forwarder::Kernel, &napi_threads, &mut notes);
            spec.kernel_down(&t)?;
            let (runs, hist, sent, received) = measured?;
            path_report(
                "kernel",
                &spec.kernel_description(o),
                runs,
                &hist,
                (sent, received),
                o.wire_bytes + spec.sink_extra_bytes(),
            )
        }
    };

    // --- kxdp ----------------------------------------------------------------------------
    progress(name, "kxdp: starting the engine");
    let engine = start_engine(spec, &t, o)?;
    let xdp_mode = engine
        .ports()
        .iter()
        .map(|p| p.xdp_mode.to_string())
        .collect::<Vec<_>>()
        .join("/");
    // Attaching XDP re-created the veth's NAPI threads.
    let napi_threads = node_napi.repin()?;
    if napi_threads.is_empty() {
        notes.push("no NAPI thread found for node-gen after XDP attach: unpinned".into());
    }
    let measured = ctx.path("kxdp", Forwarder::Kxdp(&engine), &napi_threads, &mut notes);
    let stop = engine.stop();
    let (runs, hist, sent, received) = measured?;
    if let Some(f) = stop.frames.iter().find(|f| f.user != 0 || f.tx != 0) {
        notes.push(format!("kxdp held frames after stop: {f:?}"));
    }
    let kxdp = path_report(
        "kxdp",
        &format!(
            "kxdp engine, {} worker(s) pinned to core(s) {:?}, XDP {xdp_mode}, AF_XDP copy \
             mode; {}",
            o.workers,
            o.node_cores,
            spec.kxdp_description()
        ),
        runs,
        &hist,
        (sent, received),
        o.wire_bytes + spec.sink_extra_bytes(),
    );

    // --- DPDK testpmd ----------------------------------------------------------------------
    // Whatever goes wrong here is reported as the path's reason; the scenario goes on.
    let dpdk = (o.dpdk && spec.dpdk_path()).then(|| {
        progress(name, "dpdk-testpmd: starting");
        testpmd_path(&mut ctx, &node_napi, &mut notes).unwrap_or_else(|e| {
            let why = format!("{e:#}");
            progress(name, &format!("dpdk-testpmd unavailable: {why}"));
            notes.push(format!("{DPDK_PATH} not measured: {why}"));
            unavailable(DPDK_PATH, &testpmd_description(o, None), &why)
        })
    });

    let generator = ctx.generator_kind.unwrap_or(GeneratorKind::XdpLiveFrames);
    drop(ctx);
    if let Some(p) = probes {
        p.stop()?;
    }
    for p in [Some(&kernel), Some(&kxdp), dpdk.as_ref()]
        .into_iter()
        .flatten()
        .filter(|p| p.unavailable.is_none())
    {
        // The node is the bottleneck when its cores are saturated and its ingress turns frames
        // away; otherwise the generator may be.
        let arrived = median(p.runs.iter().map(|r| r.node_rx_mpps));
        let busy_per_core = p.node_cores_busy_pct / o.workers as f64;
        if busy_per_core < 90.0 || arrived > 0.97 * p.offered_mpps {
            notes.push(format!(
                "{}: the node was not saturated (node cores {busy_per_core:.0} % busy each, \
                 {arrived:.2} of {:.2} Mpps offered arrived): the generator may be the \
                 bottleneck",
                p.path, p.offered_mpps
            ));
        }
        if p.probes_sent > 0 && p.probes_received * 10 < p.probes_sent * 9 {
            notes.push(format!(
                "{}: {} of {} latency probes were lost (the node drops what it cannot take, \
                 probes included): percentiles are of the probes that arrived",
                p.path,
                p.probes_sent - p.probes_received.min(p.probes_sent),
                p.probes_sent
            ));
        }
    }
    if let Some(note) = xsk_ring_drops(&kxdp.runs) {
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
    let ratio =
        (kernel.unavailable.is_none() && kernel.mpps > 0.0).then(|| kxdp.mpps / kernel.mpps);
    Ok(ScenarioReport {
        scenario: name.into(),
        setup: Setup {
            frame_bytes: gen_frame,
            wire_bytes: o.wire_bytes,
            delivered_wire_bytes: o.wire_bytes + spec.sink_extra_bytes(),
            flows: o.flows,
            workers: o.workers,
            extra_services: spec.has_services().then_some(o.extra_services),
            proto: o.proto,
            rate_per_thread: o.rate,
            generator,
            generator_cores: o.gen_cores.clone(),
            node_cores: o.node_cores.clone(),
            xdp_mode,
            af_xdp_bind: "copy".into(),
            napi: napi_desc,
            probe_rate: o.probe_rate,
            warmup_s: o.timing.warmup.as_secs_f64(),
            duration_s: o.timing.duration.as_secs_f64(),
            runs: o.timing.runs,
        },
        paths: [kernel, kxdp].into_iter().chain(dpdk).collect(),
        ratio_kxdp_over_kernel: ratio,
        notes,
    })
}

/// What both paths share: the generator routes everything via the node (probes to VIPs and
/// remote pods included); reverse-path filtering is off where probes arrive from addresses
/// the receiver has no route back to (decapsulated traffic); the node resolves the blackhole
/// to a MAC nobody has; GRO on node-gen gives it the NAPI that accepts the live frames
/// (`ndo_xdp_xmit`) while no XDP program is attached; TSO off on the generator's veth, since
/// veth hands a sender's skb to the peer's NAPI only then (`veth_skb_is_eligible_for_gro`;
/// otherwise it goes through netif_rx on the sender's core): the AF_XDP fallback and the probes
/// send skbs; and TX checksum offload off there too (below).
fn common_setup(t: &Topology) -> Result<()> {
    t.generator.netlink()?.add_route(
        &Route::new(Ipv4Addr::UNSPECIFIED.into(), 0)
            .via(t.node_gen_if.ipv4.into())
            .dev(t.gen_if.ifindex),
    )?;
    for (ns, ifname) in [(&t.sink, &t.sink_if.name), (&t.node, &t.node_gen_if.name)] {
        for conf in ["all", "default", ifname.as_str()] {
            ns.sysctl(&format!("net/ipv4/conf/{conf}/rp_filter"), "0")?;
        }
    }
    t.node_neighbour(&t.node_sink_if, BLACKHOLE_IN_SINK, OTHERHOST_MAC)?;
    offload::set_features(&t.node, &t.node_gen_if.name, &[("rx-gro", true)])
        .context("GRO on node-gen")?;
    offload::tso_off(&t.generator, &t.gen_if.name).context("TSO off on the generator's veth")?;
    // The probes leave the generator's UDP stack with a partial checksum (CHECKSUM_PARTIAL,
    // to be finished by the device): kxdp copies frames to userspace as they are and would
    // forward the unfinished checksum, and the sink would drop the probe. The agent turns TX
    // checksum offload off on its host veth for the same reason.
    let gen_if = t.gen_if.name.clone();
    t.generator
        .run(move || af_xdp::set_tx_checksum_offload(&gen_if, false))?
        .context("TX checksum offload off on the generator's veth")?;
    Ok(())
}

/// Measures DPDK testpmd: mac forwarding between the node's veths on the first node core,
/// started after kxdp has stopped (its XDP program must be gone) and stopped before the
/// report (its own must be gone too).
fn testpmd_path(
    ctx: &mut Ctx<'_>,
    node_napi: &ThreadedNapi,
    notes: &mut Vec<String>,
) -> Result<PathReport> {
    let (t, o) = (ctx.t, ctx.o);
    ensure!(
        o.workers == 1,
        "measured with 1 worker only (testpmd forwards on one core here)"
    );
    let ifaces = [&t.node_gen_if, &t.node_sink_if];
    let cfg = TestpmdConfig::new(ifaces, [t.gen_if.mac, t.sink_if.mac], o.node_cores[0]);
    progress(
        ctx.name,
        &format!(
            "dpdk-testpmd: running `{} {}` in the node namespace",
            dpdk::PROGRAM,
            dpdk::args(&cfg).join(" ")
        ),
    );
    let mut pmd = Testpmd::start(&t.node, ifaces, &cfg)?;
    let measured = (|| -> Result<(String, PathRuns)> {
        let mut modes = Vec::new();
        for iface in ifaces {
            let a = xdp::attached(&t.node, iface.ifindex)?;
            modes.push(a.map_or("none", |a| a.mode_name()));
        }
        // Attaching XDP re-created the veth's NAPI threads.
        let napi_threads = node_napi.repin()?;
        if napi_threads.is_empty() {
            notes.push("no NAPI thread found for node-gen under testpmd: unpinned".into());
        }
        let runs = ctx.path(DPDK_PATH, Forwarder::Testpmd(&pmd), &napi_threads, notes)?;
        Ok((modes.join("/"), runs))
    })();
    let stopped = pmd.stop(&t.node, ifaces);
    let (xdp_mode, (runs, hist, sent, received)) = measured?;
    let stopped = stopped?;
    notes.extend(stopped.notes.iter().map(|n| format!("{DPDK_PATH}: {n}")));
    let get = |r: &RunResult, k: &str| r.counters.get(k).copied().unwrap_or(0);
    let user: u64 = runs.iter().map(|r| get(r, "testpmd:user_ns")).sum();
    let system: u64 = runs.iter().map(|r| get(r, "testpmd:system_ns")).sum();
    if user + system > 0 {
        notes.push(format!(
            "{DPDK_PATH}: {:.0} % of its CPU time was in the kernel (AF_XDP syscalls: the veth \
             transmit, and the receive it drives by busy polling), {:.0} % in user space",
            100.0 * system as f64 / (user + system) as f64,
            100.0 * user as f64 / (user + system) as f64,
        ));
    }
    if !stopped.ports.is_empty() {
        let ports: Vec<String> = stopped
            .ports
            .iter()
            .map(|(port, rx, tx, dropped)| {
                format!("port {port}: {rx} received, {tx} sent, {dropped} dropped at TX")
            })
            .collect();
        notes.push(format!(
            "{DPDK_PATH}'s own totals over its life (warm-ups and pauses included): {}",
            ports.join("; ")
        ));
    }
    notes.push(format!(
        "{DPDK_PATH}: mac forwarding gives every frame the sink's MAC, so the sink's IP layer \
         (run on the node core, in the sender's context) looks up and drops the load frames \
         that the other paths address to a MAC nobody has; it does not route (no TTL, no \
         lookup): an I/O ceiling, not the same work"
    ));
    Ok(path_report(
        DPDK_PATH,
        &testpmd_description(o, Some(&xdp_mode)),
        runs,
        &hist,
        (sent, received),
        o.wire_bytes,
    ))
}

/// The DPDK path's description; `xdp_mode` as attached, when known.
fn testpmd_description(o: &RunOptions, xdp_mode: Option<&str>) -> String {
    format!(
        "DPDK testpmd, mac forwarding (--eth-peer: the generator's and the sink's MACs), \
         net_af_xdp PMD on both veths (queue 0, AF_XDP copy mode, XDP {}, the PMD's defaults: \
         libxdp's program, preferred busy polling), forwarding and main lcore on core {}: the \
         userspace I/O ceiling",
        xdp_mode.unwrap_or("-"),
        o.node_cores.first().copied().unwrap_or(0),
    )
}

/// The engine in the node namespace on both veths, one worker per node core, native XDP,
/// copy-mode AF_XDP, with the scenario's tables and owned destinations.
fn start_engine(spec: &dyn Spec, t: &Topology, o: &RunOptions) -> Result<Engine> {
    let tables = spec.tables(t, o)?;
    let cfg = EngineConfig {
        ports: [&t.node_gen_if, &t.node_sink_if]
            .iter()
            .map(|i| PortConfig {
                ifname: i.name.clone(),
                steer: SteerMode::ByDestination,
            })
            .collect(),
        cores: o.node_cores.clone(),
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
    for (net, len, kind) in spec.owned(t) {
        engine.own_prefix(net, len, kind)?;
    }
    for port in spec.udp_ports() {
        engine.steering().add_port(17, port)?;
    }
    Ok(engine)
}

/// Everything a path's runs need.
struct Ctx<'a> {
    t: &'a Topology,
    o: &'a RunOptions,
    name: &'static str,
    templates: Vec<Vec<u8>>,
    /// Settled by the first start: live frames or the fallback, for every later start.
    choice: GeneratorChoice,
    generator_kind: Option<GeneratorKind>,
    probes: Option<&'a ProbeReceiver>,
    probe_src: Ipv4Addr,
    probe_dst: std::net::SocketAddrV4,
    ethtool: bool,
}

/// A path's runs, its merged latency histogram, and the probes sent and received in its
/// windows.
type PathRuns = (Vec<RunResult>, Histogram<u64>, u64, u64);

impl Ctx<'_> {
    /// Measures one path: `runs` windows with the generators at full rate and the probes on.
    fn path(
        &mut self,
        label: &str,
        fwd: Forwarder<'_>,
        napi_threads: &[u32],
        notes: &mut Vec<String>,
    ) -> Result<PathRuns> {
        let sender = match self.probes {
            Some(_) => Some(ProbeSender::start(
                &self.t.generator,
                self.probe_src,
                self.probe_dst,
                self.o.probe_rate,
                self.o.gen_cores[0],
            )?),
            None => None,
        };
        let mut hist = new_histogram();
        let (mut sent, mut received) = (0, 0);
        let mut runs = Vec::new();
        let result = (|| -> Result<()> {
            for run in 1..=self.o.timing.runs {
                let gens = self.start_generators(notes)?;
                std::thread::sleep(self.o.timing.warmup);
                let a = self.sample(&gens, fwd, napi_threads)?;
                let p0 = (
                    sender.as_ref().map_or(0, ProbeSender::sent),
                    self.received(),
                );
                if let Some(p) = self.probes {
                    p.take();
                }
                std::thread::sleep(self.o.timing.duration);
                let b = self.sample(&gens, fwd, napi_threads)?;
                let window = self.probes.map(ProbeReceiver::take);
                let p1 = (
                    sender.as_ref().map_or(0, ProbeSender::sent),
                    self.received(),
                );
                for g in gens {
                    g.stop()?;
                }
                let latency = window.as_ref().and_then(LatencySummary::of);
                if let Some(w) = &window {
                    // Same bounds: cannot fail.
                    let _ = hist.add(w);
                }
                sent += p1.0 - p0.0;
                received += p1.1 - p0.1;
                let r = run_result(&a, &b, latency, self.o.workers);
                eprintln!(
                    "[{}/{label}] run {run}/{}: {:.3} Mpps delivered (offered {:.2}, arrived at \
                     node {:.3}), node cores {:.0} % busy{}{}",
                    self.name,
                    self.o.timing.runs,
                    r.delivered_mpps,
                    r.offered_mpps,
                    r.node_rx_mpps,
                    r.node_cores_busy_pct,
                    r.node_cpu_ns_per_pkt
                        .map_or(String::new(), |ns| format!(", {ns:.0} ns/pkt")),
                    r.latency.map_or(String::new(), |l| format!(
                        ", probe p50 {:.1} us p99 {:.1} us",
                        l.p50_us, l.p99_us
                    )),
                );
                runs.push(r);
            }
            Ok(())
        })();
        if let Some(s) = sender {
            s.stop()?;
        }
        result?;
        Ok((runs, hist, sent, received))
    }

    fn received(&self) -> u64 {
        self.probes.map_or(0, ProbeReceiver::received)
    }

    /// One generator per worker, generator `i` on `gen_cores[i]` (and, for the AF_XDP
    /// fallback, on queue `i`).
    fn start_generators(&mut self, notes: &mut Vec<String>) -> Result<Vec<Generator>> {
        let mut gens: Vec<Generator> = Vec::with_capacity(self.o.workers);
        for (i, &core) in self.o.gen_cores.iter().enumerate() {
            let cfg = GeneratorConfig {
                ifname: self.t.gen_if.name.clone(),
                ifindex: self.t.gen_if.ifindex,
                templates: self.templates.clone(),
                core: Some(core),
                queue: u32::try_from(i).unwrap_or(0),
                rate: self.o.rate,
            };
            let g = match Generator::start(&self.t.generator, &cfg, self.choice) {
                Ok(g) => g,
                Err(e) => {
                    for g in gens {
                        let _ = g.stop();
                    }
                    return Err(e);
                }
            };
            if self.generator_kind.is_none() {
                if let Some(why) = g.fallback_reason() {
                    let note = format!(
                        "XDP live frames unavailable ({why}); FELL BACK to AF_XDP copy-mode TX \
                         (1-1.5 Mpps on veth here, not far above the node): the generator may \
                         be the bottleneck"
                    );
                    eprintln!("WARNING: {note}");
                    notes.push(note);
                }
                self.generator_kind = Some(g.kind());
                self.choice = GeneratorChoice::Only(g.kind());
            }
            gens.push(g);
        }
        Ok(gens)
    }

    /// Reads every counter. The sink counter and the generators' count are read first and
    /// together, so the window's rates use matching instants.
    fn sample(
        &self,
        gens: &[Generator],
        fwd: Forwarder<'_>,
        napi_threads: &[u32],
    ) -> Result<Sample> {
        let t = self.t;
        let delivered = t.sink.link_stats(&t.sink_if.name)?.rx_packets;
        let at = Instant::now();
        let offered = gens.iter().map(Generator::sent).sum();
        let node_rx = t.node.link_stats(&t.node_gen_if.name)?.rx_packets;
        let node_cores = sum_core_times(&self.o.node_cores)?;
        let gen_cores = sum_core_times(&self.o.gen_cores)?;
        let mut threads = BTreeMap::new();
        for &pid in napi_threads {
            // A thread that vanished (re-created) counts as zero rather than failing the run.
            let ns = cpu::thread_runtime_ns(pid, pid).unwrap_or(0);
            *threads.entry(NAPI_LABEL.to_owned()).or_insert(0) += ns;
        }
        for (label, prefix) in [
            ("kxdp workers", WORKER_PREFIX),
            ("generators", crate::generator::THREAD_NAME),
            ("probes", "kxdp-probe"),
        ] {
            for tid in cpu::own_threads_prefixed(prefix)? {
                let ns = cpu::thread_runtime_ns(std::process::id(), tid).unwrap_or(0);
                *threads.entry(label.to_owned()).or_insert(0) += ns;
            }
        }
        let mut counters = BTreeMap::new();
        for (ns, iface) in [
            (&t.generator, &t.gen_if),
            (&t.node, &t.node_gen_if),
            (&t.node, &t.node_sink_if),
            (&t.sink, &t.sink_if),
        ] {
            let st = ns.link_stats(&iface.name)?;
            counters.insert(format!("{}:link_tx_dropped", iface.name), st.tx_dropped);
            counters.insert(format!("{}:link_rx_dropped", iface.name), st.rx_dropped);
        }
        if self.ethtool {
            for iface in [&t.node_gen_if, &t.node_sink_if] {
                counters.extend(ethtool_stats(&t.node, &iface.name));
            }
        }
        match fwd {
            Forwarder::Kernel => {}
            Forwarder::Kxdp(e) => engine_counters(&e.stats(), &mut counters),
            Forwarder::Testpmd(p) => {
                let cpu = p.cpu()?;
                threads.insert(DPDK_PATH.to_owned(), cpu.run_ns);
                counters.insert("testpmd:user_ns".into(), cpu.user_ns);
                counters.insert("testpmd:system_ns".into(), cpu.system_ns);
            }
        }
        Ok(Sample {
            at,
            offered,
            node_rx,
            delivered,
            node_cores,
            gen_cores,
            threads,
            counters,
        })
    }
}

fn sum_core_times(cores: &[usize]) -> Result<CoreTimes> {
    let mut sum = CoreTimes::default();
    for &c in cores {
        let t = cpu::core_times(c)?;
        sum.busy += t.busy;
        sum.steal += t.steal;
    }
    Ok(sum)
}

/// The deltas between two samples.
fn run_result(
    a: &Sample,
    b: &Sample,
    latency: Option<LatencySummary>,
    workers: usize,
) -> RunResult {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let delivered = b.delivered.saturating_sub(a.delivered);
    let per_pkt = |ns: u64| (delivered > 0).then(|| ns as f64 / delivered as f64);
    let busy = b.node_cores.busy.saturating_sub(a.node_cores.busy);
    let gen_busy = b.gen_cores.busy.saturating_sub(a.gen_cores.busy);
    let steal = (b.node_cores.steal + b.gen_cores.steal)
        .saturating_sub(a.node_cores.steal + a.gen_cores.steal);
    let threads = b
        .threads
        .iter()
        .map(|(name, &after)| {
            let ns = after.saturating_sub(a.threads.get(name).copied().unwrap_or(0));
            ThreadCpu {
                name: name.clone(),
                busy_pct: 100.0 * ns as f64 / (secs * 1e9),
                ns_per_pkt: per_pkt(ns),
            }
        })
        .collect();
    let counters = b
        .counters
        .iter()
        .filter_map(|(k, &after)| {
            let d = after.saturating_sub(a.counters.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect();
    RunResult {
        seconds: secs,
        delivered_mpps: delivered as f64 / secs / 1e6,
        offered_mpps: b.offered.saturating_sub(a.offered) as f64 / secs / 1e6,
        node_rx_mpps: b.node_rx.saturating_sub(a.node_rx) as f64 / secs / 1e6,
        node_cores_busy_pct: 100.0 * busy as f64 / (secs * 1e9),
        node_cpu_ns_per_pkt: per_pkt(busy),
        gen_cores_busy_pct: 100.0 * gen_busy as f64 / (secs * 1e9),
        steal_pct: 100.0 * steal as f64 / (2.0 * workers as f64 * secs * 1e9),
        latency,
        threads,
        counters,
    }
}

fn path_report(
    path: &str,
    description: &str,
    runs: Vec<RunResult>,
    hist: &Histogram<u64>,
    (probes_sent, probes_received): (u64, u64),
    delivered_wire_bytes: usize,
) -> PathReport {
    let mpps = median(runs.iter().map(|r| r.delivered_mpps));
    let offered = median(runs.iter().map(|r| r.offered_mpps));
    let ns = median(runs.iter().filter_map(|r| r.node_cpu_ns_per_pkt));
    PathReport {
        path: path.into(),
        description: description.into(),
        unavailable: None,
        mpps,
        gbps: gbps(mpps, delivered_wire_bytes),
        offered_mpps: offered,
        loss_pct: if offered > 0.0 {
            (100.0 * (1.0 - mpps / offered)).max(0.0)
        } else {
            f64::NAN
        },
        node_cpu_ns_per_pkt: (!ns.is_nan()).then_some(ns),
        node_cores_busy_pct: median(runs.iter().map(|r| r.node_cores_busy_pct)),
        latency: LatencySummary::of(hist),
        probes_sent,
        probes_received,
        runs,
    }
}

fn unavailable(path: &str, description: &str, why: &str) -> PathReport {
    PathReport {
        path: path.into(),
        description: description.into(),
        unavailable: Some(why.into()),
        mpps: f64::NAN,
        gbps: f64::NAN,
        offered_mpps: f64::NAN,
        loss_pct: f64::NAN,
        node_cpu_ns_per_pkt: None,
        node_cores_busy_pct: f64::NAN,
        latency: None,
        probes_sent: 0,
        probes_received: 0,
        runs: Vec::new(),
    }
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
    out.insert("engine:nat_forward".into(), sum(&|s| s.events.nat_forward));
    out.insert("engine:vxlan_encap".into(), sum(&|s| s.events.vxlan_encap));
    out.insert("engine:vxlan_decap".into(), sum(&|s| s.events.vxlan_decap));
    out.insert(
        "engine:xsk_rx_ring_full".into(),
        sum(&|s| s.xsk.rx_ring_full),
    );
    out.insert(
        "engine:xsk_fill_ring_empty".into(),
        sum(&|s| s.xsk.rx_fill_ring_empty_descs),
    );
    for &r in DropReason::ALL {
        out.insert(
            format!("engine:drop_{}", r.label()),
            sum(&|s| s.drop_count(r)),
        );
    }
}

/// How many frames the steering program redirected were dropped at the AF_XDP socket because
/// its RX ring was full (the workers fell behind): they cost node time in the NAPI thread.
fn xsk_ring_drops(runs: &[RunResult]) -> Option<String> {
    let get = |r: &RunResult, k: &str| r.counters.get(k).copied().unwrap_or(0);
    let full: u64 = runs.iter().map(|r| get(r, "engine:xsk_rx_ring_full")).sum();
    let got: u64 = runs.iter().map(|r| get(r, "engine:rx_node_gen")).sum();
    (full > 0 && got > 0).then(|| {
        format!(
            "kxdp: {full} frames ({:.0} % of those received) were dropped at the AF_XDP socket \
             with its RX ring full (the workers fell behind); they cost node time in the NAPI \
             thread before being dropped",
            100.0 * full as f64 / (full + got) as f64
        )
    })
}

/// Whether `ethtool` can be run (its per-queue counters are diagnostics, not results).
fn has_ethtool(ns: &Netns) -> bool {
    ns.output(&["ethtool", "--version"], None)
        .is_ok_and(|o| o.status.success())
}

/// `ethtool -S` counters of an interface, keyed `<ifname>:<counter>`.
fn ethtool_stats(ns: &Netns, ifname: &str) -> BTreeMap<String, u64> {
    let Ok(out) = ns.exec(&["ethtool", "-S", ifname], None) else {
        return BTreeMap::new();
    };
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.trim().parse().ok()?;
            Some((format!("{ifname}:{}", k.trim()), v))
        })
        .collect()
}

/// A progress line on stderr.
pub fn progress(scenario: &str, what: &str) {
    eprintln!("[{scenario}] {what}");
}
