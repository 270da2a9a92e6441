//! End-to-end: service load balancing as users see it. The `kxdp agent` binary (objects from a
//! file) on node a, a flannel-style node b, real TCP and UDP clients and servers:
//!
//! ```text
//!   outside (.10) ─┐ underlay bridge 192.168.77.0/24
//!   node a (.1): kxdp agent; pods web-a1 10.244.1.2, web-a2 10.244.1.3, client 10.244.1.10
//!   node b (.2): flannel VXLAN node; pod web-b 10.244.2.2
//! ```
//!
//! Backends answer HTTP with their name and the client address they see, and UDP with their
//! name. Checked, in one cluster:
//! - a pod's requests to a ClusterIP spread over the backends on both nodes; `kxdp capture`
//!   on the client's port writes pcapng whose packets say where each frame went;
//! - NodePort and LoadBalancer IP from the outside namespace, through the uplink: answered by
//!   backends on both nodes, which see the node's address (source NAT, eTP=Cluster);
//! - eTP=Local: only the local backend, which sees the outside client's own address; pods get
//!   every endpoint; the health check node port answers 200 with a local endpoint and 503
//!   without;
//! - UDP request/response (DNS-like) through a ClusterIP;
//! - host-network endpoints (a node IP): this node's kernel (seeing the pod), and node b
//!   through the underlay (masqueraded, leaving the cluster network);
//! - a service without endpoints refuses a connection at once (RST);
//! - sessionAffinity: ClientIP pins a client to one backend;
//! - hairpin: a pod reaching itself through its service;
//! - egress masquerade: a pod reaching the outside host arrives from the node's address;
//! - removing a backend while a UDP flow runs moves the flow to a live backend at the next
//!   table update, and the removed backend receives nothing afterwards.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kxdp_control::api::{ApiClient, PodAttach, Request};
use kxdp_tests::{
    FlannelNode, Netns, Node, NsProcess, NsThread, Pod, PodOptions, Underlay, binaries, format_mac,
    node_yaml, require_root, vtep_data, wait_for,
};
use nix::sys::signal::Signal;

const A_VTEP: [u8; 6] = [0x0e, 0x6b, 0x00, 0x00, 0x00, 0x0a];
const A_POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const A_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const WEB_A1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const WEB_A2: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
/// Pods on a: the overlay's MTU (the underlay's 1500 less VXLAN).
const POD_MTU: u16 = 1450;

const HTTP_PORT: u16 = 8080;
const DNS_PORT: u16 = 5353;
const FLOW_PORT: u16 = 9001;

const WEB_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const STICKY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const HAIRPIN_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
const FLOW_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 40);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const HOST_A_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 60);
const HOST_B_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 61);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 70);
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const LOCAL_LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const NODE_PORT: u16 = 30080;
const LOCAL_NODE_PORT: u16 = 30090;
const HEALTH_PORT: u16 = 30900;
const REMOTE_ONLY_HEALTH_PORT: u16 = 30901;

/// Servers in one pod: HTTP (name and the peer it sees), UDP answering with its name on the
/// DNS and flow ports, counting what each port received.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<NsThread<()>>,
    flow_received: Arc<AtomicU64>,
}

