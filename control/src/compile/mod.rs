//! Compilers from the desired state to data-path tables.
//!
//! - [`services`]: Services + EndpointSlices → service frontends, backend sets and Maglev
//!   arrays ([`kxdp_dataplane::tables::Services`]), incremental across compiles. Its parts:
//!   - `endpoints`: which endpoints of a service port take new flows and which drain (ready,
//!     serving, terminating, topology hints, node-local scope);
//!   - `frontends`: one service → its frontends (ClusterIP, NodePort, LoadBalancer, external
//!     IPs) and backend sets, with the traffic policies, affinity and source ranges;
//!   - `fingerprint`: the hash that tells whether a service's cached entries still hold;
//!   - [`dump`](mod@dump): the tables and report as stable text (golden tests, inspection).
//!
//! The overlay compiler (Nodes, pods → routes and tunnels) is [`crate::overlay::compile`].

pub mod dump;
mod endpoints;
mod fingerprint;
mod frontends;
pub mod services;

pub use dump::dump;
pub use services::{ServiceCompiler, ServiceContext, ServiceReport};

#[cfg(test)]
mod tests;
