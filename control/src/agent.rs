//! `kxdp agent`: run the node's data path and its control plane until SIGTERM/SIGINT, then
//! stop cleanly.
//!
//! Start-up:
//! 1. `/metrics`, `/healthz`, `/readyz` on `--metrics-addr` (not ready until the first complete
//!    view of the cluster is published);
//! 2. the first complete view, with this node's Node (`--node-name`, `NODE_NAME`, else the
//!    hostname) and its pod CIDR:
//!    - `--source FILE`: the file's first load (an error if the Node or its pod CIDR is
//!      missing);
//!    - `--source kube`: the API server's lists of Nodes, Services and EndpointSlices (client
//!      from the in-cluster configuration or `KUBECONFIG`, retried until it works), waiting
//!      for the Node to have `spec.podCIDR`. Meanwhile the engine runs on the uplink with
//!      empty tables (everything to the kernel), as a node without objects would;
//! 3. the uplink: `--uplink`, else the interface holding the Node's InternalIP, else the
//!    default route's;
//! 4. the host port (`kxdp0` ═ `kxdp0e`, the pods' gateway address on `kxdp0`, forwarding on,
//!    rp_filter off; see `agent/host_port.rs`) and the [`NodeDataplane`] on the uplink and
//!    `kxdp0e`, with this Node's flannel `VtepMAC` if it carries one (else one derived from
//!    the node IP);
//! 5. the local API on `--api-socket` (`kxdp-cni`, `kxdp inspect`);
//! 6. in `kube` mode, this Node's flannel annotations (`agent/node_annotations.rs`);
//! 7. the [controller](controller) publishes the first tables and then follows the source.
//!
//! On SIGTERM/SIGINT: the API socket goes, the engine stops (workers drained, XDP programs
//! detached), then the routes and the veth pair go. The API server being unreachable delays
//! none of it. A SIGKILL leaves the pair and its routes (the XDP programs die with the
//! process, through their bpf_link fds); the next start deletes and recreates them. The
//! sysctls stay as set.
//!
//! Modules: `controller` (the one loop that writes the data path), `remotes` (Nodes → remote
//! VTEPs and pod CIDR routes), `steering` (NodePorts and external IPs on the uplink),
//! `health_check` (eTP=Local health check node ports), `node_annotations` (flannel
//! annotations in `kube` mode), `host_port` (`kxdp0`/`kxdp0e`).

mod controller;
mod health_check;
mod host_port;
mod node_annotations;
mod remotes;
mod steering;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use af_xdp::bpf::{DstKind, SteerMode};
use anyhow::{Context, anyhow};
use clap::ValueEnum;
use kxdp_dataplane::{Engine, EngineConfig, PortConfig, StopReport, TableHandle, Tables};
use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::api::{ApiServer, NodeHandler};
use crate::cli::AgentArgs;
use crate::metrics::{Health, MetricsServer, MetricsSource};
use crate::netlink::{LinkId, Netlink};
use crate::objects::{DesiredState, NodeView, format_mac};
use crate::overlay::{NodeConfig, NodeDataplane, OverlayMode};
use crate::source::{self, SourceEvent, file};
use controller::{COALESCE_WINDOW, Controller, ControllerParts};
pub use host_port::{ENGINE_IF, HOST_IF};
use remotes::ThisNode;

/// What VXLAN adds to a packet (outer IPv4, UDP, VXLAN, inner Ethernet): pods and the host
/// port get the uplink's MTU less this.
const VXLAN_OVERHEAD: u32 = 50;
/// How long a stopping agent waits for in-flight API and metrics requests to let go of the
/// dataplane before it stops the engine anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

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
    let health = Arc::new(Health::new(args.stale_after));
    let scrape = Arc::new(AgentMetrics::default());
    let metrics = MetricsServer::start(
        args.metrics_addr,
        Arc::clone(&scrape) as Arc<dyn MetricsSource>,
        Arc::clone(&health),
    )
    .with_context(|| format!("--metrics-addr {}", args.metrics_addr))?;
    tracing::info!("metrics, health and readiness on http://{}", metrics.addr());
    let mut agent = Agent {
        node_name: node_name(&args)?,
        args: &args,
        rt: &rt,
        signals,
        health,
        scrape,
    };
    let result = if args.source == "kube" {
        agent.run_kube()
    } else {
        agent.run_file(Path::new(&args.source))
    };
    drop(metrics);
    // Watchers, the annotation writer and health check listeners end with the runtime; a
    // request stuck on an unreachable API server does not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
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

