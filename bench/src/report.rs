//! What a benchmark run reports: the types serialised to JSON (`--json FILE`) and the tables
//! printed for people. Both carry the same fields.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::generator::GeneratorKind;
use crate::latency::LatencySummary;
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
    /// Median Mpps of kxdp divided by the kernel's; None if either is missing.
    pub ratio_kxdp_over_kernel: Option<f64>,
    /// Things a reader must know to trust the numbers (fallbacks, odd counters).
    pub notes: Vec<String>,
}

/// How the scenario was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Frame the generator sends, without FCS.
    pub frame_bytes: usize,
    /// That frame on an Ethernet wire (with the 4-byte FCS): `--size`.
    pub wire_bytes: usize,
    /// A frame as it reaches the sink, with FCS (encapsulation adds 50, decapsulation takes
    /// them off); the Gbit/s column counts these.
    pub delivered_wire_bytes: usize,
    pub flows: usize,
    /// kxdp workers, and RX queues per veth (the kernel path's NAPI threads).
    pub workers: usize,
    /// Extra services loaded into the tables and the ruleset (`--services`), if the scenario
    /// has services.
    pub extra_services: Option<u32>,
    /// L4 protocol of the load frames.
    pub proto: crate::scenario::Proto,
    /// Offered load per generator thread, frames/s; None: as fast as it can.
    pub rate_per_thread: Option<u64>,
    pub generator: GeneratorKind,
    pub generator_cores: Vec<usize>,
    /// The cores the node's work is pinned to (kxdp workers, node NAPI threads).
    pub node_cores: Vec<usize>,
    /// XDP attach mode of kxdp's steering program, as the kernel accepted it.
    pub xdp_mode: String,
    /// AF_XDP bind mode of kxdp's sockets: copy or zero-copy.
    pub af_xdp_bind: String,
    /// How veth receive processing (NAPI) is placed.
    pub napi: String,
    /// Latency probes per second.
    pub probe_rate: u32,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub runs: u32,
}

/// One path through the node (kernel, kxdp, or DPDK testpmd), medians over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    /// `kernel`, `kxdp` or `dpdk-testpmd` (`forward --dpdk`).
    pub path: String,
    pub description: String,
    /// Why the path was not measured (e.g. "nft not installed"); the numbers are then NaN.
    pub unavailable: Option<String>,
    /// Median frames per second delivered to the sink, millions.
    pub mpps: f64,
    /// `mpps` in Gbit/s of `delivered_wire_bytes` frames (preamble and gap not counted).
    pub gbps: f64,
    pub offered_mpps: f64,
    /// Share of the offered frames that did not reach the sink (the generator floods: the
    /// node turns away what it cannot take).
    pub loss_pct: f64,
    /// Busy time of the node cores per delivered frame.
    pub node_cpu_ns_per_pkt: Option<f64>,
    /// Busy time of the node cores, percent of one core (so up to 100 × cores).
    pub node_cores_busy_pct: f64,
    /// Probe latency over all runs together.
    pub latency: Option<LatencySummary>,
    pub probes_sent: u64,
    pub probes_received: u64,
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
    pub node_cores_busy_pct: f64,
    /// Busy time of the node cores per delivered frame.
    pub node_cpu_ns_per_pkt: Option<f64>,
    /// How busy the generator cores were (percent of one core).
    pub gen_cores_busy_pct: f64,
    /// Time the hypervisor gave the measured cores to someone else (mean per core): noise.
    pub steal_pct: f64,
    pub latency: Option<LatencySummary>,
    pub threads: Vec<ThreadCpu>,
    /// Non-zero deltas of diagnostic counters over the window.
    pub counters: BTreeMap<String, u64>,
}

