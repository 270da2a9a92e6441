//! Options of `kxdp agent`, as ../shared/INTERFACES.md lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// While the source fails (API server unreachable), the agent keeps its last tables and
    /// stays ready until its last good sync is older than this (`60s`, `2s`, `500ms`, or
    /// seconds); /readyz then answers 503.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// Ports (`FIRST-LAST`) the engine gives flows it translates to the node's address:
    /// NodePort and LoadBalancer traffic with externalTrafficPolicy Cluster, off-cluster
    /// clients of ClusterIPs, hairpin, egress masquerade. Keep it outside the kernel's
    /// net.ipv4.ip_local_port_range (32768-60999 by default): the uplink steers these ports on
    /// the node IP to the engine.
    #[arg(long, default_value = "61000-65535", value_parser = parse_port_range)]
    pub snat_ports: (u16, u16),
    /// The cluster's pod network, comma-separated CIDRs (kube-proxy's --cluster-cidr): pods
    /// keep their address on ClusterIPs and are masqueraded leaving it. Default: the smallest
    /// prefix holding every Node's podCIDR.
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<crate::overlay::Ipv4Net>,
    /// Translate pod traffic leaving the cluster network to the node's address (what
    /// flannel's --ip-masq does).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub masquerade: bool,
}

/// `FIRST-LAST`, two ports, FIRST ≤ LAST.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected FIRST-LAST, e.g. 61000-65535"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|e| format!("{s:?}: {p:?} is not a port: {e}"))
    };
    let (first, last) = (port(a)?, port(b)?);
    if first == 0 || first > last {
        return Err(format!("{s:?}: FIRST must be 1..=LAST"));
    }
    Ok((first, last))
}

/// `60s`, `500ms`, `2m`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 60s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("61000-65535"), Ok((61000, 65535)));
        assert_eq!(parse_port_range("7-7"), Ok((7, 7)));
        assert!(parse_port_range("65535-61000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("61000").is_err());
        assert!(parse_port_range("61000-70000").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("s").is_err());
    }
}
