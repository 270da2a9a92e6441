//! Parsing and validation: every field the views carry, the defaults, flannel's annotations,
//! and the exact text of the errors that name a bad object.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::overlay::Ipv4Net;

fn parse(text: &str) -> (DesiredState, LoadReport) {
    DesiredState::parse(text).unwrap()
}

/// The one error a text produces (and nothing valid besides).
fn only_error(text: &str) -> String {
    let (state, report) = parse(text);
    assert_eq!(state, DesiredState::default(), "nothing valid in {text}");
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    report.errors[0].to_string()
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(ns, name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn service(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n{spec}"
    )
}

#[test]
fn default_objects_parse_without_errors() {
    let (state, report) = parse(DEFAULT_OBJECTS);
    assert_eq!(report, LoadReport::default());
    assert_eq!(state.nodes.len(), 2);
    assert_eq!(state.services.len(), 6);
    assert_eq!(state.endpoint_slices.len(), 4);
    let b = &state.nodes["flannel-b"];
    assert_eq!(b.vtep_mac, Some([0x0e, 0x46, 0xc0, 0xa8, 0x4d, 0x02]));
    let web = &state.services[&key("default", "web")];
    assert_eq!(state.slices_of(&web.key()).count(), 1);
    assert!(!state.services[&key("default", "web-headless")].has_data_path());
    assert!(!state.services[&key("default", "database")].has_data_path());
}

#[test]
fn node_fields_and_flannel_annotations() {
    let (state, report) = parse(
        r#"
apiVersion: v1
kind: Node
metadata:
  name: b
  annotations:
    flannel.alpha.coreos.com/backend-type: vxlan
    flannel.alpha.coreos.com/backend-data: '{"VNI":1,"VtepMAC":"0E:46:C0:A8:4D:02"}'
    flannel.alpha.coreos.com/public-ip: 192.0.2.10
spec:
  podCIDR: 10.244.2.0/24
  podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"]
status:
  addresses:
    - {type: Hostname, address: b}
    - {type: InternalIP, address: "fd00::2"}
    - {type: InternalIP, address: 192.168.77.2}
    - {type: InternalIP, address: 192.168.77.22}
"#,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        state.nodes["b"],
        NodeView {
            name: "b".into(),
            internal_ip: Some(Ipv4Addr::new(192, 168, 77, 2)),
            public_ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
            pod_cidrs: vec![net("10.244.2.0/24")],
            vtep_mac: Some([0x0e, 0x46, 0xc0, 0xa8, 0x4d, 0x02]),
            vni: Some(1),
            backend_type: Some("vxlan".into()),
            zone: None,
        }
    );
}

#[test]
fn node_defaults_public_ip_and_single_pod_cidr() {
    let (state, _) = parse(
        "apiVersion: v1\nkind: Node\nmetadata: {name: a}\nspec: {podCIDR: 10.244.1.0/24}\n\
         status: {addresses: [{type: InternalIP, address: 192.168.77.1}]}\n",
    );
    let a = &state.nodes["a"];
    assert_eq!(a.public_ip, Some(Ipv4Addr::new(192, 168, 77, 1)));
    assert_eq!(a.pod_cidrs, [net("10.244.1.0/24")]);
    assert_eq!(
        (a.vtep_mac, a.vni, a.backend_type.as_deref()),
        (None, None, None)
    );
    // host-gw nodes publish `null` backend data.
    let (state, report) = parse(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: h\n  annotations:\n    \
         flannel.alpha.coreos.com/backend-data: 'null'\n",
    );
    assert!(report.errors.is_empty());
    assert_eq!(state.nodes["h"].vtep_mac, None);
    assert!(state.nodes["h"].pod_cidrs.is_empty());
}

#[test]
fn bad_nodes_name_the_object_and_field() {
    let annotated = |k: &str, v: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: b\n  annotations:\n    {k}: '{v}'\n"
        )
    };
    let e = only_error(&annotated(FLANNEL_BACKEND_DATA, "{VNI:1"));
    assert!(
        e.starts_with(
            "Node b: metadata.annotations[flannel.alpha.coreos.com/backend-data]: invalid JSON: "
        ),
        "{e}"
    );
    assert_eq!(
        only_error(&annotated(
            FLANNEL_BACKEND_DATA,
            r#"{"VNI":1,"VtepMAC":"0e:46:zz:00:00:01"}"#
        )),
        "Node b: metadata.annotations[flannel.alpha.coreos.com/backend-data]: \
         VtepMAC \"0e:46:zz:00:00:01\" is not a MAC address"
    );
    assert_eq!(
        only_error(&annotated(FLANNEL_BACKEND_DATA, r#"{"VNI":16777216}"#)),
        "Node b: metadata.annotations[flannel.alpha.coreos.com/backend-data]: \
         VNI 16777216 is not a 24-bit number"
    );
    assert_eq!(
        only_error(&annotated(FLANNEL_BACKEND_DATA, "[1]")),
        "Node b: metadata.annotations[flannel.alpha.coreos.com/backend-data]: \
         expected a JSON object, found [1]"
    );
    assert_eq!(
        only_error(&annotated(FLANNEL_PUBLIC_IP, "fd00::1")),
        "Node b: metadata.annotations[flannel.alpha.coreos.com/public-ip]: \
         \"fd00::1\" is not an IPv4 address"
    );
    assert_eq!(
        only_error(
            "apiVersion: v1\nkind: Node\nmetadata: {name: b}\nspec: {podCIDRs: [10.244.2.0/24, 10.244.2.0/40]}\n"
        ),
        "Node b: spec.podCIDRs[1]: \"10.244.2.0/40\" is not a valid CIDR"
    );
    assert_eq!(
        only_error(
            "apiVersion: v1\nkind: Node\nmetadata: {name: b}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.300}]}\n"
        ),
        "Node b: status.addresses[0].address: \"10.0.0.300\" is not an IP address"
    );
    assert_eq!(
        only_error("apiVersion: v1\nkind: Node\nmetadata: {labels: {a: b}}\n"),
        "Node (unnamed): metadata.name: missing"
    );
}

#[test]
fn every_service_field() {
    let (state, report) = parse(&format!(
        "{}\n{}",
        service(
            r#"
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  externalIPs: [198.51.100.7]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  loadBalancerSourceRanges: [192.0.2.0/24, "2001:db8::/32", " 198.51.100.0/25 "]
  healthCheckNodePort: 32001
  publishNotReadyAddresses: true
  ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
    - {name: dns, protocol: UDP, port: 53, targetPort: dns-udp, nodePort: 30053}
    - {name: sctp, protocol: SCTP, port: 9999}
    - {name: zero, port: 81, targetPort: 0}"#
        ),
        r#"status:
  loadBalancer:
    ingress:
      - {ip: 203.0.113.5}
      - {ip: 203.0.113.6, ipMode: VIP}
      - {ip: 203.0.113.7, ipMode: Proxy}
      - {hostname: lb.example.com}"#
    ));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let port = |name: &str, protocol, port, target_port, node_port| ServicePortView {
        name: name.into(),
        protocol,
        port,
        target_port,
        node_port,
    };
    assert_eq!(
        state.services[&key("default", "web")],
        ServiceView {
            namespace: "default".into(),
            name: "web".into(),
            service_type: ServiceType::LoadBalancer,
            cluster_ips: vec![ip("10.96.0.10"), ip("fd00:96::10")],
            headless: false,
            external_name: None,
            ports: vec![
                port(
                    "http",
                    Protocol::Tcp,
                    80,
                    TargetPort::Number(8080),
                    Some(30080)
                ),
                port(
                    "dns",
                    Protocol::Udp,
                    53,
                    TargetPort::Name("dns-udp".into()),
                    Some(30053)
                ),
                port("sctp", Protocol::Sctp, 9999, TargetPort::Number(9999), None),
                port("zero", Protocol::Tcp, 81, TargetPort::Number(81), None),
            ],
            external_ips: vec![ip("198.51.100.7")],
            load_balancer_ingress_ips: vec![ip("203.0.113.5"), ip("203.0.113.6")],
            session_affinity: SessionAffinity::ClientIp {
                timeout_seconds: 600
            },
            external_traffic_policy: TrafficPolicy::Local,
            internal_traffic_policy: TrafficPolicy::Local,
            load_balancer_source_ranges: vec![net("192.0.2.0/24"), net("198.51.100.0/25")],
            health_check_node_port: Some(32001),
            publish_not_ready_addresses: true,
        }
    );
}

#[test]
fn service_defaults() {
    let (state, _) = parse(&service(
        "  clusterIP: 10.96.0.10\n  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n",
    ));
    let s = &state.services[&key("default", "web")];
    assert_eq!(s.service_type, ServiceType::ClusterIp);
    assert_eq!(
        s.ports,
        [ServicePortView {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Number(80),
            node_port: None,
        }]
    );
    assert_eq!(
        s.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: DEFAULT_AFFINITY_TIMEOUT
        }
    );
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
    assert_eq!(s.internal_traffic_policy, TrafficPolicy::Cluster);
    assert!(s.has_data_path());

    // No namespace: `default`. Source ranges from the annotation when the field is empty.
    let (state, _) = parse(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\n  annotations:\n    \
         service.beta.kubernetes.io/load-balancer-source-ranges: \"10.0.0.0/8, 172.16.0.0/12\"\n\
         spec: {type: LoadBalancer, clusterIP: 10.96.0.9, ports: [{port: 80, nodePort: 30001}]}\n",
    );
    let lb = &state.services[&key("default", "lb")];
    assert_eq!(
        lb.load_balancer_source_ranges,
        [net("10.0.0.0/8"), net("172.16.0.0/12")]
    );
    assert_eq!(lb.session_affinity, SessionAffinity::None);
}