/// `/metrics` content: the engine's counters and service/conntrack gauges once the node
/// dataplane runs (before that, only the control plane's own metrics).
#[derive(Debug, Default)]
struct AgentMetrics {
    dp: Mutex<Option<Arc<NodeDataplane>>>,
}

impl AgentMetrics {
    fn set(&self, dp: Option<Arc<NodeDataplane>>) {
        *self.dp.lock().unwrap_or_else(|e| e.into_inner()) = dp;
    }
}

impl MetricsSource for AgentMetrics {
    fn render(&self, out: &mut String) {
        let dp = self.dp.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(dp) = dp {
            crate::metrics::render_engine(dp.engine(), out);
            crate::metrics::render_services(dp.engine(), out);
        }
    }
}

/// A running node dataplane with its host port.
struct Overlay {
    dp: NodeDataplane,
    host: host_port::HostPort,
    this: ThisNode,
}

/// Where the objects come from, as the controller is handed it.
struct Feed<'a> {
    name: String,
    events: &'a mut mpsc::Receiver<SourceEvent>,
    state: DesiredState,
    synced: bool,
    current: bool,
}

struct Agent<'a> {
    args: &'a AgentArgs,
    rt: &'a Runtime,
    signals: Signals,
    health: Arc<Health>,
    scrape: Arc<AgentMetrics>,
    node_name: String,
}

