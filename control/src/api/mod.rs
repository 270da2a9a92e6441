//! The local API on `--api-socket` (a Unix stream socket, root only): `kxdp-cni` attaches and
//! detaches pods through it, `kxdp inspect` reads what the data path holds.
//!
//! - [`protocol`]: the JSON messages.
//! - [`server`]: accepts connections and hands requests to an [`ApiHandler`].
//! - [`client`]: one request, one response, with a timeout.
//! - [`node_handler`]: the handler over a running [`NodeDataplane`](crate::overlay::NodeDataplane).
//! - [`inspect_services`]: services, backends and conntrack as inspection JSON.

pub mod client;
pub mod inspect_services;
pub mod node_handler;
pub mod protocol;
pub mod server;

pub use client::{ApiClient, ClientError};
pub use inspect_services::ControlStatus;
pub use node_handler::NodeHandler;
pub use protocol::{Attached, InspectWhat, NodeInfo, PodAttach, Request, Response};
pub use server::{ApiHandler, ApiServer};
