//! `kxdp`: the node agent and its tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "kxdp", version, about = "Kubernetes node dataplane on AF_XDP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent (the data path and its control plane).
    Agent(kxdp_control::cli::AgentArgs),
    /// Show what the data path holds (services, backends, conntrack, nodes, attachments,
    /// routes, stats) through the agent's local API.
    Inspect(kxdp_control::inspect::InspectArgs),
    /// Build a small virtual cluster in network namespaces (a kxdp node, a flannel node,
    /// pods attached through kxdp-cni), send real traffic through it, report, clean up.
    /// Needs root and the CNI plugins (host-local).
    Demo(kxdp_control::demo::DemoArgs),
    /// What the engine sees and does, as pcapng (tcpdump on the host never sees the traffic
    /// the engine handles): each frame after the pipeline, with a comment saying where it went
    /// or why it was dropped.
    Capture(kxdp_control::capture::CaptureArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KXDP_LOG")
                // kube's client logs every failed request (each watcher retry, each probe)
                // and every reset watch stream; the agent reports the source's health itself.
                .unwrap_or_else(|_| {
                    "info,kube_client=error,kube_client::client::builder=off".into()
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Agent(args) => kxdp_control::agent::run(args).map(|()| ExitCode::SUCCESS),
        Command::Inspect(args) => kxdp_control::inspect::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => kxdp_control::demo::run(&args),
        Command::Capture(args) => kxdp_control::capture::run(&args).map(|()| ExitCode::SUCCESS),
    }
}
