//! `kxdp inspect services|backends|conntrack`: the service tables and the conntrack table as
//! JSON, plus the Services the controller last compiled them from.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use kxdp_dataplane::Conntrack;
use kxdp_dataplane::conntrack::CtDir;
use kxdp_dataplane::tables::{FrontendKey, FrontendKind, L4Proto, Services, SessionAffinity};
use serde_json::{Value, json};

use crate::compile::ServiceReport;
use crate::objects::{DesiredState, ServiceType};

/// Most conntrack entries one answer lists (the count is always complete).
pub const CONNTRACK_LIMIT: usize = 10_000;

/// What the controller last published, for inspection.
#[derive(Debug, Clone, Default)]
pub struct ControlStatus {
    /// `kube`, or the file's path.
    pub source: String,
    /// Table generation of that publish.
    pub generation: u64,
    pub published_at: Option<std::time::SystemTime>,
    /// The objects the tables were compiled from.
    pub state: Arc<DesiredState>,
    pub report: ServiceReport,
}

fn proto(p: L4Proto) -> &'static str {
    match p {
        L4Proto::Tcp => "TCP",
        L4Proto::Udp => "UDP",
    }
}

fn frontend_name(k: &FrontendKey) -> String {
    format!("{}:{}/{}", k.addr, k.port, proto(k.proto))
}

fn service_type(t: ServiceType) -> &'static str {
    match t {
        ServiceType::ClusterIp => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
        ServiceType::ExternalName => "ExternalName",
    }
}

