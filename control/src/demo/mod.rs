//! `kxdp demo`: a small virtual cluster on this machine, real traffic through it, a report,
//! and nothing left behind.
//!
//! It builds, in network namespaces, an underlay bridge with two nodes and a client outside
//! the cluster: `kxdp-a` runs the real agent (`kxdp agent --source <the embedded default
//! objects>`) with pods attached through `kxdp-cni` exactly as a container runtime calls it;
//! `flannel-b` is configured as flannel's VXLAN backend configures a node (kernel `vxlan`
//! device, `cni0` bridge), to show the two interoperate. Then it sends pod → pod traffic on a
//! node and across the overlay both ways, a TCP transfer, HTTP to a ClusterIP (spread over
//! backends on both nodes) and from outside to a NodePort, and a short UDP flood for a
//! packets-per-second figure; prints what happened with the engine's counters; and removes
//! everything, also on Ctrl-C and on a panic.
//!
//! Module map (in the order a run uses them):
//! - `preflight`: root, the CNI plugins, one demo at a time (a lock), sweeping a killed run.
//! - [`plan`](self::plan): the nodes, pods and services, from the default objects.
//! - `netns`: named namespaces without `ip` (compatible with `ip netns`).
//! - `topology`: building the cluster through our netlink client.
//! - `agent_process`: the agent as a child process in kxdp-a's namespace.
//! - `cni_runtime`: `kxdp-cni` ADD/DEL as a container runtime runs it.
//! - `traffic`: the pods' servers and the checks.
//! - `report`: text and JSON.
//! - `cleanup`: the undo stack, signals, the panic hook.

mod agent_process;
mod cleanup;
mod cni_runtime;
mod netns;
pub mod plan;
mod preflight;
mod report;
mod topology;
mod traffic;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use self::plan::Plan;
use self::report::{EngineCounters, Report};
use self::topology::Cluster;
use crate::api::{InspectWhat, Request};
use crate::objects::DEFAULT_OBJECTS;

