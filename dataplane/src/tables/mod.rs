//! The read side of the engine's tables: immutable snapshots swapped atomically.
//!
//! The control plane builds a [`Tables`] value and publishes it through a [`TableHandle`]; a
//! worker loads the current snapshot once per batch, so every packet of a batch sees one
//! version, and the worker never waits for the writer. An old snapshot is freed when the last
//! worker holding it moves on (reference counting via `arc-swap`).
//!
//! Besides routes, ports and tunnels, a version holds the [`Services`] (frontends → backend
//! sets with their Maglev arrays, [`maglev`]), behind an `Arc` so that a publish that does not
//! change them shares them.

mod lpm;
pub mod maglev;
mod services;
mod tunnel;

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

pub use lpm::Lpm4;
pub use services::{
    Backend, BackendSet, BackendSetId, Frontend, FrontendKey, FrontendKind, L4Proto, Services,
    ServicesBuilder, ServicesError, SessionAffinity, SourceNat,
};
pub use tunnel::{TunnelId, TunnelSpec, VXLAN_ENCAP_LEN, VXLAN_OVERHEAD, VxlanTunnel};

use crate::verdict::PortId;

/// Where a route sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Out of an engine port, to a next hop on that link.
    Via(NextHop),
    /// To the host kernel (the node's own addresses), through [`Tables::host`].
    Host,
    /// Drop (a blackhole route).
    Blackhole,
    /// The next hop's MAC is not known yet (the control plane is resolving it): dropped and
    /// counted as `no_neighbour`, never held up.
    Unresolved,
    /// Into a VXLAN tunnel to another node's VTEP (a remote pod CIDR).
    Vxlan(TunnelId),
}

/// A next hop on an engine port, with its Ethernet rewrite precomputed (VPP's "rewrite
/// string"): forwarding writes these 12 bytes over the destination and source MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub port: PortId,
    /// Destination MAC then source MAC, as they go on the wire.
    pub l2: [u8; 12],
}

impl NextHop {
    pub fn new(port: PortId, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Self {
        let mut l2 = [0; 12];
        l2[..6].copy_from_slice(&dst_mac);
        l2[6..].copy_from_slice(&src_mac);
        NextHop { port, l2 }
    }
}

/// What an engine port is attached to; decides which stages its traffic may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortRole {
    /// The node's link to the network: routed IPv4 and the overlay's VXLAN.
    #[default]
    Uplink,
    /// The host end of a pod's veth: one pod, anti-spoofed, answered ARP by proxy.
    Pod,
    /// A veth whose other end is in the host stack (the path of [`Tables::host`]).
    Host,
}

/// The pod behind a [`PortRole::Pod`] port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's address: the only IPv4 source (and ARP sender) accepted from its port.
    pub ip4: Ipv4Addr,
    /// The MAC of the pod's interface.
    pub mac: [u8; 6],
}

/// Per-port facts the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// Largest IP packet (L3 bytes) the port's link carries.
    pub mtu: u16,
    /// What the port is attached to.
    pub role: PortRole,
    /// For a pod port, its pod; `None` on a pod port means no source is accepted yet.
    pub pod: Option<PodInfo>,
}

impl Default for PortInfo {
    fn default() -> Self {
        PortInfo {
            mtu: 1500,
            role: PortRole::Uplink,
            pod: None,
        }
    }
}

impl PortInfo {
    /// A pod port with the default MTU.
    pub fn pod(ip4: Ipv4Addr, mac: [u8; 6]) -> Self {
        PortInfo {
            role: PortRole::Pod,
            pod: Some(PodInfo { ip4, mac }),
            ..PortInfo::default()
        }
    }

    /// A port of the given role with the default MTU.
    pub fn with_role(role: PortRole) -> Self {
        PortInfo {
            role,
            ..PortInfo::default()
        }
    }
}

/// This node's end of the VXLAN overlay (flannel's `flannel.1`): what decapsulation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    /// Our VTEP address (the node IP on the uplink): the outer destination we decapsulate.
    pub local_ip: Ipv4Addr,
    /// The overlay's VNI (flannel: 1).
    pub vni: u32,
    /// UDP destination port (flannel: 8472, the Linux default; IANA: 4789).
    pub port: u16,
    /// Our VTEP MAC: the inner destination MAC peers put on the frames they send us.
    pub vtep_mac: [u8; 6],
    /// The port VXLAN arrives on.
    pub uplink: PortId,
}

