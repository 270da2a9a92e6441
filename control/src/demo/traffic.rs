//! Real traffic through the cluster: servers in the backend pods, and the checks, each run
//! from a thread inside the client's namespace with plain std sockets.
//!
//! Backend pods serve, like `python -m http.server` would but answering with their own name:
//! - HTTP on 8080 (the services' targetPort): `200 OK`, body `<pod name> <client address it
//!   sees>\n` (so the report shows source NAT: outside clients of a NodePort arrive from the
//!   node);
//! - UDP echo on 9000;
//! - a TCP sink on 5001: reads a patterned stream to EOF, answers with the byte count and
//!   whether every byte was the expected one;
//! - a UDP counter on 9001, for the packets-per-second flood.
//!
//! Every wait has a timeout and every loop checks [`cleanup::interrupted`], so a Ctrl-C or
//! a broken path ends a check within seconds, with a failed result instead of a hang.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::cleanup;
use super::netns::Netns;
use super::plan::{HTTP_PORT, Plan, PodRole};
use super::report::{Check, CheckKind};
use super::topology::Cluster;
use crate::api::{ApiClient, InspectWhat, Request};

const ECHO_PORT: u16 = 9000;
const SINK_PORT: u16 = 5001;
const COUNTER_PORT: u16 = 9001;
/// UDP echo probes per check.
const PROBES: u32 = 20;
/// Bytes of the TCP transfer.
const TRANSFER_BYTES: usize = 8 << 20;
/// HTTP requests to the ClusterIP and to the NodePort.
const CLUSTER_IP_REQUESTS: u32 = 20;
const NODE_PORT_REQUESTS: u32 = 10;
/// A series of requests gives up after this many failures in a row (a dead path would
/// otherwise cost a timeout per request).
const GIVE_UP_AFTER: u32 = 3;
/// How long the pps flood lasts; its payload makes 60-byte frames (Ethernet's minimum).
const FLOOD: Duration = Duration::from_secs(2);
const FLOOD_PAYLOAD: usize = 18;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// The servers of every backend pod. [`stop`](Self::stop) (or drop) ends them.
#[derive(Debug)]
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// UDP datagrams each backend's counter received, by pod name.
    counters: BTreeMap<String, Arc<AtomicU64>>,
}

impl Servers {
    /// Binds every server inside its pod's namespace and starts serving.
    pub fn start(cluster: &Cluster) -> anyhow::Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut servers = Servers {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
            counters: BTreeMap::new(),
        };
        for pod in cluster
            .pods
            .iter()
            .filter(|p| p.spec.role == PodRole::Backend)
        {
            let name = pod.spec.name.to_owned();
            // Sockets belong to the namespace they were made in, whichever thread uses them.
            let (http, echo, sink, counter) = pod
                .ns
                .run(|| -> std::io::Result<_> {
                    Ok((
                        TcpListener::bind(("0.0.0.0", HTTP_PORT))?,
                        UdpSocket::bind(("0.0.0.0", ECHO_PORT))?,
                        TcpListener::bind(("0.0.0.0", SINK_PORT))?,
                        UdpSocket::bind(("0.0.0.0", COUNTER_PORT))?,
                    ))
                })?
                .with_context(|| format!("pod {name}: binding its servers"))?;
            let count = Arc::new(AtomicU64::new(0));
            servers.counters.insert(name.clone(), Arc::clone(&count));
            let s = Arc::clone(&stop);
            let n: Arc<str> = Arc::from(name.as_str());
            servers.spawn(&name, move || {
                accept_loop(&http, &s, move |c| serve_http(c, &n));
            })?;
            let s = Arc::clone(&stop);
            servers.spawn(&name, move || echo_loop(&echo, &s))?;
            let s = Arc::clone(&stop);
            servers.spawn(&name, move || accept_loop(&sink, &s, serve_sink))?;
            let s = Arc::clone(&stop);
            servers.spawn(&name, move || count_loop(&counter, &s, &count))?;
        }
        Ok(servers)
    }

    fn spawn(&mut self, pod: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
        let t = std::thread::Builder::new()
            .name(format!("demo-{pod}"))
            .spawn(f)
            .context("spawning a server thread")?;
        self.threads.push(t);
        Ok(())
    }

    /// Stops every server and waits for them.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Accepts until stopped; one short-lived thread per connection.
fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    serve: impl Fn(TcpStream) + Clone + Send + 'static,
) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((conn, _)) => {
                let serve = serve.clone();
                std::thread::spawn(move || {
                    if conn.set_nonblocking(false).is_ok()
                        && conn.set_read_timeout(Some(IO_TIMEOUT)).is_ok()
                        && conn.set_write_timeout(Some(IO_TIMEOUT)).is_ok()
                    {
                        serve(conn);
                    }
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads the request head and answers with the pod's name and the client address it sees.
fn serve_http(mut conn: TcpStream, pod: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let peer = conn
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.ip().to_string());
    let body = format!("{pod} {peer}\n");
    let answer = format!(
        "HTTP/1.0 200 OK\r\nServer: kxdp-demo\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
}

/// Reads a patterned stream to EOF; answers with the byte count (u64, little endian) and
/// one byte: 1 when every byte matched [`pattern`].
fn serve_sink(mut conn: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut intact) = (0u64, true);
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                intact &= buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == pattern(total + i as u64));
                total += n as u64;
            }
            Err(_) => return,
        }
    }
    let mut answer = total.to_le_bytes().to_vec();
    answer.push(u8::from(intact));
    let _ = conn.write_all(&answer);
}

/// Byte `i` of the TCP transfer: a 251-byte cycle, so a lost, duplicated or reordered
/// segment shows up as a mismatch.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

fn echo_loop(sock: &UdpSocket, stop: &AtomicBool) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    }
}

fn count_loop(sock: &UdpSocket, stop: &AtomicBool, count: &AtomicU64) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    // A larger receive buffer rides out the bursts of the flood (best effort).
    let _ = nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        if sock.recv(&mut buf).is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs every check in order; stops early when interrupted. Each result goes to stderr as
/// it comes, with its numbers when `verbose` (the text report repeats them otherwise).
pub fn run_checks(cluster: &Cluster, plan: &Plan, servers: &Servers, verbose: bool) -> Vec<Check> {
    let pod = |name: &str| {
        let p = cluster
            .pod(name)
            .unwrap_or_else(|| unreachable!("the plan's pods all exist once the cluster is built"));
        (&p.ns, p.spec.ip, p.spec.node)
    };
    let (client, _, client_node) = pod("client-a");
    let (_, web_a_ip, _) = pod("web-a");
    let (web_b_ns, web_b_ip, web_b_node) = pod("web-b");

    let mut checks = Vec::new();
    let mut run = |check: &dyn Fn() -> Check| {
        if !cleanup::interrupted() {
            let c = check();
            let mark = if c.ok { "✔" } else { "✘" };
            if verbose {
                eprintln!("  {mark} {}: {}", c.title, c.summary);
            } else {
                eprintln!("  {mark} {}", c.title);
            }
            checks.push(c);
        }
    };
    run(&|| {
        echo_check(
            "pod_to_pod_udp_local",
            format!("pod → pod on {client_node}: client-a → web-a (UDP echo)"),
            client,
            SocketAddrV4::new(web_a_ip, ECHO_PORT),
        )
    });
    run(&|| {
        echo_check(
            "pod_to_pod_udp_kxdp_to_flannel",
            format!(
                "pod → pod over VXLAN, {client_node} → {web_b_node}: client-a → web-b (UDP echo)"
            ),
            client,
            SocketAddrV4::new(web_b_ip, ECHO_PORT),
        )
    });
    run(&|| {
        echo_check(
            "pod_to_pod_udp_flannel_to_kxdp",
            format!("pod → pod over VXLAN, {web_b_node} → {client_node}: web-b → web-a (UDP echo)"),
            web_b_ns,
            SocketAddrV4::new(web_a_ip, ECHO_PORT),
        )
    });
    run(&|| {
        transfer_check(
            format!(
                "pod → pod over VXLAN: client-a → web-b, TCP, {} MiB",
                TRANSFER_BYTES >> 20
            ),
            client,
            SocketAddrV4::new(web_b_ip, SINK_PORT),
        )
    });
    run(&|| cluster_ip_check(client, plan));
    run(&|| node_port_check(&cluster.outside, plan));
    run(&|| {
        flood_check(
            client,
            SocketAddrV4::new(web_b_ip, COUNTER_PORT),
            servers.counters.get("web-b").cloned().unwrap_or_default(),
            &cluster.agent.api(),
        )
    });
    checks
}

