//! [`NodeDataplane`]: the engine running one node's overlay.
//!
//! Owns the engine (uplink in by-destination mode, the host port and every pod port in
//! all-frames mode), the desired [`OverlayState`], and a resolver thread that keeps the
//! underlay next hops' MACs from the kernel's neighbour table. Every change — a pod attached
//! or detached, the set of remote nodes, a neighbour resolved or changed — recompiles the
//! state and publishes a new table snapshot; workers pick it up at their next batch.
//!
//! Steering on the uplink: the node IP only for UDP to the VXLAN port (everything else to the
//! node IP stays with the kernel: SSH, kubelet, ARP), and the whole pod CIDR (packets routed
//! to our pods directly by underlay-mode peers).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use af_xdp::bpf::{DstKind, SteerMode};
use kxdp_dataplane::{Engine, EngineConfig, PortConfig, PortId, StopReport, TableHandle, Tables};

use super::compile::compile;
use super::model::{
    HostPort, Ipv4Net, LocalNode, OverlayMode, OverlayState, PodAttachment, RemoteNode, UplinkPort,
};
use crate::netlink::{LinkId, NeighbourResolver, Netlink};

/// The MAC pods and the host see as their gateway's (Calico's choice: easy to recognise in a
/// capture, locally administered, unicast).
pub const DEFAULT_ROUTER_MAC: [u8; 6] = [0xee; 6];

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub uplink: String,
    /// The host-port veth pair (engine end, kernel end), already created and up.
    pub host_port: Option<(String, String)>,
    pub pod_cidr: Ipv4Net,
    /// Our VtepMAC; default derived from the node IP (`0e:6b:` + the four octets), so it is
    /// stable across restarts as flannel's persisted MAC is.
    pub vtep_mac: Option<[u8; 6]>,
    pub router_mac: [u8; 6],
    pub vni: u32,
    pub vxlan_port: u16,
    pub mode: OverlayMode,
    /// Workers, XDP mode, UMEM and socket sizes; its `ports` are ignored.
    pub engine: EngineConfig,
}

impl NodeConfig {
    pub fn new(name: &str, uplink: &str, pod_cidr: Ipv4Net) -> Self {
        NodeConfig {
            name: name.to_string(),
            uplink: uplink.to_string(),
            host_port: None,
            pod_cidr,
            vtep_mac: None,
            router_mac: DEFAULT_ROUTER_MAC,
            vni: 1,
            vxlan_port: 8472,
            mode: OverlayMode::Vxlan,
            engine: EngineConfig::default(),
        }
    }
}

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Netlink(#[from] crate::netlink::Error),
    #[error(transparent)]
    Engine(#[from] kxdp_dataplane::EngineError),
    /// The node's configuration or an object is unusable; the message names it.
    #[error("{0}")]
    Config(String),
}

/// A pod to attach (what `kxdp-cni` registers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub id: String,
    /// Host-side interface of the pod's veth.
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub mtu: u16,
}

struct Shared {
    state: Mutex<OverlayState>,
    tables: Arc<TableHandle>,
    /// Bumped when the set of remote nodes changes: the resolver re-reads its targets.
    targets: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, OverlayState> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters (every write replaces whole entries), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: &OverlayState) -> u64 {
        let (tables, report) = compile(state);
        for (node, why) in &report.skipped {
            tracing::warn!(node = %node, "node skipped: {why}");
        }
        if !report.unresolved.is_empty() {
            tracing::debug!(unresolved = ?report.unresolved, "next hops without a MAC yet");
        }
        self.tables.publish(tables)
    }
}

/// A running node dataplane. Stop it with [`NodeDataplane::stop`]; dropping it also stops the
/// engine and detaches everything.
pub struct NodeDataplane {
    // Field order is drop order: the resolver stops before the engine.
    resolver: ResolverThread,
    engine: Engine,
    shared: Arc<Shared>,
}

/// Stops and joins the resolver thread when dropped.
struct ResolverThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for ResolverThread {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for NodeDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDataplane")
            .field("local", &self.shared.lock().local)
            .finish_non_exhaustive()
    }
}