impl Servers {
    fn start(ns: &Netns, name: &'static str, addr: Ipv4Addr) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let flow_received = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        let http = TcpListener::bind_in(ns, SocketAddrV4::new(addr, HTTP_PORT));
        let s = Arc::clone(&stop);
        threads.push(
            ns.spawn_thread("http", move || serve_http(&http, name, &s))
                .unwrap(),
        );
        for (port, count) in [
            (DNS_PORT, None),
            (FLOW_PORT, Some(Arc::clone(&flow_received))),
        ] {
            let sock = ns
                .run(move || UdpSocket::bind(SocketAddrV4::new(addr, port)))
                .unwrap()
                .unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let s = Arc::clone(&stop);
            threads.push(
                ns.spawn_thread("udp", move || {
                    let mut buf = [0u8; 1500];
                    while !s.load(Ordering::Relaxed) {
                        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                            if let Some(c) = &count {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut answer = format!("{name} ").into_bytes();
                            answer.extend_from_slice(&buf[..n]);
                            let _ = sock.send_to(&answer, peer);
                        }
                    }
                })
                .unwrap(),
            );
        }
        Servers {
            stop,
            threads,
            flow_received,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Binding a listener inside a namespace (sockets keep the namespace they were made in).
trait BindIn: Sized {
    fn bind_in(ns: &Netns, addr: SocketAddrV4) -> Self;
}

impl BindIn for TcpListener {
    fn bind_in(ns: &Netns, addr: SocketAddrV4) -> TcpListener {
        let l = ns.run(move || TcpListener::bind(addr)).unwrap().unwrap();
        l.set_nonblocking(true).unwrap();
        l
    }
}

/// Answers each request with `200 OK` and the body `<name> <peer address>`.
fn serve_http(listener: &TcpListener, name: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name} {}\n", peer.ip());
                let _ = s.write_all(
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// `GET /` from inside `ns`: (status code, body).
fn http_get(ns: &Netns, to: SocketAddrV4) -> Result<(u16, String), String> {
    ns.run(move || -> Result<(u16, String), String> {
        let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(3))
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .map_err(|e| format!("send to {to}: {e}"))?;
        let mut text = String::new();
        s.read_to_string(&mut text)
            .map_err(|e| format!("read from {to}: {e}"))?;
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{to}: not HTTP: {text:?}"))?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        Ok((code, body))
    })
    .unwrap()
}

/// `(backend name, client address it saw)` for one request.
fn who(ns: &Netns, to: SocketAddrV4) -> (String, String) {
    let (code, body) = http_get(ns, to).unwrap();
    assert_eq!(code, 200, "{to}: {body}");
    let mut it = body.split_whitespace();
    (
        it.next().unwrap_or_default().to_owned(),
        it.next().unwrap_or_default().to_owned(),
    )
}

/// Backend names over `n` requests, with how many each answered; also every client address
/// the backends saw.
fn spread(ns: &Netns, to: SocketAddrV4, n: usize) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut names = BTreeMap::new();
    let mut peers = BTreeSet::new();
    for _ in 0..n {
        let (name, peer) = who(ns, to);
        *names.entry(name).or_insert(0) += 1;
        peers.insert(peer);
    }
    (names, peers)
}

/// A Service and its one EndpointSlice.
struct Svc<'a> {
    name: &'a str,
    /// Extra `spec` fields, one per line, without indentation.
    spec: &'a [&'a str],
    port: u16,
    target: u16,
    proto: &'a str,
    node_port: Option<u16>,
    lb_ip: Option<Ipv4Addr>,
    /// (address, node name).
    endpoints: &'a [(Ipv4Addr, &'a str)],
}

impl Svc<'_> {
    fn yaml(&self) -> String {
        let Svc {
            name,
            port,
            target,
            proto,
            ..
        } = *self;
        let spec: String = self.spec.iter().map(|l| format!("  {l}\n")).collect();
        let node_port = self
            .node_port
            .map(|p| format!("      nodePort: {p}\n"))
            .unwrap_or_default();
        let status = self
            .lb_ip
            .map(|ip| format!("status:\n  loadBalancer:\n    ingress:\n      - ip: {ip}\n"))
            .unwrap_or_default();
        let endpoints: String = if self.endpoints.is_empty() {
            "endpoints: []\n".to_owned()
        } else {
            let eps: String = self
                .endpoints
                .iter()
                .map(|(ip, node)| {
                    format!(
                        "  - addresses: [{ip}]\n    conditions: {{ready: true}}\n    nodeName: {node}\n"
                    )
                })
                .collect();
            format!("endpoints:\n{eps}")
        };
        format!(
            "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
{spec}  ports:
    - name: p
      protocol: {proto}
      port: {port}
      targetPort: {target}
{node_port}{status}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-x1
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
  - name: p
    protocol: {proto}
    port: {target}
{endpoints}"
        )
    }
}