/// Round-trip times of answered probes, in milliseconds.
fn rtt_summary(rtts: &[f64]) -> Value {
    if rtts.is_empty() {
        return Value::Null;
    }
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
    json!({"min": round3(min), "avg": round3(avg), "max": round3(max)})
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// UDP echo: warm-up (the first packets may wait for ARP), then [`PROBES`] probes.
fn echo_check(id: &'static str, title: String, from: &Netns, to: SocketAddrV4) -> Check {
    let outcome = from.run(|| -> std::io::Result<(u32, Vec<f64>, bool)> {
        let sock = UdpSocket::bind(("0.0.0.0", 0))?;
        sock.connect(to)?;
        let mut buf = [0u8; 256];
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut warm = false;
        for _ in 0..3 {
            if cleanup::interrupted() {
                break;
            }
            sock.send(b"kxdp-demo warm-up")?;
            if sock.recv(&mut buf).is_ok() {
                warm = true;
                break;
            }
        }
        let mut rtts = Vec::new();
        if !warm {
            return Ok((0, rtts, false));
        }
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        for seq in 0..PROBES {
            if cleanup::interrupted() {
                break;
            }
            let probe = format!("kxdp-demo probe {seq}");
            let sent = Instant::now();
            sock.send(probe.as_bytes())?;
            // Skip late answers to earlier probes.
            while let Ok(n) = sock.recv(&mut buf) {
                if &buf[..n] == probe.as_bytes() {
                    rtts.push(sent.elapsed().as_secs_f64() * 1e3);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok((PROBES, rtts, true))
    });
    let (ok, summary, data) = match outcome {
        Ok(Ok((sent, rtts, warm))) => {
            let received = rtts.len() as u32;
            let rtt = rtt_summary(&rtts);
            // One lost probe of twenty is noise on a shared machine, not a broken path.
            let ok = warm && received + PROBES / 10 >= PROBES;
            let summary = if warm {
                format!(
                    "{received}/{sent} answered, rtt min/avg/max {}/{}/{} ms",
                    rtt["min"], rtt["avg"], rtt["max"]
                )
            } else {
                "no answer to 3 warm-up probes (1 s each)".to_owned()
            };
            (
                ok,
                summary,
                json!({"target": to.to_string(), "sent": sent, "received": received, "rtt_ms": rtt}),
            )
        }
        Ok(Err(e)) => failed_io(to, &e),
        Err(e) => failed_io(to, &std::io::Error::other(e)),
    };
    Check {
        id,
        kind: CheckKind::PodToPod,
        title,
        ok,
        summary,
        data,
    }
}

fn failed_io(to: SocketAddrV4, e: &std::io::Error) -> (bool, String, Value) {
    (
        false,
        format!("error: {e}"),
        json!({"target": to.to_string(), "error": e.to_string()}),
    )
}

/// A patterned TCP stream, checked byte for byte by the sink; throughput in Mbit/s.
fn transfer_check(title: String, from: &Netns, to: SocketAddrV4) -> Check {
    let outcome = from.run(|| -> std::io::Result<(u64, bool, f64)> {
        let mut conn = TcpStream::connect_timeout(&SocketAddr::V4(to), CONNECT_TIMEOUT)?;
        conn.set_write_timeout(Some(Duration::from_secs(10)))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let started = Instant::now();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < TRANSFER_BYTES {
            if cleanup::interrupted() {
                return Err(std::io::Error::new(ErrorKind::Interrupted, "interrupted"));
            }
            let n = chunk.len().min(TRANSFER_BYTES - sent);
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern((sent + i) as u64);
            }
            conn.write_all(&chunk[..n])?;
            sent += n;
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        let mut answer = [0u8; 9];
        conn.read_exact(&mut answer)?;
        let secs = started.elapsed().as_secs_f64();
        let mut count = [0u8; 8];
        count.copy_from_slice(&answer[..8]);
        Ok((u64::from_le_bytes(count), answer[8] == 1, secs))
    });
    let (ok, summary, data) = match outcome {
        Ok(Ok((received, intact, secs))) => {
            let mbit = received as f64 * 8.0 / secs / 1e6;
            let ok = intact && received == TRANSFER_BYTES as u64;
            (
                ok,
                format!(
                    "{:.1} MiB in {secs:.2} s = {mbit:.0} Mbit/s, {}",
                    received as f64 / f64::from(1 << 20),
                    if ok {
                        "every byte intact"
                    } else if intact {
                        "incomplete"
                    } else {
                        "CORRUPTED"
                    }
                ),
                json!({"target": to.to_string(), "bytes": received, "seconds": round3(secs),
                       "mbit_per_s": mbit.round(), "intact": intact}),
            )
        }
        Ok(Err(e)) => failed_io(to, &e),
        Err(e) => failed_io(to, &std::io::Error::other(e)),
    };
    Check {
        id: "pod_to_pod_tcp",
        kind: CheckKind::PodToPod,
        title,
        ok,
        summary,
        data,
    }
}

/// What a series of HTTP requests got.
struct HttpSeries {
    sent: u32,
    /// Answers by backend pod name.
    by_backend: BTreeMap<String, u32>,
    /// The client addresses the backends saw.
    seen_as: std::collections::BTreeSet<String>,
    failures: u32,
    first_error: Option<String>,
    latencies_ms: Vec<f64>,
    gave_up: bool,
}

/// `count` HTTP/1.0 GETs to `to`, each on a new connection (so each is balanced anew).
fn http_series(to: SocketAddrV4, count: u32) -> HttpSeries {
    let mut s = HttpSeries {
        sent: 0,
        by_backend: BTreeMap::new(),
        seen_as: std::collections::BTreeSet::new(),
        failures: 0,
        first_error: None,
        latencies_ms: Vec::new(),
        gave_up: false,
    };
    let mut in_a_row = 0;
    for _ in 0..count {
        if cleanup::interrupted() {
            break;
        }
        s.sent += 1;
        let started = Instant::now();
        match http_get(to) {
            Ok(body) => {
                in_a_row = 0;
                s.latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
                let mut words = body.split_whitespace();
                let pod = words.next().unwrap_or_default().to_owned();
                if let Some(peer) = words.next() {
                    s.seen_as.insert(peer.to_owned());
                }
                *s.by_backend.entry(pod).or_default() += 1;
            }
            Err(e) => {
                s.failures += 1;
                in_a_row += 1;
                s.first_error.get_or_insert(e);
                if in_a_row >= GIVE_UP_AFTER {
                    s.gave_up = true;
                    break;
                }
            }
        }
    }
    s
}

/// One GET; the body (the backend's pod name and the client it saw) on a 200.
fn http_get(to: SocketAddrV4) -> Result<String, String> {
    let mut conn = TcpStream::connect_timeout(&SocketAddr::V4(to), CONNECT_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    conn.write_all(
        format!("GET / HTTP/1.0\r\nHost: {to}\r\nUser-Agent: kxdp-demo\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer ({} bytes)", answer.len()))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") && !status.ends_with(" 200") {
        return Err(format!("answered {status:?}"));
    }
    Ok(body.trim().to_owned())
}

/// The summary and data of a series, and whether every request was answered.
fn describe_series(s: &HttpSeries, count: u32, to: SocketAddrV4) -> (bool, String, Value) {
    let answered: u32 = s.by_backend.values().sum();
    let spread: Vec<String> = s
        .by_backend
        .iter()
        .map(|(pod, n)| format!("{pod} {n}"))
        .collect();
    let mut summary = format!("{answered}/{count} answered");
    if !spread.is_empty() {
        summary.push_str(&format!(" ({})", spread.join(", ")));
    }
    if !s.seen_as.is_empty() {
        let seen: Vec<&str> = s.seen_as.iter().map(String::as_str).collect();
        summary.push_str(&format!(", backends saw {}", seen.join(" ")));
    }
    if !s.latencies_ms.is_empty() {
        let avg = s.latencies_ms.iter().sum::<f64>() / s.latencies_ms.len() as f64;
        summary.push_str(&format!(", {avg:.2} ms per request"));
    }
    if let Some(e) = &s.first_error {
        summary.push_str(&format!("; {} failed: {e}", s.failures));
        if s.gave_up {
            summary.push_str(&format!(" (gave up after {GIVE_UP_AFTER} in a row)"));
        }
    }
    let data = json!({
        "target": to.to_string(), "requests": count, "sent": s.sent, "answered": answered,
        "by_backend": s.by_backend, "seen_as": s.seen_as, "failures": s.failures,
        "first_error": s.first_error,
        "latency_ms": rtt_summary(&s.latencies_ms),
    });
    (answered == count, summary, data)
}

/// client-a → the ClusterIP: every request answered, and by backends on both nodes.
fn cluster_ip_check(client: &Netns, plan: &Plan) -> Check {
    let to = plan.cluster_ip;
    let series = client.run(|| http_series(to, CLUSTER_IP_REQUESTS));
    let (ok, summary, mut data) = match series {
        Ok(s) => describe_series(&s, CLUSTER_IP_REQUESTS, to),
        Err(e) => failed_io(to, &std::io::Error::other(e)),
    };
    let nodes_answering: std::collections::BTreeSet<&str> = data["by_backend"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|pod| plan.pods.iter().find(|p| p.name == pod))
                .map(|p| p.node)
                .collect()
        })
        .unwrap_or_default();
    let both_nodes = nodes_answering.len() >= 2;
    data["backends_on_both_nodes"] = Value::Bool(both_nodes);
    let mut summary = summary;
    if ok && !both_nodes {
        summary.push_str("; but not spread over both nodes' backends");
    }
    Check {
        id: "cluster_ip",
        kind: CheckKind::Service,
        title: format!(
            "pod → ClusterIP: client-a → {to} (Service {}, {} HTTP requests)",
            super::plan::CLUSTER_IP_SERVICE.0,
            CLUSTER_IP_REQUESTS
        ),
        ok: ok && both_nodes,
        summary,
        data,
    }
}

/// outside → kxdp-a's NodePort: every request answered.
fn node_port_check(outside: &Netns, plan: &Plan) -> Check {
    let to = plan.node_port;
    let series = outside.run(|| http_series(to, NODE_PORT_REQUESTS));
    let (ok, summary, data) = match series {
        Ok(s) => describe_series(&s, NODE_PORT_REQUESTS, to),
        Err(e) => failed_io(to, &std::io::Error::other(e)),
    };
    Check {
        id: "node_port",
        kind: CheckKind::Service,
        title: format!(
            "outside → NodePort: {} → {to} (Service {}, {} HTTP requests)",
            super::plan::OUTSIDE_IP,
            super::plan::NODE_PORT_SERVICE,
            NODE_PORT_REQUESTS
        ),
        ok,
        summary,
        data,
    }
}

/// Sum of the engine's RX packets over every worker, from `inspect stats`.
fn engine_rx(api: &ApiClient) -> Option<u64> {
    let stats = api
        .call(&Request::Inspect {
            what: InspectWhat::Stats,
        })
        .ok()?;
    Some(
        stats["workers"]
            .as_array()?
            .iter()
            .filter_map(|w| w["rx_packets"].as_u64())
            .sum(),
    )
}

/// A UDP flood of 60-byte frames for [`FLOOD`], pod → pod over the overlay: what the sender
/// got out, what arrived, and what the engine received meanwhile.
fn flood_check(from: &Netns, to: SocketAddrV4, received: Arc<AtomicU64>, api: &ApiClient) -> Check {
    let engine_before = engine_rx(api);
    let before = received.load(Ordering::Relaxed);
    let outcome = from.run(|| -> std::io::Result<(u64, u64, f64)> {
        let sock = UdpSocket::bind(("0.0.0.0", 0))?;
        sock.connect(to)?;
        let payload = [0x6bu8; FLOOD_PAYLOAD];
        let (mut sent, mut errors) = (0u64, 0u64);
        let started = Instant::now();
        while started.elapsed() < FLOOD && !cleanup::interrupted() {
            for _ in 0..256 {
                match sock.send(&payload) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
            }
        }
        Ok((sent, errors, started.elapsed().as_secs_f64()))
    });
    // Let what is in flight arrive.
    cleanup::sleep(Duration::from_millis(300));
    let arrived = received.load(Ordering::Relaxed) - before;
    let engine_after = engine_rx(api);
    let (ok, summary, data) = match outcome {
        Ok(Ok((sent, errors, secs))) => {
            let sent_pps = sent as f64 / secs;
            let pps = arrived as f64 / secs;
            let loss = if sent > 0 {
                100.0 * (1.0 - arrived as f64 / sent as f64)
            } else {
                0.0
            };
            let engine_pps = engine_before
                .zip(engine_after)
                .map(|(b, a)| a.saturating_sub(b) as f64 / secs);
            let mut summary = format!(
                "{} delivered ({:.0} kpps); sender {:.0} kpps, {loss:.1} % lost on the way",
                arrived,
                pps / 1e3,
                sent_pps / 1e3
            );
            if let Some(e) = engine_pps {
                summary.push_str(&format!("; engine received {:.0} kpps", e / 1e3));
            }
            (
                arrived > 0,
                summary,
                json!({"target": to.to_string(), "seconds": round3(secs), "frame_bytes": 60,
                       "sent": sent, "send_errors": errors, "delivered": arrived,
                       "delivered_pps": pps.round(), "sent_pps": sent_pps.round(),
                       "loss_percent": (loss * 10.0).round() / 10.0,
                       "engine_rx_pps": engine_pps.map(f64::round)}),
            )
        }
        Ok(Err(e)) => failed_io(to, &e),
        Err(e) => failed_io(to, &std::io::Error::other(e)),
    };
    Check {
        id: "udp_flood",
        kind: CheckKind::PodToPod,
        title: format!(
            "packets per second: client-a → web-b over VXLAN, UDP flood of 60-byte frames for {} s",
            FLOOD.as_secs()
        ),
        ok,
        summary,
        data,
    }
}