#[test]
fn headless_and_external_name_services() {
    let (state, report) = parse(&format!(
        "{}---\n{}",
        service("  clusterIP: None\n  ports: [{port: 80}]\n"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: prod}\n\
         spec: {type: ExternalName, externalName: db.example.com}\n"
    ));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let h = &state.services[&key("default", "web")];
    assert!(h.headless && h.cluster_ips.is_empty() && !h.has_data_path());
    let db = &state.services[&key("prod", "db")];
    assert_eq!(db.service_type, ServiceType::ExternalName);
    assert_eq!(db.external_name.as_deref(), Some("db.example.com"));
    assert!(!db.has_data_path());
}

#[test]
fn bad_services_name_the_object_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "  ports:\n    - {name: a, port: 80}\n    - {name: b, port: 0}\n",
            "Service default/web: spec.ports[1].port: 0 is not a valid port",
        ),
        (
            "  ports: [{port: 70000}]\n",
            "Service default/web: spec.ports[0].port: 70000 is not a valid port",
        ),
        (
            "  ports: [{port: 80, targetPort: 65536}]\n",
            "Service default/web: spec.ports[0].targetPort: 65536 is not a valid port",
        ),
        (
            "  ports: [{port: 80, targetPort: \"8080\"}]\n",
            "Service default/web: spec.ports[0].targetPort: \"8080\" is not a valid port name \
             (1-15 lowercase letters, digits and single '-', at least one letter)",
        ),
        (
            "  ports: [{port: 80, protocol: ICMP}]\n",
            "Service default/web: spec.ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP",
        ),
        (
            "  ports: [{port: 80, nodePort: 30080}]\n",
            "Service default/web: spec.ports[0].nodePort: may not be used unless type is \
             NodePort or LoadBalancer",
        ),
        (
            "  type: NodePort\n  ports: [{port: 80, nodePort: -1}]\n",
            "Service default/web: spec.ports[0].nodePort: -1 is not a valid port",
        ),
        (
            "  ports:\n    - {name: a, port: 80}\n    - {port: 81}\n",
            "Service default/web: spec.ports[1].name: required when the service has more than \
             one port",
        ),
        (
            "  ports:\n    - {name: a, port: 80}\n    - {name: a, port: 81}\n",
            "Service default/web: spec.ports[1].name: duplicate name \"a\"",
        ),
        (
            "  ports:\n    - {name: a, port: 80}\n    - {name: b, port: 80}\n",
            "Service default/web: spec.ports[1]: duplicate port 80/TCP",
        ),
        (
            "  type: NodePort\n  ports:\n    - {name: a, port: 80, nodePort: 30001}\n    \
             - {name: b, port: 81, nodePort: 30001}\n",
            "Service default/web: spec.ports[1].nodePort: duplicate node port 30001/TCP",
        ),
        (
            "  type: Magic\n",
            "Service default/web: spec.type: \"Magic\" is not ClusterIP, NodePort, LoadBalancer \
             or ExternalName",
        ),
        (
            "  type: ExternalName\n",
            "Service default/web: spec.externalName: required for type ExternalName",
        ),
        (
            "  clusterIP: 10.96.0.300\n",
            "Service default/web: spec.clusterIP: \"10.96.0.300\" is not an IP address",
        ),
        (
            "  clusterIP: 10.96.0.1\n  clusterIPs: [10.96.0.2]\n",
            "Service default/web: spec.clusterIPs[0]: \"10.96.0.2\" differs from spec.clusterIP \
             \"10.96.0.1\"",
        ),
        (
            "  externalIPs: [1.2.3.4, nope]\n",
            "Service default/web: spec.externalIPs[1]: \"nope\" is not an IP address",
        ),
        (
            "  sessionAffinity: Sticky\n",
            "Service default/web: spec.sessionAffinity: \"Sticky\" is not None or ClientIP",
        ),
        (
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n",
            "Service default/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not \
             within 1..=86400",
        ),
        (
            "  externalTrafficPolicy: Nearby\n",
            "Service default/web: spec.externalTrafficPolicy: \"Nearby\" is not Cluster or Local",
        ),
        (
            "  internalTrafficPolicy: local\n",
            "Service default/web: spec.internalTrafficPolicy: \"local\" is not Cluster or Local",
        ),
        (
            "  loadBalancerSourceRanges: [10.0.0.0]\n",
            "Service default/web: spec.loadBalancerSourceRanges[0]: \"10.0.0.0\" is not a valid \
             CIDR",
        ),
        (
            "  healthCheckNodePort: 65536\n",
            "Service default/web: spec.healthCheckNodePort: 65536 is not a valid port",
        ),
        (
            "  ports: [{port: http}]\n",
            "Service default/web: spec.ports[0].port: invalid type: string \"http\", expected i32",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(only_error(&service(spec)), *want, "spec:\n{spec}");
    }
    let e = only_error(&format!(
        "{}status:\n  loadBalancer:\n    ingress: [{{ip: lb.example.com}}]\n",
        service("  type: LoadBalancer\n")
    ));
    assert_eq!(
        e,
        "Service default/web: status.loadBalancer.ingress[0].ip: \"lb.example.com\" is not an IP \
         address"
    );
}

