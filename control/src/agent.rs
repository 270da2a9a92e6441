//! `kxdp agent`: run the engine on the node's uplink until SIGTERM/SIGINT, then stop cleanly
//! (workers drained, every XDP program detached). A SIGKILL leaves nothing attached either:
//! programs are attached through bpf_link file descriptors, which die with the process.

use std::net::Ipv4Addr;
use std::sync::Arc;

use af_xdp::bpf::{DstKind, SteerMode};
use anyhow::{Context, bail};
use kxdp_dataplane::{Engine, EngineConfig, PortConfig, TableHandle, Tables};

use crate::cli::AgentArgs;

/// Run the agent to completion.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let uplink = match &args.uplink {
        Some(u) => u.clone(),
        None => default_route_interface()
            .context("no --uplink given and no default route to infer it from")?,
    };
    let node_ip = interface_ipv4(&uplink)?;
    if args.source != "kube" && !std::path::Path::new(&args.source).exists() {
        bail!("--source {}: no such file", args.source);
    }
    tracing::warn!(source = %args.source, "the control plane is not built yet: running with empty tables");

    // Take over SIGTERM/SIGINT before attaching anything: a signal that arrives while the
    // engine starts is then handled after the start, by a clean stop, instead of killing the
    // process half-way.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = rt.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };

    let cfg = EngineConfig {
        ports: vec![PortConfig {
            ifname: uplink.clone(),
            steer: SteerMode::ByDestination,
        }],
        cores: args.cores.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
        xdp_mode: args.xdp_mode.into(),
        ..EngineConfig::default()
    };
    let tables = Arc::new(TableHandle::new(Tables::default()));
    let engine =
        Engine::start(cfg, tables).with_context(|| format!("starting the engine on {uplink}"))?;
    if let Some(ip) = node_ip {
        // The node's own address: only the VXLAN port is ours; SSH, kubelet and the rest stay
        // with the kernel.
        engine.own_prefix(ip, 32, DstKind::PortsOnly)?;
        engine.steering().add_port(17, args.vxlan_port)?;
    }
    for p in engine.ports() {
        tracing::info!(ifname = %p.ifname, ifindex = p.ifindex, mode = ?p.xdp_mode, "attached");
    }
    eprintln!(
        "kxdp agent ready: uplink {uplink}, node IP {node_ip:?}, {} worker(s)",
        engine.stats().len()
    );

    rt.block_on(async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        anyhow::Ok(())
    })?;

    let report = engine.stop();
    for (i, (w, f)) in report.workers.iter().zip(&report.frames).enumerate() {
        tracing::info!(
            worker = i,
            rx = w.rx_packets(),
            tx = w.tx_packets(),
            drops = w.total_drops(),
            frames_leaked = f.user,
            "worker stopped"
        );
    }
    eprintln!("kxdp agent stopped; XDP programs detached");
    Ok(())
}

/// The interface of the IPv4 default route, from /proc/net/route (per network namespace).
fn default_route_interface() -> anyhow::Result<String> {
    let routes = std::fs::read_to_string("/proc/net/route")?;
    routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[1] == "00000000")
        .map(|f| f[0].to_owned())
        .context("no default route")
}

/// The first IPv4 address on an interface, if any.
fn interface_ipv4(ifname: &str) -> anyhow::Result<Option<Ipv4Addr>> {
    let addrs = nix::ifaddrs::getifaddrs().context("getifaddrs")?;
    Ok(addrs
        .filter(|a| a.interface_name == ifname)
        .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|s| s.ip())))
        .next())
}