impl Agent<'_> {
    fn run_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let node_name = self.node_name.clone();
        // The watcher's task runs on this runtime (polled once block_on drives it).
        let _guard = self.rt.enter();
        let (mut updates, _watcher) = file::watch(path).context("--source")?;
        let first = Arc::clone(&updates.borrow_and_update());
        let me = first.state.nodes.get(&node_name).cloned().ok_or_else(|| {
            let names: Vec<&str> = first.state.nodes.keys().map(String::as_str).collect();
            anyhow!(
                "{}: no Node named {node_name:?} (this node's name, from --node-name, NODE_NAME \
                 or the hostname); the file has: {}",
                path.display(),
                if names.is_empty() {
                    "no Nodes".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })?;
        if me.pod_cidrs.is_empty() {
            return Err(anyhow!(
                "Node {node_name}: spec.podCIDR: not set (in {}); this node needs an IPv4 pod CIDR",
                path.display()
            ));
        }
        let overlay = self.start_overlay(
            &me,
            "other nodes need it in this Node's flannel backend-data",
        )?;

        // Each good reload replaces the whole state.
        let (tx, mut events) = mpsc::channel(4);
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let loaded = Arc::clone(&updates.borrow_and_update());
                let replaced = SourceEvent::Replaced(loaded.state.clone());
                if tx.send(replaced).await.is_err() || tx.send(SourceEvent::Synced).await.is_err() {
                    return;
                }
            }
        });
        self.serve(
            overlay,
            Feed {
                name: path.display().to_string(),
                events: &mut events,
                state: first.state.clone(),
                synced: true,
                current: true,
            },
        )
    }

    fn run_kube(&mut self) -> anyhow::Result<()> {
        let bare = self.start_bare_engine()?;
        let waited = self.rt.block_on(wait_for_cluster(
            &mut self.signals,
            &self.node_name,
            &self.health,
        ));
        log_stop(&bare.stop());
        let mut cluster = match waited {
            Ok(c) => c,
            Err(stopped_by) => {
                tracing::info!("{stopped_by}: stopping");
                eprintln!("kxdp agent stopped; XDP programs detached");
                return Ok(());
            }
        };
        let overlay =
            self.start_overlay(&cluster.me, "written to the Node's flannel annotations")?;
        let local = overlay.dp.local();
        let annotator = self.rt.spawn(node_annotations::keep_annotated(
            kube::Api::all(cluster.client.clone()),
            cluster.source.nodes.clone(),
            self.node_name.clone(),
            node_annotations::wanted(self.args.vni, local.vtep_mac, local.ip),
        ));
        let result = self.serve(
            overlay,
            Feed {
                name: "kube".into(),
                events: &mut cluster.source.events,
                state: std::mem::take(&mut cluster.state),
                synced: true,
                current: cluster.current,
            },
        );
        annotator.abort();
        result
    }

    /// `--source kube` before the cluster is known: the engine on the uplink with empty
    /// tables (everything goes to the kernel), so the node keeps working.
    fn start_bare_engine(&self) -> anyhow::Result<Engine> {
        let uplink = match &self.args.uplink {
            Some(u) => u.clone(),
            None => default_route_interface()
                .context("no --uplink given and no default route to infer it from")?,
        };
        let node_ip = interface_ipv4(&uplink)?;
        let cfg = EngineConfig {
            ports: vec![PortConfig {
                ifname: uplink.clone(),
                steer: SteerMode::ByDestination,
            }],
            cores: self
                .args
                .cores
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or_default(),
            xdp_mode: self.args.xdp_mode.into(),
            ..EngineConfig::default()
        };
        let tables = Arc::new(TableHandle::new(Tables::default()));
        let engine = Engine::start(cfg, tables)
            .with_context(|| format!("starting the engine on {uplink}"))?;
        if let Some(ip) = node_ip {
            // The node's own address: only the VXLAN port is ours; SSH, kubelet and the rest
            // stay with the kernel.
            engine.own_prefix(ip, 32, DstKind::PortsOnly)?;
            engine.steering().add_port(17, self.args.vxlan_port)?;
        }
        for p in engine.ports() {
            tracing::info!(ifname = %p.ifname, ifindex = p.ifindex, mode = ?p.xdp_mode, "attached");
        }
        eprintln!(
            "kxdp agent waiting for the API server: engine on uplink {uplink} (node IP \
             {node_ip:?}) with empty tables, {} worker(s)",
            engine.stats().len()
        );
        Ok(engine)
    }

    /// Steps 3 and 4: the uplink, the host port and the node dataplane.
    fn start_overlay(&self, me: &NodeView, derived_mac_note: &str) -> anyhow::Result<Overlay> {
        let args = self.args;
        let node_name = &self.node_name;
        let pod_cidr = *me
            .pod_cidrs
            .first()
            .context("the Node has no IPv4 pod CIDR")?;
        let uplink = find_uplink(args, me)?;
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

        let host = host_port::HostPort::create(host_mtu, workers, pod_cidr.nth(1))
            .with_context(|| format!("creating the host port {HOST_IF}/{ENGINE_IF}"))?;
        let mut cfg = NodeConfig::new(node_name, &uplink, pod_cidr);
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
                "from the Node's flannel backend-data".to_owned()
            } else {
                format!("derived from the node IP; {derived_mac_note}")
            },
            dp.engine().stats().len()
        );
        Ok(Overlay {
            this: ThisNode {
                name: node_name.clone(),
                pod_cidr,
                vtep_mac: local.vtep_mac,
            },
            dp,
            host,
        })
    }

    /// Steps 5 and 7, until a signal; then the clean stop.
    fn serve(&mut self, overlay: Overlay, feed: Feed<'_>) -> anyhow::Result<()> {
        let Overlay { dp, host, this } = overlay;
        let dp = Arc::new(dp);
        let (mut controller, status) = Controller::new(ControllerParts {
            this,
            dp: Arc::clone(&dp),
            host,
            vxlan_port: self.args.vxlan_port,
            snat: controller::SnatOptions {
                ports: self.args.snat_ports,
                cluster: self.args.cluster_cidr.clone(),
                masquerade: self.args.masquerade,
            },
            health: Arc::clone(&self.health),
            source: feed.name,
            state: feed.state,
            synced: feed.synced,
            current: feed.current,
        });
        let handler = NodeHandler::new(Arc::clone(&dp)).with_status(status);
        drop(dp);
        let api = match ApiServer::start(&self.args.api_socket, Arc::new(handler)) {
            Ok(api) => api,
            Err(e) => {
                if let Err(e) = stop(controller) {
                    tracing::warn!("{e:#}");
                }
                return Err(e)
                    .with_context(|| format!("--api-socket {}", self.args.api_socket.display()));
            }
        };
        self.scrape.set(Some(controller.dataplane()));
        let events = feed.events;
        let signals = &mut self.signals;
        let stopped_by = self.rt.block_on(async {
            controller::Reconcile::publish(&mut controller, tokio::time::Instant::now());
            controller::run(&mut controller, events, COALESCE_WINDOW, signals.recv()).await
        });
        tracing::info!("{stopped_by}: stopping");
        drop(api);
        self.scrape.set(None);
        stop(controller)
    }
}

