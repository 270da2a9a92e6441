//! HTTP `/metrics` (Prometheus text format 0.0.4), `/healthz` and `/readyz` on
//! `--metrics-addr`.
//!
//! A tiny HTTP/1.0-style server on a std thread: scrapes and probes are a few requests per
//! second, and keeping it off the tokio runtime means a stuck control loop cannot stop
//! liveness from being reported truthfully (`/healthz` checks the workers, `/readyz` the
//! freshness of the tables).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kxdp_dataplane::{DropReason, Engine};

/// Readiness and sync facts the control plane updates and probes read.
#[derive(Debug, Default)]
pub struct Health {
    /// The first complete view of the desired state has been published.
    synced: AtomicBool,
    /// Unix seconds of the last successful sync with the source (list, watch event, file read).
    last_sync: AtomicU64,
    /// Why the source is unhealthy, if it is (shown by /readyz).
    problem: Mutex<Option<String>>,
    /// Seconds after which a source that has not synced makes the agent not ready.
    stale_after: AtomicU64,
    /// Control-plane sync latency histogram (event seen → tables published), seconds.
    sync_latency: Histogram,
    /// Unix seconds of the last publish.
    last_publish: AtomicU64,
}

impl Health {
    pub fn new(stale_after: Duration) -> Self {
        let h = Health::default();
        h.stale_after
            .store(stale_after.as_secs(), Ordering::Relaxed);
        h
    }

    /// The source delivered a complete, current view.
    pub fn synced(&self) {
        self.synced.store(true, Ordering::Release);
        self.last_sync.store(unix_now(), Ordering::Release);
        if let Ok(mut p) = self.problem.lock() {
            *p = None;
        }
    }

    /// The source is failing (API server unreachable, file unreadable); tables stay as they
    /// are, and readiness turns false once the last sync is older than `stale_after`.
    pub fn source_problem(&self, why: String) {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(why);
        }
    }

    /// Tables were published; `latency` is from the change being seen to the swap.
    pub fn published(&self, latency: Duration) {
        self.last_publish.store(unix_now(), Ordering::Release);
        self.sync_latency.observe(latency.as_secs_f64());
    }

    /// Ready, or why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.synced.load(Ordering::Acquire) {
            return Err("waiting for the first complete view of the cluster".into());
        }
        let age = unix_now().saturating_sub(self.last_sync.load(Ordering::Acquire));
        let problem = self.problem.lock().ok().and_then(|p| p.clone());
        match problem {
            Some(why) if age > self.stale_after.load(Ordering::Relaxed) => Err(format!(
                "tables are stale: last sync {age} s ago; source: {why}"
            )),
            _ => Ok(()),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fixed-bucket histogram (Prometheus cumulative buckets), lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in microseconds.
    sum_us: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: LATENCY_BOUNDS,
            counts: LATENCY_BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_us.fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Something that adds metrics to a scrape (the engine, conntrack, the control plane).
pub trait MetricsSource: Send + Sync + 'static {
    fn render(&self, out: &mut String);
}

