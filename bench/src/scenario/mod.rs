//! Benchmark scenarios and the measurement they share.
//!
//! A scenario builds its topology, then for each path through the node (the kernel, kxdp)
//! repeats runs: start the generator at full rate, warm up, read every counter, wait the
//! measurement window, read them again, stop the generator. A run's numbers are the deltas over
//! the window; a path's are the medians over its runs.
//!
//! - [`forward`]: plain IPv4 forwarding gen → node → sink.

pub mod forward;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cpu::CoreTimes;
use crate::generator::Generator;
use crate::report::{RunResult, ThreadCpu};

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
    pub runs: u32,
}

/// Counters read at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When `delivered` and `offered` were read: rates divide by the time between two samples'.
    pub at: Instant,
    /// Frames the generator has handed to the kernel.
    pub offered: u64,
    /// Frames that arrived at the node's ingress interface.
    pub node_rx: u64,
    /// Frames that arrived at the sink (its interface's rx counter).
    pub delivered: u64,
    pub node_core: CoreTimes,
    pub gen_core: CoreTimes,
    /// Run time of named threads (worker, NAPI threads, generator), nanoseconds.
    pub threads: BTreeMap<String, u64>,
    /// Anything else worth a delta (drop counters, engine counters).
    pub counters: BTreeMap<String, u64>,
}

/// Runs one measurement window: warm-up with the generator already running, a sample, the
/// window, another sample. `sample` reads everything; `gen` is stopped before returning.
pub fn measure(
    generator: Generator,
    timing: &Timing,
    mut sample: impl FnMut(&Generator) -> Result<Sample>,
) -> Result<RunResult> {
    std::thread::sleep(timing.warmup);
    let a = sample(&generator)?;
    std::thread::sleep(timing.duration);
    let b = sample(&generator)?;
    let secs = b.at.duration_since(a.at).as_secs_f64();
    generator.stop()?;

    let delivered = b.delivered.saturating_sub(a.delivered);
    let per_pkt = |ns: u64| (delivered > 0).then(|| ns as f64 / delivered as f64);
    let busy = b.node_core.busy.saturating_sub(a.node_core.busy);
    let gen_busy = b.gen_core.busy.saturating_sub(a.gen_core.busy);
    let steal =
        (b.node_core.steal + b.gen_core.steal).saturating_sub(a.node_core.steal + a.gen_core.steal);
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
    Ok(RunResult {
        seconds: secs,
        delivered_mpps: delivered as f64 / secs / 1e6,
        offered_mpps: b.offered.saturating_sub(a.offered) as f64 / secs / 1e6,
        node_rx_mpps: b.node_rx.saturating_sub(a.node_rx) as f64 / secs / 1e6,
        node_core_busy_pct: 100.0 * busy as f64 / (secs * 1e9),
        node_core_ns_per_pkt: per_pkt(busy),
        gen_core_busy_pct: 100.0 * gen_busy as f64 / (secs * 1e9),
        steal_pct: 100.0 * steal as f64 / (2.0 * secs * 1e9),
        threads,
        counters,
    })
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

/// `ethtool -S` counters of an interface, keyed `<ifname>:<counter>`; empty when ethtool is
/// missing or the driver has none (they are diagnostics, not results).
pub fn ethtool_stats(ns: &kxdp_tests::Netns, ifname: &str) -> BTreeMap<String, u64> {
    let Ok(out) = ns.exec_stdout(&["ethtool", "-S", ifname]) else {
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
