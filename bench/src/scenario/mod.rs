//! Benchmark scenarios and the measurement they share.
//!
//! A scenario ([`Spec`]) says what the generator sends, how the node's kernel is set up for the
//! baseline path, and which tables kxdp gets. [`runner::run`] builds the topology once, then
//! for each path (the kernel, then kxdp, then DPDK testpmd where asked) repeats runs: start the generators at full rate and a
//! latency probe stream beside them, warm up, read every counter, wait the measurement window,
//! read them again, stop the generators. A run's numbers are the deltas over the window; a
//! path's are the medians over its runs (latency: percentiles of all its runs' probes).
//!
//! - [`forward`]: plain IPv4 forwarding (kernel: `ip_forward`; with `--dpdk` also DPDK
//!   testpmd, the userspace I/O ceiling).
//! - [`nat`]: ClusterIP DNAT (kernel: nftables written like kube-proxy's).
//! - [`overlay`]: VXLAN encapsulation to a remote node (kernel: a flannel-style vxlan device).
//! - [`nat_overlay`]: DNAT to a backend on a remote node, then encapsulation.
//! - [`decap`]: VXLAN from a remote node decapsulated to a local pod.
//! - [`runner`]: the topology, the paths, the runs; [`scaling`]: one scenario at several worker
//!   counts.

pub mod decap;
pub mod forward;
pub mod frames;
pub mod nat;
pub mod nat_overlay;
pub mod overlay;
pub mod runner;
pub mod scaling;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use af_xdp::bpf::DstKind;
use anyhow::Result;
use kxdp_dataplane::{NextHop, PortId, Route, Tables};

use crate::cpu::CoreTimes;
use crate::generator::GeneratorChoice;
use crate::topology::{GEN_NET, SINK_NET, Topology};
pub use frames::Proto;

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
    pub runs: u32,
}

/// What every scenario is asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub timing: Timing,
    /// Distinct flows (UDP source ports), one frame template each.
    pub flows: usize,
    /// Frame size on the wire, FCS included, as the pods see it (`--size`).
    pub wire_bytes: usize,
    /// kxdp workers = RX/TX queues per veth = generator threads.
    pub workers: usize,
    /// One per worker: generator thread `i` runs on `gen_cores[i]`.
    pub gen_cores: Vec<usize>,
    /// One per worker: kxdp worker `i` and the node-gen veth's NAPI thread of queue `i`.
    pub node_cores: Vec<usize>,
    pub generator: GeneratorChoice,
    /// Latency probes per second (0: none).
    pub probe_rate: u32,
    /// Services with 10 backends each loaded besides the measured one (nat scenarios).
    pub extra_services: u32,
    /// The kernel NAT path is not measured above this many services (nft's load time grows
    /// faster than linearly with kube-proxy's ruleset: about 4.5 min for 10k services here).
    pub kernel_max_services: u32,
    /// L4 protocol of the load frames.
    pub proto: Proto,
    /// Offered load per generator thread, frames/s (None: as fast as it can).
    pub rate: Option<u64>,
    /// Also measure DPDK testpmd where the scenario has that path ([`Spec::dpdk_path`]).
    pub dpdk: bool,
}

impl RunOptions {
    /// The frame handed to the generator's interface, without FCS.
    pub fn frame_bytes(&self) -> usize {
        self.wire_bytes - 4
    }
}

/// One of the benchmark scenarios.
pub trait Spec {
    fn name(&self) -> &'static str;

    /// Whether `--services` applies.
    fn has_services(&self) -> bool {
        false
    }

    /// Bytes encapsulation adds to what the generator sends (decap: 50).
    fn gen_extra_bytes(&self) -> usize {
        0
    }

    /// Bytes encapsulation adds to what the sink receives (encap: 50).
    fn sink_extra_bytes(&self) -> usize {
        0
    }

    /// Setup both paths share (routes, neighbours, devices that play other nodes), after the
    /// chain and the common setup of [`runner`].
    fn prepare(&self, _t: &Topology, _o: &RunOptions) -> Result<()> {
        Ok(())
    }

