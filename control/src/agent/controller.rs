//! The controller: the one loop that turns source events into data-path state. Nothing else
//! writes the tables, the steering maps, the `kxdp0` routes or the health check listeners.
//!
//! ```text
//!   source ──SourceEvent──▶ absorb into DesiredState ──(20 ms window)──▶ publish:
//!     Nodes      → set_remotes, pod CIDR routes via kxdp0
//!     Services,  → ServiceCompiler::compile → steering (NodePorts, external IPs) − stale,
//!     Endpoint-     set_services (one table swap), steering + new, ClusterIP/32 routes via
//!     Slices        kxdp0, health check node ports
//! ```
//!
//! Coalescing: the first change after a publish opens a [`COALESCE_WINDOW`]; everything that
//! arrives before it closes is published with it, once. A burst of watch events (a re-list, a
//! rollout touching many EndpointSlices) costs one compile, and no change waits longer than
//! the window plus one compile. `kxdp_sync_latency_seconds` measures from that first change
//! to the swap.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
// Tokio's clock: the loop's timers and the latency it reports follow it (and tests pause it).
use tokio::time::Instant;

use super::health_check::HealthChecks;
use super::host_port::HostPort;
use super::remotes::{Remotes, ThisNode};
use super::steering::{Steering, SteeringSet};
use crate::api::ControlStatus;
use crate::compile::{ServiceCompiler, ServiceContext};
use crate::metrics::Health;
use crate::objects::DesiredState;
use crate::overlay::{Ipv4Net, NodeDataplane, RemoteNode};
use crate::source::{SourceEvent, absorb};
use kxdp_dataplane::tables::SourceNat;

/// How long changes are collected before one publish.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(20);
/// How often source freshness is refreshed and unconverged entries retried.
pub const TICK: Duration = Duration::from_secs(1);

/// What the loop drives (the [`Controller`]; a recorder in tests).
pub trait Reconcile {
    /// Fold a source event in; true if the desired state changed.
    fn absorb(&mut self, event: SourceEvent) -> bool;
    /// Compile and publish everything; `since`: when the first change of this batch was seen.
    fn publish(&mut self, since: Instant);
    /// Every [`TICK`]; true asks for a publish (something failed to apply and is retried).
    fn tick(&mut self) -> bool;
}

/// The open coalescing window, if any.
#[derive(Debug, Clone, Copy)]
pub struct Coalescer {
    window: Duration,
    first: Option<Instant>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Coalescer {
            window,
            first: None,
        }
    }

    /// A change was seen at `now`: opens the window unless one is open.
    pub fn changed(&mut self, now: Instant) {
        self.first.get_or_insert(now);
    }

    /// When the open window closes.
    pub fn deadline(&self) -> Option<Instant> {
        self.first.map(|f| f + self.window)
    }

    /// Close the window: when its first change was seen.
    pub fn take(&mut self) -> Option<Instant> {
        self.first.take()
    }
}