/// The engine's counters: packets and bytes per worker and interface, drops by reason,
/// events, UMEM frames per state, table generation.
pub fn render_engine(engine: &Engine, out: &mut String) {
    let ports = engine.ports();
    let stats = engine.stats();
    let generation = engine.tables().load().generation;
    let name_of = |id: usize| {
        ports
            .iter()
            .find(|p| p.id.index() == id)
            .map(|p| p.ifname.clone())
    };
    for (metric, help) in [
        (
            "kxdp_rx_packets_total",
            "Packets received per worker and interface.",
        ),
        (
            "kxdp_rx_bytes_total",
            "Bytes received per worker and interface.",
        ),
        (
            "kxdp_tx_packets_total",
            "Packets transmitted per worker and interface.",
        ),
        (
            "kxdp_tx_bytes_total",
            "Bytes transmitted per worker and interface.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (w, s) in stats.iter().enumerate() {
            for (id, p) in s.ports.iter().enumerate() {
                let Some(iface) = name_of(id) else { continue };
                let v = match metric {
                    "kxdp_rx_packets_total" => p.rx_packets,
                    "kxdp_rx_bytes_total" => p.rx_bytes,
                    "kxdp_tx_packets_total" => p.tx_packets,
                    _ => p.tx_bytes,
                };
                let _ = writeln!(out, "{metric}{{worker=\"{w}\",iface=\"{iface}\"}} {v}");
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP kxdp_drops_total Packets dropped, by worker and reason.\n# TYPE kxdp_drops_total counter"
    );
    for (w, s) in stats.iter().enumerate() {
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "kxdp_drops_total{{worker=\"{w}\",reason=\"{}\"}} {}",
                r.label(),
                s.drop_count(*r)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP kxdp_events_total Packets the engine answered or built, by kind.\n# TYPE kxdp_events_total counter"
    );
    for (w, s) in stats.iter().enumerate() {
        let e = &s.events;
        for (kind, v) in [
            ("arp_reply", e.arp_replies),
            ("vxlan_decap", e.vxlan_decap),
            ("vxlan_encap", e.vxlan_encap),
            ("icmp_time_exceeded", e.icmp_time_exceeded),
            ("icmp_frag_needed", e.icmp_frag_needed),
        ] {
            let _ = writeln!(
                out,
                "kxdp_events_total{{worker=\"{w}\",kind=\"{kind}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP kxdp_umem_frames UMEM frames per state (free, fill, tx, user) and worker.\n# TYPE kxdp_umem_frames gauge"
    );
    for (w, s) in stats.iter().enumerate() {
        let f = &s.frames;
        for (state, v) in [
            ("free", f.free),
            ("fill", f.fill),
            ("tx", f.tx),
            ("user", f.user),
        ] {
            let _ = writeln!(
                out,
                "kxdp_umem_frames{{worker=\"{w}\",state=\"{state}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP kxdp_xsk_rx_dropped_total Frames the kernel dropped before our RX ring (ring full, fill ring empty, other).\n# TYPE kxdp_xsk_rx_dropped_total counter"
    );
    for (w, s) in stats.iter().enumerate() {
        for (cause, v) in [
            ("rx_ring_full", s.xsk.rx_ring_full),
            ("fill_ring_empty", s.xsk.rx_fill_ring_empty_descs),
            ("other", s.xsk.rx_dropped),
        ] {
            let _ = writeln!(
                out,
                "kxdp_xsk_rx_dropped_total{{worker=\"{w}\",cause=\"{cause}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP kxdp_table_generation Generation of the tables the workers use.\n# TYPE kxdp_table_generation gauge\nkxdp_table_generation {generation}"
    );
}

/// Service load balancing: frontends and backends in the tables, conntrack entries (a full
/// scan of the table: fine at scrape rates), NAT and conntrack events summed over workers.
pub fn render_services(engine: &Engine, out: &mut String) {
    let tables = engine.tables().load();
    let services = &tables.services;
    let backends: usize = services
        .sets()
        .iter()
        .map(|s| s.active().len() + s.draining().len())
        .sum();
    let ct = engine.conntrack();
    let live = ct.live_entries(ct.now());
    let mut events = kxdp_dataplane::pipeline::PipelineCounters::default();
    for s in engine.stats() {
        let e = &s.events;
        events.nat_forward += e.nat_forward;
        events.nat_reverse += e.nat_reverse;
        events.nat_snat += e.nat_snat;
        events.nat_masquerade += e.nat_masquerade;
        events.service_rejects += e.service_rejects;
        events.ct_inserts += e.ct_inserts;
        events.ct_evictions += e.ct_evictions;
        events.ct_insert_failures += e.ct_insert_failures;
    }
    let _ = writeln!(
        out,
        "# HELP kxdp_service_frontends Service frontends (address, protocol, port) in the tables.\n# TYPE kxdp_service_frontends gauge\nkxdp_service_frontends {}\n\
         # HELP kxdp_service_backends Backends over all backend sets (active and draining).\n# TYPE kxdp_service_backends gauge\nkxdp_service_backends {backends}\n\
         # HELP kxdp_conntrack_entries Live conntrack entries (two per translated flow).\n# TYPE kxdp_conntrack_entries gauge\nkxdp_conntrack_entries {live}\n\
         # HELP kxdp_conntrack_capacity Conntrack entries the table holds at most.\n# TYPE kxdp_conntrack_capacity gauge\nkxdp_conntrack_capacity {}\n\
         # HELP kxdp_conntrack_inserts_total Conntrack and affinity entries written into a free or evicted slot.\n# TYPE kxdp_conntrack_inserts_total counter\nkxdp_conntrack_inserts_total {}\n\
         # HELP kxdp_conntrack_evictions_total Live conntrack entries evicted to make room.\n# TYPE kxdp_conntrack_evictions_total counter\nkxdp_conntrack_evictions_total {}\n\
         # HELP kxdp_conntrack_insert_failures_total Conntrack writes given up under contention.\n# TYPE kxdp_conntrack_insert_failures_total counter\nkxdp_conntrack_insert_failures_total {}\n\
         # HELP kxdp_service_nat_packets_total Packets translated, by direction.\n# TYPE kxdp_service_nat_packets_total counter\n\
         kxdp_service_nat_packets_total{{direction=\"forward\"}} {}\nkxdp_service_nat_packets_total{{direction=\"reverse\"}} {}\n\
         # HELP kxdp_source_nat_packets_total Packets whose source became the node's address, by cause (service: eTP=Cluster, hairpin, off-cluster ClusterIP clients; masquerade: pods leaving the cluster network).\n# TYPE kxdp_source_nat_packets_total counter\n\
         kxdp_source_nat_packets_total{{cause=\"service\"}} {}\nkxdp_source_nat_packets_total{{cause=\"masquerade\"}} {}\n\
         # HELP kxdp_service_rejects_total Packets to a frontend without endpoints, answered with a RST or ICMP unreachable.\n# TYPE kxdp_service_rejects_total counter\nkxdp_service_rejects_total {}",
        services.len(),
        ct.capacity(),
        events.ct_inserts,
        events.ct_evictions,
        events.ct_insert_failures,
        events.nat_forward,
        events.nat_reverse,
        events.nat_snat.saturating_sub(events.nat_masquerade),
        events.nat_masquerade,
        events.service_rejects,
    );
}

/// The control plane's own metrics.
pub fn render_health(health: &Health, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP kxdp_last_publish_timestamp_seconds When tables were last published.\n# TYPE kxdp_last_publish_timestamp_seconds gauge\nkxdp_last_publish_timestamp_seconds {}",
        health.last_publish.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP kxdp_ready Whether the agent is ready (1) or not (0).\n# TYPE kxdp_ready gauge\nkxdp_ready {}",
        u8::from(health.readiness().is_ok())
    );
    health.sync_latency.render(
        "kxdp_sync_latency_seconds",
        "Time from a change seen by the control plane to its tables being live.",
        out,
    );
}

/// A running metrics server; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(
        addr: SocketAddr,
        source: Arc<dyn MetricsSource>,
        health: Arc<Health>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kxdp-metrics".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = serve(stream, source.as_ref(), &health) {
                                tracing::debug!("metrics request: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!("metrics accept: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, source: &dyn MetricsSource, health: &Health) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => {
            let mut body = String::new();
            source.render(&mut body);
            render_health(health, &mut body);
            ("200 OK", "text/plain; version=0.0.4", body)
        }
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" => match health.readiness() {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
            Err(why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
        },
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    (&stream).write_all(head.as_bytes())?;
    (&stream).write_all(body.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;

    use super::*;

    struct Fixed;
    impl MetricsSource for Fixed {
        fn render(&self, out: &mut String) {
            out.push_str("kxdp_test_total 7\n");
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_health_and_readiness() {
        let health = Arc::new(Health::new(Duration::from_secs(0)));
        let server = MetricsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Fixed),
            Arc::clone(&health),
        )
        .unwrap();
        let m = get(server.addr(), "/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("kxdp_test_total 7"));
        assert!(m.contains("kxdp_sync_latency_seconds_bucket{le=\"+Inf\"} 0"));
        assert!(get(server.addr(), "/healthz").starts_with("HTTP/1.1 200"));
        let r = get(server.addr(), "/readyz");
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("first complete view"),
            "{r}"
        );
        health.synced();
        health.published(Duration::from_millis(3));
        assert!(get(server.addr(), "/readyz").starts_with("HTTP/1.1 200"));
        let m = get(server.addr(), "/metrics");
        assert!(
            m.contains("kxdp_sync_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{m}"
        );
        assert!(m.contains("kxdp_ready 1"));
        // The source fails: still ready until the last sync is older than the threshold (0 s
        // here, so as soon as a second has passed).
        health.source_problem("connection refused".into());
        std::thread::sleep(Duration::from_millis(1100));
        let r = get(server.addr(), "/readyz");
        assert!(r.starts_with("HTTP/1.1 503") && r.contains("stale"), "{r}");
        assert!(get(server.addr(), "/nope").starts_with("HTTP/1.1 404"));
    }
}
