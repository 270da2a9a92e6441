//! `kxdp-bench pktgen`: the packet generator on its own, generator namespace ─veth─ receiver
//! namespace, to see what a generator offers before it is put in front of a node.
//!
//! Templates: UDP or TCP (ACK segments), over IPv4 or IPv6, optionally inside VXLAN (outer
//! IPv4, port 8472, VNI 1), one per flow (source ports `10000 + i`), of any size; sent by N
//! threads (N queues on the veth), as fast as they go or at a fixed rate per thread, by one of
//! three engines: XDP live frames, AF_XDP copy-mode TX, or the kernel's pktgen module where it
//! exists. The receiver counts what arrives on its veth (GRO on, so live frames are taken) and
//! drops it (its IP layer does not forward).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use crate::generator::{Generator, GeneratorChoice, GeneratorConfig, GeneratorKind};
use crate::kpktgen::{self, KernelPktgen};
use crate::machine::Machine;
use crate::offload;
use crate::scenario::frames::{self, Endpoint, Proto};
use crate::topology::Topology;

/// Where the templates are addressed (nobody has it: the receiver drops them).
const DST4: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 100);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 2);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 0x64);
const FIRST_SRC_PORT: u16 = 10_000;
const DST_PORT: u16 = 9;
const VXLAN_PORT: u16 = 8472;

/// Which engine transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Live frames, else AF_XDP.
    Auto,
    Live,
    AfXdp,
    /// The kernel's pktgen module (UDP over IPv4 only, no VXLAN).
    Kernel,
}

