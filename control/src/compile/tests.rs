//! The service compiler's rules, one test each, on small YAML states; and incrementality.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::sync::Arc;

use kxdp_dataplane::tables::{
    BackendSet, Frontend, FrontendKey, FrontendKind, L4Proto, Services, SessionAffinity,
};

use super::*;
use crate::objects::{DEFAULT_OBJECTS, DesiredState};

const TCP: L4Proto = L4Proto::Tcp;
const UDP: L4Proto = L4Proto::Udp;

fn state(yaml: &str) -> DesiredState {
    let (state, report) = DesiredState::parse(yaml).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    state
}

/// Node `a` at 192.168.0.1 and 192.168.0.2, no zone.
fn ctx() -> ServiceContext {
    ServiceContext {
        node_name: "a".into(),
        node_ips: vec![Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(192, 168, 0, 2)],
        zone: None,
    }
}

fn compile_with(yaml: &str, ctx: &ServiceContext) -> (Services, ServiceReport) {
    ServiceCompiler::new().compile(&state(yaml), ctx)
}

fn compile(yaml: &str) -> (Services, ServiceReport) {
    compile_with(yaml, &ctx())
}

/// A Service `web` in `default` with this spec (YAML lines, indented by two).
fn svc(spec: &str) -> String {
    svc_named("web", spec)
}

fn svc_named(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n---\n"
    )
}

/// An IPv4 slice of `service` with `ports` (flow YAML list) and endpoints (one flow map each).
fn slice(name: &str, service: &str, ports: &str, endpoints: &[String]) -> String {
    let mut s = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: {ports}\nendpoints:\n"
    );
    for e in endpoints {
        s.push_str(&format!("  - {e}\n"));
    }
    s.push_str("---\n");
    s
}

/// An endpoint: address, conditions (flow map body), node.
fn ep(addr: &str, conditions: &str, node: &str) -> String {
    format!("{{addresses: [{addr}], conditions: {{{conditions}}}, nodeName: {node}}}")
}

const HTTP: &str = "[{name: http, protocol: TCP, port: 8080}]";
const CLUSTER_HTTP: &str =
    "  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, targetPort: 8080}]";

fn key(addr: &str, proto: L4Proto, port: u16) -> FrontendKey {
    FrontendKey {
        addr: addr.parse().unwrap(),
        proto,
        port,
    }
}

fn fe<'s>(s: &'s Services, addr: &str, proto: L4Proto, port: u16) -> &'s Frontend {
    s.frontend(key(addr, proto, port)).unwrap_or_else(|| {
        panic!(
            "no frontend {addr}:{port}\n{}",
            dump(s, &ServiceReport::default())
        )
    })
}

fn set<'s>(s: &'s Services, f: &Frontend) -> &'s BackendSet {
    s.set(f.backends).unwrap()
}

/// Active and draining backends of a frontend's set, as `addr:port` strings.
fn backends(s: &Services, addr: &str, proto: L4Proto, port: u16) -> (Vec<String>, Vec<String>) {
    let set = set(s, fe(s, addr, proto, port));
    let text = |b: &[kxdp_dataplane::tables::Backend]| {
        b.iter().map(|b| format!("{}:{}", b.addr, b.port)).collect()
    };
    (text(set.active()), text(set.draining()))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn ready_endpoints_take_flows_and_terminating_ones_drain() {
    let yaml = svc(CLUSTER_HTTP)
        + &slice(
            "web-1",
            "web",
            HTTP,
            &[
                ep("10.244.1.1", "ready: true", "a"),
                ep(
                    "10.244.1.2",
                    "ready: false, serving: true, terminating: true",
                    "a",
                ),
                ep(
                    "10.244.1.3",
                    "ready: false, serving: false, terminating: true",
                    "b",
                ),
                ep("10.244.1.4", "ready: false, serving: false", "b"),
            ],
        );
    let (s, r) = compile(&yaml);
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80),
        (
            strings(&["10.244.1.1:8080"]),
            strings(&["10.244.1.2:8080", "10.244.1.3:8080"])
        )
    );
    assert_eq!(r.frontends, 1);
    assert_eq!(r.backends, 3);
    assert_eq!(r.cluster_ips, [Ipv4Addr::new(10, 96, 0, 10)]);
}

