//! What the demo tells: what it built, how each check went, the engine's counters and the
//! cleanup — as readable text, or as JSON (`--json`) for scripts and tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::cleanup::Undone;
use super::plan::{Plan, ServicePlan};
use super::topology::Cluster;
use crate::objects::format_mac;

/// What a check is about; the test of the demo asserts on kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Pod to pod, on a node or across the overlay.
    PodToPod,
    /// Through a service's frontend (ClusterIP, NodePort).
    Service,
}

/// One traffic check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub kind: CheckKind,
    pub title: String,
    pub ok: bool,
    /// One line with the numbers.
    pub summary: String,
    /// The numbers, for `--json`.
    pub data: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    pub name: String,
    pub ip: String,
    pub pod_cidr: String,
    pub dataplane: String,
    pub vtep_mac: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodSummary {
    pub name: String,
    pub node: String,
    pub ip: String,
    pub attached_by: String,
    /// The host end of its veth.
    pub host_if: String,
}

/// One engine port's counters, summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    pub port: u64,
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// The engine's counters (`kxdp inspect stats`), summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineCounters {
    pub workers: usize,
    pub table_generation: Option<u64>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub ports: Vec<PortCounters>,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// ARP replies, VXLAN encap/decap, ICMP errors, NAT...
    pub events: BTreeMap<String, u64>,
}

impl EngineCounters {
    /// From the JSON of `inspect stats`; `port_names` names ports by number.
    pub fn from_stats(stats: &Value, port_names: &BTreeMap<u64, String>) -> EngineCounters {
        let mut c = EngineCounters {
            table_generation: stats["generation"].as_u64(),
            ..EngineCounters::default()
        };
        let mut ports: BTreeMap<u64, PortCounters> = BTreeMap::new();
        let workers = stats["workers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        c.workers = workers.len();
        for w in workers {
            c.rx_packets += w["rx_packets"].as_u64().unwrap_or(0);
            c.tx_packets += w["tx_packets"].as_u64().unwrap_or(0);
            for p in w["ports"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let Some(id) = p["port"].as_u64() else {
                    continue;
                };
                let e = ports.entry(id).or_insert_with(|| PortCounters {
                    port: id,
                    name: port_names
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("port {id}")),
                    ..PortCounters::default()
                });
                e.rx_packets += p["rx_packets"].as_u64().unwrap_or(0);
                e.rx_bytes += p["rx_bytes"].as_u64().unwrap_or(0);
                e.tx_packets += p["tx_packets"].as_u64().unwrap_or(0);
                e.tx_bytes += p["tx_bytes"].as_u64().unwrap_or(0);
            }
            add_counts(&mut c.drops, &w["drops"]);
            add_counts(&mut c.events, &w["events"]);
        }
        c.ports = ports.into_values().collect();
        c
    }
}

/// Adds the numeric fields of a JSON object into `into`.
fn add_counts(into: &mut BTreeMap<String, u64>, obj: &Value) {
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if let Some(n) = v.as_u64() {
                *into.entry(k.clone()).or_default() += n;
            }
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every check passed and nothing failed on the way.
    pub ok: bool,
    /// Why the run stopped before finishing its checks.
    pub error: Option<String>,
    /// The signal that interrupted the run.
    pub interrupted: Option<String>,
    pub nodes: Vec<NodeSummary>,
    pub pods: Vec<PodSummary>,
    pub services: Vec<ServicePlan>,
    pub checks: Vec<Check>,
    pub engine: Option<EngineCounters>,
    /// What the cleanup removed (JSON only; the text report prints it as it happens).
    pub cleanup: Vec<Undone>,
    pub seconds: f64,
}

impl Report {
    /// The "what was built" part, from the plan and the cluster.
    pub fn describe(&mut self, plan: &Plan, cluster: &Cluster) {
        self.nodes = vec![
            NodeSummary {
                name: plan.kxdp.name.clone(),
                ip: plan.kxdp.ip.to_string(),
                pod_cidr: plan.kxdp.pod_cidr.to_string(),
                dataplane: format!(
                    "kxdp agent (pid {}), AF_XDP on eth0, kxdp0e and the pods' veths; pods' \
                     gateway {} (router MAC {}), pod MTU {}",
                    cluster.agent.pid,
                    cluster.node_info.gateway,
                    cluster.node_info.router_mac,
                    cluster.node_info.pod_mtu
                ),
                vtep_mac: format_mac(plan.kxdp.vtep_mac),
            },
            NodeSummary {
                name: plan.flannel.name.clone(),
                ip: plan.flannel.ip.to_string(),
                pod_cidr: plan.flannel.pod_cidr.to_string(),
                dataplane: "Linux kernel, as flannel sets it up: flannel.1 (VXLAN VNI 1, port \
                            8472) and the cni0 bridge"
                    .to_owned(),
                vtep_mac: format_mac(plan.flannel.vtep_mac),
            },
        ];
        self.pods = cluster
            .pods
            .iter()
            .map(|p| PodSummary {
                name: p.spec.name.to_owned(),
                node: p.spec.node.to_owned(),
                ip: p.spec.ip.to_string(),
                attached_by: match &p.attachment {
                    Some(a) => format!("kxdp-cni ADD, host-local IPAM, MAC {}", a.mac),
                    None => "veth on cni0".to_owned(),
                },
                host_if: p.host_if.clone(),
            })
            .collect();
        self.services = plan.services.clone();
    }