/// What `kxdp-bench pktgen` was asked for.
#[derive(Debug, Clone)]
pub struct PktgenOptions {
    pub engine: Engine,
    pub proto: Proto,
    pub ipv6: bool,
    pub vxlan: bool,
    pub flows: usize,
    /// On the wire, with FCS (VXLAN's 50 bytes come on top).
    pub wire_bytes: usize,
    /// Frames per second per thread; None: as fast as it goes.
    pub rate: Option<u64>,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// CPUs of the machine (thread `i` runs on core `i % cpus`).
    pub cpus: usize,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct PktgenReport {
    pub machine: Machine,
    pub engine: String,
    /// Why the asked engine was not used, when another ran.
    pub fallback_reason: Option<String>,
    pub proto: Proto,
    pub ip: &'static str,
    pub vxlan: bool,
    pub flows: usize,
    /// Frame handed to the interface, without FCS.
    pub frame_bytes: usize,
    pub threads: usize,
    pub rate_per_thread: Option<u64>,
    pub duration_s: f64,
    pub offered_frames: u64,
    pub received_frames: u64,
    /// Dropped at the receiving veth (its queue full).
    pub receiver_dropped: u64,
    pub offered_mpps: f64,
    pub received_mpps: f64,
    /// Of the received frames, FCS included, preamble and gap not.
    pub received_gbps: f64,
    pub loss_pct: f64,
}

impl PktgenReport {
    pub fn to_table(&self) -> String {
        format!(
            "engine  {}\nframes  {} {}{} {} B ({} B on the wire), {} flow(s), {} thread(s){}\n\
             offered {:.3} Mpps, received {:.3} Mpps ({:.3} Gbit/s), loss {:.1} %, receiver dropped {}\n",
            self.engine,
            self.proto.name().to_uppercase(),
            self.ip,
            if self.vxlan { " in VXLAN" } else { "" },
            self.frame_bytes,
            self.frame_bytes + 4,
            self.flows,
            self.threads,
            self.rate_per_thread
                .map_or(String::new(), |r| format!(", {r} frames/s each")),
            self.offered_mpps,
            self.received_mpps,
            self.received_gbps,
            self.loss_pct,
            self.receiver_dropped,
        )
    }
}

/// The templates, one per flow.
pub fn templates(o: &PktgenOptions, t: &Topology) -> Result<Vec<Vec<u8>>> {
    ensure!(o.flows > 0 && o.flows <= 50_000, "--flows: 1..=50000");
    let inner_bytes = o.wire_bytes.checked_sub(4).context("--size below 4")?;
    let to = t.node_gen_if.mac;
    (0..o.flows)
        .map(|i| {
            // Fits: at most 50000 flows from 10000.
            let sport = FIRST_SRC_PORT + i as u16;
            let src = Endpoint {
                mac: t.gen_if.mac,
                ip: t.gen_if.ipv4,
            };
            let dst = Endpoint { mac: to, ip: DST4 };
            let inner = if o.ipv6 {
                frames::l4_v6(
                    o.proto,
                    t.gen_if.mac,
                    to,
                    SRC6,
                    DST6,
                    sport,
                    DST_PORT,
                    inner_bytes,
                )?
            } else {
                frames::l4(o.proto, src, dst, sport, DST_PORT, inner_bytes)?
            };
            if !o.vxlan {
                return Ok(inner);
            }
            let node = Endpoint {
                mac: to,
                ip: t.node_gen_if.ipv4,
            };
            frames::vxlan(src, node, sport, VXLAN_PORT, 1, &inner)
        })
        .collect()
}

/// Builds the pair, runs the engine, counts.
pub fn run(o: &PktgenOptions) -> Result<PktgenReport> {
    ensure!(o.threads > 0, "--threads: at least 1");
    let queues = u32::try_from(o.threads).context("--threads")?;
    let t = Topology::chain3("kb-pktgen", queues)?;
    offload::set_features(&t.node, &t.node_gen_if.name, &[("rx-gro", true)])
        .context("GRO on the receiver")?;
    offload::tso_off(&t.generator, &t.gen_if.name)?;
    let templates = templates(o, &t)?;
    let frame_bytes = templates.first().map_or(0, Vec::len);
    let rx = || t.node.link_stats(&t.node_gen_if.name);

    let (engine, fallback_reason, offered, received, dropped, window) = if o.engine
        == Engine::Kernel
    {
        if o.proto != Proto::Udp || o.ipv6 || o.vxlan || o.threads != 1 {
            bail!(
                "the kernel engine sends UDP over IPv4 from one thread (no --tcp, --ipv6, --vxlan)"
            );
        }
        let g = KernelPktgen {
            ifname: t.gen_if.name.clone(),
            cpu: 0,
            frame_bytes,
            src: t.gen_if.ipv4,
            dst: DST4,
            dst_mac: t.node_gen_if.mac,
            flows: u16::try_from(o.flows).unwrap_or(u16::MAX),
            first_src_port: FIRST_SRC_PORT,
            dst_port: DST_PORT,
            rate: o.rate,
        };
        let before = rx()?;
        let started = Instant::now();
        let sent = kpktgen::run(&t.generator, &g, o.duration)?;
        let window = started.elapsed();
        let after = rx()?;
        (
            "kernel pktgen (/proc/net/pktgen)".to_owned(),
            None,
            sent,
            after.rx_packets - before.rx_packets,
            after.rx_dropped - before.rx_dropped,
            window,
        )
    } else {
        let choice = match o.engine {
            Engine::Live => GeneratorChoice::Only(GeneratorKind::XdpLiveFrames),
            Engine::AfXdp => GeneratorChoice::Only(GeneratorKind::AfXdpTx),
            _ => GeneratorChoice::Auto,
        };
        let mut gens = Vec::new();
        for i in 0..o.threads {
            let cfg = GeneratorConfig {
                ifname: t.gen_if.name.clone(),
                ifindex: t.gen_if.ifindex,
                templates: templates.clone(),
                core: Some(i % o.cpus.max(1)),
                queue: u32::try_from(i).unwrap_or(0),
                rate: o.rate,
            };
            gens.push(Generator::start(&t.generator, &cfg, choice)?);
        }
        std::thread::sleep(o.warmup);
        let sent = |g: &[Generator]| g.iter().map(Generator::sent).sum::<u64>();
        let (s0, r0, started) = (sent(&gens), rx()?, Instant::now());
        std::thread::sleep(o.duration);
        let (s1, r1, window) = (sent(&gens), rx()?, started.elapsed());
        let kind = gens.first().map(Generator::kind);
        let why = gens
            .first()
            .and_then(|g| g.fallback_reason().map(str::to_owned));
        for g in gens {
            g.stop()?;
        }
        (
            kind.map_or_else(|| "none".to_owned(), |k| k.to_string()),
            why,
            s1 - s0,
            r1.rx_packets - r0.rx_packets,
            r1.rx_dropped - r0.rx_dropped,
            window,
        )
    };
    let secs = window.as_secs_f64();
    let mpps = |n: u64| n as f64 / secs / 1e6;
    Ok(PktgenReport {
        machine: Machine::probe(),
        engine,
        fallback_reason,
        proto: o.proto,
        ip: if o.ipv6 { "IPv6" } else { "IPv4" },
        vxlan: o.vxlan,
        flows: o.flows,
        frame_bytes,
        threads: o.threads,
        rate_per_thread: o.rate,
        duration_s: secs,
        offered_frames: offered,
        received_frames: received,
        receiver_dropped: dropped,
        offered_mpps: mpps(offered),
        received_mpps: mpps(received),
        received_gbps: mpps(received) * ((frame_bytes + 4) * 8) as f64 / 1e3,
        loss_pct: if offered == 0 {
            0.0
        } else {
            100.0 * offered.saturating_sub(received) as f64 / offered as f64
        },
    })
}
