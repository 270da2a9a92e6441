//! A node configured as flannel's VXLAN backend and its CNI configure a real one (flanneld
//! `pkg/backend/vxlan`, with the `bridge` CNI plugin that flannel's CNI plugin delegates to),
//! with the kernel doing all forwarding: the reference a kxdp node must interoperate with.
//!
//! ```text
//!   node ns (eth0 192.168.77.1/24, ip_forward=1)
//!     flannel.1  vxlan id 1 dstport 8472 local 192.168.77.1 dev eth0 nolearning,
//!                MTU eth0-50, fixed VtepMAC, 10.244.1.0/32
//!     cni0       bridge 10.244.1.1/24, MTU eth0-50; pods' host ends are its ports
//!   per remote node (what flanneld does when a Node lease appears):
//!     bridge fdb replace <vtep mac> dev flannel.1 dst <node ip> self permanent
//!     ip neigh replace 10.244.2.0 lladdr <vtep mac> dev flannel.1 nud permanent
//!     ip route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
//! ```
//!
//! A packet from a local pod to 10.244.2.5 leaves cni0, matches the remote route, gets the
//! remote VtepMAC as destination from the neighbour entry, and the vxlan device looks that MAC
//! up in its FDB for the outer destination. flanneld writes the FDB with `NeighSet`
//! (`RTM_NEWNEIGH`, create + replace), i.e. `bridge fdb replace`, not `append`: one entry per
//! VtepMAC. The VtepMAC is fixed here (flanneld picks a random one and publishes it in the
//! Node annotation `flannel.alpha.coreos.com/backend-data`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, ensure};

use crate::link::{Link, format_mac};
use crate::netns::Netns;
use crate::pod::{Pod, PodAttach, PodOptions};
use crate::underlay::{Node, UPLINK, Underlay, nth_address};

/// flanneld's device name for VNI 1.
pub const VXLAN_IF: &str = "flannel.1";
/// The bridge of flannel's CNI configuration.
pub const CNI_BRIDGE: &str = "cni0";
/// Per-node pod CIDR size (flannel's default `SubnetLen`).
pub const POD_PREFIX_LEN: u8 = 24;
/// VXLAN overhead flannel subtracts from the uplink MTU (outer IPv4, UDP, VXLAN, Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Options for [`FlannelNode::on_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlannelOptions {
    /// The node's pod CIDR network address (`10.244.1.0`), a /24.
    pub pod_net: Ipv4Addr,
    /// MAC of `flannel.1`; `None`: `0e:46:` followed by the node's IPv4 address.
    pub vtep_mac: Option<[u8; 6]>,
    pub vni: u32,
    pub port: u16,
}

impl FlannelOptions {
    /// VNI 1 and port 8472 (flannel's defaults on Linux).
    pub fn new(pod_net: Ipv4Addr) -> FlannelOptions {
        FlannelOptions {
            pod_net,
            vtep_mac: None,
            vni: 1,
            port: 8472,
        }
    }
}

/// A flannel VXLAN node; see the module docs for what it holds. Dropping it deletes the
/// node's namespace; pods made by [`add_pod`](Self::add_pod) are owned by the caller.
#[derive(Debug)]
pub struct FlannelNode {
    pub node: Node,
    /// `flannel.1`.
    pub vxlan: Link,
    /// `cni0`.
    pub bridge: Link,
    pub vtep_mac: [u8; 6],
    /// `10.244.1.0` of `10.244.1.0/24`.
    pub pod_net: Ipv4Addr,
    pub vni: u32,
    pub port: u16,
    /// Pod and `flannel.1` MTU: uplink MTU − 50.
    pub pod_mtu: u32,
    /// Host number of the next address [`add_pod`](Self::add_pod) hands out.
    next_host: AtomicU32,
}

impl FlannelNode {
    /// Adds node `name` with address `ip` to `underlay` and configures it with pod CIDR
    /// `pod_net`/24, VNI 1, port 8472.
    pub fn new(
        underlay: &Underlay,
        name: &str,
        ip: Ipv4Addr,
        pod_net: Ipv4Addr,
    ) -> Result<FlannelNode> {
        let node = underlay.add_node(name, ip)?;
        FlannelNode::on_node(node, &FlannelOptions::new(pod_net))
    }

    /// Configures an existing node as flannel would.
    pub fn on_node(node: Node, opts: &FlannelOptions) -> Result<FlannelNode> {
        ensure!(
            opts.pod_net.octets()[3] == 0,
            "pod CIDR {} is not the network address of a /24",
            opts.pod_net
        );
        ensure!(
            node.mtu > VXLAN_OVERHEAD + 68,
            "uplink MTU {} is too small",
            node.mtu
        );
        let ns = &node.netns;
        let pod_mtu = node.mtu - VXLAN_OVERHEAD;
        let ip = node.ip.octets();
        let vtep_mac = opts
            .vtep_mac
            .unwrap_or([0x0e, 0x46, ip[0], ip[1], ip[2], ip[3]]);

        let (vni, port, local) = (
            opts.vni.to_string(),
            opts.port.to_string(),
            node.ip.to_string(),
        );
        ns.ip(&[
            "link",
            "add",
            "name",
            VXLAN_IF,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            UPLINK,
            "dstport",
            &port,
            "nolearning",
        ])?;
        let vxlan = ns.link(VXLAN_IF);
        vxlan.set_mac(vtep_mac)?;
        vxlan.set_mtu(pod_mtu)?;
        // flanneld turns off IPv6 router advertisements on its device.
        ns.sysctl(&format!("net/ipv6/conf/{VXLAN_IF}/accept_ra"), "0")?;
        vxlan.addr_add(opts.pod_net.into(), 32)?;
        vxlan.up()?;

        ns.ip(&["link", "add", "name", CNI_BRIDGE, "type", "bridge"])?;
        let bridge = ns.link(CNI_BRIDGE);
        // A bridge without a MAC of its own takes the lowest of its ports' and changes it as
        // pods come and go, invalidating the pods' ARP caches for their gateway; fix one.
        let gateway = nth_address(opts.pod_net, 1).octets();
        bridge.set_mac([0x0a, 0x58, gateway[0], gateway[1], gateway[2], gateway[3]])?;
        bridge.set_mtu(pod_mtu)?;
        bridge.addr_add(nth_address(opts.pod_net, 1).into(), POD_PREFIX_LEN)?;
        bridge.up()?;
        node.enable_ip_forward()?;

        Ok(FlannelNode {
            node,
            vxlan,
            bridge,
            vtep_mac,
            pod_net: opts.pod_net,
            vni: opts.vni,
            port: opts.port,
            pod_mtu,
            next_host: AtomicU32::new(2),
        })
    }

