//! `kxdp agent`: run the node's data path until SIGTERM/SIGINT, then stop cleanly.
//!
//! With `--source FILE` (objects from a file, reloaded on change):
//! 1. load the file; find this node's Node (`--node-name`, `NODE_NAME`, else the hostname) and
//!    take its pod CIDR from it;
//! 2. pick the uplink: `--uplink`, else the interface holding the Node's InternalIP, else the
//!    default route's;
//! 3. create the host port (`kxdp0` ═ `kxdp0e`, the pods' gateway address on `kxdp0`,
//!    forwarding on, rp_filter off; see `agent/host_port.rs`);
//! 4. start the [`NodeDataplane`] on the uplink and `kxdp0e`, with this Node's flannel
//!    `VtepMAC` if it carries one (else one derived from the node IP), and print it;
//! 5. on every (re)load, give the engine the other Nodes as remote nodes and route every pod
//!    CIDR of the cluster into `kxdp0`, adding and removing routes as Nodes come and go.
//!
//! On SIGTERM/SIGINT the engine stops (workers drained, XDP programs detached), then the routes
//! and the veth pair go. A SIGKILL leaves the pair and its routes (the XDP programs die with the
//! process, through their bpf_link fds); the next start deletes and recreates them. The
//! sysctls stay as set.
//!
//! With `--source kube` the API-server watcher is not built yet: the engine runs on the uplink
//! with empty tables, which keeps the node's own traffic working.

mod host_port;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use af_xdp::bpf::{DstKind, SteerMode};
use anyhow::{Context, anyhow};
use clap::ValueEnum;
use kxdp_dataplane::{Engine, EngineConfig, PortConfig, StopReport, TableHandle, Tables};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::AgentArgs;
use crate::netlink::{LinkId, Netlink};
use crate::objects::{DesiredState, NodeView, format_mac};
use crate::overlay::{Ipv4Net, NodeConfig, NodeDataplane, OverlayMode, RemoteNode};
use crate::source::file;
pub use host_port::{ENGINE_IF, HOST_IF};

/// What VXLAN adds to a packet (outer IPv4, UDP, VXLAN, inner Ethernet): pods and the host
/// port get the uplink's MTU less this.
const VXLAN_OVERHEAD: u32 = 50;