/// One immutable version of everything the data path looks up.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Increases with every publish; shown in metrics and `kxdp inspect`.
    pub generation: u64,
    /// IPv4 routes.
    pub routes4: Lpm4<Route>,
    /// Indexed by [`PortId`]; a port without an entry uses the defaults.
    pub ports: Vec<PortInfo>,
    /// Indexed by [`TunnelId`]; each holds its precomputed encapsulation header.
    pub tunnels: Vec<VxlanTunnel>,
    /// Our VTEP; `None` when the node has no overlay (VXLAN then goes to the host like any UDP).
    pub overlay: Option<Overlay>,
    /// The path to the host kernel: a veth whose other end is in the host stack. `None`: the
    /// packets of [`Route::Host`] get [`Verdict::ToHost`](crate::Verdict::ToHost).
    pub host: Option<NextHop>,
    /// The MAC the engine uses toward pods and the host port, and answers ARP with.
    pub router_mac: [u8; 6],
    /// Source address of the ICMP errors the engine sends (the node IP); `None`: send none.
    pub router_ip4: Option<Ipv4Addr>,
    /// Service frontends and their backends (load balancing); shared between versions that
    /// do not change them.
    pub services: Arc<Services>,
}

impl Tables {
    /// Add an IPv4 route (builder style, for tests and the compiler).
    pub fn with_route4(mut self, net: Ipv4Addr, len: u8, route: Route) -> Self {
        self.routes4.insert(net, len, route);
        self
    }

    /// Set a port's facts, growing [`ports`](Self::ports) with defaults as needed.
    pub fn with_port(mut self, port: PortId, info: PortInfo) -> Self {
        if self.ports.len() <= port.index() {
            self.ports.resize(port.index() + 1, PortInfo::default());
        }
        self.ports[port.index()] = info;
        self
    }

    /// Add a tunnel, precomputing its header; returns its id for [`Route::Vxlan`].
    pub fn add_tunnel(&mut self, spec: &TunnelSpec) -> TunnelId {
        // A table holds far fewer than 2^32 tunnels (one per remote node).
        let id = TunnelId(self.tunnels.len() as u32);
        self.tunnels.push(VxlanTunnel::new(spec));
        id
    }

    /// Builder form of [`add_tunnel`](Self::add_tunnel).
    pub fn with_tunnel(mut self, spec: &TunnelSpec) -> (Self, TunnelId) {
        let id = self.add_tunnel(spec);
        (self, id)
    }

    pub fn with_overlay(mut self, overlay: Overlay) -> Self {
        self.overlay = Some(overlay);
        self
    }

    pub fn with_host(mut self, host: NextHop) -> Self {
        self.host = Some(host);
        self
    }

    /// Set the engine's own MAC and (optionally) the source of its ICMP errors.
    pub fn with_router(mut self, mac: [u8; 6], ip4: Option<Ipv4Addr>) -> Self {
        self.router_mac = mac;
        self.router_ip4 = ip4;
        self
    }

    /// Set the services (builder style).
    pub fn with_services(mut self, services: Services) -> Self {
        self.services = Arc::new(services);
        self
    }

    #[inline]
    pub fn port(&self, port: PortId) -> PortInfo {
        self.ports.get(port.index()).copied().unwrap_or_default()
    }

    #[inline]
    pub fn tunnel(&self, id: TunnelId) -> Option<&VxlanTunnel> {
        self.tunnels.get(id.index())
    }
}

/// The publish point shared by the control plane (one writer) and the workers (readers).
#[derive(Debug)]
pub struct TableHandle {
    current: ArcSwap<Tables>,
}

/// A loaded snapshot; hold it for one batch.
pub type TablesGuard = Guard<Arc<Tables>>;

impl TableHandle {
    pub fn new(initial: Tables) -> Self {
        TableHandle {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// Load the current snapshot (lock-free, wait-free for readers in the common case).
    #[inline]
    pub fn load(&self) -> TablesGuard {
        self.current.load()
    }

    /// Publish a new version; its generation is set to one more than the current one.
    pub fn publish(&self, mut tables: Tables) -> u64 {
        let generation = self.current.load().generation + 1;
        tables.generation = generation;
        self.current.store(Arc::new(tables));
        generation
    }

    /// The current snapshot as an owned Arc (for inspection, not for the hot path).
    pub fn snapshot(&self) -> Arc<Tables> {
        self.current.load_full()
    }
}
