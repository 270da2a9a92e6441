//! [`NodeHandler`]: the local API over a running node dataplane.

use std::sync::Arc;

use kxdp_dataplane::{DropReason, Route};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::inspect_services::{self, CONNTRACK_LIMIT, ControlStatus};
use super::protocol::{Attached, InspectWhat, NodeInfo, Request, format_mac, parse_mac};
use super::server::ApiHandler;
use crate::overlay::node::PodSpec;
use crate::overlay::{NodeDataplane, OverlayMode};

/// VXLAN adds 50 bytes (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
const VXLAN_OVERHEAD: u16 = 50;

/// Serves attach/detach/inspect for one node.
#[derive(Debug)]
pub struct NodeHandler {
    dp: Arc<NodeDataplane>,
    /// What the agent's controller last published (absent when no controller runs).
    status: Option<watch::Receiver<Arc<ControlStatus>>>,
}

impl NodeHandler {
    pub fn new(dp: Arc<NodeDataplane>) -> Self {
        NodeHandler { dp, status: None }
    }

    /// Also show the objects the controller compiled the service tables from.
    pub fn with_status(mut self, status: watch::Receiver<Arc<ControlStatus>>) -> Self {
        self.status = Some(status);
        self
    }

    fn node_info(&self) -> NodeInfo {
        let local = self.dp.local();
        let pod_mtu = match local.mode {
            OverlayMode::None => local.uplink.mtu,
            _ => local.uplink.mtu.saturating_sub(VXLAN_OVERHEAD),
        };
        NodeInfo {
            node_name: local.name.clone(),
            pod_cidr: local.pod_cidr.to_string(),
            gateway: local.gateway(),
            pod_mtu,
            queues: self.dp.engine().stats().len() as u32,
            router_mac: format_mac(local.router_mac),
        }
    }

    fn inspect(&self, what: InspectWhat) -> Value {
        match what {
            InspectWhat::Nodes => self.nodes(),
            InspectWhat::Attachments => self.attachments(),
            InspectWhat::Routes => self.routes(),
            InspectWhat::Stats => self.stats(),
            InspectWhat::Services => {
                let t = self.dp.tables();
                let status = self.status.as_ref().map(|s| Arc::clone(&s.borrow()));
                inspect_services::services(t.generation, &t.services, status.as_deref())
            }
            InspectWhat::Backends => inspect_services::backends(&self.dp.tables().services),
            InspectWhat::Conntrack => {
                inspect_services::conntrack(self.dp.engine().conntrack(), CONNTRACK_LIMIT)
            }
        }
    }

    fn nodes(&self) -> Value {
        let st = self.dp.state();
        let l = &st.local;
        let mut nodes = vec![json!({
            "name": l.name, "self": true, "ip": l.ip.to_string(),
            "pod_cidrs": [l.pod_cidr.to_string()], "vtep_mac": format_mac(l.vtep_mac),
            "mode": format!("{:?}", l.mode), "resolved": true,
        })];
        for r in st.remotes.values() {
            nodes.push(json!({
                "name": r.name, "self": false, "ip": r.ip.to_string(),
                "pod_cidrs": r.pod_cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "vtep_mac": r.vtep_mac.map(format_mac),
                "next_hop_mac": st.neighbours.get(&r.ip).map(|m| format_mac(*m)),
                "resolved": st.neighbours.contains_key(&r.ip),
            }));
        }
        Value::Array(nodes)
    }

    fn attachments(&self) -> Value {
        let st = self.dp.state();
        Value::Array(
            st.pods
                .values()
                .map(|p| {
                    json!({
                        "id": p.id, "ip": p.ip.to_string(), "mac": format_mac(p.mac),
                        "ifname": p.ifname, "port": p.port.0, "mtu": p.mtu,
                    })
                })
                .collect(),
        )
    }

    fn routes(&self) -> Value {
        let t = self.dp.tables();
        let mut out = Vec::new();
        for (net, len, route) in t.routes4.iter() {
            let via = match route {
                Route::Via(nh) => format!(
                    "port {} dst {}",
                    nh.port.0,
                    format_mac(nh.l2[..6].try_into().unwrap_or([0; 6]))
                ),
                Route::Host => "host".to_string(),
                Route::Blackhole => "blackhole".to_string(),
                Route::Unresolved => "unresolved next hop".to_string(),
                Route::Vxlan(id) => match t.tunnel(*id) {
                    Some(tun) => format!("vxlan to {}", tun.spec().remote),
                    None => format!("vxlan tunnel {} (missing)", id.0),
                },
            };
            out.push(json!({"prefix": format!("{net}/{len}"), "route": via}));
        }
        json!({"generation": t.generation, "routes": out})
    }

