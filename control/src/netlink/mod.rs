//! A small synchronous rtnetlink client (links, addresses, routes, neighbours), written on
//! nix's socket API without unsafe code and without the rtnetlink crates.
//!
//! Module map:
//! - [`wire`]: message and attribute encoding/decoding, the family headers (no I/O).
//! - `socket`: [`Netlink`], the socket: requests, ACKs, dumps, notifications, namespaces.
//! - `link`: veth pairs, up/down, MTU, MAC, netns moves, lookup ([`LinkInfo`]).
//! - `address`: interface addresses ([`AddressInfo`]).
//! - `route`: routes and `ip route get` ([`Route`]).
//! - `neighbour`: permanent and kernel-managed neighbour entries ([`Neighbour`]).
//! - `bridge`: bridges and their ports ([`BridgeConfig`], [`Netlink::set_master`]).
//! - `vxlan`: kernel VXLAN devices and their FDB, as flannel sets them up ([`VxlanConfig`]).
//! - `resolver`: [`NeighbourResolver`], the underlay next hops' MACs for the engine.
//! - `error`: [`Error`], naming the operation and object of every failure.
//!
//! Users: the agent (next-hop MACs, the engine's host veth), `kxdp-cni` (pod veth, address,
//! route, MTU inside the pod's namespace), the benchmark and `kxdp demo` (topology without
//! `ip`).
//!
//! Every request runs in the namespace the socket was opened in: [`Netlink::open`] for the
//! calling thread's, [`Netlink::open_in`] for another one given as a namespace fd.
//!
//! ```no_run
//! # fn main() -> Result<(), kxdp_control::netlink::Error> {
//! use kxdp_control::netlink::{Netlink, VethConfig};
//! let mut nl = Netlink::open()?;
//! nl.create_veth(&VethConfig::new("kxdp0", "kxdp1").queues(2).mtu(1450), None)?;
//! nl.set_link_up("kxdp0")?;
//! nl.add_address("kxdp0", "10.99.0.1".parse().unwrap(), 24)?;
//! # Ok(())
//! # }
//! ```

mod address;
mod bridge;
mod error;
mod link;
mod neighbour;
mod resolver;
mod route;
mod socket;
mod vxlan;
pub mod wire;

pub use address::AddressInfo;
pub use bridge::BridgeConfig;
pub use error::{Error, Result};
pub use link::{IFF_LOWER_UP, IFF_UP, Ipv4Conf, LinkId, LinkInfo, MacAddr, OperState, VethConfig};
pub use neighbour::{NTF_EXT_MANAGED, Neighbour, NudState};
pub use resolver::{NeighbourResolver, NextHop};
pub use route::{PROTOCOL_STATIC, Route, RouteScope, RouteType, TABLE_MAIN};
pub use socket::Netlink;
pub use vxlan::VxlanConfig;