/// CPU time of one thread (or a group of same-named threads) over a window.
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
        create_parent(path)?;
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The human-readable form: machine facts, each scenario's setup and runs, then one summary
    /// table with a row per path.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.machine_line());
        for s in &self.scenarios {
            let _ = writeln!(out);
            s.write_details(&mut out);
        }
        let _ = writeln!(out);
        out.push_str(&self.summary_table());
        out
    }

    fn machine_line(&self) -> String {
        let m = &self.machine;
        format!(
            "machine: {} | {} cores | kernel {}",
            m.cpu_model, m.nproc, m.kernel
        )
    }

    /// One row per scenario and path.
    pub fn summary_table(&self) -> String {
        let header = [
            "scenario",
            "path",
            "Mpps",
            "Gbit/s",
            "kxdp/kernel",
            "loss",
            "node ns/pkt",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "XDP",
            "AF_XDP",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for s in &self.scenarios {
            let label = if s.setup.workers > 1 {
                format!("{} x{}", s.scenario, s.setup.workers)
            } else {
                s.scenario.clone()
            };
            for p in &s.paths {
                if let Some(why) = &p.unavailable {
                    let mut row =
                        vec![label.clone(), p.path.clone(), format!("unavailable: {why}")];
                    row.resize(header.len(), String::new());
                    rows.push(row);
                    continue;
                }
                let lat = |f: fn(&LatencySummary) -> f64| {
                    p.latency
                        .as_ref()
                        .map_or("-".to_owned(), |l| format!("{:.1}", f(l)))
                };
                let ratio = if p.path == "kxdp" {
                    s.ratio_kxdp_over_kernel
                        .map_or("-".to_owned(), |r| format!("{r:.2}"))
                } else {
                    String::new()
                };
                let (xdp, xsk) = if p.path == "kxdp" {
                    (s.setup.xdp_mode.clone(), s.setup.af_xdp_bind.clone())
                } else {
                    ("-".to_owned(), "-".to_owned())
                };
                rows.push(vec![
                    label.clone(),
                    p.path.clone(),
                    format!("{:.3}", p.mpps),
                    format!("{:.3}", p.gbps),
                    ratio,
                    format!("{:.0} %", p.loss_pct),
                    p.node_cpu_ns_per_pkt
                        .map_or("-".to_owned(), |ns| format!("{ns:.0}")),
                    lat(|l| l.p50_us),
                    lat(|l| l.p90_us),
                    lat(|l| l.p99_us),
                    lat(|l| l.p999_us),
                    lat(|l| l.max_us),
                    xdp,
                    xsk,
                ]);
            }
        }
        format_table(&header, &rows)
    }
}

