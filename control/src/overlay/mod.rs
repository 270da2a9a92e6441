//! The overlay: how pods on this node reach each other, the host, and pods on other nodes
//! (flannel-compatible VXLAN, or direct routing on a shared L2).
//!
//! - [`model`]: the desired state (this node, remote nodes, attached pods, resolved
//!   neighbours).
//! - [`compile`]: desired state → engine tables (routes, VXLAN header templates, port roles).
//! - [`node`]: a running node dataplane: the engine on the uplink and the host port, pods
//!   attached and detached at run time, underlay neighbours resolved through the kernel,
//!   tables republished on every change.

pub mod compile;
pub mod model;
pub mod node;

pub use compile::{CompileReport, compile};
pub use model::{
    HostPort, Ipv4Net, LocalNode, OverlayMode, OverlayState, PodAttachment, RemoteNode, UplinkPort,
};
pub use node::{NodeConfig, NodeDataplane, NodeError, PodSpec};