#[test]
fn serving_terminating_endpoints_when_none_is_ready() {
    let yaml = svc(CLUSTER_HTTP)
        + &slice(
            "web-1",
            "web",
            HTTP,
            &[
                ep(
                    "10.244.1.2",
                    "ready: false, serving: true, terminating: true",
                    "a",
                ),
                ep(
                    "10.244.1.3",
                    "ready: false, serving: false, terminating: true",
                    "b",
                ),
                ep("10.244.1.4", "ready: false, serving: false", "b"),
            ],
        );
    let (s, _) = compile(&yaml);
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80),
        (strings(&["10.244.1.2:8080"]), strings(&["10.244.1.3:8080"]))
    );
    // Only terminating, not serving: nothing takes new flows; reject (no endpoint anywhere).
    let yaml = svc(CLUSTER_HTTP)
        + &slice(
            "web-1",
            "web",
            HTTP,
            &[ep(
                "10.244.1.3",
                "ready: false, serving: false, terminating: true",
                "b",
            )],
        );
    let (s, _) = compile(&yaml);
    let f = fe(&s, "10.96.0.10", TCP, 80);
    assert!(!set(&s, f).has_active() && f.reject_no_endpoints);
    assert_eq!(set(&s, f).draining().len(), 1);
}

#[test]
fn publish_not_ready_addresses_uses_serving_endpoints() {
    let spec = format!("{CLUSTER_HTTP}\n  publishNotReadyAddresses: true");
    let yaml = svc(&spec)
        + &slice(
            "web-1",
            "web",
            HTTP,
            &[
                ep("10.244.1.1", "ready: false, serving: true", "a"),
                ep("10.244.1.2", "ready: false, serving: false", "a"),
            ],
        );
    let (s, _) = compile(&yaml);
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80).0,
        strings(&["10.244.1.1:8080"])
    );
}

#[test]
fn services_without_endpoints_reject() {
    let (s, r) = compile(&svc(CLUSTER_HTTP));
    let f = fe(&s, "10.96.0.10", TCP, 80);
    assert!(f.reject_no_endpoints);
    assert!(!set(&s, f).has_active());
    assert_eq!(set(&s, f).table_size(), 0);
    assert_eq!(r.backends, 0);
}

fn hinted(addr: &str, node: &str, zones: &[&str]) -> String {
    let zones: Vec<String> = zones.iter().map(|z| format!("{{name: {z}}}")).collect();
    format!(
        "{{addresses: [{addr}], conditions: {{ready: true}}, nodeName: {node}, hints: {{forZones: [{}]}}}}",
        zones.join(", ")
    )
}

#[test]
fn topology_hints_narrow_to_this_zone() {
    let zoned = ServiceContext {
        zone: Some("z1".into()),
        ..ctx()
    };
    let all_hinted = svc(CLUSTER_HTTP)
        + &slice(
            "web-1",
            "web",
            HTTP,
            &[
                hinted("10.244.1.1", "a", &["z1"]),
                hinted("10.244.2.1", "b", &["z2"]),
                hinted("10.244.3.1", "c", &["z1", "z3"]),
            ],
        );
    let (s, _) = compile_with(&all_hinted, &zoned);
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80),
        (
            strings(&["10.244.1.1:8080", "10.244.3.1:8080"]),
            strings(&["10.244.2.1:8080"])
        )
    );
    // No zone for this node: hints ignored.
    let (s, _) = compile(&all_hinted);
    assert_eq!(backends(&s, "10.96.0.10", TCP, 80).0.len(), 3);
    // No endpoint hinted for our zone: all of them.
    let (s, _) = compile_with(
        &all_hinted,
        &ServiceContext {
            zone: Some("z9".into()),
            ..ctx()
        },
    );
    assert_eq!(backends(&s, "10.96.0.10", TCP, 80).0.len(), 3);
    // One ready endpoint without hints: hints ignored.
    let partly = svc(CLUSTER_HTTP)
        + &slice(
            "web-1",
            "web",
            HTTP,
            &[
                hinted("10.244.1.1", "a", &["z1"]),
                ep("10.244.2.1", "ready: true", "b"),
            ],
        );
    let (s, _) = compile_with(&partly, &zoned);
    assert_eq!(backends(&s, "10.96.0.10", TCP, 80).0.len(), 2);
}