impl NodeDataplane {
    /// Start the engine on the uplink and the host port, in the calling thread's network
    /// namespace, and publish the first tables.
    pub fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        let mut nl = Netlink::open()?;
        let uplink = nl.link(LinkId::Name(cfg.uplink.clone()))?;
        let addr = nl
            .addresses(Some(LinkId::Index(uplink.index)))?
            .into_iter()
            .find_map(|a| match a.address {
                std::net::IpAddr::V4(ip) if a.scope == 0 => Some((ip, a.prefix_len)),
                _ => None,
            })
            .ok_or_else(|| NodeError::Config(format!("uplink {}: no IPv4 address", cfg.uplink)))?;
        let node_ip = addr.0;
        let subnet = Ipv4Net::new(addr.0, addr.1)
            .map_err(|e| NodeError::Config(format!("uplink {}: {e}", cfg.uplink)))?;
        let uplink_mac = uplink
            .mac
            .ok_or_else(|| NodeError::Config(format!("uplink {}: no MAC", cfg.uplink)))?;
        let host_kernel = match &cfg.host_port {
            Some((_, kernel)) => Some(nl.link(LinkId::Name(kernel.clone()))?),
            None => None,
        };

        let mut ecfg = cfg.engine.clone();
        ecfg.ports = vec![PortConfig {
            ifname: cfg.uplink.clone(),
            steer: SteerMode::ByDestination,
        }];
        if let Some((engine_end, _)) = &cfg.host_port {
            ecfg.ports.push(PortConfig {
                ifname: engine_end.clone(),
                steer: SteerMode::All,
            });
        }
        let tables = Arc::new(TableHandle::new(Tables::default()));
        let engine = Engine::start(ecfg, Arc::clone(&tables))?;
        engine.own_prefix(node_ip, 32, DstKind::PortsOnly)?;
        engine
            .steering()
            .add_port(libc::IPPROTO_UDP as u8, cfg.vxlan_port)
            .map_err(kxdp_dataplane::EngineError::from)?;
        engine.own_prefix(cfg.pod_cidr.addr(), cfg.pod_cidr.len(), DstKind::All)?;

        let o = node_ip.octets();
        let local = LocalNode {
            name: cfg.name.clone(),
            ip: node_ip,
            subnet,
            pod_cidr: cfg.pod_cidr,
            vtep_mac: cfg.vtep_mac.unwrap_or([0x0e, 0x6b, o[0], o[1], o[2], o[3]]),
            router_mac: cfg.router_mac,
            vni: cfg.vni,
            vxlan_port: cfg.vxlan_port,
            mode: cfg.mode,
            uplink: UplinkPort {
                port: PortId(0),
                mac: uplink_mac,
                mtu: clamp_mtu(uplink.mtu),
            },
            host: host_kernel.map(|k| HostPort {
                port: PortId(1),
                kernel_mac: k.mac.unwrap_or([0; 6]),
                mtu: clamp_mtu(k.mtu),
            }),
        };
        let state = OverlayState::new(local);
        let shared = Arc::new(Shared {
            tables,
            targets: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            state: Mutex::new(state),
        });
        shared.publish(&shared.lock());

