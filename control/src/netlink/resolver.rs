//! [`NeighbourResolver`]: the MAC addresses of the underlay next hops, from the kernel.
//!
//! Design: the engine does not speak ARP. The XDP steering program passes ARP to the kernel,
//! so the kernel's neighbour table on the uplink stays authoritative, and the engine only
//! reads it. For each remote VTEP the resolver asks the kernel which route the outer packet
//! takes (RTM_GETROUTE): a remote node on the same L2 is its own next hop, one behind a
//! router is reached through the gateway. It then makes sure the next hop has a *managed*
//! neighbour entry (NTF_EXT_MANAGED, kernel 5.16+), which the kernel resolves and keeps
//! resolved without traffic, since the engine's frames bypass the kernel and would never
//! refresh an ordinary entry. Changes arrive as RTNLGRP_NEIGH notifications (and route changes
//! as RTNLGRP_IPV4_ROUTE, which re-run the route lookups), so the agent's control loop reads
//! a small map and compiles it into encap templates: no syscall on the packet path, no polling
//! of the whole table.
//!
//! The resolver is synchronous and owns its socket. The agent calls [`NeighbourResolver::poll`]
//! from its control loop (a thread, or an event loop that watches [`AsFd`]), then publishes
//! the map when `poll` says it changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::error::{Error, Result};
use super::link::{LinkId, MacAddr};
use super::neighbour::{Neighbour, NudState};
use super::route::RouteType;
use super::socket::Netlink;
use super::wire::{Messages, kind};

/// `RTMGRP_NEIGH`: the legacy bind mask of RTNLGRP_NEIGH (group 3).
const RTMGRP_NEIGH: u32 = 1 << (3 - 1);
/// `RTMGRP_IPV4_ROUTE`: the legacy bind mask of RTNLGRP_IPV4_ROUTE (group 7).
const RTMGRP_IPV4_ROUTE: u32 = 1 << (7 - 1);

/// Where packets to a target go next, once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// The interface the kernel routes the target through.
    pub ifindex: u32,
    /// The target itself when on-link, otherwise the gateway.
    pub neighbour: Ipv4Addr,
    /// The neighbour's MAC: the destination MAC of frames to the target.
    pub mac: MacAddr,
}

/// A neighbour entry: (interface index, IPv4 address).
type Key = (u32, Ipv4Addr);

/// Keeps managed neighbour entries for a set of next hops and tracks their MACs.
#[derive(Debug)]
pub struct NeighbourResolver {
    netlink: Netlink,
    subscribed: bool,
    /// Target → the neighbour entry that resolves it (None: no usable route right now).
    targets: BTreeMap<Ipv4Addr, Option<Key>>,
    /// The kernel's entries for the neighbours in `targets`, as last seen.
    entries: HashMap<Key, Neighbour>,
    /// Entries this resolver created or converted to managed; removed when no longer needed.
    owned: BTreeSet<Key>,
    resolved: BTreeMap<Ipv4Addr, NextHop>,
    /// Something happened that events cannot describe: dump and re-ensure on the next poll.
    resync: bool,
    /// A route changed: look the targets up again on the next poll.
    reroute: bool,
}

impl NeighbourResolver {
    /// A resolver that re-reads the neighbour table on every [`poll`](Self::poll).
    pub fn new(netlink: Netlink) -> Self {
        NeighbourResolver {
            netlink,
            subscribed: false,
            targets: BTreeMap::new(),
            entries: HashMap::new(),
            owned: BTreeSet::new(),
            resolved: BTreeMap::new(),
            resync: false,
            reroute: false,
        }
    }

    /// A resolver that learns changes from neighbour and IPv4 route notifications; `poll`
    /// then costs nothing while nothing changes. `netlink` must be used by nothing else.
    pub fn subscribed(mut netlink: Netlink) -> Result<Self> {
        netlink.subscribe(RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE)?;
        let mut resolver = NeighbourResolver::new(netlink);
        resolver.subscribed = true;
        Ok(resolver)
    }

    /// Sets the addresses to resolve (the remote nodes' underlay IPs), looks up their routes
    /// and makes sure each next hop has a managed entry. Entries this resolver created for
    /// next hops no longer needed are deleted. A target without a usable route stays
    /// unresolved (and is logged) until a route appears.
    pub fn set_targets(&mut self, targets: impl IntoIterator<Item = Ipv4Addr>) -> Result<()> {
        self.targets = targets.into_iter().map(|t| (t, None)).collect();
        self.reroute = true;
        self.update(Duration::ZERO)?;
        Ok(())
    }

    /// Brings the map up to date and returns true if [`resolved`](Self::resolved) changed.
    /// A subscribed resolver first waits up to `wait` for a notification (give zero to only
    /// take what is queued); an unsubscribed one ignores `wait` and re-reads the table.
    pub fn poll(&mut self, wait: Duration) -> Result<bool> {
        if !self.subscribed {
            self.resync = true;
        }
        self.update(wait)
    }

    /// Target → next hop, for the targets whose neighbour is REACHABLE, STALE, DELAY, PROBE
    /// or PERMANENT.
    pub fn resolved(&self) -> &BTreeMap<Ipv4Addr, NextHop> {
        &self.resolved
    }

    /// The MAC to send to `target` with, if resolved.
    pub fn mac(&self, target: Ipv4Addr) -> Option<MacAddr> {
        self.resolved.get(&target).map(|hop| hop.mac)
    }

    /// Targets without a usable next hop yet.
    pub fn unresolved(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.targets
            .keys()
            .copied()
            .filter(|t| !self.resolved.contains_key(t))
    }