#[test]
fn endpoint_slice_fields_and_nil_conditions() {
    let (state, report) = parse(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
  - {name: http, protocol: TCP, port: 8080}
  - {name: dns, protocol: UDP, port: 53}
  - {name: any}
endpoints:
  - addresses: [10.244.1.2]
    nodeName: a
    zone: z1
    hints: {forZones: [{name: z1}, {name: z2}]}
  - addresses: [10.244.2.3]
    conditions: {ready: false, serving: true, terminating: true}
  - addresses: [10.244.2.4]
    conditions: {ready: false}
"#,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let s = &state.endpoint_slices[&key("shop", "web-abc")];
    assert_eq!(s.service_key(), key("shop", "web"));
    assert_eq!(s.address_type, AddressType::IPv4);
    assert_eq!(
        s.ports,
        [
            EndpointPortView {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: Some(8080)
            },
            EndpointPortView {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: Some(53)
            },
            EndpointPortView {
                name: "any".into(),
                protocol: Protocol::Tcp,
                port: None
            },
        ]
    );
    assert_eq!(
        s.endpoints[0],
        EndpointView {
            addresses: vec![ip("10.244.1.2")],
            ready: true,
            serving: true,
            terminating: false,
            node_name: Some("a".into()),
            zone: Some("z1".into()),
            for_zones: vec!["z1".into(), "z2".into()],
        }
    );
    let conds = |e: &EndpointView| (e.ready, e.serving, e.terminating);
    assert_eq!(conds(&s.endpoints[1]), (false, true, true));
    // serving nil means true, whatever ready says (the API's documented default).
    assert_eq!(conds(&s.endpoints[2]), (false, true, false));
}

#[test]
fn bad_endpoint_slices_name_the_object_and_field() {
    let slice = |labels: &str, rest: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n  \
             labels: {labels}\n{rest}"
        )
    };
    let ok = "{kubernetes.io/service-name: web}";
    let cases: &[(String, &str)] = &[
        (
            slice("{}", "addressType: IPv4\n"),
            "EndpointSlice default/s: metadata.labels[kubernetes.io/service-name]: missing: a \
             slice without it belongs to no Service",
        ),
        (
            slice(ok, "addressType: IPv5\n"),
            "EndpointSlice default/s: addressType: \"IPv5\" is not IPv4, IPv6 or FQDN",
        ),
        (
            slice(
                ok,
                "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1, \"fd00::1\"]}]\n",
            ),
            "EndpointSlice default/s: endpoints[0].addresses[1]: \"fd00::1\" does not match \
             addressType IPv4",
        ),
        (
            slice(ok, "addressType: IPv4\nports: [{name: a, port: 0}]\n"),
            "EndpointSlice default/s: ports[0].port: 0 is not a valid port",
        ),
        (
            slice(ok, "endpoints: []\n"),
            "EndpointSlice default/s: addressType: missing (IPv4, IPv6 or FQDN)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(only_error(text), *want, "{text}");
    }
}