impl ScenarioReport {
    fn write_details(&self, out: &mut String) {
        let u = &self.setup;
        let _ = writeln!(
            out,
            "scenario {}: {} {} B frames in ({} B on the wire, {} B delivered), {} flow(s), {} \
             worker(s){}{}, median of {} x {:.0} s after {:.0} s warm-up",
            self.scenario,
            u.proto.name().to_uppercase(),
            u.frame_bytes,
            u.wire_bytes,
            u.delivered_wire_bytes,
            u.flows,
            u.workers,
            u.extra_services
                .map_or(String::new(), |n| format!(", {n} extra services")),
            u.rate_per_thread.map_or(String::new(), |r| format!(
                ", offered {r} frames/s per thread"
            )),
            u.runs,
            u.duration_s,
            u.warmup_s
        );
        let _ = writeln!(
            out,
            "generator: {} on core(s) {:?}; node on core(s) {:?}; kxdp: XDP {}, AF_XDP {} mode; \
             {} latency probes/s",
            u.generator, u.generator_cores, u.node_cores, u.xdp_mode, u.af_xdp_bind, u.probe_rate
        );
        let _ = writeln!(out, "veth NAPI: {}", u.napi);
        for p in &self.paths {
            let _ = writeln!(out, "  {}: {}", p.path, p.description);
            if let Some(why) = &p.unavailable {
                let _ = writeln!(out, "    unavailable: {why}");
            }
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
                     node cores {:.0} % busy, generator cores {:.0} %, steal {:.1} %{}{}",
                    i + 1,
                    r.delivered_mpps,
                    r.offered_mpps,
                    r.node_rx_mpps,
                    r.node_cores_busy_pct,
                    r.gen_cores_busy_pct,
                    r.steal_pct,
                    if threads.is_empty() { "" } else { "; " },
                    threads.join(", ")
                );
            }
            if p.unavailable.is_none() {
                let _ = writeln!(
                    out,
                    "    probes: {} sent, {} received",
                    p.probes_sent, p.probes_received
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
    }
}

/// Left-aligned text columns first two, right-aligned numbers after.
fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter(|r| i < 2 || !is_unavailable(r))
                .map(|r| r.get(i).map_or(0, String::len))
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
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
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(&mut header.iter().copied()));
    for r in rows {
        // An unavailable path's message spans the numeric columns: print it as is.
        if is_unavailable(r) {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {}",
                r[0],
                r[1],
                r[2],
                w0 = widths[0],
                w1 = widths[1]
            );
            continue;
        }
        let _ = writeln!(out, "{}", line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// A row whose third cell is an "unavailable: ..." message instead of numbers.
fn is_unavailable(row: &[String]) -> bool {
    row.get(2).is_some_and(|c| c.starts_with("unavailable"))
}

/// Creates the parent directory of `path`, if it has one.
pub fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
pub(crate) mod tests {
    use super::*;

    #[test]
    fn gbps_at_64_bytes() {
        // 1 Mpps of 64-byte frames: 512 Mbit/s (preamble and inter-frame gap not counted).
        assert!((gbps(1.0, 64) - 0.512).abs() < 1e-9);
    }

    fn path(name: &str, mpps: f64) -> PathReport {
        PathReport {
            path: name.into(),
            description: format!("{name} path"),
            unavailable: None,
            mpps,
            gbps: gbps(mpps, 64),
            offered_mpps: 5.0,
            loss_pct: 100.0 * (1.0 - mpps / 5.0),
            node_cpu_ns_per_pkt: Some(700.0),
            node_cores_busy_pct: 99.0,
            latency: Some(LatencySummary {
                samples: 3000,
                p50_us: 12.5,
                p90_us: 20.0,
                p99_us: 40.0,
                p999_us: 80.0,
                max_us: 120.0,
            }),
            probes_sent: 3000,
            probes_received: 3000,
            runs: vec![],
        }
    }

    /// A report of one scenario with a kernel and a kxdp path (also used by the plot tests).
    pub(crate) fn sample_report() -> Report {
        Report {
            machine: Machine {
                cpu_model: "AMD EPYC".into(),
                nproc: 2,
                kernel: "6.18.0".into(),
            },
            scenarios: vec![ScenarioReport {
                scenario: "nat".into(),
                setup: Setup {
                    frame_bytes: 60,
                    wire_bytes: 64,
                    delivered_wire_bytes: 64,
                    flows: 1,
                    workers: 1,
                    extra_services: Some(0),
                    proto: crate::scenario::Proto::Udp,
                    rate_per_thread: None,
                    generator: GeneratorKind::XdpLiveFrames,
                    generator_cores: vec![0],
                    node_cores: vec![1],
                    xdp_mode: "native".into(),
                    af_xdp_bind: "copy".into(),
                    napi: "threaded".into(),
                    probe_rate: 1000,
                    warmup_s: 1.0,
                    duration_s: 3.0,
                    runs: 1,
                },
                paths: vec![path("kernel", 0.8), path("kxdp", 0.9)],
                ratio_kxdp_over_kernel: Some(0.9 / 0.8),
                notes: vec![],
            }],
        }
    }

    #[test]
    fn json_carries_what_the_issue_asks_for() {
        let v = serde_json::to_value(sample_report()).unwrap();
        for key in ["cpu_model", "nproc", "kernel"] {
            assert!(v["machine"].get(key).is_some(), "machine.{key}");
        }
        let s = &v["scenarios"][0];
        assert_eq!(s["scenario"], "nat");
        for key in [
            "xdp_mode",
            "af_xdp_bind",
            "wire_bytes",
            "frame_bytes",
            "flows",
            "workers",
        ] {
            assert!(s["setup"].get(key).is_some(), "setup.{key}");
        }
        let p = &s["paths"][1];
        assert_eq!(p["path"], "kxdp");
        for key in ["mpps", "gbps", "node_cpu_ns_per_pkt", "loss_pct"] {
            assert!(p[key].is_number(), "paths[].{key}");
        }
        for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(p["latency"][key].is_number(), "latency.{key}");
        }
        assert!((s["ratio_kxdp_over_kernel"].as_f64().unwrap() - 1.125).abs() < 1e-9);
    }

    #[test]
    fn summary_table_has_a_row_per_path() {
        let mut r = sample_report();
        r.scenarios[0].paths[0].unavailable = Some("nft not installed".into());
        let t = r.to_table();
        assert!(
            t.starts_with("machine: AMD EPYC | 2 cores | kernel 6.18.0"),
            "{t}"
        );
        let summary = r.summary_table();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 3, "{summary}");
        assert!(lines[0].starts_with("scenario  path"), "{summary}");
        assert!(
            lines[1].contains("unavailable: nft not installed"),
            "{summary}"
        );
        let kxdp: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            kxdp[..8],
            ["nat", "kxdp", "0.900", "0.461", "1.12", "82", "%", "700"],
            "{summary}"
        );
        assert_eq!(kxdp[kxdp.len() - 2..], ["native", "copy"], "{summary}");
        // The message does not widen the numeric columns.
        assert!(lines[0].find("Mpps").unwrap() < 20, "{summary}");
    }
}