struct Cluster {
    // Drop order: pods, then the nodes, then the underlay.
    pods: BTreeMap<&'static str, Pod>,
    web_b: Pod,
    b: FlannelNode,
    a: Node,
    outside: Node,
    _underlay: Underlay,
    file: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Cluster {
    fn new(tag: &str) -> Cluster {
        let underlay = Underlay::new(tag).unwrap();
        let a = underlay.add_node("a", underlay.node_ip(1)).unwrap();
        let b = FlannelNode::new(
            &underlay,
            "b",
            underlay.node_ip(2),
            Ipv4Addr::new(10, 244, 2, 0),
        )
        .unwrap();
        b.add_remote(a.ip, A_VTEP, A_POD_NET).unwrap();
        let outside = underlay.add_node("out", underlay.node_ip(10)).unwrap();
        // How a router (or MetalLB's ARP) would send LoadBalancer IPs to node a.
        for ip in [LB_IP, LOCAL_LB_IP] {
            outside
                .netns
                .route_add(&format!("{ip}/32"), Some(a.ip.into()), "eth0")
                .unwrap();
        }
        let web_b = b.add_pod("web-b").unwrap();
        let file =
            std::env::temp_dir().join(format!("kxdp-services-{tag}-{}.yaml", std::process::id()));
        Cluster {
            pods: BTreeMap::new(),
            web_b,
            b,
            a,
            outside,
            _underlay: underlay,
            file,
        }
    }

    fn socket(&self) -> PathBuf {
        self.file.with_extension("sock")
    }

    /// Every object, with `flow` behind the UDP flow service.
    fn objects(&self, flow: &[(Ipv4Addr, &str)]) -> String {
        let (a_ip, b_ip) = (self.a.ip, self.b.node_ip());
        let web_b = self.web_b.ip;
        let all = [(WEB_A1, "a"), (WEB_A2, "a"), (web_b, "b")];
        let mut out = node_yaml("a", a_ip, "10.244.1.0/24", &vtep_data(A_VTEP));
        out += &node_yaml("b", b_ip, &self.b.pod_cidr(), &vtep_data(self.b.vtep_mac));
        let web_vip = format!("clusterIP: {WEB_VIP}");
        let sticky_vip = format!("clusterIP: {STICKY_VIP}");
        let hairpin_vip = format!("clusterIP: {HAIRPIN_VIP}");
        let flow_vip = format!("clusterIP: {FLOW_VIP}");
        let dns_vip = format!("clusterIP: {DNS_VIP}");
        let host_a_vip = format!("clusterIP: {HOST_A_VIP}");
        let host_b_vip = format!("clusterIP: {HOST_B_VIP}");
        let empty_vip = format!("clusterIP: {EMPTY_VIP}");
        let local_health = format!("healthCheckNodePort: {HEALTH_PORT}");
        let remote_health = format!("healthCheckNodePort: {REMOTE_ONLY_HEALTH_PORT}");
        let services = [
            Svc {
                name: "web",
                spec: &[&web_vip],
                port: 80,
                target: HTTP_PORT,
                proto: "TCP",
                node_port: None,
                lb_ip: None,
                endpoints: &all,
            },
            Svc {
                name: "web-lb",
                spec: &[
                    "type: LoadBalancer",
                    "clusterIP: 10.96.0.11",
                    "externalTrafficPolicy: Cluster",
                ],
                node_port: Some(NODE_PORT),
                lb_ip: Some(LB_IP),
                ..Svc::web(&all)
            },
            Svc {
                name: "web-local",
                spec: &[
                    "type: LoadBalancer",
                    "clusterIP: 10.96.0.12",
                    "externalTrafficPolicy: Local",
                    &local_health,
                ],
                node_port: Some(LOCAL_NODE_PORT),
                lb_ip: Some(LOCAL_LB_IP),
                endpoints: &[(WEB_A1, "a"), (web_b, "b")],
                ..Svc::web(&all)
            },
            Svc {
                name: "remote-only",
                spec: &[
                    "type: LoadBalancer",
                    "clusterIP: 10.96.0.13",
                    "externalTrafficPolicy: Local",
                    &remote_health,
                ],
                node_port: Some(30091),
                endpoints: &[(web_b, "b")],
                ..Svc::web(&all)
            },
            Svc {
                name: "sticky",
                spec: &[&sticky_vip, "sessionAffinity: ClientIP"],
                ..Svc::web(&all)
            },
            Svc {
                name: "hairpin",
                spec: &[&hairpin_vip],
                endpoints: &[(WEB_A1, "a")],
                ..Svc::web(&all)
            },
            Svc {
                name: "dns",
                spec: &[&dns_vip],
                port: 53,
                target: DNS_PORT,
                proto: "UDP",
                endpoints: &[(WEB_A2, "a"), (web_b, "b")],
                ..Svc::web(&all)
            },
            // Host-network endpoints (the API server's, hostNetwork pods): the nodes' own IPs.
            Svc {
                name: "host-a",
                spec: &[&host_a_vip],
                endpoints: &[(a_ip, "a")],
                ..Svc::web(&all)
            },
            Svc {
                name: "host-b",
                spec: &[&host_b_vip],
                endpoints: &[(b_ip, "b")],
                ..Svc::web(&all)
            },
            Svc {
                name: "empty",
                spec: &[&empty_vip],
                endpoints: &[],
                ..Svc::web(&all)
            },
            Svc {
                name: "flow",
                spec: &[&flow_vip],
                port: 9000,
                target: FLOW_PORT,
                proto: "UDP",
                endpoints: flow,
                ..Svc::web(&all)
            },
        ];
        for s in &services {
            out += &s.yaml();
        }
        out
    }

    /// Writes the objects as `kubectl ... > tmp && mv` would.
    fn write(&self, text: &str) {
        let tmp = self.file.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    fn start_agent(&self) -> NsProcess {
        let kxdp = binaries::kxdp().unwrap();
        let agent = self
            .a
            .netns
            .spawn(&[
                "env",
                "NO_COLOR=1",
                kxdp.to_str().unwrap(),
                "agent",
                "--source",
                self.file.to_str().unwrap(),
                "--node-name",
                "a",
                "--uplink",
                "eth0",
                "--xdp-mode",
                "native",
                "--api-socket",
                self.socket().to_str().unwrap(),
            ])
            .unwrap();
        let ns = &self.a.netns;
        wait_for(
            "the agent's engine and routes",
            Duration::from_secs(30),
            || {
                ns.ip(&["-d", "link", "show", "dev", "eth0"])
                    .unwrap_or_default()
                    .contains("prog/xdp")
                    && ns
                        .ip(&["-4", "route", "show"])
                        .unwrap_or_default()
                        .contains("10.244.2.0/24")
                    && self.socket().exists()
            },
        );
        agent
    }

    /// A pod on a, attached through the agent's API as `kxdp-cni` would.
    fn add_pod(&mut self, name: &'static str, ip: Ipv4Addr) {
        let host_if = format!("kxs{}", ip.octets()[3]);
        let pod = Pod::create(
            &self.a.netns,
            &format!("svc-{name}"),
            &host_if,
            &PodOptions {
                mtu: u32::from(POD_MTU),
                ..PodOptions::new(ip, 32, A_GATEWAY)
            },
        )
        .unwrap();
        let attach = PodAttach {
            id: format!("test-{name}"),
            ifname: host_if,
            ip,
            mac: format_mac(pod.mac),
            mtu: POD_MTU,
            pod: Some(format!("default/{name}")),
        };
        ApiClient::new(&self.socket())
            .call(&Request::AttachPod(attach))
            .unwrap();
        self.pods.insert(name, pod);
    }

    fn pod(&self, name: &str) -> &Netns {
        &self.pods[name].netns
    }
}

impl<'a> Svc<'a> {
    /// An HTTP ClusterIP service to `endpoints`, to build others from.
    fn web(endpoints: &'a [(Ipv4Addr, &'a str)]) -> Svc<'a> {
        Svc {
            name: "",
            spec: &[],
            port: 80,
            target: HTTP_PORT,
            proto: "TCP",
            node_port: None,
            lb_ip: None,
            endpoints,
        }
    }
}