    /// The node's namespace.
    pub fn netns(&self) -> &Netns {
        &self.node.netns
    }

    /// The node's underlay address (flannel's public IP).
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node.ip
    }

    /// `pod_net`.1, on `cni0`: the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        nth_address(self.pod_net, 1)
    }

    /// `10.244.1.0/24`.
    pub fn pod_cidr(&self) -> String {
        format!("{}/{POD_PREFIX_LEN}", self.pod_net)
    }

    /// Options for a pod on this node at `ip`: attached to `cni0`, gateway `.1`, pod MTU.
    /// Adjust (MAC, queues) and pass to [`add_pod_with`](Self::add_pod_with).
    pub fn pod_options(&self, ip: Ipv4Addr) -> PodOptions {
        PodOptions {
            mtu: self.pod_mtu,
            attach: PodAttach::Bridge(CNI_BRIDGE.to_owned()),
            ..PodOptions::new(ip, POD_PREFIX_LEN, self.gateway())
        }
    }

    /// A pod at the next free address (`.2`, `.3`, ...), as host-local IPAM would hand out,
    /// attached to `cni0`. Its host end is `veth<last octet>`.
    pub fn add_pod(&self, name: &str) -> Result<Pod> {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        ensure!(host < 255, "pod CIDR {} is full", self.pod_cidr());
        self.add_pod_with(name, &self.pod_options(nth_address(self.pod_net, host)))
    }

    /// A pod built from `opts` (start from [`pod_options`](Self::pod_options)); host end
    /// `veth<last octet of the pod address>`.
    pub fn add_pod_with(&self, name: &str, opts: &PodOptions) -> Result<Pod> {
        let host_if = format!("veth{}", opts.ip.octets()[3]);
        Pod::create(
            self.netns(),
            &format!("{}-{name}", self.node.tag),
            &host_if,
            opts,
        )
    }

    /// What flanneld does when remote node `node_ip` with VtepMAC `vtep_mac` and pod CIDR
    /// `pod_net`/24 appears: FDB entry, permanent neighbour, onlink route (module docs).
    pub fn add_remote(
        &self,
        node_ip: Ipv4Addr,
        vtep_mac: [u8; 6],
        pod_net: Ipv4Addr,
    ) -> Result<()> {
        let (mac, dst) = (format_mac(vtep_mac), node_ip.to_string());
        self.netns().exec(&[
            "bridge",
            "fdb",
            "replace",
            &mac,
            "dev",
            VXLAN_IF,
            "dst",
            &dst,
            "self",
            "permanent",
        ])?;
        self.vxlan.neigh_replace(pod_net.into(), vtep_mac)?;
        let (cidr, via) = (format!("{pod_net}/{POD_PREFIX_LEN}"), pod_net.to_string());
        self.netns()
            .ip(&[
                "route", "replace", &cidr, "via", &via, "dev", VXLAN_IF, "onlink",
            ])
            .map(drop)
    }

    /// [`add_remote`](Self::add_remote) for another flannel node.
    pub fn add_remote_node(&self, other: &FlannelNode) -> Result<()> {
        self.add_remote(other.node_ip(), other.vtep_mac, other.pod_net)
    }

    /// Undoes [`add_remote`](Self::add_remote) (flanneld on a lease's expiry).
    pub fn remove_remote(
        &self,
        node_ip: Ipv4Addr,
        vtep_mac: [u8; 6],
        pod_net: Ipv4Addr,
    ) -> Result<()> {
        let cidr = format!("{pod_net}/{POD_PREFIX_LEN}");
        self.netns().ip(&["route", "del", &cidr, "dev", VXLAN_IF])?;
        let via = pod_net.to_string();
        self.netns().ip(&["neigh", "del", &via, "dev", VXLAN_IF])?;
        let (mac, dst) = (format_mac(vtep_mac), node_ip.to_string());
        self.netns()
            .exec(&[
                "bridge", "fdb", "del", &mac, "dev", VXLAN_IF, "dst", &dst, "self",
            ])
            .map(drop)
    }

    /// `bridge fdb show dev flannel.1`, for assertions and failure messages.
    pub fn fdb(&self) -> Result<String> {
        self.netns()
            .exec_stdout(&["bridge", "fdb", "show", "dev", VXLAN_IF])
    }
}
