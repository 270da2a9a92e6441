//! Options of `kxdp agent`, as ../shared/INTERFACES.md lists them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum XdpModeArg {
    Native,
    Generic,
    /// Native, else generic.
    #[default]
    Auto,
}

impl From<XdpModeArg> for af_xdp::bpf::XdpMode {
    fn from(m: XdpModeArg) -> Self {
        match m {
            XdpModeArg::Native => af_xdp::bpf::XdpMode::Native,
            XdpModeArg::Generic => af_xdp::bpf::XdpMode::Generic,
            XdpModeArg::Auto => af_xdp::bpf::XdpMode::Auto,
        }
    }
}

/// How traffic to other nodes' pods travels (`--overlay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OverlayArg {
    /// VXLAN to every node (flannel's `vxlan` backend).
    #[default]
    Vxlan,
    /// VXLAN, but plain routing to nodes on the uplink's own subnet (flannel's
    /// `DirectRouting`).
    VxlanDirect,
    /// No encapsulation: every node must be on the uplink's subnet.
    None,
}

impl From<OverlayArg> for crate::overlay::OverlayMode {
    fn from(m: OverlayArg) -> Self {
        match m {
            OverlayArg::Vxlan => crate::overlay::OverlayMode::Vxlan,
            OverlayArg::VxlanDirect => crate::overlay::OverlayMode::VxlanDirectRouting,
            OverlayArg::None => crate::overlay::OverlayMode::None,
        }
    }
}

/// `kxdp agent`: run the node dataplane.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Which Node object is "this node" (default: env NODE_NAME, else the hostname).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// `kube` to watch the API server, or a multi-document YAML (or JSON) file of Kubernetes
    /// objects (Node, Service, EndpointSlice, Pod), reloaded when it changes.
    #[arg(long, default_value = "kube")]
    pub source: String,
    /// The node's underlay interface (default: the one holding the node's InternalIP, else
    /// the interface of the default route).
    #[arg(long)]
    pub uplink: Option<String>,
    /// Cores for pinned workers, e.g. `2-5` or `3,7` (default: one unpinned worker).
    #[arg(long)]
    pub cores: Option<crate::cores::CoreList>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    /// VXLAN UDP port (flannel's default).
    #[arg(long, default_value_t = 8472)]
    pub vxlan_port: u16,
    /// VXLAN network identifier.
    #[arg(long, default_value_t = 1)]
    pub vni: u32,
    /// Overlay between nodes: `vxlan` (flannel-compatible, to every node), `vxlan-direct`
    /// (plain routing to nodes on the uplink's subnet, VXLAN to the rest: flannel's
    /// DirectRouting) or `none` (plain routing; every node on the uplink's subnet).
    #[arg(long, value_enum, default_value_t = OverlayArg::Vxlan)]
    pub overlay: OverlayArg,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9450")]
    pub metrics_addr: SocketAddr,
    /// Local API socket for kxdp-cni and kxdp inspect.
    #[arg(long, default_value = "/run/kxdp/kxdp.sock")]
    pub api_socket: PathBuf,
}
