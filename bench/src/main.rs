//! `kxdp-bench`: run a benchmark scenario and print (and optionally store) its report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use kxdp_bench::generator::{GeneratorChoice, GeneratorKind};
use kxdp_bench::machine::Machine;
use kxdp_bench::report::Report;
use kxdp_bench::scenario::{Timing, forward};

#[derive(Debug, Parser)]
#[command(
    name = "kxdp-bench",
    about = "kxdp benchmarks: kernel path vs kxdp on veth"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// IPv4 forwarding of 64-byte UDP frames gen → node → sink: kernel, then kxdp.
    Forward(ForwardArgs),
}

#[derive(Debug, clap::Args)]
struct ForwardArgs {
    /// Seconds per measurement window.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Windows per path; the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Seconds of traffic before each window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Distinct flows (UDP source ports). Live frames send each in turn, in bursts of 262144;
    /// the AF_XDP fallback interleaves them frame by frame.
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Core for the generator.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// Core for the node: the kxdp worker.
    #[arg(long, default_value_t = 1)]
    node_core: usize,
    /// Core for the node's receive processing (the node-gen veth's NAPI thread); default: the
    /// node core.
    #[arg(long)]
    napi_core: Option<usize>,
    /// Traffic generator.
    #[arg(long, value_enum, default_value_t = GenArg::Auto)]
    generator: GenArg,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GenArg {
    /// XDP live frames, falling back to AF_XDP TX if they fail.
    Auto,
    /// XDP live frames only.
    Live,
    /// AF_XDP copy-mode TX only (1-1.5 Mpps on veth).
    AfXdp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "kxdp-bench needs root: it creates network namespaces and veths, loads XDP programs \
             and opens AF_XDP sockets. Run it as root (e.g. `sudo target/release/kxdp-bench ...`)."
        );
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kxdp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let Scenario::Forward(args) = cli.scenario;
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.runs > 0 && args.flows > 0) {
        bail!("--duration and --runs and --flows must be positive, --warmup not negative");
    }
    let cpus = kxdp_bench::cpu::online_cpus()?;
    for (what, core) in [
        ("--gen-core", Some(args.gen_core)),
        ("--node-core", Some(args.node_core)),
        ("--napi-core", args.napi_core),
    ]
    .into_iter()
    .filter_map(|(w, c)| Some((w, c?)))
    {
        if core >= cpus {
            bail!("{what} {core}: this machine has {cpus} CPU(s)");
        }
    }
    if args.gen_core == args.node_core {
        eprintln!("warning: generator and node share core {}", args.node_core);
    }
    let machine = Machine::probe();
    eprintln!(
        "kxdp-bench forward: {} x {} s per path after {} s warm-up; generator core {}, node core {}",
        args.runs, args.duration, args.warmup, args.gen_core, args.node_core
    );
    let opts = forward::ForwardOptions {
        timing: Timing {
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            runs: args.runs,
        },
        flows: args.flows,
        gen_core: args.gen_core,
        node_core: args.node_core,
        napi_core: args.napi_core.unwrap_or(args.node_core),
        generator: match args.generator {
            GenArg::Auto => GeneratorChoice::Auto,
            GenArg::Live => GeneratorChoice::Only(GeneratorKind::XdpLiveFrames),
            GenArg::AfXdp => GeneratorChoice::Only(GeneratorKind::AfXdpTx),
        },
    };
    let scenario = forward::run(&opts)?;
    let report = Report {
        machine,
        scenarios: vec![scenario],
    };
    println!();
    print!("{}", report.to_table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("JSON: {}", path.display());
    }
    Ok(())
}
