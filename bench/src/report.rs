//! What a benchmark run reports: the types serialised to JSON (`--json FILE`) and the table
//! printed for people. Both carry the same fields.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::generator::GeneratorKind;
use crate::machine::Machine;

/// A whole `kxdp-bench` invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub scenarios: Vec<ScenarioReport>,
}

/// One scenario: every path through the node measured under the same setup.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub setup: Setup,
    pub paths: Vec<PathReport>,
    /// Median Mpps of kxdp divided by the kernel's.
    pub ratio_kxdp_over_kernel: Option<f64>,
    /// Things a reader must know to trust the numbers (fallbacks, odd counters).
    pub notes: Vec<String>,
}

/// How the scenario was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Frame length handed to the interface (no FCS).
    pub frame_bytes: usize,
    /// Frame length on an Ethernet wire (with the 4-byte FCS); the Gbit/s column counts these.
    pub wire_bytes: usize,
    pub flows: usize,
    pub generator: GeneratorKind,
    pub generator_core: usize,
    /// The core the node's work is pinned to (kxdp worker, node NAPI thread).
    pub node_core: usize,
    /// XDP attach mode of kxdp's steering program, as the kernel accepted it.
    pub xdp_mode: String,
    /// AF_XDP bind mode of kxdp's sockets.
    pub af_xdp_bind: String,
    /// How veth receive processing (NAPI) is placed.
    pub napi: String,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub runs: u32,
}

/// One path through the node (kernel or kxdp), medians over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    /// `kernel` or `kxdp`.
    pub path: String,
    pub description: String,
    /// Median frames per second delivered to the sink, millions.
    pub mpps: f64,
    /// `mpps` in Gbit/s of 64-byte frames (`wire_bytes`; preamble and gap not counted).
    pub gbps: f64,
    pub offered_mpps: f64,
    pub node_core_ns_per_pkt: Option<f64>,
    pub node_core_busy_pct: f64,
    pub runs: Vec<RunResult>,
}

/// One measurement window.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub seconds: f64,
    /// Frames per second that reached the sink, millions.
    pub delivered_mpps: f64,
    /// Frames per second the generator handed to the kernel, millions.
    pub offered_mpps: f64,
    /// Frames per second that arrived at the node's ingress interface, millions.
    pub node_rx_mpps: f64,
    pub node_core_busy_pct: f64,
    /// Busy time of the node's core per delivered frame.
    pub node_core_ns_per_pkt: Option<f64>,
    /// How busy the generator's core was.
    pub gen_core_busy_pct: f64,
    /// Time the hypervisor gave the two cores to someone else (mean of both): noise.
    pub steal_pct: f64,
    pub threads: Vec<ThreadCpu>,
    /// Non-zero deltas of diagnostic counters over the window.
    pub counters: BTreeMap<String, u64>,
}

/// CPU time of one thread over a window.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub busy_pct: f64,
    pub ns_per_pkt: Option<f64>,
}

/// Gbit/s of `mpps` million frames per second of `wire_bytes` each.
pub fn gbps(mpps: f64, wire_bytes: usize) -> f64 {
    mpps * 1e6 * wire_bytes as f64 * 8.0 / 1e9
}

impl Report {
    /// Writes the JSON form, creating the parent directory if needed.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The human-readable form: machine facts, setup, the results table, notes.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine: {} | nproc {} | kernel {}",
            m.cpu_model, m.nproc, m.kernel
        );
        for s in &self.scenarios {
            s.write_table(&mut out);
        }
        out
    }
}

impl ScenarioReport {
    fn write_table(&self, out: &mut String) {
        let u = &self.setup;
        let _ = writeln!(
            out,
            "scenario {}: {} B frames ({} B on the wire), {} flow(s), median of {} x {:.0} s after {:.0} s warm-up",
            self.scenario, u.frame_bytes, u.wire_bytes, u.flows, u.runs, u.duration_s, u.warmup_s
        );
        let _ = writeln!(
            out,
            "generator: {} on core {}; node on core {}; kxdp: XDP {}, AF_XDP {} mode, 1 worker",
            u.generator, u.generator_core, u.node_core, u.xdp_mode, u.af_xdp_bind
        );
        let _ = writeln!(out, "veth NAPI: {}", u.napi);
        let _ = writeln!(out);
        let header = [
            "scenario",
            "path",
            "Mpps",
            "Gbit/s@64B",
            "kxdp/kernel",
            "offered Mpps",
            "node core busy",
            "node core ns/pkt",
        ];
        let kernel = self
            .paths
            .iter()
            .find(|p| p.path == "kernel")
            .map(|p| p.mpps);
        let rows: Vec<[String; 8]> = self
            .paths
            .iter()
            .map(|p| {
                [
                    self.scenario.clone(),
                    p.path.clone(),
                    format!("{:.3}", p.mpps),
                    format!("{:.3}", p.gbps),
                    kernel
                        .filter(|k| *k > 0.0)
                        .map_or("-".to_owned(), |k| format!("{:.2}", p.mpps / k)),
                    format!("{:.2}", p.offered_mpps),
                    format!("{:.0} %", p.node_core_busy_pct),
                    p.node_core_ns_per_pkt
                        .map_or("-".to_owned(), |ns| format!("{ns:.0}")),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i < 2 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            padded.join("  ")
        };
        let _ = writeln!(out, "{}", line(&header));
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
        }
        for p in &self.paths {
            let _ = writeln!(out, "  {}: {}", p.path, p.description);
            for (i, r) in p.runs.iter().enumerate() {
                let threads: Vec<String> = r
                    .threads
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {:.0} %{}",
                            t.name,
                            t.busy_pct,
                            t.ns_per_pkt
                                .map_or(String::new(), |ns| format!(" {ns:.0} ns/pkt"))
                        )
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "    run {}: {:.3} Mpps delivered, {:.2} offered, {:.3} arrived at node; \
                     generator core {:.0} % busy, steal {:.1} %{}{}",
                    i + 1,
                    r.delivered_mpps,
                    r.offered_mpps,
                    r.node_rx_mpps,
                    r.gen_core_busy_pct,
                    r.steal_pct,
                    if threads.is_empty() { "" } else { "; " },
                    threads.join(", ")
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbps_at_64_bytes() {
        // 1 Mpps of 64-byte frames: 512 Mbit/s (preamble and inter-frame gap not counted).
        assert!((gbps(1.0, 64) - 0.512).abs() < 1e-9);
    }
}