    fn stats(&self) -> Value {
        let workers: Vec<Value> = self
            .dp
            .engine()
            .stats()
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let drops: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .filter(|r| w.drop_count(**r) > 0)
                    .map(|r| (r.label().to_string(), json!(w.drop_count(*r))))
                    .collect();
                let ports: Vec<Value> = w
                    .ports
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.rx_packets + p.tx_packets > 0)
                    .map(|(id, p)| {
                        json!({"port": id, "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes,
                               "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes})
                    })
                    .collect();
                let e = &w.events;
                json!({
                    "worker": i, "rx_packets": w.rx_packets(), "tx_packets": w.tx_packets(),
                    "drops": drops, "ports": ports,
                    "events": {"arp_replies": e.arp_replies, "vxlan_encap": e.vxlan_encap,
                               "vxlan_decap": e.vxlan_decap, "icmp_time_exceeded": e.icmp_time_exceeded,
                               "icmp_frag_needed": e.icmp_frag_needed},
                    "frames": {"total": w.frames.total, "free": w.frames.free, "fill": w.frames.fill,
                               "tx": w.frames.tx, "user": w.frames.user},
                })
            })
            .collect();
        json!({"generation": self.dp.tables().generation, "workers": workers})
    }
}

impl ApiHandler for NodeHandler {
    fn handle(&self, request: Request) -> Result<Value, String> {
        match request {
            Request::NodeInfo => serde_json::to_value(self.node_info()).map_err(|e| e.to_string()),
            Request::AttachPod(a) => {
                let spec = PodSpec {
                    id: a.id.clone(),
                    ifname: a.ifname.clone(),
                    ip: a.ip,
                    mac: parse_mac(&a.mac).map_err(|e| format!("pod {}: mac: {e}", a.id))?,
                    mtu: a.mtu,
                };
                let port = self
                    .dp
                    .attach_pod(&spec)
                    .map_err(|e| format!("attaching pod {} ({}): {e}", a.id, a.ifname))?;
                tracing::info!(id = %a.id, ifname = %a.ifname, ip = %a.ip, port = port.0, "pod attached");
                serde_json::to_value(Attached {
                    port: port.0,
                    generation: self.dp.tables().generation,
                })
                .map_err(|e| e.to_string())
            }
            Request::DetachPod { id } => {
                let known = self
                    .dp
                    .detach_pod(&id)
                    .map_err(|e| format!("detaching pod {id}: {e}"))?;
                if known {
                    tracing::info!(%id, "pod detached");
                }
                Ok(json!({"detached": known}))
            }
            Request::Inspect { what } => Ok(self.inspect(what)),
            Request::Capture { .. } => Err("a capture is streamed (the server routes it)".into()),
        }
    }

    fn capture(
        &self,
        iface: Option<&str>,
        count: u64,
        seconds: u64,
    ) -> Result<super::server::CaptureWriter, String> {
        let engine = self.dp.engine();
        let ports: Vec<(kxdp_dataplane::PortId, String)> = engine
            .ports()
            .into_iter()
            .map(|p| (p.id, p.ifname))
            .collect();
        let filter = match iface {
            None => None,
            Some(name) => Some(
                ports
                    .iter()
                    .find(|(_, n)| n == name)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| {
                        let names: Vec<&str> = ports.iter().map(|(_, n)| n.as_str()).collect();
                        format!(
                            "--iface {name}: not an engine port (ports: {})",
                            names.join(", ")
                        )
                    })?,
            ),
        };
        let stream = engine.capture(filter);
        tracing::info!(
            iface = iface.unwrap_or("all"),
            count,
            seconds,
            "capture started"
        );
        Ok(Box::new(move |out: &mut dyn std::io::Write| {
            let n = crate::capture::write_pcapng(out, &stream, &ports, count, seconds);
            tracing::info!(frames = n.as_ref().ok(), "capture ended");
            n.map(drop)
        }))
    }
}

impl crate::metrics::MetricsSource for NodeHandler {
    fn render(&self, out: &mut String) {
        crate::metrics::render_engine(self.dp.engine(), out);
        crate::metrics::render_services(self.dp.engine(), out);
    }
}