/// Run the agent to completion.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    // Take over SIGTERM/SIGINT before attaching anything: a signal that arrives while the
    // engine starts is then handled after the start, by a clean stop, instead of killing the
    // process half-way.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signals = {
        let _guard = rt.enter();
        Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        }
    };
    if args.source == "kube" {
        run_without_objects(&args, &rt, signals)
    } else {
        run_with_file(&args, Path::new(&args.source), &rt, signals)
    }
}

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn run_with_file(
    args: &AgentArgs,
    path: &Path,
    rt: &tokio::runtime::Runtime,
    mut signals: Signals,
) -> anyhow::Result<()> {
    let node_name = node_name(args)?;
    // The watcher's task runs on this runtime (polled once block_on below drives it).
    let _guard = rt.enter();
    let (mut updates, _watcher) = file::watch(path).context("--source")?;
    let first = Arc::clone(&updates.borrow_and_update());
    let me = first.state.nodes.get(&node_name).cloned().ok_or_else(|| {
        let names: Vec<&str> = first.state.nodes.keys().map(String::as_str).collect();
        anyhow!(
            "{}: no Node named {node_name:?} (this node's name, from --node-name, NODE_NAME or \
             the hostname); the file has: {}",
            path.display(),
            if names.is_empty() {
                "no Nodes".to_owned()
            } else {
                names.join(", ")
            }
        )
    })?;
    let pod_cidr = *me.pod_cidrs.first().ok_or_else(|| {
        anyhow!(
            "Node {node_name}: spec.podCIDR: not set (in {}); this node needs an IPv4 pod CIDR",
            path.display()
        )
    })?;
    let uplink = find_uplink(args, &me)?;
    let uplink_mtu = Netlink::open()?
        .link(LinkId::Name(uplink.clone()))
        .with_context(|| format!("uplink {uplink}"))?
        .mtu;
    let mode: OverlayMode = args.overlay.into();
    let host_mtu = match mode {
        OverlayMode::None => uplink_mtu,
        _ => uplink_mtu.saturating_sub(VXLAN_OVERHEAD),
    };
    let cores = args.cores.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    let workers = u32::try_from(cores.len().max(1)).unwrap_or(1);

    let mut host = host_port::HostPort::create(host_mtu, workers, pod_cidr.nth(1))
        .with_context(|| format!("creating the host port {HOST_IF}/{ENGINE_IF}"))?;
    let mut cfg = NodeConfig::new(&node_name, &uplink, pod_cidr);
    cfg.host_port = Some((ENGINE_IF.to_owned(), HOST_IF.to_owned()));
    cfg.vtep_mac = me.vtep_mac;
    cfg.vni = args.vni;
    cfg.vxlan_port = args.vxlan_port;
    cfg.mode = mode;
    cfg.engine = EngineConfig {
        cores,
        xdp_mode: args.xdp_mode.into(),
        ..EngineConfig::default()
    };
    let dp = NodeDataplane::start(cfg)
        .with_context(|| format!("starting the node dataplane on {uplink} and {ENGINE_IF}"))?;
    for p in dp.engine().ports() {
        tracing::info!(ifname = %p.ifname, ifindex = p.ifindex, mode = ?p.xdp_mode, "attached");
    }
    let local = dp.local();
    eprintln!(
        "kxdp agent ready: node {node_name}, uplink {uplink}, node IP {}, pod CIDR {pod_cidr}, \
         gateway {} on {HOST_IF}, overlay {}, VtepMAC {} ({}), {} worker(s)",
        local.ip,
        local.gateway(),
        args.overlay
            .to_possible_value()
            .map_or_else(|| format!("{mode:?}"), |v| v.get_name().to_owned()),
        format_mac(local.vtep_mac),
        if me.vtep_mac.is_some() {
            "from the Node's flannel backend-data"
        } else {
            "derived from the node IP; other nodes need it in this Node's flannel backend-data"
        },
        dp.engine().stats().len()
    );

    let this = ThisNode {
        name: node_name,
        pod_cidr,
        vtep_mac: local.vtep_mac,
    };
    this.apply(&dp, &mut host, &first.state, path);
    let stopped_by = rt.block_on(async {
        loop {
            tokio::select! {
                s = signals.recv() => break s,
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The watcher is gone (it only stops when we do): keep running.
                        break signals.recv().await;
                    }
                    let loaded = Arc::clone(&updates.borrow_and_update());
                    this.apply(&dp, &mut host, &loaded.state, path);
                }
            }
        }
    });
    tracing::info!("{stopped_by}: stopping");

    log_stop(&dp.stop());
    host.remove()
        .with_context(|| format!("removing {HOST_IF} and its routes"))?;
    eprintln!(
        "kxdp agent stopped; XDP programs detached; {HOST_IF}/{ENGINE_IF} and its routes removed"
    );
    Ok(())
}

/// What the agent started with; changes to this node's own Node need a restart.
struct ThisNode {
    name: String,
    pod_cidr: Ipv4Net,
    vtep_mac: [u8; 6],
}

impl ThisNode {
    /// Apply a (re)loaded state: remote nodes to the engine, pod CIDR routes to the kernel.
    fn apply(
        &self,
        dp: &NodeDataplane,
        host: &mut host_port::HostPort,
        state: &DesiredState,
        path: &Path,
    ) {
        match state.nodes.get(&self.name) {
            None => tracing::warn!(
                "Node {} is no longer in {}: keeping the configuration it started with",
                self.name,
                path.display()
            ),
            Some(me) => {
                if me.pod_cidrs.first() != Some(&self.pod_cidr) {
                    tracing::warn!(
                        "Node {}: spec.podCIDR changed to {:?}; restart the agent to apply it \
                         (still using {})",
                        self.name,
                        me.pod_cidrs,
                        self.pod_cidr
                    );
                }
                if me.vtep_mac.is_some_and(|m| m != self.vtep_mac) {
                    tracing::warn!(
                        "Node {}: the VtepMAC in its backend-data changed; restart the agent to \
                         apply it (still using {})",
                        self.name,
                        format_mac(self.vtep_mac)
                    );
                }
            }
        }

        let (remotes, routes) = self.remotes(state.nodes.values());
        let summary: Vec<String> = remotes
            .iter()
            .map(|r| {
                let cidrs: Vec<String> = r.pod_cidrs.iter().map(Ipv4Net::to_string).collect();
                format!("{} ({}, {})", r.name, r.ip, cidrs.join(" "))
            })
            .collect();
        tracing::info!("remote nodes: [{}]", summary.join(", "));
        dp.set_remotes(remotes);
        host.sync_routes(&routes);
    }

