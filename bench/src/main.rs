//! `kxdp-bench`: run benchmark scenarios and print (and store) their report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use kxdp_bench::generator::{GeneratorChoice, GeneratorKind};
use kxdp_bench::machine::Machine;
use kxdp_bench::report::{Report, ScenarioReport};
use kxdp_bench::scenario::{
    Proto, RunOptions, Spec, Timing, decap::Decap, forward::Forward, nat::Nat,
    nat_overlay::NatOverlay, overlay::Overlay, runner, scaling,
};

#[derive(Debug, Parser)]
#[command(
    name = "kxdp-bench",
    about = "kxdp benchmarks: the kernel path and kxdp on the same veth topology, same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// IPv4 forwarding gen → node → sink (kernel: ip_forward; --dpdk: DPDK testpmd too).
    Forward(ForwardArgs),
    /// ClusterIP DNAT VIP:80 → backend:8080 (kernel: nftables as kube-proxy writes it).
    Nat(ScenarioArgs),
    /// VXLAN encapsulation to a remote node (kernel: flannel-style vxlan device).
    Overlay(ScenarioArgs),
    /// DNAT to a backend on a remote node, then VXLAN (kernel: nftables + vxlan).
    NatOverlay(ScenarioArgs),
    /// VXLAN from a remote node decapsulated to a local pod (kernel: vxlan device).
    Decap(ScenarioArgs),
    /// Every scenario in turn.
    All(ForwardArgs),
    /// ClusterIP DNAT with few and with many services in the tables (kxdp: 10 vs 100k by
    /// default; the kernel path up to --kernel-max-services).
    ManyServices(ManyArgs),
    /// One scenario at several worker counts (w workers use cores 0..2w).
    Scaling(ScalingArgs),
    /// The generator alone into a counting receiver (no node): what it offers.
    Pktgen(PktgenArgs),
}