const TWO_NODES: [(&str, &str); 2] = [("10.244.1.1", "a"), ("10.244.2.1", "b")];

fn two_node_slice() -> String {
    let eps: Vec<String> = TWO_NODES
        .iter()
        .map(|(addr, node)| ep(addr, "ready: true", node))
        .collect();
    slice("web-1", "web", HTTP, &eps)
}

#[test]
fn internal_traffic_policy_local() {
    let spec = format!("{CLUSTER_HTTP}\n  internalTrafficPolicy: Local");
    let (s, _) = compile(&(svc(&spec) + &two_node_slice()));
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80).0,
        strings(&["10.244.1.1:8080"])
    );
    // Endpoints elsewhere but none here: drop, not reject.
    let other = ServiceContext {
        node_name: "c".into(),
        ..ctx()
    };
    let (s, _) = compile_with(&(svc(&spec) + &two_node_slice()), &other);
    let f = fe(&s, "10.96.0.10", TCP, 80);
    assert!(!set(&s, f).has_active());
    assert!(!f.reject_no_endpoints);
    assert!(!f.external_local);
}

const NODE_PORT: &str = "  type: NodePort\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]";

#[test]
fn node_ports_on_every_node_ip_sharing_the_cluster_set() {
    let (s, r) = compile(&(svc(NODE_PORT) + &two_node_slice()));
    let c = fe(&s, "10.96.0.10", TCP, 80);
    let n1 = fe(&s, "192.168.0.1", TCP, 30080);
    let n2 = fe(&s, "192.168.0.2", TCP, 30080);
    assert_eq!(n1.kind, FrontendKind::NodePort);
    assert_eq!((c.backends, n1.backends), (n2.backends, n2.backends));
    assert_eq!(s.sets().len(), 1);
    assert_eq!(r.node_ports, [(6, 30080)]);
    assert_eq!(r.frontends, 3);
    assert!(r.health_checks.is_empty());
}

#[test]
fn external_traffic_policy_local() {
    let spec = "  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n  externalIPs: [198.51.100.7]\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]";
    let status = "status: {loadBalancer: {ingress: [{ip: 203.0.113.5}]}}\n";
    let service = svc(spec).replace("\n---\n", &format!("\n{status}---\n"));
    let (s, r) = compile(&(service.clone() + &two_node_slice()));
    // ClusterIP: every endpoint; external frontends: ours only.
    assert_eq!(backends(&s, "10.96.0.10", TCP, 80).0.len(), 2);
    for (addr, port, kind) in [
        ("192.168.0.1", 30080, FrontendKind::NodePort),
        ("203.0.113.5", 80, FrontendKind::LoadBalancer),
        ("198.51.100.7", 80, FrontendKind::ExternalIp),
    ] {
        let f = fe(&s, addr, TCP, port);
        assert_eq!(f.kind, kind);
        assert!(f.external_local);
        assert_eq!(
            backends(&s, addr, TCP, port).0,
            strings(&["10.244.1.1:8080"])
        );
    }
    assert_eq!(r.health_checks, [(32000, "default/web".to_owned(), 1)]);
    assert_eq!(
        r.external_ips,
        [
            Ipv4Addr::new(198, 51, 100, 7),
            Ipv4Addr::new(203, 0, 113, 5)
        ]
    );
    assert_eq!(r.external_ports, [(6, 80)]);

    // Another node: no local endpoint → external frontends drop; health check says 0.
    let other = ServiceContext {
        node_name: "c".into(),
        ..ctx()
    };
    let (s, r) = compile_with(&(service + &two_node_slice()), &other);
    let f = fe(&s, "203.0.113.5", TCP, 80);
    assert!(!set(&s, f).has_active() && !f.reject_no_endpoints);
    assert!(set(&s, fe(&s, "10.96.0.10", TCP, 80)).has_active());
    assert_eq!(r.health_checks, [(32000, "default/web".to_owned(), 0)]);
}