/// Stop the engine (once nothing else holds it), then remove the host port and its routes.
fn stop(controller: Controller) -> anyhow::Result<()> {
    let (dp, host) = controller.into_parts();
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let mut dp = dp;
    loop {
        match Arc::try_unwrap(dp) {
            Ok(dp) => {
                log_stop(&dp.stop());
                break;
            }
            Err(shared) if Instant::now() < deadline => {
                dp = shared;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(shared) => {
                // Whoever holds it last stops it when it lets go (or the exit does).
                tracing::warn!("the dataplane is still in use; it stops when released");
                drop(shared);
                break;
            }
        }
    }
    host.remove()
        .with_context(|| format!("removing {HOST_IF} and its routes"))?;
    eprintln!(
        "kxdp agent stopped; XDP programs detached; {HOST_IF}/{ENGINE_IF} and its routes removed"
    );
    Ok(())
}

/// What `--source kube` waits for before it builds the overlay.
struct Cluster {
    client: kube::Client,
    source: source::kube::KubeSource,
    state: DesiredState,
    me: NodeView,
    current: bool,
}

/// Connect (retrying), watch, and wait until every kind is listed and this Node has a pod
/// CIDR. `Err`: the signal that came first.
async fn wait_for_cluster(
    signals: &mut Signals,
    node_name: &str,
    health: &Health,
) -> Result<Cluster, &'static str> {
    let mut delay = Duration::from_millis(500);
    let client = loop {
        tokio::select! {
            s = signals.recv() => return Err(s),
            c = source::kube::client() => match c {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!("{e}; retrying in {delay:?}");
                    health.source_problem(e.to_string());
                }
            },
        }
        tokio::select! {
            s = signals.recv() => return Err(s),
            () = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(30)),
        }
    };
    let mut source = source::kube::start(client.clone());
    let mut state = DesiredState::default();
    let (mut synced, mut current) = (false, true);
    let mut waiting_for = String::new();
    loop {
        let event = tokio::select! {
            s = signals.recv() => return Err(s),
            e = source.events.recv() => e,
        };
        match event {
            // The source task only ends when its receiver is dropped.
            None => return Err("the API watchers stopped"),
            Some(SourceEvent::Synced) => (synced, current) = (true, true),
            Some(SourceEvent::Problem(why)) => {
                current = false;
                health.source_problem(why);
            }
            Some(event) => {
                for e in source::absorb(&mut state, event).errors {
                    tracing::error!("{e}; object skipped");
                }
            }
        }
        if !synced {
            continue;
        }
        let why = match state.nodes.get(node_name) {
            Some(me) if !me.pod_cidrs.is_empty() => {
                return Ok(Cluster {
                    me: me.clone(),
                    client,
                    source,
                    state,
                    current,
                });
            }
            Some(_) => format!("Node {node_name} has no IPv4 spec.podCIDR yet; waiting for it"),
            None => format!(
                "no Node named {node_name:?} (this node's name, from --node-name, NODE_NAME or the \
                 hostname); waiting for it"
            ),
        };
        if why != waiting_for {
            tracing::warn!("{why}");
            waiting_for = why;
        }
    }
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