/// One UDP request/response from a socket bound in a namespace.
fn udp_ask(sock: &UdpSocket, to: SocketAddrV4, what: &str) -> Option<String> {
    sock.send_to(what.as_bytes(), to).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn services_from_pods_the_outside_and_through_changes() {
    if !require_root("services::services_from_pods_the_outside_and_through_changes") {
        return;
    }
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.2}s] {what}", t0.elapsed().as_secs_f64());
    let mut c = Cluster::new("svc1");
    let all_flow = [(WEB_A1, "a"), (WEB_A2, "a")];
    c.write(&c.objects(&all_flow));
    let mut agent = c.start_agent();
    for (name, ip) in [("web-a1", WEB_A1), ("web-a2", WEB_A2), ("client", CLIENT)] {
        c.add_pod(name, ip);
    }
    let servers = vec![
        Servers::start(c.pod("web-a1"), "web-a1", WEB_A1),
        Servers::start(c.pod("web-a2"), "web-a2", WEB_A2),
        Servers::start(&c.web_b.netns, "web-b", c.web_b.ip),
        // hostNetwork servers, in the nodes' own namespaces.
        Servers::start(&c.a.netns, "host-a", c.a.ip),
        Servers::start(c.b.netns(), "host-b", c.b.node_ip()),
    ];
    let a_ip = c.a.ip.to_string();
    let outside_ip = c.outside.ip.to_string();
    let client = c.pod("client");
    wait_for(
        "the pods to reach the ClusterIP",
        Duration::from_secs(20),
        || http_get(client, SocketAddrV4::new(WEB_VIP, 80)).is_ok(),
    );

    step("ClusterIP from a pod");
    // ClusterIP from a pod: spread over both nodes' backends; the backends see the pod.
    let (names, peers) = spread(client, SocketAddrV4::new(WEB_VIP, 80), 30);
    assert_eq!(
        names.keys().map(String::as_str).collect::<Vec<_>>(),
        ["web-a1", "web-a2", "web-b"],
        "{names:?}"
    );
    assert_eq!(peers, BTreeSet::from([CLIENT.to_string()]));

    step("capture");
    // `kxdp capture` on the client's port while it talks to the ClusterIP: pcapng whose
    // packets say where each frame went.
    let pcap = c.file.with_extension("pcapng");
    let mut capture = std::process::Command::new(binaries::kxdp().unwrap())
        .args([
            "capture",
            "--iface",
            "kxs10",
            "--count",
            "12",
            "--seconds",
            "10",
            "-w",
        ])
        .arg(&pcap)
        .arg("--api-socket")
        .arg(c.socket())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Traffic until the capture has its frames (it may take a moment to start).
    let started = Instant::now();
    let status = loop {
        if let Some(status) = capture.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "kxdp capture never ended"
        );
        let _ = spread(client, SocketAddrV4::new(WEB_VIP, 80), 2);
    };
    assert!(status.success(), "kxdp capture: {status}");
    let file = std::fs::read(&pcap).unwrap();
    let _ = std::fs::remove_file(&pcap);
    let packets = kxdp_control::capture::read_packets(&file).unwrap();
    assert_eq!(packets.len(), 12, "--count 12");
    for p in &packets {
        let c = &p.comment;
        assert!(c.starts_with("kxs10") || c.contains("→ kxs10"), "{c}");
        assert_eq!(
            p.data.len(),
            p.len as usize,
            "whole frames (below the snap length)"
        );
    }
    assert!(
        packets
            .iter()
            .any(|p| p.comment.starts_with("kxs10 → ") && p.comment.ends_with("forward")),
        "the client's frames, forwarded: {:?}",
        packets.iter().map(|p| &p.comment).collect::<Vec<_>>()
    );

    step("NodePort and LoadBalancer IP from outsid");
    // NodePort and LoadBalancer IP from outside (eTP=Cluster): both nodes' backends answer,
    // and they see the node, which the replies go back through.
    let out = &c.outside.netns;
    for to in [
        SocketAddrV4::new(c.a.ip, NODE_PORT),
        SocketAddrV4::new(LB_IP, 80),
    ] {
        let (names, peers) = spread(out, to, 30);
        assert!(
            names.len() >= 2 && names.contains_key("web-b"),
            "{to}: {names:?}"
        );
        assert_eq!(peers, BTreeSet::from([a_ip.clone()]), "{to}");
    }

    step("eTP=Local");
    // eTP=Local: the local backend only, seeing the client itself; health check 200 / 503.
    for to in [
        SocketAddrV4::new(c.a.ip, LOCAL_NODE_PORT),
        SocketAddrV4::new(LOCAL_LB_IP, 80),
    ] {
        let (names, peers) = spread(out, to, 10);
        assert_eq!(names.keys().collect::<Vec<_>>(), ["web-a1"], "{to}");
        assert_eq!(peers, BTreeSet::from([outside_ip.clone()]), "{to}");
    }
    // Pods reach the same LoadBalancer IP through every endpoint, keeping their address
    // (kube-proxy's short-circuit of in-cluster traffic).
    let (names, peers) = spread(client, SocketAddrV4::new(LOCAL_LB_IP, 80), 20);
    assert!(names.contains_key("web-b"), "{names:?}");
    assert_eq!(peers, BTreeSet::from([CLIENT.to_string()]));
    let (code, body) = http_get(out, SocketAddrV4::new(c.a.ip, HEALTH_PORT)).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"localEndpoints\": 1") || body.contains("\"localEndpoints\":1"),
        "{body}"
    );
    let (code, body) = http_get(out, SocketAddrV4::new(c.a.ip, REMOTE_ONLY_HEALTH_PORT)).unwrap();
    assert_eq!(code, 503, "{body}");

    step("UDP request/response");
    // UDP request/response through a ClusterIP, DNS-like: every query answered.
    let sock = client
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answered = BTreeSet::new();
    for i in 0..20 {
        let q = format!("query-{i}");
        let a = udp_ask(&sock, SocketAddrV4::new(DNS_VIP, 53), &q)
            .unwrap_or_else(|| panic!("no answer to {q}"));
        let (name, echo) = a.split_once(' ').unwrap();
        assert_eq!(echo, q);
        answered.insert(name.to_owned());
    }
    assert!(
        answered.iter().all(|n| n == "web-a2" || n == "web-b"),
        "{answered:?}"
    );

    step("host-network endpoints");
    // Host-network endpoints: on this node the host kernel answers and sees the pod; b is
    // reached through the underlay, leaving the cluster network, so masqueraded (as flannel
    // does after kube-proxy's DNAT).
    for (to, name, sees) in [
        (HOST_A_VIP, "host-a", CLIENT.to_string()),
        (HOST_B_VIP, "host-b", a_ip.clone()),
    ] {
        let (who_answered, peer) = who(client, SocketAddrV4::new(to, 80));
        assert_eq!(
            (who_answered.as_str(), peer.as_str()),
            (name, sees.as_str())
        );
    }
    // No endpoints: refused at once (a RST from the frontend), as kube-proxy's REJECT does.
    let started = Instant::now();
    let err = http_get(client, SocketAddrV4::new(EMPTY_VIP, 80)).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));

    step("Session affinity");
    // Session affinity: every connection of the client goes to one backend.
    let (names, _) = spread(client, SocketAddrV4::new(STICKY_VIP, 80), 15);
    assert_eq!(names.len(), 1, "{names:?}");

    step("Hairpin");
    // Hairpin: web-a1 through its own service lands on itself, from the node.
    let (name, peer) = who(c.pod("web-a1"), SocketAddrV4::new(HAIRPIN_VIP, 80));
    assert_eq!((name.as_str(), peer.as_str()), ("web-a1", a_ip.as_str()));

    step("Egress masquerade");
    // Egress masquerade: the outside host sees the node, not the pod.
    let outside_server = Servers::start(out, "outside", c.outside.ip);
    let (name, peer) = who(client, SocketAddrV4::new(c.outside.ip, HTTP_PORT));
    assert_eq!((name.as_str(), peer.as_str()), ("outside", a_ip.as_str()));
    outside_server.stop();

    step("A UDP flow, and its backend removed");
    // A UDP flow, and its backend removed while it runs: the next answers come from the other
    // backend, and the removed one gets nothing more.
    let flow = client
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    flow.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = SocketAddrV4::new(FLOW_VIP, 9000);
    let first = udp_ask(&flow, to, "x").expect("the flow is answered");
    let (serving, _) = first.split_once(' ').unwrap();
    for i in 0..10 {
        let a = udp_ask(&flow, to, &format!("{i}")).unwrap();
        assert!(a.starts_with(serving), "a flow stays on its backend: {a}");
    }
    let (dead, live, dead_servers) = if serving == "web-a1" {
        (WEB_A1, (WEB_A2, "a"), &servers[0])
    } else {
        (WEB_A2, (WEB_A1, "a"), &servers[1])
    };
    let _ = dead;
    c.write(&c.objects(&[live]));
    let changed = Instant::now();
    let mut moved_after = None;
    while changed.elapsed() < Duration::from_secs(5) {
        if let Some(a) = udp_ask(&flow, to, "y")
            && !a.starts_with(serving)
        {
            moved_after = Some(changed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let moved_after = moved_after.expect("the flow moved to the live backend");
    eprintln!("flow moved {moved_after:?} after the file changed");
    let received = dead_servers.flow_received.load(Ordering::Relaxed);
    for i in 0..50 {
        let a = udp_ask(&flow, to, &format!("z{i}")).unwrap();
        assert!(!a.starts_with(serving), "{a}");
    }
    assert_eq!(
        dead_servers.flow_received.load(Ordering::Relaxed),
        received,
        "nothing reached the removed backend after the move"
    );

    step("for s in servers {");
    for s in servers {
        s.stop();
    }
    agent.signal(Signal::SIGTERM).unwrap();
    let status = agent.wait_timeout(Duration::from_secs(15)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