#[test]
fn session_affinity_and_source_ranges() {
    let spec = "  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n  loadBalancerSourceRanges: [192.0.2.0/24, 2001:db8::/32]\n  externalIPs: [198.51.100.7]\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]";
    let status = "status: {loadBalancer: {ingress: [{ip: 203.0.113.5}]}}\n";
    let service = svc(spec).replace("\n---\n", &format!("\n{status}---\n"));
    let (s, _) = compile(&(service + &two_node_slice()));
    for (addr, port) in [
        ("10.96.0.10", 80),
        ("192.168.0.1", 30080),
        ("203.0.113.5", 80),
        ("198.51.100.7", 80),
    ] {
        let f = fe(&s, addr, TCP, port);
        assert_eq!(f.affinity, SessionAffinity::ClientIp { timeout_s: 600 });
        let ranges: &[(Ipv4Addr, u8)] = if f.kind == FrontendKind::LoadBalancer {
            &[(Ipv4Addr::new(192, 0, 2, 0), 24)]
        } else {
            &[]
        };
        assert_eq!(&*f.source_ranges, ranges, "{addr}");
    }
    // The default timeout.
    let spec = format!("{CLUSTER_HTTP}\n  sessionAffinity: ClientIP");
    let (s, _) = compile(&svc(&spec));
    assert_eq!(
        fe(&s, "10.96.0.10", TCP, 80).affinity,
        SessionAffinity::ClientIp { timeout_s: 10_800 }
    );
}

#[test]
fn load_balancer_ingress_only_for_type_load_balancer() {
    let status = "status: {loadBalancer: {ingress: [{ip: 203.0.113.5}, {ip: 203.0.113.6, ipMode: Proxy}, {ip: '2001:db8::1'}]}}\n";
    let lb = "  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]";
    let (s, r) = compile(&svc(lb).replace("\n---\n", &format!("\n{status}---\n")));
    assert!(s.frontend(key("203.0.113.5", TCP, 80)).is_some());
    assert!(s.frontend(key("203.0.113.6", TCP, 80)).is_none());
    assert_eq!(r.external_ips, [Ipv4Addr::new(203, 0, 113, 5)]);
    let (s, r) = compile(&svc(NODE_PORT).replace("\n---\n", &format!("\n{status}---\n")));
    assert!(s.frontend(key("203.0.113.5", TCP, 80)).is_none());
    assert!(r.external_ips.is_empty());
}

#[test]
fn named_ports_match_by_name_and_protocol() {
    let spec = "  clusterIP: 10.96.0.10\n  ports:\n    - {name: http, port: 80, targetPort: web}\n    - {name: dns, protocol: UDP, port: 53, targetPort: 5353}\n    - {name: dns-tcp, protocol: TCP, port: 53, targetPort: 5353}\n    - {name: unmatched, port: 81}";
    let ports = "[{name: http, protocol: TCP, port: 8080}, {name: dns, protocol: UDP, port: 5353}, {name: dns-tcp, protocol: UDP, port: 9999}]";
    let yaml = svc(spec)
        + &slice(
            "web-1",
            "web",
            ports,
            &[ep("10.244.1.1", "ready: true", "a")],
        );
    let (s, _) = compile(&yaml);
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80).0,
        strings(&["10.244.1.1:8080"])
    );
    assert_eq!(
        backends(&s, "10.96.0.10", UDP, 53).0,
        strings(&["10.244.1.1:5353"])
    );
    // The slice's dns-tcp port is UDP: no endpoints for the TCP service port.
    assert!(backends(&s, "10.96.0.10", TCP, 53).0.is_empty());
    assert!(backends(&s, "10.96.0.10", TCP, 81).0.is_empty());
}

#[test]
fn multi_slice_services_merge_and_deduplicate() {
    let yaml = svc(CLUSTER_HTTP)
        + &slice("web-1", "web", HTTP, &[
            ep("10.244.1.1", "ready: true", "a"),
            ep("10.244.1.2", "ready: false, serving: false", "a"),
        ])
        + &slice("web-2", "web", HTTP, &[
            ep("10.244.1.2", "ready: true", "a"),
            ep("10.244.2.1", "ready: true", "b"),
        ])
        // Another service's slice, and an IPv6 slice of ours.
        + &slice("other-1", "other", HTTP, &[ep("10.244.9.9", "ready: true", "a")])
        + "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-v6, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv6\nports: [{name: http, protocol: TCP, port: 8080}]\nendpoints: [{addresses: ['fd00::1']}]\n";
    let (s, _) = compile(&yaml);
    assert_eq!(
        backends(&s, "10.96.0.10", TCP, 80).0,
        strings(&["10.244.1.1:8080", "10.244.1.2:8080", "10.244.2.1:8080"])
    );
}