    /// Deletes the managed entries this resolver created (agent shutdown). Entries that are
    /// already gone are fine.
    pub fn release(&mut self) -> Result<()> {
        self.targets.clear();
        self.remove_unneeded()?;
        self.resolved.clear();
        Ok(())
    }

    fn update(&mut self, wait: Duration) -> Result<bool> {
        if self.subscribed {
            self.apply_events(wait)?;
        }
        if self.reroute {
            self.reroute = false;
            self.route_targets()?;
            self.resync = true;
        }
        if self.resync {
            self.resync = false;
            self.dump_entries()?;
            self.ensure_managed()?;
            self.remove_unneeded()?;
        }
        Ok(self.recompute())
    }

    /// Looks up the route to every target: on-link targets are their own neighbour.
    fn route_targets(&mut self) -> Result<()> {
        let targets: Vec<Ipv4Addr> = self.targets.keys().copied().collect();
        for target in targets {
            let hop = match self.netlink.route_get(IpAddr::V4(target)) {
                Ok(route) => match (route.route_type, route.oif, route.gateway) {
                    (RouteType::Unicast, Some(oif), Some(IpAddr::V4(gateway))) => {
                        Some((oif, gateway))
                    }
                    (RouteType::Unicast, Some(oif), None) => Some((oif, target)),
                    _ => {
                        tracing::warn!(%target, ?route, "next hop: route is not a unicast route out of an interface");
                        None
                    }
                },
                Err(e @ (Error::Socket { .. } | Error::Timeout { .. })) => return Err(e),
                Err(e) => {
                    tracing::warn!(%target, "next hop: {e}");
                    None
                }
            };
            self.targets.insert(target, hop);
        }
        Ok(())
    }

    fn needed(&self) -> BTreeSet<Key> {
        self.targets.values().flatten().copied().collect()
    }

    fn dump_entries(&mut self) -> Result<()> {
        let needed = self.needed();
        self.entries = self
            .netlink
            .neighbours(None)?
            .into_iter()
            .filter_map(|n| match n.ip {
                IpAddr::V4(ip) if needed.contains(&(n.ifindex, ip)) => Some(((n.ifindex, ip), n)),
                _ => None,
            })
            .collect();
        Ok(())
    }

    /// Creates (or converts) a managed entry for every needed neighbour that lacks one.
    /// PERMANENT entries are the operator's and already resolved: left alone.
    fn ensure_managed(&mut self) -> Result<()> {
        let mut changed = false;
        for key @ (ifindex, ip) in self.needed() {
            let known_mac = match self.entries.get(&key) {
                Some(n) if n.is_managed() || n.state.contains(NudState::PERMANENT) => continue,
                Some(n) if n.is_resolved() => n.mac,
                _ => None,
            };
            self.netlink
                .managed_neighbour(LinkId::Index(ifindex), IpAddr::V4(ip), known_mac)?;
            self.owned.insert(key);
            changed = true;
        }
        if changed {
            // Read back what the kernel made of them (a converted entry keeps its MAC).
            self.dump_entries()?;
        }
        Ok(())
    }

    fn remove_unneeded(&mut self) -> Result<()> {
        let needed = self.needed();
        let unneeded: Vec<Key> = self.owned.difference(&needed).copied().collect();
        for key @ (ifindex, ip) in unneeded {
            match self.netlink.delete_neighbour(ifindex, IpAddr::V4(ip)) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            self.owned.remove(&key);
            self.entries.remove(&key);
        }
        Ok(())
    }

    /// Applies queued notifications to `entries`; flags a resync or a re-route when needed.
    fn apply_events(&mut self, wait: Duration) -> Result<()> {
        let mut datagrams = Vec::new();
        if self.netlink.recv_events(wait, &mut datagrams)? {
            tracing::debug!("neighbour notifications lost; re-reading the table");
            self.resync = true;
        }
        let needed = self.needed();
        for datagram in &datagrams {
            for message in Messages::new(datagram).flatten() {
                match message.kind {
                    kind::RTM_NEWROUTE | kind::RTM_DELROUTE => self.reroute = true,
                    kind::RTM_NEWNEIGH | kind::RTM_DELNEIGH => {
                        // Other families (bridge FDB) do not parse as IP neighbours: skip.
                        let Ok(n) = Neighbour::parse(message.payload) else {
                            continue;
                        };
                        let IpAddr::V4(ip) = n.ip else { continue };
                        let key = (n.ifindex, ip);
                        if !needed.contains(&key) {
                            continue;
                        }
                        if message.kind == kind::RTM_DELNEIGH {
                            // Someone flushed it: put the managed entry back.
                            self.entries.remove(&key);
                            self.resync = true;
                        } else {
                            self.entries.insert(key, n);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Rebuilds `resolved`; true if it changed.
    fn recompute(&mut self) -> bool {
        let resolved: BTreeMap<Ipv4Addr, NextHop> = self
            .targets
            .iter()
            .filter_map(|(&target, hop)| {
                let key @ (ifindex, neighbour) = (*hop)?;
                let entry = self.entries.get(&key).filter(|n| n.is_resolved())?;
                Some((
                    target,
                    NextHop {
                        ifindex,
                        neighbour,
                        mac: entry.mac?,
                    },
                ))
            })
            .collect();
        let changed = resolved != self.resolved;
        self.resolved = resolved;
        changed
    }
}

impl AsFd for NeighbourResolver {
    /// Readable when notifications wait (subscribed resolvers): call [`poll`] with zero wait.
    ///
    /// [`poll`]: NeighbourResolver::poll
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.netlink.as_fd()
    }
}
