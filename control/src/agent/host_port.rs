//! The host port: the veth pair through which the node's own kernel reaches pods (and, through
//! the engine, pods on other nodes), and the kernel routes that send pod traffic into it.
//!
//! ```text
//!   kernel ── kxdp0 (gateway/32, e.g. 10.244.1.1) ════ kxdp0e ── engine
//!             ip route <every pod CIDR of the cluster> dev kxdp0
//! ```
//!
//! The routes have no next hop: the kernel ARPs on `kxdp0` for each pod address and the engine
//! answers with its router MAC, so the same routes serve local pods and remote nodes' pods.
//! `kxdp0` holds the pods' gateway address (as flannel's `cni0` does): pods reach the node
//! through it, and it is the source of what the node sends to pods.
//!
//! Deleting `kxdp0` deletes both ends and every route through it. A SIGKILLed agent cannot do
//! that, so a leftover pair is deleted and made afresh at the next start.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;

use crate::netlink::{Ipv4Conf, LinkId, MacAddr, Netlink, Route, VethConfig};
use crate::overlay::Ipv4Net;

/// The kernel's end.
pub const HOST_IF: &str = "kxdp0";
/// The engine's end.
pub const ENGINE_IF: &str = "kxdp0e";
/// Fixed, locally administered MACs: they never leave the node, and fixed ones read well in a
/// capture (the same as the test harness's).
const HOST_MAC: MacAddr = [0x02, 0x6b, 0x78, 0, 0, 0x01];
const ENGINE_MAC: MacAddr = [0x02, 0x6b, 0x78, 0, 0, 0x02];

/// The pair, its address and the routes this agent added. Dropping it removes them.
pub struct HostPort {
    nl: Netlink,
    ifindex: u32,
    routes: BTreeSet<Ipv4Net>,
    removed: bool,
}

impl std::fmt::Debug for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPort")
            .field("ifindex", &self.ifindex)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl HostPort {
    /// Create the pair (replacing a leftover one) with `queues` queues per end (one per
    /// worker), MTU `mtu`, `gateway`/32 on `kxdp0`, both ends up; set the sysctls the host
    /// path needs.
    pub fn create(mtu: u32, queues: u32, gateway: Ipv4Addr) -> anyhow::Result<HostPort> {
        let mut nl = Netlink::open().context("opening rtnetlink")?;
        for name in [HOST_IF, ENGINE_IF] {
            if nl.find_link(name)?.is_some() {
                tracing::warn!(
                    "{name} exists (left by an agent that was killed?): deleting it and its routes"
                );
                nl.delete_link(name)?;
            }
        }
        nl.create_veth(
            &VethConfig::new(HOST_IF, ENGINE_IF)
                .mtu(mtu)
                .queues(queues.max(1))
                .mac(HOST_MAC)
                .peer_mac(ENGINE_MAC),
            None,
        )?;
        let ifindex = nl.link(HOST_IF)?.index;
        // From here on, dropping `port` deletes the pair again.
        let mut port = HostPort {
            nl,
            ifindex,
            routes: BTreeSet::new(),
            removed: false,
        };
        tx_checksum_off(HOST_IF);
        tx_checksum_off(ENGINE_IF);
        port.nl.add_address(HOST_IF, IpAddr::V4(gateway), 32)?;
        set_sysctls(&mut port.nl)?;
        port.nl.set_link_up(ENGINE_IF)?;
        port.nl.set_link_up(HOST_IF)?;
        Ok(port)
    }

    /// Make the routes via `kxdp0` exactly `wanted`: add the new ones, delete the gone ones.
    /// A route that fails is logged and retried at the next sync.
    pub fn sync_routes(&mut self, wanted: &BTreeSet<Ipv4Net>) {
        let gone: Vec<Ipv4Net> = self.routes.difference(wanted).copied().collect();
        for net in gone {
            match self.nl.delete_route(&self.route(net)) {
                Ok(()) => tracing::info!("route {net} dev {HOST_IF} removed"),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            }
            self.routes.remove(&net);
        }
        let new: Vec<Ipv4Net> = wanted.difference(&self.routes).copied().collect();
        for net in new {
            match self.nl.replace_route(&self.route(net)) {
                Ok(()) => {
                    tracing::info!("route {net} dev {HOST_IF} added");
                    self.routes.insert(net);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// The routes in place now.
    pub fn routes(&self) -> &BTreeSet<Ipv4Net> {
        &self.routes
    }

    fn route(&self, net: Ipv4Net) -> Route {
        Route::new(IpAddr::V4(net.addr()), net.len()).dev(self.ifindex)
    }

    /// Delete the routes, then the pair.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> anyhow::Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        self.sync_routes(&BTreeSet::new());
        match self.nl.delete_link(LinkId::Index(self.ifindex)) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for HostPort {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            tracing::warn!("removing {HOST_IF}: {e:#}");
        }
    }
}

/// Forwarding on; reverse-path filtering off on `kxdp0` and for `all` (the kernel uses the
/// stricter of the two): replies from remote pods reach the host on `kxdp0` while, as far as
/// the kernel's tables know, their sources may also be reachable through the uplink.
/// `accept_local` on `kxdp0`: the engine hands the kernel packets from the node's own address
/// to route out of the node (replies to NodePort clients, source-translated flows,
/// masqueraded pod traffic); without it the kernel drops them as martians.
///
/// `kxdp0`'s settings go through rtnetlink, the node-wide ones through `/proc/sys` (which
/// shows the namespace of the task that opens it: the agent runs in the node's namespace).
/// In a container `/proc/sys` is read-only: a node-wide value that is already right (the
/// DaemonSet's privileged init container sets them) is fine, a wrong one is an error naming it.
/// They are left as they are at exit (a node with pods forwards anyway; turning forwarding off
/// would cut other components).
fn set_sysctls(nl: &mut Netlink) -> anyhow::Result<()> {
    nl.set_ipv4_conf(
        HOST_IF,
        &[(Ipv4Conf::RpFilter, 0), (Ipv4Conf::AcceptLocal, 1)],
    )?;
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
    ] {
        let path = format!("/proc/sys/{key}");
        if let Err(e) = std::fs::write(&path, value) {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current.trim() != value {
                return Err(e).with_context(|| {
                    format!(
                        "writing {value} to {path} (it is {:?}; set it on the host, e.g. in a privileged init container)",
                        current.trim()
                    )
                });
            }
        }
    }
    Ok(())
}

/// TX checksum offload off (`ethtool -K <if> tx off`), best effort. With it on, what the
/// kernel sends out of `kxdp0` (TCP/UDP from the node to pods and services) leaves with a
/// partial checksum that only a NIC would finish; the engine forwards frames as they are, so a
/// pod or a remote node would drop them. ICMP is always checksummed in software.
fn tx_checksum_off(ifname: &str) {
    if let Err(e) = af_xdp::set_tx_checksum_offload(ifname, false) {
        tracing::warn!(
            "turning TX checksum offload off on {ifname}: {e}; TCP/UDP from this node to pods may carry bad checksums"
        );
    }
}