#[test]
fn sctp_ports_are_skipped_and_reported() {
    let spec = "  clusterIP: 10.96.0.10\n  ports:\n    - {name: http, port: 80}\n    - {name: sig, protocol: SCTP, port: 3868}";
    let (s, r) = compile(&svc(spec));
    assert_eq!(s.len(), 1);
    assert_eq!(
        r.skipped,
        [(
            "Service default/web".to_owned(),
            "spec.ports[1] (3868/SCTP): SCTP is not supported".to_owned()
        )]
    );
}

#[test]
fn headless_and_external_name_get_nothing() {
    let yaml = svc("  clusterIP: None\n  ports: [{name: http, port: 80}]")
        .replace("name: web,", "name: headless,")
        + &svc_named(
            "ext",
            "  type: ExternalName\n  externalName: db.example.com",
        )
        + &slice(
            "headless-1",
            "headless",
            HTTP,
            &[ep("10.244.1.1", "ready: true", "a")],
        );
    let (s, r) = compile(&yaml);
    assert!(s.is_empty() && s.sets().is_empty());
    assert_eq!(r, ServiceReport::default());
}

#[test]
fn ipv6_addresses_are_skipped_silently() {
    let dual = "  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, 'fd00::10']\n  externalIPs: ['2001:db8::7', 198.51.100.7]\n  ports: [{name: http, port: 80}]";
    let v6 = "  clusterIP: 'fd00::11'\n  type: NodePort\n  ports: [{name: http, port: 80, nodePort: 30081}]";
    let yaml = svc(dual) + &svc_named("v6only", v6);
    let (s, r) = compile(&yaml);
    let mut keys: Vec<String> = s
        .frontends()
        .map(|(k, _)| super::dump::key_text(k))
        .collect();
    keys.sort();
    assert_eq!(keys, ["10.96.0.10:80/TCP", "198.51.100.7:80/TCP"]);
    assert!(r.skipped.is_empty() && r.node_ports.is_empty());
}

#[test]
fn conflicting_frontends_are_reported_and_the_first_service_keeps_them() {
    let a = svc_named(
        "a",
        "  clusterIP: 10.96.0.10\n  externalIPs: [198.51.100.7]\n  ports: [{name: http, port: 80}]",
    );
    let b = svc_named(
        "b",
        "  clusterIP: 10.96.0.11\n  externalIPs: [198.51.100.7]\n  ports: [{name: http, port: 80}]",
    );
    let (s, r) = compile(&(a + &b));
    assert_eq!(s.len(), 3);
    assert_eq!(
        r.skipped,
        [(
            "Service default/b".to_owned(),
            "spec.externalIPs: 198.51.100.7:80/TCP is already a frontend of Service default/a"
                .to_owned()
        )]
    );
}

/// `n` services `svc-i`, each with one slice of three endpoints.
fn many(n: usize, ready_of_first: bool) -> DesiredState {
    let mut yaml = String::new();
    for i in 0..n {
        let name = format!("svc-{i}");
        let spec = format!(
            "  clusterIP: 10.96.{}.{}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]",
            i / 250,
            i % 250 + 1
        );
        yaml += &svc_named(&name, &spec);
        let ready = if i == 0 && !ready_of_first {
            "ready: false"
        } else {
            "ready: true"
        };
        let eps: Vec<String> = (1..=3)
            .map(|j| ep(&format!("10.244.{}.{j}", i % 250), ready, "a"))
            .collect();
        yaml += &slice(&format!("{name}-1"), &name, HTTP, &eps);
    }
    state(&yaml)
}