#[derive(Debug, clap::Args)]
struct PktgenArgs {
    /// Transmit engine: live (XDP live frames), af-xdp, kernel (the pktgen module), auto
    /// (live, else af-xdp).
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    engine: EngineArg,
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    /// IPv6 instead of IPv4.
    #[arg(long)]
    ipv6: bool,
    /// Inside VXLAN (outer IPv4/UDP 8472, VNI 1; adds 50 bytes).
    #[arg(long)]
    vxlan: bool,
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Frame size on the wire with FCS (before VXLAN).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Frames per second per thread (default: as fast as it goes).
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds to measure (after 1 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineArg {
    Auto,
    Live,
    AfXdp,
    Kernel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScenarioName {
    Forward,
    Nat,
    Overlay,
    NatOverlay,
    Decap,
}

#[derive(Debug, clap::Args)]
struct ScalingArgs {
    /// Worker counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    workers: Vec<usize>,
    #[arg(long, value_enum, default_value_t = ScenarioName::Forward)]
    scenario: ScenarioName,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
struct ManyArgs {
    /// Services in the tables for the first measurement.
    #[arg(long, default_value_t = 10)]
    few: u32,
    /// Services in the tables for the second (10 backends each besides the measured two).
    #[arg(long, default_value_t = 100_000)]
    many: u32,
    #[command(flatten)]
    common: Common,
}

/// The scenario options, and whether to add the DPDK path (`forward`, `all`).
#[derive(Debug, clap::Args)]
struct ForwardArgs {
    /// forward: also measure DPDK testpmd (mac forwarding, net_af_xdp PMD) on the node's veths,
    /// the userspace I/O ceiling; needs dpdk-testpmd (Debian: dpdk-dev, librte-net-af-xdp23),
    /// else reported unavailable.
    #[arg(long)]
    dpdk: bool,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// kxdp workers (= veth queues = generator threads); above 1, cores 0..2w are used.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// Seconds per measurement window.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Windows per path; the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Seconds of traffic before each window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Frame size on the wire with FCS, as the pods see it (VXLAN adds 50 on the underlay).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Distinct flows (UDP source ports). Live frames send each in turn, in bursts of 262144;
    /// the AF_XDP fallback interleaves them frame by frame.
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// nat, nat-overlay: load this many more services with 10 backends each into kxdp's tables
    /// and the nftables ruleset (nft takes long to load tens of thousands).
    #[arg(long, default_value_t = 0)]
    services: u32,
    /// Kernel NAT path: not measured with more services than this (nft needs minutes to load
    /// kube-proxy's ruleset for ten thousand services; see bench/README.md).
    #[arg(long, default_value_t = 20_000)]
    kernel_max_services: u32,
    /// L4 protocol of the load frames (TCP: ACK segments, as mid-connection).
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    /// Offered frames per second per generator thread (default: as fast as it goes).
    #[arg(long)]
    rate: Option<u64>,
    /// Latency probes per second beside the load (0: none).
    #[arg(long, default_value_t = 1000)]
    probe_rate: u32,
    /// Core for the generator (1 worker).
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// Core for the node: the kxdp worker and node-gen's NAPI thread (1 worker).
    #[arg(long, default_value_t = 1)]
    node_core: usize,
    /// Traffic generator.
    #[arg(long, value_enum, default_value_t = GenArg::Auto)]
    generator: GenArg,
    /// Write the report as JSON here (default: bench/out/<command>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG chart here (default: bench/out/<command>.svg).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtoArg {
    Udp,
    Tcp,
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
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kxdp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn spec_of(name: ScenarioName) -> Box<dyn Spec> {
    match name {
        ScenarioName::Forward => Box::new(Forward),
        ScenarioName::Nat => Box::new(Nat),
        ScenarioName::Overlay => Box::new(Overlay),
        ScenarioName::NatOverlay => Box::new(NatOverlay),
        ScenarioName::Decap => Box::new(Decap),
    }
}

/// Runs the command; false when some scenario failed (the others are still reported).
fn run(cli: Cli) -> Result<bool> {
    // Before any scenario pins this thread to one core (the count follows the affinity).
    let cpus = kxdp_bench::cpu::online_cpus()?;
    let machine = Machine::probe();
    let (label, common, reports, ok) = match cli.command {
        Command::Pktgen(p) => return pktgen(&p, cpus),
        Command::Scaling(args) => {
            let o = options(&args.common, 1, cpus)?;
            let spec = spec_of(args.scenario);
            let reports = scaling::run(spec.as_ref(), &o, &args.workers, cpus)?;
            ("scaling", args.common, reports, true)
        }
        Command::All(a) => {
            let names = [
                ScenarioName::Forward,
                ScenarioName::Nat,
                ScenarioName::Overlay,
                ScenarioName::NatOverlay,
                ScenarioName::Decap,
            ];
            let (reports, ok) = run_each(&names, &a.scenario, a.dpdk, cpus)?;
            ("all", a.scenario.common, reports, ok)
        }
        Command::ManyServices(m) => {
            let (reports, ok) = many_services(&m, cpus)?;
            ("many-services", m.common, reports, ok)
        }
        Command::Forward(c) => one("forward", ScenarioName::Forward, c.scenario, c.dpdk, cpus)?,
        Command::Nat(c) => one("nat", ScenarioName::Nat, c, false, cpus)?,
        Command::Overlay(c) => one("overlay", ScenarioName::Overlay, c, false, cpus)?,
        Command::NatOverlay(c) => one("nat-overlay", ScenarioName::NatOverlay, c, false, cpus)?,
        Command::Decap(c) => one("decap", ScenarioName::Decap, c, false, cpus)?,
    };
    if reports.is_empty() {
        bail!("no scenario completed");
    }
    let report = Report {
        machine,
        scenarios: reports,
    };
    println!();
    print!("{}", report.to_table());
    let json = common
        .json
        .unwrap_or_else(|| PathBuf::from(format!("bench/out/{label}.json")));
    report.write_json(&json)?;
    println!("JSON: {}", json.display());
    let plot = common
        .plot
        .unwrap_or_else(|| PathBuf::from(format!("bench/out/{label}.svg")));
    kxdp_bench::plot::write_svg(&report, &plot)?;
    println!("plot: {}", plot.display());
    Ok(ok)
}

/// `kxdp-bench pktgen`: prints the table, writes the JSON if asked.
fn pktgen(p: &PktgenArgs, cpus: usize) -> Result<bool> {
    use kxdp_bench::pktgen::{Engine, PktgenOptions};
    if p.duration.is_nan() || p.duration <= 0.0 {
        bail!("--duration must be positive");
    }
    let o = PktgenOptions {
        engine: match p.engine {
            EngineArg::Auto => Engine::Auto,
            EngineArg::Live => Engine::Live,
            EngineArg::AfXdp => Engine::AfXdp,
            EngineArg::Kernel => Engine::Kernel,
        },
        proto: match p.proto {
            ProtoArg::Udp => Proto::Udp,
            ProtoArg::Tcp => Proto::Tcp,
        },
        ipv6: p.ipv6,
        vxlan: p.vxlan,
        flows: p.flows,
        wire_bytes: p.size,
        rate: p.rate,
        threads: p.threads,
        duration: Duration::from_secs_f64(p.duration),
        warmup: Duration::from_secs(1),
        cpus,
    };
    let r = kxdp_bench::pktgen::run(&o)?;
    if let Some(why) = &r.fallback_reason {
        eprintln!("note: live frames unavailable ({why}); AF_XDP TX ran instead");
    }
    print!("{}", r.to_table());
    if let Some(path) = &p.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&r)?)?;
        println!("JSON: {}", path.display());
    }
    Ok(true)
}

type Outcome = (&'static str, Common, Vec<ScenarioReport>, bool);

/// One scenario (`dpdk`: with the DPDK path, where it has one).
fn one(
    label: &'static str,
    name: ScenarioName,
    a: ScenarioArgs,
    dpdk: bool,
    cpus: usize,
) -> Result<Outcome> {
    let mut o = options(&a.common, a.workers, cpus)?;
    o.dpdk = dpdk;
    let report = runner::run(spec_of(name).as_ref(), &o)?;
    Ok((label, a.common, vec![report], true))
}

/// Runs each scenario (`dpdk`: with the DPDK path where one has it); one that fails is
/// reported on stderr and the rest still run.
fn run_each(
    names: &[ScenarioName],
    a: &ScenarioArgs,
    dpdk: bool,
    cpus: usize,
) -> Result<(Vec<ScenarioReport>, bool)> {
    let mut o = options(&a.common, a.workers, cpus)?;
    o.dpdk = dpdk;
    let mut reports = Vec::new();
    let mut ok = true;
    for &name in names {
        let spec = spec_of(name);
        match runner::run(spec.as_ref(), &o) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("kxdp-bench: scenario {} failed: {e:#}", spec.name());
                ok = false;
            }
        }
    }
    Ok((reports, ok))
}

/// `nat` with `few` and then `many` services in the tables (the measured and the probe
/// service count among them).
fn many_services(m: &ManyArgs, cpus: usize) -> Result<(Vec<ScenarioReport>, bool)> {
    let mut reports = Vec::new();
    let mut ok = true;
    for total in [m.few, m.many] {
        let mut o = options(&m.common, 1, cpus)?;
        o.extra_services = total.saturating_sub(2);
        match runner::run(&Nat, &o) {
            Ok(mut r) => {
                r.scenario = format!("nat, {total} services");
                reports.push(r);
            }
            Err(e) => {
                eprintln!("kxdp-bench: nat with {total} services failed: {e:#}");
                ok = false;
            }
        }
    }
    Ok((reports, ok))
}

fn options(c: &Common, workers: usize, cpus: usize) -> Result<RunOptions> {
    if !(c.duration > 0.0 && c.warmup >= 0.0 && c.runs > 0 && c.flows > 0 && workers > 0) {
        bail!("--duration, --runs, --flows and --workers must be positive, --warmup not negative");
    }
    if !(64..=1518).contains(&c.size) {
        bail!("--size {}: need 64..=1518", c.size);
    }
    let (gen_cores, node_cores) = if workers == 1 {
        (vec![c.gen_core], vec![c.node_core])
    } else {
        scaling::cores_for(workers)
    };
    for &core in gen_cores.iter().chain(&node_cores) {
        if core >= cpus {
            bail!("core {core}: this machine has {cpus} CPU(s) (w workers use cores 0..2w)");
        }
    }
    if gen_cores.iter().any(|g| node_cores.contains(g)) {
        eprintln!("warning: generator and node share a core");
    }
    Ok(RunOptions {
        timing: Timing {
            warmup: Duration::from_secs_f64(c.warmup),
            duration: Duration::from_secs_f64(c.duration),
            runs: c.runs,
        },
        flows: c.flows,
        wire_bytes: c.size,
        workers,
        gen_cores,
        node_cores,
        generator: match c.generator {
            GenArg::Auto => GeneratorChoice::Auto,
            GenArg::Live => GeneratorChoice::Only(GeneratorKind::XdpLiveFrames),
            GenArg::AfXdp => GeneratorChoice::Only(GeneratorKind::AfXdpTx),
        },
        probe_rate: c.probe_rate,
        extra_services: c.services,
        kernel_max_services: c.kernel_max_services,
        proto: match c.proto {
            ProtoArg::Udp => Proto::Udp,
            ProtoArg::Tcp => Proto::Tcp,
        },
        rate: c.rate,
        dpdk: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn scaling_and_scenarios_parse() {
        let cli = Cli::try_parse_from([
            "kxdp-bench",
            "scaling",
            "--workers",
            "1,2,4,8",
            "--scenario",
            "nat-overlay",
            "--duration",
            "2",
        ])
        .unwrap();
        let Command::Scaling(s) = cli.command else {
            panic!("not scaling")
        };
        assert_eq!(s.workers, [1, 2, 4, 8]);
        assert_eq!(s.common.duration, 2.0);
        let cli = Cli::try_parse_from(["kxdp-bench", "nat", "--services", "1000", "--size", "128"])
            .unwrap();
        let Command::Nat(a) = cli.command else {
            panic!("not nat")
        };
        assert_eq!(
            (a.workers, a.common.services, a.common.size),
            (1, 1000, 128)
        );
        let o = options(&a.common, a.workers, 2).unwrap();
        assert_eq!(o.frame_bytes(), 124);
        assert_eq!((o.gen_cores, o.node_cores), (vec![0], vec![1]));
        assert!(options(&a.common, 2, 2).is_err(), "2 workers need 4 cores");
        assert!(!o.dpdk);
    }

    #[test]
    fn dpdk_flag_on_forward_and_all_only() {
        let cli =
            Cli::try_parse_from(["kxdp-bench", "forward", "--dpdk", "--duration", "2"]).unwrap();
        let Command::Forward(f) = cli.command else {
            panic!("not forward")
        };
        assert!(f.dpdk);
        assert_eq!(f.scenario.common.duration, 2.0);
        let cli = Cli::try_parse_from(["kxdp-bench", "forward"]).unwrap();
        let Command::Forward(f) = cli.command else {
            panic!("not forward")
        };
        assert!(!f.dpdk, "off by default");
        let cli = Cli::try_parse_from(["kxdp-bench", "all", "--dpdk", "--runs", "1"]).unwrap();
        let Command::All(a) = cli.command else {
            panic!("not all")
        };
        assert!(a.dpdk);
        assert_eq!(a.scenario.common.runs, 1);
        assert!(Cli::try_parse_from(["kxdp-bench", "nat", "--dpdk"]).is_err());
    }
}
