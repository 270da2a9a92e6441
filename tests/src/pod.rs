//! A pod: a namespace joined to a node by a veth pair, as a CNI plugin would build it.
//!
//! ```text
//!   pod ns:  eth0 10.244.1.2/24 ──── <host_ifname>  node ns (no address; routed, or a port of
//!            default via <gateway> onlink             a bridge such as flannel's cni0)
//! ```
//!
//! The default route is `onlink`, so the gateway need not be inside the pod's prefix (Calico
//! style: a /32 pod and a link-local gateway). Who answers ARP for the gateway is the node's
//! business: a bridge's address ([`PodAttach::Bridge`]), the node kernel
//! ([`Pod::route_from_host`], proxy ARP), an engine on the host end, or nobody at all when
//! [`PodOptions::gateway_mac`] installs a permanent neighbour entry.
//!
//! TX checksum offload is off on both ends (see [`Link::tx_checksum_off`]), so an engine on
//! the host end sees finished checksums from the pod, and the pod from the node's kernel.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use crate::link::Link;
use crate::netns::Netns;
use crate::veth::{Veth, VethOptions};

/// The pod's end of its veth, inside the pod namespace.
pub const POD_IF: &str = "eth0";

/// How the host end of a pod's veth is attached in the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PodAttach {
    /// Up with no address and no master: routed by the node's kernel or held by an engine.
    #[default]
    Routed,
    /// Enslaved to this bridge in the node namespace (flannel's `cni0`).
    Bridge(String),
}

/// How to build a pod; [`PodOptions::new`] fills in the usual defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOptions {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Default route `via <gateway> dev eth0 onlink`; `None`: no default route.
    pub gateway: Option<Ipv4Addr>,
    /// Permanent neighbour entry for the gateway, so the pod never ARPs for it.
    pub gateway_mac: Option<[u8; 6]>,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// The pod end's MAC; `None`: `0a:58:` followed by the IPv4 address (what the CNI bridge
    /// plugin used to assign, so a capture shows whose frame it is).
    pub mac: Option<[u8; 6]>,
    /// The host end's MAC; `None`: the kernel's random one.
    pub host_mac: Option<[u8; 6]>,
    /// Queues on both ends (see [`VethOptions::queues`]).
    pub queues: Option<u32>,
    pub attach: PodAttach,
}

impl PodOptions {
    /// `ip/prefix_len`, default route via `gateway`, MTU 1500, routed host end.
    pub fn new(ip: Ipv4Addr, prefix_len: u8, gateway: Ipv4Addr) -> PodOptions {
        PodOptions {
            ip,
            prefix_len,
            gateway: Some(gateway),
            gateway_mac: None,
            mtu: 1500,
            mac: None,
            host_mac: None,
            queues: None,
            attach: PodAttach::Routed,
        }
    }
}

/// A pod namespace and its veth pair. Dropping it deletes the namespace, and with it the pair
/// (so the host end disappears from the node).
#[derive(Debug)]
pub struct Pod {
    pub netns: Netns,
    /// `eth0` in the pod.
    pub eth0: Link,
    /// The host end, in the node namespace.
    pub host_if: Link,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Of `eth0`.
    pub mac: [u8; 6],
    /// Of `eth0`, inside the pod namespace.
    pub ifindex: u32,
    pub host_mac: [u8; 6],
    /// Of the host end, inside the node namespace.
    pub host_ifindex: u32,
    pub mtu: u32,
}

impl Pod {
    /// Creates namespace `kxdp-<tag>-...` with `eth0` configured per `opts`, peered with
    /// `host_ifname` (at most 15 bytes) in `node`, both ends up.
    pub fn create(node: &Netns, tag: &str, host_ifname: &str, opts: &PodOptions) -> Result<Pod> {
        let netns = Netns::new(tag)?;
        let veth_opts = VethOptions {
            queues: opts.queues,
            mtu: Some(opts.mtu),
        };
        let veth = Veth::create_with(&netns, POD_IF, node, host_ifname, &veth_opts)
            .with_context(|| format!("veth of pod {}", opts.ip))?;
        let (eth0, host_if) = (veth.a, veth.b);
        let o = opts.ip.octets();
        eth0.set_mac(opts.mac.unwrap_or([0x0a, 0x58, o[0], o[1], o[2], o[3]]))?;
        if let Some(mac) = opts.host_mac {
            host_if.set_mac(mac)?;
        }
        eth0.tx_checksum_off()?;
        host_if.tx_checksum_off()?;
        if let PodAttach::Bridge(bridge) = &opts.attach {
            host_if.set_master(bridge)?;
        }
        host_if.up()?;
        eth0.addr_add(opts.ip.into(), opts.prefix_len)?;
        eth0.up()?;
        if let Some(gateway) = opts.gateway {
            if let Some(mac) = opts.gateway_mac {
                eth0.neigh_replace(gateway.into(), mac)?;
            }
            let gateway = gateway.to_string();
            netns.ip(&[
                "route", "add", "default", "via", &gateway, "dev", POD_IF, "onlink",
            ])?;
        }
        let info = eth0.info()?;
        let host = host_if.info()?;
        Ok(Pod {
            netns,
            eth0,
            host_if,
            ip: opts.ip,
            prefix_len: opts.prefix_len,
            gateway: opts.gateway,
            mac: info.mac,
            ifindex: info.ifindex,
            host_mac: host.mac,
            host_ifindex: host.ifindex,
            mtu: info.mtu,
        })
    }

    /// The host end's name in the node namespace.
    pub fn host_ifname(&self) -> &str {
        self.host_if.name()
    }

    /// Pins the gateway to `mac` with a permanent neighbour entry in the pod, so the pod never
    /// ARPs for it: `pod.set_gateway_neigh(pod.host_mac)` sends everything to the host end,
    /// for an engine there that does not answer ARP.
    pub fn set_gateway_neigh(&self, mac: [u8; 6]) -> Result<()> {
        let gateway = self
            .gateway
            .with_context(|| format!("pod {} has no gateway", self.ip))?;
        self.eth0.neigh_replace(gateway.into(), mac)
    }

    /// Lets the node's kernel route to this pod, as Calico does: `ip route replace <ip>/32 dev
    /// <host end>` and proxy ARP on the host end, so the pod's ARP requests for anything the
    /// node routes elsewhere (other pods, the gateway if the node routes it) are answered
    /// with the host end's MAC. `proxy_delay` is zeroed: proxy ARP otherwise answers
    /// broadcast requests after a random delay of up to 0.8 s. The node must forward
    /// (`net.ipv4.ip_forward`) for pod-to-pod traffic; a gateway address local to the node
    /// (on `lo`, say) is answered by plain ARP.
    pub fn route_from_host(&self, node: &Netns) -> Result<()> {
        let dst = format!("{}/32", self.ip);
        node.ip(&["route", "replace", &dst, "dev", self.host_ifname()])?;
        let ifname = self.host_ifname();
        node.sysctl(&format!("net/ipv4/conf/{ifname}/proxy_arp"), "1")?;
        node.sysctl(&format!("net/ipv4/neigh/{ifname}/proxy_delay"), "0")
    }
}