/// `kxdp demo [--keep] [--json]`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Leave the cluster up after the checks until Ctrl-C, to look around in it
    /// (`ip netns exec kxdp-demo-client-a ...`, `kxdp inspect ... --api-socket ...`).
    #[arg(long)]
    pub keep: bool,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Exit status when a signal stopped the run before its checks were done (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// Runs the demo. The exit code is 0 when every check passed and everything was removed.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // First: from here on a Ctrl-C cleans up instead of killing the process.
    cleanup::watch_signals().context("taking over SIGINT/SIGTERM/SIGHUP")?;
    cleanup::install_panic_hook();
    let started = Instant::now();
    let plan = Plan::from_objects(DEFAULT_OBJECTS)?;
    let pre = preflight::run()?;
    for s in &pre.swept {
        eprintln!("kxdp demo: removed what an earlier, interrupted run left: {s}");
    }

    let mut report = Report::default();
    let mut progress = Progress::default();
    if let Err(e) = run_cluster(args, &plan, &pre, &mut report, &mut progress, started)
        && e.downcast_ref::<cleanup::Interrupted>().is_none()
    {
        report.error = Some(format!("{e:#}"));
    }
    if !progress.checks_done {
        report.interrupted = cleanup::interrupted_by().map(str::to_owned);
    }

    eprintln!("kxdp demo: removing everything it made");
    report.cleanup = cleanup::teardown();
    let leftover = netns::list_demo();
    if !leftover.is_empty() {
        report.cleanup.push(cleanup::Undone {
            what: "left behind".into(),
            ok: false,
            note: format!("namespaces still present: {}", leftover.join(", ")),
        });
    }
    report.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report.ok = report_ok(&report);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if !progress.report_printed {
            print!("{}", report.to_text());
        }
        print!("\n{}", report::cleanup_text(&report.cleanup));
        println!(
            "{}",
            if report.ok {
                "kxdp demo: all checks passed, nothing left behind"
            } else {
                "kxdp demo: FAILED (see above)"
            }
        );
    }
    Ok(if report.interrupted.is_some() {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How far a run got.
#[derive(Debug, Default)]
struct Progress {
    checks_done: bool,
    report_printed: bool,
}

fn report_ok(r: &Report) -> bool {
    r.error.is_none()
        && r.interrupted.is_none()
        && !r.checks.is_empty()
        && r.checks.iter().all(|c| c.ok)
        && r.cleanup.iter().all(|u| u.ok)
}

fn step(msg: &str) {
    eprintln!("  · {msg}");
}

/// Build, check, report, and with `--keep` wait for Ctrl-C. Teardown is the caller's.
fn run_cluster(
    args: &DemoArgs,
    plan: &Plan,
    pre: &preflight::Preflight,
    report: &mut Report,
    progress: &mut Progress,
    started: Instant,
) -> anyhow::Result<()> {
    eprintln!("kxdp demo: building the cluster");
    let cluster = topology::build(plan, pre, &step)?;
    report.describe(plan, &cluster);
    cleanup::checkpoint()?;
    let servers = traffic::Servers::start(&cluster)?;
    eprintln!("kxdp demo: sending traffic");
    report.checks = traffic::run_checks(&cluster, plan, &servers, args.json);
    report.engine = engine_counters(&cluster, plan);
    if !cluster.agent.running() {
        bail!(
            "the agent exited during the checks; its log:\n{}",
            cluster.agent.log_tail(15)
        );
    }
    cleanup::checkpoint()?;
    progress.checks_done = true;
    report.ok = report_ok(report);
    report.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    if !args.json {
        print!("{}", report.to_text());
        progress.report_printed = true;
    }
    if args.keep {
        keep_until_interrupted(&cluster, plan);
    }
    servers.stop();
    Ok(())
}

/// `--keep`: say how to look around, then wait for a signal (or the agent's end).
fn keep_until_interrupted(cluster: &Cluster, plan: &Plan) {
    let sock = cluster.agent.opts.api_socket.display();
    eprintln!(
        "\nkxdp demo: ready; the cluster stays up until Ctrl-C. To look around:\n  \
         ip netns exec {p}client-a curl http://{cip}/\n  \
         ip netns exec {p}outside curl http://{np}/\n  \
         kxdp inspect services --api-socket {sock}    (also: conntrack, nodes, attachments, stats)\n  \
         kxdp capture --count 20 -w /tmp/kxdp.pcapng --api-socket {sock}    (then tshark -r, or Wireshark)\n  \
         ip netns exec {p}kxdp-a curl -s http://127.0.0.1:9450/metrics\n  \
         agent log: {log}",
        p = netns::PREFIX,
        cip = plan.cluster_ip,
        np = plan.node_port,
        log = cluster.agent.opts.log.display(),
    );
    while cleanup::sleep(Duration::from_millis(200)) {
        if !cluster.agent.running() {
            eprintln!(
                "kxdp demo: the agent exited; its log:\n{}",
                cluster.agent.log_tail(15)
            );
            return;
        }
    }
}

/// The engine's counters through the API (what `kxdp inspect stats --json` prints), with
/// ports named: the uplink and host port come first (the order `NodeDataplane` adds them),
/// pods are named from `inspect attachments`.
fn engine_counters(cluster: &Cluster, plan: &Plan) -> Option<EngineCounters> {
    let api = cluster.agent.api();
    let stats = api
        .call(&Request::Inspect {
            what: InspectWhat::Stats,
        })
        .ok()?;
    let mut names = BTreeMap::from([
        (0, "eth0 (uplink)".to_owned()),
        (1, "kxdp0e (host port)".to_owned()),
    ]);
    if let Ok(attachments) = api.call(&Request::Inspect {
        what: InspectWhat::Attachments,
    }) {
        for a in attachments
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (Some(port), Some(ifname)) = (a["port"].as_u64(), a["ifname"].as_str()) else {
                continue;
            };
            let pod = a["ip"]
                .as_str()
                .and_then(|ip| ip.parse().ok())
                .and_then(|ip| plan.pod_at(ip))
                .map_or_else(String::new, |p| format!(" (pod {})", p.name));
            names.insert(port, format!("{ifname}{pod}"));
        }
    }
    Some(EngineCounters::from_stats(&stats, &names))
}
