//! Compilers from the desired state to data-path tables.
//!
//! - [`services`]: Services + EndpointSlices → service frontends, backend sets and Maglev
//!   arrays ([`kxdp_dataplane::tables::Services`]), incremental across compiles.
//!
//! The overlay compiler (Nodes, pods → routes and tunnels) is [`crate::overlay::compile`].

pub mod services;

pub use services::{ServiceCompiler, ServiceContext, ServiceReport};