#[test]
fn pods() {
    let (state, report) = parse(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\n\
         spec: {nodeName: a, hostNetwork: false, containers: [{name: c}]}\n\
         status: {phase: Running, podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: \"fd00::5\"}]}\n",
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        state.pods[&key("n", "p")],
        PodView {
            namespace: "n".into(),
            name: "p".into(),
            node_name: Some("a".into()),
            pod_ips: vec![ip("10.244.1.5"), ip("fd00::5")],
            host_network: false,
            phase: Some("Running".into()),
        }
    );
}

#[test]
fn multi_document_with_one_bad_document() {
    let text = "\
---
apiVersion: v1
kind: Node
metadata: {name: a}
spec: {podCIDR: 10.244.1.0/24}
---
apiVersion: v1
kind: Node
metadata:
  name: b
  annotations: {flannel.alpha.coreos.com/backend-data: '{\"VNI\":1,'}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
# only a comment: an empty document
---
- just
- a list
---
kind: Service
metadata: {name: nover}
---
apiVersion: v1
kind: Node
metadata: {name: c}
";
    let (state, report) = parse(text);
    assert_eq!(state.nodes.keys().collect::<Vec<_>>(), ["a", "c"]);
    let errors: Vec<(String, Option<usize>)> = report
        .errors
        .iter()
        .map(|e| (e.to_string(), e.document))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(
        errors[0],
        (
            "document 5: not a Kubernetes object (found a list, expected a mapping with \
             apiVersion and kind)"
                .into(),
            Some(5)
        )
    );
    assert_eq!(
        errors[1],
        (
            "document 6 default/nover: apiVersion: missing".into(),
            Some(6)
        )
    );
    assert!(
        errors[2].0.starts_with(
            "Node b: metadata.annotations[flannel.alpha.coreos.com/backend-data]: invalid JSON: "
        ) && errors[2].1 == Some(2),
        "{errors:?}"
    );
    assert_eq!(
        report.notes,
        ["document 3: apps/v1 Deployment shop/web: not a kind kxdp reads, skipped"]
    );
}

#[test]
fn a_syntax_error_refuses_the_whole_file() {
    let e = DesiredState::parse("apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\nkind: [\n")
        .unwrap_err();
    assert_eq!(e.document, 2, "{e}");
    assert!(e.to_string().starts_with("document 2: "), "{e}");
}

#[test]
fn json_files_and_lists() {
    // `kubectl get nodes,svc -o json`, tab-indented as some tools write it.
    let text = "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"List\",\n\t\"items\": [\n\
                \t\t{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"a\"}},\n\
                \t\t{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"x\"}},\n\
                \t\t{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"s\"},\n\
                \t\t \"spec\": {\"ports\": [{\"port\": 0}]}}\n\t]\n}\n\
                {\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"b\"}}";
    let (state, report) = parse(text);
    assert_eq!(state.nodes.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        report.notes,
        ["document 1, items[1]: v1 ConfigMap default/x: not a kind kxdp reads, skipped"]
    );
    assert_eq!(
        report.errors[0].to_string(),
        "Service default/s: spec.ports[0].port: 0 is not a valid port"
    );
    let e = DesiredState::parse("{\"a\": 1}\n{\"b\": ").unwrap_err();
    assert_eq!(e.document, 2, "{e}");
}

#[test]
fn duplicates_later_wins_with_a_note() {
    let (state, report) = parse(
        "apiVersion: v1\nkind: Node\nmetadata: {name: a}\nspec: {podCIDR: 10.244.1.0/24}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: a}\nspec: {podCIDR: 10.244.7.0/24}\n",
    );
    assert_eq!(state.nodes["a"].pod_cidrs, [net("10.244.7.0/24")]);
    assert_eq!(
        report.notes,
        ["document 2: Node a appears again; this later one is used"]
    );
}

#[test]
fn events_apply_and_delete() {
    let docs = parse_documents(
        "apiVersion: v1\nkind: Node\nmetadata: {name: a}\nspec: {podCIDR: 10.244.1.0/24}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n  annotations: {flannel.alpha.coreos.com/public-ip: x}\n",
    )
    .unwrap();
    let mut objects = docs.objects.into_iter().map(|p| p.object);
    let (good, bad) = (objects.next().unwrap(), objects.next().unwrap());
    let mut state = DesiredState::default();
    state.handle(ObjectEvent::Applied(good.clone())).unwrap();
    assert!(state.nodes.contains_key("a"));
    // An update that does not validate takes the old view away too.
    let e = state.handle(ObjectEvent::Applied(bad)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Node a: metadata.annotations[flannel.alpha.coreos.com/public-ip]: \"x\" is not an IP address"
    );
    assert!(state.nodes.is_empty());
    state.apply(good).unwrap();
    state
        .handle(ObjectEvent::Deleted(Kind::Node, key("", "a")))
        .unwrap();
    assert!(state.nodes.is_empty());
    assert!(!state.delete(Kind::Service, &key("default", "web")));
}