/// `{generation, source, published, services: [...], frontends: [...]}`: each Service the
/// controller knows (ports, ready endpoints) and each frontend the data path holds.
pub fn services(
    tables_generation: u64,
    services: &Services,
    status: Option<&ControlStatus>,
) -> Value {
    let mut frontends: Vec<(&FrontendKey, _)> = services.frontends().collect();
    frontends.sort_by_key(|(k, _)| **k);
    let frontends: Vec<Value> = frontends
        .into_iter()
        .map(|(k, f)| {
            let set = services.set(f.backends);
            json!({
                "frontend": frontend_name(k),
                "kind": match f.kind {
                    FrontendKind::ClusterIp => "ClusterIP",
                    FrontendKind::NodePort => "NodePort",
                    FrontendKind::LoadBalancer => "LoadBalancer",
                    FrontendKind::ExternalIp => "ExternalIP",
                },
                "set": f.backends.0,
                "active": set.map_or(0, |s| s.active().len()),
                "draining": set.map_or(0, |s| s.draining().len()),
                "affinity": match f.affinity {
                    SessionAffinity::None => "None".to_owned(),
                    SessionAffinity::ClientIp { timeout_s } => format!("ClientIP {timeout_s}s"),
                },
                "external_local": f.external_local,
            })
        })
        .collect();
    let objects: Vec<Value> = status
        .map(|st| {
            st.state
                .services
                .values()
                .map(|s| {
                    let key = s.key();
                    let (mut ready, mut total) = (0, 0);
                    for slice in st.state.slices_of(&key) {
                        for e in &slice.endpoints {
                            total += e.addresses.len();
                            if e.ready {
                                ready += e.addresses.len();
                            }
                        }
                    }
                    let ports: Vec<String> = s
                        .ports
                        .iter()
                        .map(|p| match p.node_port {
                            Some(np) => format!("{}:{np}/{}", p.port, p.protocol),
                            None => format!("{}/{}", p.port, p.protocol),
                        })
                        .collect();
                    json!({
                        "service": key.to_string(),
                        "type": service_type(s.service_type),
                        "cluster_ips": s.cluster_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "ports": ports,
                        "endpoints": format!("{ready}/{total}"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    out.insert("generation".into(), json!(tables_generation));
    if let Some(st) = status {
        out.insert("source".into(), json!(st.source));
        out.insert(
            "published_unix".into(),
            json!(
                st.published_at
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
            ),
        );
        if !st.report.skipped.is_empty() {
            out.insert(
                "skipped".into(),
                Value::Array(
                    st.report
                        .skipped
                        .iter()
                        .map(|(s, why)| json!({"service": s, "reason": why}))
                        .collect(),
                ),
            );
        }
    }
    out.insert("services".into(), Value::Array(objects));
    out.insert("frontends".into(), Value::Array(frontends));
    Value::Object(out)
}

/// Every backend of every set, with the frontends using the set.
pub fn backends(services: &Services) -> Value {
    let mut users: Vec<Vec<String>> = vec![Vec::new(); services.sets().len()];
    let mut frontends: Vec<(&FrontendKey, _)> = services.frontends().collect();
    frontends.sort_by_key(|(k, _)| **k);
    for (k, f) in frontends {
        if let Some(u) = users.get_mut(f.backends.0 as usize) {
            u.push(frontend_name(k));
        }
    }
    let mut rows = Vec::new();
    for (i, set) in services.sets().iter().enumerate() {
        let states = set
            .active()
            .iter()
            .map(|b| (b, "active"))
            .chain(set.draining().iter().map(|b| (b, "draining")));
        for (b, state) in states {
            rows.push(json!({
                "set": i,
                "backend": format!("{}:{}", b.addr, b.port),
                "state": state,
                "frontends": users[i].join(" "),
            }));
        }
    }
    Value::Array(rows)
}

/// `{live_entries, shown, flows: [...]}`: the translated flows (original direction first).
pub fn conntrack(ct: &Conntrack, limit: usize) -> Value {
    let now = ct.now();
    let mut flows = Vec::new();
    let mut live = 0usize;
    ct.for_each(now, |k, e| {
        live += 1;
        if flows.len() < limit {
            flows.push(json!({
                "proto": proto(k.proto),
                "src": format!("{}:{}", k.src, k.sport),
                "dst": format!("{}:{}", k.dst, k.dport),
                "dir": match e.dir { CtDir::Original => "original", CtDir::Reply => "reply" },
                "nat": format!("{}:{}", e.nat_addr, e.nat_port),
                // Original: what the source becomes; reply: what the destination becomes.
                "snat": e.snat.map(|(a, p)| format!("{a}:{p}")),
                "state": format!("{:?}", e.state.tcp),
                "replied": e.state.replied,
                "expires_in_s": e.state.expires.saturating_sub(now),
            }));
        }
    });
    json!({"live_entries": live, "shown": flows.len(), "flows": flows})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::net::Ipv4Addr;

    use kxdp_dataplane::conntrack::{FlowKey, FlowState, TcpState};
    use kxdp_dataplane::tables::{Backend, BackendSet, Frontend};

    use super::*;

    fn tables() -> Services {
        let mut b = Services::builder();
        let set = b.add_set(Arc::new(
            BackendSet::new(
                &[Backend {
                    addr: Ipv4Addr::new(10, 244, 1, 5),
                    port: 8080,
                }],
                &[Backend {
                    addr: Ipv4Addr::new(10, 244, 2, 5),
                    port: 8080,
                }],
            )
            .unwrap(),
        ));
        b.add_frontend(
            FrontendKey {
                addr: Ipv4Addr::new(10, 96, 0, 10),
                proto: L4Proto::Tcp,
                port: 80,
            },
            Frontend::new(FrontendKind::ClusterIp, set),
        )
        .unwrap();
        b.build()
    }

    #[test]
    fn services_and_backends_from_tables_and_objects() {
        let (state, _) = DesiredState::parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
             spec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080}]}\n",
        )
        .unwrap();
        let status = ControlStatus {
            source: "kube".into(),
            generation: 4,
            state: Arc::new(state),
            ..ControlStatus::default()
        };
        let v = services(4, &tables(), Some(&status));
        assert_eq!(v["services"][0]["service"], "default/web");
        assert_eq!(v["services"][0]["ports"][0], "80/TCP");
        assert_eq!(v["services"][0]["endpoints"], "0/0");
        assert_eq!(v["frontends"][0]["frontend"], "10.96.0.10:80/TCP");
        assert_eq!(v["frontends"][0]["active"], 1);
        assert_eq!(v["frontends"][0]["draining"], 1);
        let b = backends(&tables());
        assert_eq!(b[0]["backend"], "10.244.1.5:8080");
        assert_eq!(b[1]["state"], "draining");
        assert_eq!(b[0]["frontends"], "10.96.0.10:80/TCP");
    }

    #[test]
    fn conntrack_lists_live_flows_up_to_the_limit() {
        let ct = Conntrack::new(1024, 16);
        let now = ct.now();
        for i in 0..3u16 {
            let key = FlowKey {
                src: Ipv4Addr::new(10, 244, 1, 2),
                dst: Ipv4Addr::new(10, 96, 0, 10),
                sport: 40000 + i,
                dport: 80,
                proto: L4Proto::Tcp,
            };
            let entry = kxdp_dataplane::conntrack::CtEntry {
                dir: CtDir::Original,
                nat_addr: Ipv4Addr::new(10, 244, 1, 5),
                nat_port: 8080,
                snat: None,
                state: FlowState {
                    replied: true,
                    tcp: TcpState::Established,
                    expires: now + 100,
                },
            };
            ct.upsert(&key, &entry, now);
        }
        let v = conntrack(&ct, 2);
        assert_eq!(v["live_entries"], 3);
        assert_eq!(v["shown"], 2);
        assert_eq!(v["flows"][0]["nat"], "10.244.1.5:8080");
        assert_eq!(v["flows"][0]["state"], "Established");
    }
}