    /// Number of checks that passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.ok).count()
    }

    /// The readable report (everything but the cleanup).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nkxdp demo: a two-node cluster in network namespaces\n"
        );
        if !self.nodes.is_empty() {
            let _ = writeln!(
                out,
                "Nodes (underlay 192.168.77.0/24, a bridge in its own namespace)"
            );
            for n in &self.nodes {
                let _ = writeln!(
                    out,
                    "  {:<10} {:<13} pods {:<14} VtepMAC {}\n  {:<10} {}",
                    n.name, n.ip, n.pod_cidr, n.vtep_mac, "", n.dataplane
                );
            }
            let _ = writeln!(
                out,
                "  {:<10} {:<13} a client outside the cluster",
                "outside",
                super::plan::OUTSIDE_IP
            );
        }
        if !self.pods.is_empty() {
            let _ = writeln!(out, "\nPods");
            for p in &self.pods {
                let _ = writeln!(
                    out,
                    "  {:<10} {:<13} on {:<10} {} (host end {})",
                    p.name, p.ip, p.node, p.attached_by, p.host_if
                );
            }
        }
        if !self.services.is_empty() {
            let _ = writeln!(out, "\nServices (from the embedded default objects)");
            for s in &self.services {
                let endpoints: Vec<String> = s.endpoints.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    out,
                    "  {:<13} {:<12} {:<11} {}  endpoints {}",
                    s.name,
                    s.service_type,
                    s.cluster_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    s.ports.join(", "),
                    if endpoints.is_empty() {
                        "none ready".to_owned()
                    } else {
                        endpoints.join(", ")
                    }
                );
            }
        }
        if !self.checks.is_empty() {
            let _ = writeln!(out, "\nTraffic");
            for c in &self.checks {
                let _ = writeln!(
                    out,
                    "  {} {}\n      {}",
                    if c.ok { "✔" } else { "✘" },
                    c.title,
                    c.summary
                );
            }
        }
        if let Some(e) = &self.engine {
            out.push_str(&engine_text(e));
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "\n✘ {e}");
        }
        if let Some(s) = &self.interrupted {
            let _ = writeln!(out, "\ninterrupted by {s}");
        }
        let _ = writeln!(
            out,
            "\nResult: {} of {} checks passed{} ({:.1} s)",
            self.passed(),
            self.checks.len(),
            if self.ok { "" } else { " — FAILED" },
            self.seconds
        );
        out
    }
}

fn engine_text(e: &EngineCounters) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nEngine on kxdp-a (kxdp inspect stats: {} worker(s), table generation {})",
        e.workers,
        e.table_generation
            .map_or_else(|| "?".to_owned(), |g| g.to_string())
    );
    let width = e
        .ports
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "  {:<width$}  {:>10}  {:>12}  {:>10}  {:>12}",
        "port", "rx packets", "rx bytes", "tx packets", "tx bytes"
    );
    for p in &e.ports {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>10}  {:>12}  {:>10}  {:>12}",
            p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
        );
    }
    let _ = writeln!(
        out,
        "  {:<width$}  {:>10}  {:>12}  {:>10}",
        "total", e.rx_packets, "", e.tx_packets
    );
    let list = |m: &BTreeMap<String, u64>| {
        let items: Vec<String> = m
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{} {n}", k.replace('_', " ")))
            .collect();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(out, "  events: {}", list(&e.events));
    let _ = writeln!(out, "  drops:  {}", list(&e.drops));
    out
}

/// The cleanup, one line per step.
pub fn cleanup_text(undone: &[Undone]) -> String {
    let failed = undone.iter().filter(|u| !u.ok).count();
    let mut out = format!(
        "Cleanup: {} step(s){}\n",
        undone.len(),
        if failed == 0 {
            String::new()
        } else {
            format!(", {failed} FAILED")
        }
    );
    for u in undone {
        let _ = writeln!(
            out,
            "  {} removed {}{}",
            if u.ok { "✔" } else { "✘" },
            u.what,
            if u.note.is_empty() {
                String::new()
            } else {
                format!(": {}", u.note)
            }
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_are_summed_over_workers_and_ports_named() {
        let stats = json!({"generation": 7, "workers": [
            {"rx_packets": 10, "tx_packets": 9, "drops": {"no_route": 1},
             "ports": [{"port": 0, "rx_packets": 6, "rx_bytes": 600, "tx_packets": 4, "tx_bytes": 400},
                       {"port": 2, "rx_packets": 4, "rx_bytes": 400, "tx_packets": 5, "tx_bytes": 500}],
             "events": {"vxlan_encap": 4, "vxlan_decap": 6, "arp_replies": 0}},
            {"rx_packets": 1, "tx_packets": 1, "drops": {"no_route": 2, "ttl_expired": 1},
             "ports": [{"port": 0, "rx_packets": 1, "rx_bytes": 100, "tx_packets": 1, "tx_bytes": 100}],
             "events": {"vxlan_encap": 1}}
        ]});
        let names = BTreeMap::from([(0, "eth0 (uplink)".to_owned())]);
        let c = EngineCounters::from_stats(&stats, &names);
        assert_eq!((c.workers, c.table_generation), (2, Some(7)));
        assert_eq!((c.rx_packets, c.tx_packets), (11, 10));
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].name, "eth0 (uplink)");
        assert_eq!((c.ports[0].rx_packets, c.ports[0].tx_bytes), (7, 500));
        assert_eq!(c.ports[1].name, "port 2");
        assert_eq!(c.drops["no_route"], 3);
        assert_eq!(c.events["vxlan_encap"], 5);
        let text = engine_text(&c);
        assert!(text.contains("drops:  no route 3, ttl expired 1"), "{text}");
        assert!(
            text.contains("events: vxlan decap 6, vxlan encap 5"),
            "{text}"
        );
    }

    #[test]
    fn stats_of_another_shape_give_empty_counters_not_a_panic() {
        let c = EngineCounters::from_stats(&json!({"something": "else"}), &BTreeMap::new());
        assert_eq!(c, EngineCounters::default());
    }
}
