//! The read side of the engine's tables: immutable snapshots swapped atomically.
//!
//! The control plane builds a [`Tables`] value and publishes it through a [`TableHandle`]; a
//! worker loads the current snapshot once per batch, so every packet of a batch sees one
//! version, and the worker never waits for the writer. An old snapshot is freed when the last
//! worker holding it moves on (reference counting via `arc-swap`).

mod lpm;

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

pub use lpm::Lpm4;

use crate::verdict::PortId;

/// Where a route sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Out of an engine port, to a next hop on that link.
    Via(NextHop),
    /// To the host kernel (the node's own addresses).
    Host,
    /// Drop (a blackhole route).
    Blackhole,
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

/// Per-port facts the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// Largest IP packet (L3 bytes) the port's link carries.
    pub mtu: u16,
}

impl Default for PortInfo {
    fn default() -> Self {
        PortInfo { mtu: 1500 }
    }
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
}

impl Tables {
    /// Add an IPv4 route (builder style, for tests and the compiler).
    pub fn with_route4(mut self, net: Ipv4Addr, len: u8, route: Route) -> Self {
        self.routes4.insert(net, len, route);
        self
    }

    #[inline]
    pub fn port(&self, port: PortId) -> PortInfo {
        self.ports.get(port.index()).copied().unwrap_or_default()
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