    /// The other nodes as the engine takes them, and every pod CIDR the kernel routes into
    /// `kxdp0` (ours included).
    fn remotes<'a>(
        &self,
        nodes: impl Iterator<Item = &'a NodeView>,
    ) -> (Vec<RemoteNode>, BTreeSet<Ipv4Net>) {
        let mut remotes = Vec::new();
        let mut routes = BTreeSet::from([self.pod_cidr]);
        for node in nodes.filter(|n| n.name != self.name) {
            let Some(ip) = node.public_ip else {
                tracing::warn!(
                    "Node {}: no IPv4 InternalIP and no flannel public-ip: unreachable, skipped",
                    node.name
                );
                continue;
            };
            let mut pod_cidrs = Vec::new();
            for cidr in &node.pod_cidrs {
                if overlaps(*cidr, self.pod_cidr) {
                    tracing::warn!(
                        "Node {}: pod CIDR {cidr} overlaps ours ({}): not routed",
                        node.name,
                        self.pod_cidr
                    );
                } else {
                    pod_cidrs.push(*cidr);
                }
            }
            if pod_cidrs.is_empty() {
                continue; // nothing to route to it (yet)
            }
            routes.extend(pod_cidrs.iter().copied());
            remotes.push(RemoteNode {
                name: node.name.clone(),
                ip,
                pod_cidrs,
                vtep_mac: node.vtep_mac,
            });
        }
        (remotes, routes)
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

/// `--node-name` (or `NODE_NAME`, through clap), else the hostname.
fn node_name(args: &AgentArgs) -> anyhow::Result<String> {
    if let Some(n) = args.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Ok(n.to_owned());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("no --node-name or NODE_NAME, and the hostname is unreadable")?;
    Ok(host.trim().to_owned())
}

/// `--uplink`, else the interface holding the Node's InternalIP, else the default route's.
fn find_uplink(args: &AgentArgs, me: &NodeView) -> anyhow::Result<String> {
    if let Some(u) = &args.uplink {
        return Ok(u.clone());
    }
    if let Some(ip) = me.internal_ip {
        let mut nl = Netlink::open()?;
        let holder = nl
            .addresses(None)?
            .into_iter()
            .find(|a| a.address == IpAddr::V4(ip));
        if let Some(a) = holder {
            return Ok(nl.link(LinkId::Index(a.index))?.name);
        }
        tracing::warn!(
            "no interface holds Node {}'s InternalIP {ip}; using the default route's",
            me.name
        );
    }
    default_route_interface().context(
        "no --uplink given, no interface holds the Node's InternalIP, and no default route",
    )
}

fn log_stop(report: &StopReport) {
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
}

/// `--source kube`, until the API-server watcher exists: the engine on the uplink with empty
/// tables (everything goes to the kernel), so the node keeps working.
fn run_without_objects(
    args: &AgentArgs,
    rt: &tokio::runtime::Runtime,
    mut signals: Signals,
) -> anyhow::Result<()> {
    let uplink = match &args.uplink {
        Some(u) => u.clone(),
        None => default_route_interface()
            .context("no --uplink given and no default route to infer it from")?,
    };
    let node_ip = interface_ipv4(&uplink)?;
    tracing::warn!(source = %args.source, "the API-server source is not built yet: running with empty tables");

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

    let stopped_by = rt.block_on(signals.recv());
    tracing::info!("{stopped_by}: stopping");
    log_stop(&engine.stop());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: Option<[u8; 4]>, cidrs: &[&str]) -> NodeView {
        NodeView {
            name: name.into(),
            internal_ip: ip.map(Ipv4Addr::from),
            public_ip: ip.map(Ipv4Addr::from),
            pod_cidrs: cidrs
                .iter()
                .map(|c| c.parse().unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            vtep_mac: Some([0x0e, 0, 0, 0, 0, 1]),
            vni: Some(1),
            backend_type: Some("vxlan".into()),
        }
    }

    #[test]
    fn remotes_and_routes_from_nodes() {
        let this = ThisNode {
            name: "a".into(),
            pod_cidr: "10.244.1.0/24".parse().unwrap_or_else(|e| panic!("{e}")),
            vtep_mac: [0; 6],
        };
        let nodes = [
            node("a", Some([192, 168, 77, 1]), &["10.244.1.0/24"]),
            node("b", Some([192, 168, 77, 2]), &["10.244.2.0/24"]),
            node("c", None, &["10.244.3.0/24"]), // unreachable
            node("d", Some([192, 168, 77, 4]), &[]), // no pod CIDR yet
            node(
                "e",
                Some([192, 168, 77, 5]),
                &["10.244.0.0/16", "10.244.5.0/24"],
            ), // overlaps ours
        ];
        let (remotes, routes) = this.remotes(nodes.iter());
        let names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "e"]);
        assert_eq!(remotes[1].pod_cidrs.len(), 1);
        let routes: Vec<String> = routes.iter().map(Ipv4Net::to_string).collect();
        assert_eq!(routes, ["10.244.1.0/24", "10.244.2.0/24", "10.244.5.0/24"]);
    }
}