/// Run until `stop` resolves; returns what it resolved to. A closed event channel (the source
/// is gone) leaves the last state in place and waits for `stop`.
pub async fn run<R: Reconcile, S>(
    r: &mut R,
    events: &mut mpsc::Receiver<SourceEvent>,
    window: Duration,
    stop: impl Future<Output = S>,
) -> S {
    let mut coalescer = Coalescer::new(window);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    tokio::pin!(stop);
    loop {
        let deadline = coalescer.deadline();
        // Biased, deadline before events: a steady stream of events cannot hold a publish back.
        tokio::select! {
            biased;
            s = &mut stop => return s,
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Some(since) = coalescer.take() {
                    r.publish(since);
                }
            }
            ev = events.recv(), if open => match ev {
                Some(ev) => {
                    if r.absorb(ev) {
                        coalescer.changed(Instant::now());
                    }
                }
                None => {
                    tracing::warn!("the object source stopped; keeping the last state");
                    open = false;
                }
            },
            _ = tick.tick() => {
                if r.tick() {
                    coalescer.changed(Instant::now());
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// The running node and everything the controller keeps equal to the desired state.
pub struct Controller {
    this: ThisNode,
    dp: Arc<NodeDataplane>,
    host: HostPort,
    steering: Steering,
    snat: SnatOptions,
    health_checks: HealthChecks,
    compiler: ServiceCompiler,
    health: Arc<Health>,
    status: watch::Sender<Arc<ControlStatus>>,
    source: String,
    state: DesiredState,
    /// The source has delivered a complete view.
    synced: bool,
    /// The source is healthy (no outstanding problem).
    current: bool,
    /// Applied by the last publish (to skip unchanged work and to detect what to retry).
    applied: Applied,
}

#[derive(Debug, Default)]
struct Applied {
    /// Warnings already logged (each once, while it lasts).
    drift: Vec<String>,
    remotes: Option<Vec<RemoteNode>>,
    notes: Vec<String>,
    skipped: Vec<(String, String)>,
    steering: SteeringSet,
    routes: BTreeSet<Ipv4Net>,
    health_ports: Vec<u16>,
    snat: Option<SourceNat>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node", &self.this.name)
            .field("source", &self.source)
            .field("synced", &self.synced)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// The node's source NAT options (`--snat-ports`, `--cluster-cidr`, `--masquerade`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatOptions {
    pub ports: (u16, u16),
    /// Empty: the smallest prefix holding every Node's pod CIDR.
    pub cluster: Vec<Ipv4Net>,
    pub masquerade: bool,
}

impl Default for SnatOptions {
    fn default() -> Self {
        SnatOptions {
            ports: (61000, 65535),
            cluster: Vec::new(),
            masquerade: true,
        }
    }
}

/// What a controller starts from.
#[derive(Debug)]
pub struct ControllerParts {
    pub this: ThisNode,
    pub dp: Arc<NodeDataplane>,
    pub host: HostPort,
    pub vxlan_port: u16,
    pub snat: SnatOptions,
    pub health: Arc<Health>,
    pub source: String,
    pub state: DesiredState,
    /// Whether the source had delivered a complete view, and was healthy, at hand-over.
    pub synced: bool,
    pub current: bool,
}

impl Controller {
    /// Take over the node; the receiver shows each publish (for `kxdp inspect`).
    pub fn new(p: ControllerParts) -> (Controller, watch::Receiver<Arc<ControlStatus>>) {
        let local = p.dp.local();
        let (status, rx) = watch::channel(Arc::new(ControlStatus {
            source: p.source.clone(),
            ..ControlStatus::default()
        }));
        let mut steering = Steering::new(local.ip, local.pod_cidr, p.vxlan_port);
        steering.fix_port_range(p.dp.engine(), p.snat.ports);
        warn_if_kernel_uses(p.snat.ports);
        let c = Controller {
            steering,
            snat: p.snat,
            health_checks: HealthChecks::new(local.ip),
            this: p.this,
            dp: p.dp,
            host: p.host,
            compiler: ServiceCompiler::new(),
            health: p.health,
            status,
            source: p.source,
            state: p.state,
            synced: p.synced,
            current: p.current,
            applied: Applied::default(),
        };
        (c, rx)
    }

    pub fn dataplane(&self) -> Arc<NodeDataplane> {
        Arc::clone(&self.dp)
    }

    /// Hand back the dataplane and the host port (at shutdown); the health check listeners
    /// close.
    pub fn into_parts(self) -> (Arc<NodeDataplane>, HostPort) {
        (self.dp, self.host)
    }

    /// The node's source NAT: to the node IP, from `--snat-ports`, inside `--cluster-cidr` or
    /// the prefix covering every Node's pod CIDR (recomputed as Nodes come and go).
    fn source_nat(&self) -> SourceNat {
        let local = self.dp.local();
        let cluster = if self.snat.cluster.is_empty() {
            let cidrs = self
                .state
                .nodes
                .values()
                .flat_map(|n| n.pod_cidrs.iter().copied())
                .chain([local.pod_cidr]);
            vec![covering_prefix(cidrs).unwrap_or(local.pod_cidr)]
        } else {
            self.snat.cluster.clone()
        };
        SourceNat {
            addr: local.ip,
            ports: self.snat.ports,
            cluster: cluster.iter().map(|n| (n.addr(), n.len())).collect(),
            masquerade: self.snat.masquerade,
        }
    }

    fn context(&self) -> ServiceContext {
        let local = self.dp.local();
        let me = self.state.nodes.get(&self.this.name);
        let mut node_ips = vec![local.ip];
        for ip in me
            .into_iter()
            .flat_map(|n| [n.internal_ip, n.public_ip])
            .flatten()
        {
            if !node_ips.contains(&ip) {
                node_ips.push(ip);
            }
        }
        ServiceContext {
            node_name: self.this.name.clone(),
            node_ips,
            zone: me.and_then(|n| n.zone.clone()),
        }
    }

    fn apply_remotes(&mut self, r: Remotes) {
        if r.notes != self.applied.notes {
            for n in &r.notes {
                tracing::warn!("{n}");
            }
            self.applied.notes = r.notes;
        }
        if self.applied.remotes.as_ref() == Some(&r.remotes) {
            return;
        }
        let summary: Vec<String> = r
            .remotes
            .iter()
            .map(|n| {
                let cidrs: Vec<String> = n.pod_cidrs.iter().map(Ipv4Net::to_string).collect();
                format!("{} ({}, {})", n.name, n.ip, cidrs.join(" "))
            })
            .collect();
        tracing::info!("remote nodes: [{}]", summary.join(", "));
        self.dp.set_remotes(r.remotes.clone());
        self.applied.remotes = Some(r.remotes);
    }
}

impl Reconcile for Controller {
    fn absorb(&mut self, event: SourceEvent) -> bool {
        match event {
            SourceEvent::Synced => {
                self.synced = true;
                self.current = true;
                // Fresh as of now (the tables follow within the window if anything changed).
                self.health.synced();
                false
            }
            SourceEvent::Problem(why) => {
                self.current = false;
                self.health.source_problem(why);
                false
            }
            event => {
                let out = absorb(&mut self.state, event);
                for e in &out.errors {
                    tracing::error!("{e}; object skipped");
                }
                out.changed
            }
        }
    }

    fn publish(&mut self, since: Instant) {
        let started = Instant::now();
        let drift = self.this.drift(&self.state);
        if drift != self.applied.drift {
            for d in &drift {
                tracing::warn!("{d}");
            }
            self.applied.drift = drift;
        }
        let mut remotes = self.this.remotes(self.state.nodes.values());
        let mut routes = std::mem::take(&mut remotes.routes);
        self.apply_remotes(remotes);

        let ctx = self.context();
        let (mut services, report) = self.compiler.compile(&self.state, &ctx);
        let snat = self.source_nat();
        if self.applied.snat.as_ref() != Some(&snat) {
            let cluster: Vec<String> = snat
                .cluster
                .iter()
                .map(|(a, l)| format!("{a}/{l}"))
                .collect();
            tracing::info!(
                addr = %snat.addr,
                ports = format!("{}-{}", snat.ports.0, snat.ports.1),
                cluster = cluster.join(","),
                masquerade = snat.masquerade,
                "source NAT"
            );
            self.applied.snat = Some(snat.clone());
        }
        services.set_source_nat(Some(snat));
        if report.skipped != self.applied.skipped {
            for (svc, why) in &report.skipped {
                tracing::warn!(service = %svc, "service skipped: {why}");
            }
            self.applied.skipped = report.skipped.clone();
        }

        // Stale steering first, new steering after the swap: the engine never gets traffic
        // for a frontend its tables do not have yet.
        let wanted = self.steering.wanted(&report);
        self.steering.remove_stale(self.dp.engine(), &wanted);
        let generation = self.dp.set_services(Arc::new(services));
        self.steering.add_new(self.dp.engine(), &wanted);
        self.applied.steering = wanted;

        routes.extend(cluster_ip_routes(&report.cluster_ips));
        self.host.sync_routes(&routes);
        self.applied.routes = routes;

        self.health_checks.sync(&report.health_checks);
        self.applied.health_ports = report.health_checks.iter().map(|h| h.0).collect();
        self.applied.health_ports.sort_unstable();
        self.applied.health_ports.dedup();

        let latency = since.elapsed();
        self.health.published(latency);
        if self.synced && self.current {
            self.health.synced();
        }
        tracing::info!(
            generation,
            services = self.state.services.len(),
            endpoint_slices = self.state.endpoint_slices.len(),
            nodes = self.state.nodes.len(),
            frontends = report.frontends,
            backends = report.backends,
            compile_ms = started.elapsed().as_secs_f64() * 1e3,
            latency_ms = latency.as_secs_f64() * 1e3,
            "tables published"
        );
        self.status.send_replace(Arc::new(ControlStatus {
            source: self.source.clone(),
            generation,
            published_at: Some(SystemTime::now()),
            state: Arc::new(self.state.clone()),
            report,
        }));
    }

    fn tick(&mut self) -> bool {
        if self.synced && self.current {
            self.health.synced();
        }
        // Retry what the last publish could not apply.
        let steering = *self.steering.installed() != self.applied.steering;
        let routes = *self.host.routes() != self.applied.routes;
        let health = self.health_checks.ports() != self.applied.health_ports;
        if steering || routes || health {
            tracing::debug!(steering, routes, health, "retrying what did not apply");
        }
        steering || routes || health
    }
}

/// The host reaches ClusterIPs through the engine, as pods do: one `/32 dev kxdp0` each.
pub fn cluster_ip_routes(cluster_ips: &[std::net::Ipv4Addr]) -> BTreeSet<Ipv4Net> {
    cluster_ips
        .iter()
        .filter_map(|ip| Ipv4Net::new(*ip, 32).ok())
        .collect()
}

/// The smallest prefix holding every one of `nets` (`None` for none).
fn covering_prefix(nets: impl IntoIterator<Item = Ipv4Net>) -> Option<Ipv4Net> {
    let mut out: Option<(u32, u8)> = None;
    for n in nets {
        let (addr, len) = (n.addr().to_bits(), n.len());
        out = Some(match out {
            None => (addr, len),
            Some((a, l)) => {
                let common = (a ^ addr).leading_zeros().min(32) as u8;
                (a, l.min(len).min(common))
            }
        });
    }
    let (addr, len) = out?;
    Ipv4Net::new(std::net::Ipv4Addr::from_bits(addr), len).ok()
}

/// Warns when the node's own sockets may pick ports of the source NAT range: their replies
/// would be steered to the engine instead of the kernel.
fn warn_if_kernel_uses(ports: (u16, u16)) {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut it = range
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next())
        && lo <= ports.1
        && ports.0 <= hi
    {
        tracing::warn!(
            "--snat-ports {}-{} overlaps net.ipv4.ip_local_port_range {lo}-{hi}: the node's own \
             connections from those ports would lose their replies to the engine",
            ports.0,
            ports.1
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::objects::{Kind, ObjectEvent, ObjectKey};

    #[test]
    fn the_cluster_network_covers_every_pod_cidr() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let cover = |v: &[&str]| covering_prefix(v.iter().map(|s| net(s))).map(|n| n.to_string());
        assert_eq!(cover(&[]), None);
        assert_eq!(cover(&["10.244.1.0/24"]).as_deref(), Some("10.244.1.0/24"));
        assert_eq!(
            cover(&["10.244.1.0/24", "10.244.2.0/24"]).as_deref(),
            Some("10.244.0.0/22")
        );
        assert_eq!(
            cover(&["10.244.1.0/24", "10.244.200.0/24", "10.244.7.0/24"]).as_deref(),
            Some("10.244.0.0/16")
        );
        assert_eq!(
            cover(&["10.244.1.0/24", "10.245.0.0/16"]).as_deref(),
            Some("10.244.0.0/15")
        );
    }

    /// Counts what the loop does.
    #[derive(Default)]
    struct Recorder {
        absorbed: usize,
        publishes: Vec<(Instant, Instant)>,
        retry: bool,
    }

    impl Reconcile for Recorder {
        fn absorb(&mut self, event: SourceEvent) -> bool {
            self.absorbed += 1;
            !matches!(event, SourceEvent::Synced)
        }
        fn publish(&mut self, since: Instant) {
            self.publishes.push((since, Instant::now()));
        }
        fn tick(&mut self) -> bool {
            std::mem::take(&mut self.retry)
        }
    }

    fn change() -> SourceEvent {
        SourceEvent::Changed(vec![ObjectEvent::Deleted(
            Kind::Service,
            ObjectKey::new("default", "x"),
        )])
    }

    #[test]
    fn cluster_ips_become_host_routes() {
        let routes = cluster_ip_routes(&[
            "10.96.0.10".parse().unwrap(),
            "10.96.0.1".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ]);
        let routes: Vec<String> = routes.iter().map(ToString::to_string).collect();
        assert_eq!(routes, ["10.96.0.1/32", "10.96.0.10/32"]);
    }

    #[test]
    fn the_window_opens_at_the_first_change() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(20));
        assert!(c.deadline().is_none());
        c.changed(t0);
        c.changed(t0 + Duration::from_millis(15));
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(20)));
        assert_eq!(c.take(), Some(t0));
        assert!(c.deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_the_window_publish_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut r = Recorder::default();
        let feeder = tokio::spawn(async move {
            // A burst: 5 changes 3 ms apart, then a quiet period, then one more change.
            for _ in 0..5 {
                tx.send(change()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            tx.send(SourceEvent::Synced).await.unwrap(); // no change: no publish
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(change()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        let stop = tokio::time::sleep(Duration::from_millis(300));
        run(&mut r, &mut rx, Duration::from_millis(20), stop).await;
        feeder.await.unwrap();
        assert_eq!(r.absorbed, 7);
        assert_eq!(r.publishes.len(), 2, "one per burst");
        for (since, at) in &r.publishes {
            assert_eq!(
                *at - *since,
                Duration::from_millis(20),
                "published when the window closed"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_does_not_hold_publishes_back() {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut r = Recorder::default();
        let feeder = tokio::spawn(async move {
            for _ in 0..200 {
                if tx.send(change()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        run(
            &mut r,
            &mut rx,
            Duration::from_millis(20),
            tokio::time::sleep(Duration::from_millis(250)),
        )
        .await;
        feeder.await.unwrap();
        // ~200 ms of changes: about one publish per 20 ms window, never more than 21 ms late.
        assert!(
            (8..=12).contains(&r.publishes.len()),
            "{}",
            r.publishes.len()
        );
        for (since, at) in &r.publishes {
            assert!(*at - *since <= Duration::from_millis(21));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_that_asks_for_a_retry_publishes() {
        let (_tx, mut rx) = mpsc::channel(1);
        let mut r = Recorder {
            retry: true,
            ..Recorder::default()
        };
        run(
            &mut r,
            &mut rx,
            Duration::from_millis(20),
            tokio::time::sleep(Duration::from_millis(1500)),
        )
        .await;
        assert_eq!(r.publishes.len(), 1);
    }
}