#[test]
fn incremental_compile_reuses_unchanged_services() {
    let mut c = ServiceCompiler::with_threads(1);
    let before = many(20, true);
    let (s1, r1) = c.compile(&before, &ctx());
    assert_eq!((r1.compiled_services, r1.reused_services), (20, 0));
    let (s2, r2) = c.compile(&before, &ctx());
    assert_eq!((r2.compiled_services, r2.reused_services), (0, 20));
    assert_eq!(dump(&s1, &r1), dump(&s2, &r2));
    assert!(
        s1.sets()
            .iter()
            .zip(s2.sets())
            .all(|(a, b)| Arc::ptr_eq(a, b))
    );

    // One slice changes: one service compiled; the result equals a fresh compile.
    let after = many(20, false);
    let (s3, r3) = c.compile(&after, &ctx());
    assert_eq!((r3.compiled_services, r3.reused_services), (1, 19));
    let (fresh, fresh_report) = ServiceCompiler::new().compile(&after, &ctx());
    assert_eq!(dump(&s3, &r3), dump(&fresh, &fresh_report));
    let shared = s2
        .sets()
        .iter()
        .zip(s3.sets())
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count();
    assert_eq!(shared, 19);

    // A service-only change that leaves the backends alone keeps its set (and Maglev array).
    let mut renamed = after.clone();
    let svc = renamed.services.values_mut().nth(5).unwrap();
    svc.session_affinity = crate::objects::SessionAffinity::ClientIp {
        timeout_seconds: 60,
    };
    let (s4, r4) = c.compile(&renamed, &ctx());
    assert_eq!(r4.compiled_services, 1);
    assert!(
        s3.sets()
            .iter()
            .zip(s4.sets())
            .all(|(a, b)| Arc::ptr_eq(a, b))
    );

    // A deleted service leaves the cache; a context change recompiles everything.
    let mut fewer = renamed.clone();
    let gone = fewer.services.keys().next().unwrap().clone();
    fewer.services.remove(&gone);
    let (s5, r5) = c.compile(&fewer, &ctx());
    assert_eq!(
        (r5.compiled_services, r5.reused_services, s5.len()),
        (0, 19, 19)
    );
    assert_eq!(c.cached_services(), 19);
    let moved = ServiceContext {
        node_name: "b".into(),
        ..ctx()
    };
    let (_, r6) = c.compile(&fewer, &moved);
    assert_eq!(r6.compiled_services, 19);

    // A service added in the middle of the key order: compiled alone, the others reused.
    let mut more = fewer.clone();
    let extra = many(20, true).services.into_values().nth(3).unwrap();
    let mut added = extra.clone();
    added.name = "svc-10a".into();
    added.cluster_ips = vec!["10.96.9.9".parse().unwrap()];
    more.services.insert(added.key(), added);
    let (s7, r7) = c.compile(&more, &moved);
    assert_eq!((r7.compiled_services, r7.reused_services), (1, 19));
    let (fresh, fresh_report) = ServiceCompiler::new().compile(&more, &moved);
    assert_eq!(dump(&s7, &r7), dump(&fresh, &fresh_report));
    assert_eq!(c.cached_services(), 20);
}

#[test]
fn parallel_compile_equals_sequential() {
    let state = many(PARALLEL_TEST_SERVICES, true);
    let (a, ra) = ServiceCompiler::with_threads(1).compile(&state, &ctx());
    let (b, rb) = ServiceCompiler::with_threads(3).compile(&state, &ctx());
    assert_eq!(a.len(), PARALLEL_TEST_SERVICES);
    assert_eq!(dump(&a, &ra), dump(&b, &rb));
}

/// Enough services for the threads to be used.
const PARALLEL_TEST_SERVICES: usize = 2100;

#[test]
fn default_objects_compile() {
    let (state, _) = DesiredState::parse(DEFAULT_OBJECTS).unwrap();
    let node = &state.nodes["kxdp-a"];
    let ctx = ServiceContext {
        node_name: node.name.clone(),
        node_ips: node.internal_ip.into_iter().collect(),
        zone: None,
    };
    let (s, r) = ServiceCompiler::new().compile(&state, &ctx);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    // web (2 ports), web-nodeport (ClusterIP + NodePort), web-lb (ClusterIP, NodePort, LB),
    // sticky (ClusterIP, external IP).
    assert_eq!(s.len(), 9, "{}", dump(&s, &r));
    assert_eq!(r.health_checks, [(32001, "default/web-lb".to_owned(), 1)]);
    let lb = fe(&s, "192.168.77.100", TCP, 80);
    assert!(lb.external_local && lb.source_ranges.len() == 2);
}