    /// The load frame of one flow: `frame_bytes` is the pod-side frame (without FCS), its
    /// L4 protocol `proto`.
    fn load_frame(
        &self,
        t: &Topology,
        proto: Proto,
        src_port: u16,
        frame_bytes: usize,
    ) -> Result<Vec<u8>>;

    /// Where the generator namespace's UDP probe socket sends (bound to `probe_src`); the sink
    /// receives on [`PROBE_PORT`].
    fn probe_dst(&self) -> SocketAddrV4;

    fn probe_src(&self, t: &Topology) -> Ipv4Addr {
        t.gen_if.ipv4
    }

    fn kernel_description(&self, o: &RunOptions) -> String;

    /// Sets up the kernel path; `Ok(Some(why))` when it cannot be measured here.
    fn kernel_up(&self, t: &Topology, o: &RunOptions) -> Result<Option<String>>;

    /// Undoes [`kernel_up`](Self::kernel_up).
    fn kernel_down(&self, t: &Topology) -> Result<()>;

    fn kxdp_description(&self) -> String;

    /// kxdp's tables (ports 0 = node-gen, 1 = node-sink).
    fn tables(&self, t: &Topology, o: &RunOptions) -> Result<Tables>;

    /// Destinations the steering program hands to kxdp.
    fn owned(&self, t: &Topology) -> Vec<(Ipv4Addr, u8, DstKind)>;

    /// UDP ports of the node's own address that belong to kxdp (VXLAN).
    fn udp_ports(&self) -> Vec<u16> {
        Vec::new()
    }

    /// Whether DPDK testpmd's mac forwarding between the node's veths does this scenario's
    /// work, so that it can be measured as a third path with `--dpdk` (plain forwarding only:
    /// testpmd rewrites MACs and nothing else).
    fn dpdk_path(&self) -> bool {
        false
    }
}

/// Where the sink receives latency probes (the backends' port too).
pub const PROBE_PORT: u16 = 8080;
/// In the sink's subnet, assigned to nobody: the sink counts frames to it and drops them.
pub const BLACKHOLE_IN_SINK: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 100);
/// The next hop's MAC for [`BLACKHOLE_IN_SINK`]: locally administered, owned by nobody, so the
/// sink counts the frame and its IP layer drops it at once as PACKET_OTHERHOST.
pub const OTHERHOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x64];
/// Flow `i` uses UDP source port `FIRST_SRC_PORT + i`.
pub const FIRST_SRC_PORT: u16 = 10_000;

/// The forwarding routes every scenario's kxdp tables start from: both subnets and the
/// blackhole, the node's own addresses to the host.
pub fn base_tables(t: &Topology) -> Tables {
    let to_gen = NextHop::new(PortId(0), t.gen_if.mac, t.node_gen_if.mac);
    let to_sink = NextHop::new(PortId(1), t.sink_if.mac, t.node_sink_if.mac);
    let to_blackhole = NextHop::new(PortId(1), OTHERHOST_MAC, t.node_sink_if.mac);
    Tables::default()
        .with_route4(GEN_NET, 24, Route::Via(to_gen))
        .with_route4(SINK_NET, 24, Route::Via(to_sink))
        .with_route4(BLACKHOLE_IN_SINK, 32, Route::Via(to_blackhole))
        .with_route4(t.node_gen_if.ipv4, 32, Route::Host)
        .with_route4(t.node_sink_if.ipv4, 32, Route::Host)
}

/// Counters read at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When `delivered` and `offered` were read: rates divide by the time between two samples'.
    pub at: Instant,
    /// Frames the generators have handed to the kernel.
    pub offered: u64,
    /// Frames that arrived at the node's ingress interface.
    pub node_rx: u64,
    /// Frames that arrived at the sink (its interface's rx counter).
    pub delivered: u64,
    /// Summed over the node cores.
    pub node_cores: CoreTimes,
    /// Summed over the generator cores.
    pub gen_cores: CoreTimes,
    /// Run time of named threads (workers, NAPI threads, generators), nanoseconds.
    pub threads: BTreeMap<String, u64>,
    /// Anything else worth a delta (drop counters, engine counters).
    pub counters: BTreeMap<String, u64>,
}

/// Median of `values` (mean of the middle two for an even count); NaN for none.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median([]).is_nan());
        assert_eq!(median([f64::NAN, 5.0]), 5.0);
    }
}