        // The resolver's socket must live in this namespace: open it here, then hand it over.
        let resolver = NeighbourResolver::subscribed(Netlink::open()?)?;
        let s = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("kxdp-neigh".into())
            .spawn(move || resolve_loop(resolver, &s))
            .map_err(|e| NodeError::Config(format!("spawning the resolver thread: {e}")))?;
        Ok(NodeDataplane {
            resolver: ResolverThread {
                shared: Arc::clone(&shared),
                handle: Some(handle),
            },
            engine,
            shared,
        })
    }

    /// This node as compiled (VtepMAC, IP, ports).
    pub fn local(&self) -> LocalNode {
        self.shared.lock().local.clone()
    }

    /// A copy of the whole desired state (for inspection).
    pub fn state(&self) -> OverlayState {
        self.shared.lock().clone()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn tables(&self) -> Arc<Tables> {
        self.shared.tables.snapshot()
    }

    /// Replace the set of remote nodes (from Node objects).
    pub fn set_remotes(&self, remotes: Vec<RemoteNode>) {
        let mut st = self.shared.lock();
        st.remotes = remotes.into_iter().map(|r| (r.name.clone(), r)).collect();
        self.shared.targets.fetch_add(1, Ordering::Release);
        self.shared.publish(&st);
    }

    /// Replace the service tables (from the services compiler); published with the overlay.
    pub fn set_services(&self, services: Arc<kxdp_dataplane::tables::Services>) -> u64 {
        let mut st = self.shared.lock();
        st.services = services;
        self.shared.publish(&st)
    }

    /// Attach a pod: take over its host-side veth and route its IP to it.
    pub fn attach_pod(&self, pod: &PodSpec) -> Result<PortId, NodeError> {
        if !self.shared.lock().local.pod_cidr.contains(pod.ip) {
            return Err(NodeError::Config(format!(
                "pod {}: address {} is outside this node's pod CIDR",
                pod.id, pod.ip
            )));
        }
        if self.shared.lock().pods.contains_key(&pod.id) {
            self.detach_pod(&pod.id)?;
        }
        let port = self.engine.add_port(&PortConfig {
            ifname: pod.ifname.clone(),
            steer: SteerMode::All,
        })?;
        let mut st = self.shared.lock();
        st.pods.insert(
            pod.id.clone(),
            PodAttachment {
                id: pod.id.clone(),
                ip: pod.ip,
                mac: pod.mac,
                ifname: pod.ifname.clone(),
                port: port.id,
                mtu: pod.mtu,
            },
        );
        self.shared.publish(&st);
        Ok(port.id)
    }

    /// Detach a pod; false if it was not attached. Its route goes first, then its port.
    pub fn detach_pod(&self, id: &str) -> Result<bool, NodeError> {
        let port = {
            let mut st = self.shared.lock();
            let Some(pod) = st.pods.remove(id) else {
                return Ok(false);
            };
            self.shared.publish(&st);
            pod.port
        };
        self.engine.remove_port(port)?;
        Ok(true)
    }

    /// Recompile and publish now (e.g. after the engine's ports changed behind our back).
    pub fn publish(&self) -> u64 {
        self.shared.publish(&self.shared.lock())
    }

    /// Wait until every remote node has a resolved next hop (tests, start-up).
    pub fn wait_resolved(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            {
                let st = self.shared.lock();
                if st
                    .wanted_neighbours()
                    .iter()
                    .all(|ip| st.neighbours.contains_key(ip))
                {
                    return true;
                }
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the resolver (deleting the neighbour entries it made) and the engine.
    pub fn stop(self) -> StopReport {
        let NodeDataplane {
            resolver, engine, ..
        } = self;
        drop(resolver);
        engine.stop()
    }
}

fn clamp_mtu(mtu: u32) -> u16 {
    mtu.min(u32::from(u16::MAX)) as u16
}

/// The resolver thread: follow the remote nodes' next hops in the kernel's neighbour table
/// and republish when a MAC appears or changes.
fn resolve_loop(mut resolver: NeighbourResolver, shared: &Shared) {
    let mut seen_targets = u64::MAX;
    while !shared.stop.load(Ordering::Acquire) {
        let generation = shared.targets.load(Ordering::Acquire);
        let mut changed = false;
        if generation != seen_targets {
            seen_targets = generation;
            let wanted = shared.lock().wanted_neighbours();
            if let Err(e) = resolver.set_targets(wanted) {
                tracing::warn!("neighbour resolver: {e}");
            }
            changed = true;
        }
        match resolver.poll(Duration::from_millis(100)) {
            Ok(c) => changed |= c,
            Err(e) => {
                tracing::warn!("neighbour resolver: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if changed {
            let mut st = shared.lock();
            let resolved: std::collections::HashMap<Ipv4Addr, [u8; 6]> = resolver
                .resolved()
                .iter()
                .map(|(ip, hop)| (*ip, hop.mac))
                .collect();
            if resolved != st.neighbours {
                st.neighbours = resolved;
                shared.publish(&st);
            }
        }
    }
    if let Err(e) = resolver.release() {
        tracing::warn!("releasing neighbour entries: {e}");
    }
}
