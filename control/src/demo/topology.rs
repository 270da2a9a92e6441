//! Building the virtual cluster, every step through our netlink client (no `ip`, no
//! `ethtool`):
//!
//! ```text
//!  kxdp-demo-underlay:  br0 ─┬─ ul-kxdp-a ┄┄┄┄ eth0 kxdp-demo-kxdp-a     192.168.77.1
//!                            │                   kxdp agent (AF_XDP on eth0, kxdp0e, pods)
//!                            │                   ├─ kx…  ┄┄ eth0 kxdp-demo-web-a    10.244.1.2
//!                            │                   └─ kx…  ┄┄ eth0 kxdp-demo-client-a 10.244.1.10
//!                            ├─ ul-flannel-b ┄┄ eth0 kxdp-demo-flannel-b  192.168.77.2
//!                            │                   flannel.1 (VXLAN VNI 1, port 8472), cni0
//!                            │                   └─ veth-web-b ┄┄ eth0 kxdp-demo-web-b 10.244.2.2
//!                            └─ ul-outside ┄┄┄ eth0 kxdp-demo-outside    192.168.77.10
//! ```
//!
//! Every namespace, the agent and every CNI attachment registers its undo with
//! [`cleanup`] as soon as it exists, so a failure at any step leaves nothing behind.
//!
//! TX checksum offload is off on both ends of every underlay veth and of flannel's pod veths
//! (`kxdp-cni` does the same for its pods): frames the engine takes with XDP, or that reach
//! it from the other node, must carry finished checksums, since nothing on a veth path
//! completes a `CHECKSUM_PARTIAL` one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::agent_process::{AgentOptions, AgentProcess};
use super::cleanup;
use super::cni_runtime::{Attachment, CniRuntime};
use super::netns::{self, Netns};
use super::plan::{KXDP_NODE, OUTSIDE_IP, Plan, PodSpec, UNDERLAY_PREFIX};
use super::preflight::{Preflight, TEMP_PREFIX};
use crate::api::{InspectWhat, NodeInfo, Request};
use crate::netlink::{BridgeConfig, LinkId, Netlink, Route, VethConfig, VxlanConfig};
use crate::objects::DEFAULT_OBJECTS;

/// Every node's uplink, inside its namespace.
const UPLINK: &str = "eth0";
/// The underlay bridge.
const UNDERLAY_BRIDGE: &str = "br0";
/// flanneld's device for VNI 1, and the bridge of flannel's CNI configuration.
const FLANNEL_VXLAN: &str = "flannel.1";
const FLANNEL_BRIDGE: &str = "cni0";
const VNI: u32 = 1;
const VXLAN_PORT: u16 = 8472;
const UNDERLAY_MTU: u32 = 1500;
/// What VXLAN adds (outer IPv4, UDP, VXLAN, inner Ethernet).
const VXLAN_OVERHEAD: u32 = 50;
/// The agent's `/metrics`, on kxdp-a's own loopback.
const METRICS_ADDR: &str = "127.0.0.1:9450";

/// A pod and its namespace.
#[derive(Debug)]
pub struct Pod {
    pub spec: PodSpec,
    pub ns: Netns,
    /// The host end of its veth, in its node's namespace.
    pub host_if: String,
    /// Set for pods attached by `kxdp-cni`.
    pub attachment: Option<Attachment>,
}

/// The running cluster. Dropping it closes the namespace handles; [`cleanup::teardown`]
/// removes everything.
#[derive(Debug)]
pub struct Cluster {
    pub kxdp: Netns,
    pub outside: Netns,
    pub pods: Vec<Pod>,
    pub agent: AgentProcess,
    /// What the agent said about its node (pod CIDR, gateway, router MAC, pod MTU).
    pub node_info: NodeInfo,
}

impl Cluster {
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.spec.name == name)
    }
}

/// Builds the cluster of `plan`, printing each step through `step`.
pub fn build(plan: &Plan, pre: &Preflight, progress: &dyn Fn(&str)) -> anyhow::Result<Cluster> {
    // Each step is followed by a check for Ctrl-C.
    let step = |msg: &str| -> Result<(), cleanup::Interrupted> {
        progress(msg);
        cleanup::checkpoint()
    };
    let temp_dir = std::env::temp_dir().join(format!("{TEMP_PREFIX}{}", std::process::id()));
    std::fs::create_dir_all(&temp_dir)
        .with_context(|| format!("creating {}", temp_dir.display()))?;
    {
        let dir = temp_dir.clone();
        cleanup::register(format!("directory {}", temp_dir.display()), move || {
            std::fs::remove_dir_all(&dir)
                .map(|()| String::new())
                .map_err(|e| e.to_string())
        });
    }

    // The underlay: one L2 segment.
    let underlay = namespace("underlay")?;
    {
        let mut nl = underlay.netlink()?;
        nl.create_bridge(&BridgeConfig::new(UNDERLAY_BRIDGE))?;
        nl.set_link_up(UNDERLAY_BRIDGE)?;
    }
    step(&format!(
        "underlay: bridge {UNDERLAY_BRIDGE} in {}",
        underlay.name()
    ))?;

    let kxdp = namespace(&plan.kxdp.name)?;
    plug(&underlay, &kxdp, plan.kxdp.ip)?;
    let flannel = namespace(&plan.flannel.name)?;
    plug(&underlay, &flannel, plan.flannel.ip)?;
    let outside = namespace("outside")?;
    plug(&underlay, &outside, OUTSIDE_IP)?;
    step(&format!(
        "nodes on the underlay: {} {}, {} {}, and a host outside the cluster {OUTSIDE_IP}",
        plan.kxdp.name, plan.kxdp.ip, plan.flannel.name, plan.flannel.ip
    ))?;

    configure_flannel(&flannel, plan)?;
    step(&format!(
        "{}: {FLANNEL_VXLAN} (VXLAN VNI {VNI}, port {VXLAN_PORT}, VtepMAC {}), {FLANNEL_BRIDGE} \
         {}/{}, FDB + neighbour + route to {} (VtepMAC {})",
        plan.flannel.name,
        crate::objects::format_mac(plan.flannel.vtep_mac),
        plan.flannel.gateway(),
        plan.flannel.pod_cidr.len(),
        plan.kxdp.name,
        plan.kxdp_vtep()
    ))?;

    // The agent, on the default objects.
    let objects = temp_dir.join("objects.yaml");
    std::fs::write(&objects, DEFAULT_OBJECTS)
        .with_context(|| format!("writing {}", objects.display()))?;
    let metrics_addr: SocketAddr = METRICS_ADDR
        .parse()
        .context("the metrics address constant")?;
    let agent = AgentProcess::start(
        &kxdp,
        &AgentOptions {
            exe: pre.kxdp.clone(),
            node_name: plan.kxdp.name.clone(),
            objects,
            api_socket: temp_dir.join("kxdp.sock"),
            metrics_addr,
            log: temp_dir.join("agent.log"),
        },
    )?;
    let node_info = agent.wait_ready()?;
    step(&format!(
        "{}: kxdp agent (pid {}) serving {}: pod CIDR {}, gateway {}, pod MTU {}",
        plan.kxdp.name,
        agent.pid,
        agent.opts.api_socket.display(),
        node_info.pod_cidr,
        node_info.gateway,
        node_info.pod_mtu
    ))?;

    // Pods.
    let cni = CniRuntime::new(
        &pre.kxdp_cni,
        &pre.cni_plugin_dir,
        &agent.opts.api_socket,
        &temp_dir.join("ipam"),
    );
    let mut pods = Vec::new();
    for spec in &plan.pods {
        let ns = namespace(spec.name)?;
        let node = plan.node_of(spec);
        let pod = if spec.node == KXDP_NODE {
            let a = cni
                .add(&kxdp, &ns, spec.name, spec.ip, node.pod_cidr)
                .with_context(|| format!("attaching pod {} through kxdp-cni", spec.name))?;
            step(&format!(
                "pod {} {} on {}: kxdp-cni ADD (host-local IPAM), host end {}",
                spec.name, spec.ip, spec.node, a.host_if
            ))?;
            Pod {
                spec: *spec,
                ns,
                host_if: a.host_if.clone(),
                attachment: Some(a),
            }
        } else {
            let host_if = bridge_pod(&flannel, &ns, spec, plan)?;
            step(&format!(
                "pod {} {} on {}: veth {host_if} on {FLANNEL_BRIDGE}",
                spec.name, spec.ip, spec.node
            ))?;
            Pod {
                spec: *spec,
                ns,
                host_if,
                attachment: None,
            }
        };
        pods.push(pod);
    }

    let cluster = Cluster {
        kxdp,
        outside,
        pods,
        agent,
        node_info,
    };
    wait_for_remote(&cluster, plan, &step)?;
    Ok(cluster)
}

/// Creates `kxdp-demo-<role>` and registers its removal.
fn namespace(role: &str) -> anyhow::Result<Netns> {
    let name = format!("{}{role}", netns::PREFIX);
    let ns = match Netns::create(&name) {
        Ok(ns) => ns,
        Err(e) => {
            // A half-made one (the file, or the mount) must not outlive the run either.
            let _ = netns::delete(&name);
            return Err(e.into());
        }
    };
    cleanup::register(format!("namespace {name}"), move || {
        netns::delete(&name)
            .map(|()| String::new())
            .map_err(|e| e.to_string())
    });
    Ok(ns)
}

/// Plugs `host` into the underlay: `eth0` (MAC `02:4b:` + its address) in `host`, its peer
/// `ul-<host role>` a port of the bridge; `ip`/24 on `eth0`; both ends up, TX checksum
/// offload off on both.
fn plug(underlay: &Netns, host: &Netns, ip: Ipv4Addr) -> anyhow::Result<()> {
    let role = host.name().trim_start_matches(netns::PREFIX);
    let port = format!("ul-{role}");
    let o = ip.octets();
    let mut nl = host.netlink()?;
    nl.create_veth(
        &VethConfig::new(UPLINK, &port)
            .mtu(UNDERLAY_MTU)
            .mac([0x02, 0x4b, o[0], o[1], o[2], o[3]]),
        Some(underlay.fd()),
    )
    .with_context(|| format!("{}: uplink", host.name()))?;
    nl.add_address(UPLINK, IpAddr::V4(ip), UNDERLAY_PREFIX)?;
    let mut ul = underlay.netlink()?;
    ul.set_master(port.as_str(), UNDERLAY_BRIDGE)?;
    checksum_offload_off(underlay, &port)?;
    checksum_offload_off(host, UPLINK)?;
    ul.set_link_up(port.as_str())?;
    nl.set_link_up(UPLINK)?;
    Ok(())
}

fn checksum_offload_off(ns: &Netns, ifname: &str) -> anyhow::Result<()> {
    ns.run(|| af_xdp::set_tx_checksum_offload(ifname, false))?
        .with_context(|| format!("{}: TX checksum offload off on {ifname}", ns.name()))
}

/// flannel's VXLAN backend on the node, and what flanneld adds when it learns of kxdp-a
/// from its Node object (`pkg/backend/vxlan/vxlan_network.go`):
///
/// ```text
///   flannel.1  vxlan id 1 local <node ip> dev eth0 dstport 8472 nolearning, <pod net>/32
///   cni0       bridge <gateway>/24
///   bridge fdb replace <kxdp-a VtepMAC> dev flannel.1 dst 192.168.77.1 self permanent
///   ip neigh replace 10.244.1.0 lladdr <kxdp-a VtepMAC> dev flannel.1 nud permanent
///   ip route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
/// ```
fn configure_flannel(ns: &Netns, plan: &Plan) -> anyhow::Result<()> {
    let me = &plan.flannel;
    let pod_mtu = UNDERLAY_MTU - VXLAN_OVERHEAD;
    ns.sysctl("net/ipv4/ip_forward", "1")?;
    let mut nl = ns.netlink()?;
    let uplink = nl.link(UPLINK)?.index;
    nl.create_vxlan(
        &VxlanConfig::new(FLANNEL_VXLAN, VNI, me.ip)
            .port(VXLAN_PORT)
            .link(uplink)
            .mac(me.vtep_mac)
            .mtu(pod_mtu),
    )?;
    nl.add_address(FLANNEL_VXLAN, IpAddr::V4(me.pod_cidr.addr()), 32)?;
    nl.set_link_up(FLANNEL_VXLAN)?;

    let gw = me.gateway().octets();
    nl.create_bridge(
        &BridgeConfig::new(FLANNEL_BRIDGE)
            // flannel's bridge plugin derives it from the gateway address (0a:58 + IPv4).
            .mac([0x0a, 0x58, gw[0], gw[1], gw[2], gw[3]])
            .mtu(pod_mtu),
    )?;
    nl.add_address(FLANNEL_BRIDGE, IpAddr::V4(me.gateway()), me.pod_cidr.len())?;
    nl.set_link_up(FLANNEL_BRIDGE)?;

    let remote = &plan.kxdp;
    let vxlan = nl.link(FLANNEL_VXLAN)?.index;
    let remote_net = IpAddr::V4(remote.pod_cidr.addr());
    nl.replace_fdb_entry(vxlan, remote.vtep_mac, remote.ip)?;
    nl.replace_permanent_neighbour(vxlan, remote_net, remote.vtep_mac)?;
    nl.replace_route(
        &Route::new(remote_net, remote.pod_cidr.len())
            .via(remote_net)
            .dev(vxlan)
            .onlink(),
    )?;
    Ok(())
}

/// A pod on flannel's `cni0`, as the `bridge` CNI plugin makes one: a veth whose host end
/// is a bridge port, the pod end `eth0` with its address and a default route via the
/// bridge's address.
fn bridge_pod(node: &Netns, pod: &Netns, spec: &PodSpec, plan: &Plan) -> anyhow::Result<String> {
    let host_if = format!("veth-{}", spec.name);
    let mtu = UNDERLAY_MTU - VXLAN_OVERHEAD;
    let cidr = plan.node_of(spec).pod_cidr;
    let gateway = cidr.nth(1);
    let mut nl = node.netlink()?;
    nl.create_veth(&VethConfig::new(&host_if, "eth0").mtu(mtu), Some(pod.fd()))
        .with_context(|| format!("pod {}: veth", spec.name))?;
    nl.set_master(host_if.as_str(), FLANNEL_BRIDGE)?;
    checksum_offload_off(node, &host_if)?;
    nl.set_link_up(host_if.as_str())?;

    let mut pl = pod.netlink()?;
    checksum_offload_off(pod, "eth0")?;
    pl.add_address("eth0", IpAddr::V4(spec.ip), cidr.len())?;
    pl.set_link_up("eth0")?;
    let eth0 = pl.link(LinkId::from("eth0"))?.index;
    pl.add_route(
        &Route::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            .via(IpAddr::V4(gateway))
            .dev(eth0),
    )?;
    Ok(host_if)
}

/// Waits (up to a few seconds) until the agent has the other node's underlay MAC, so the
/// first packets across the overlay are not dropped for want of a next hop. Best effort:
/// the checks retry anyway.
fn wait_for_remote(
    cluster: &Cluster,
    plan: &Plan,
    step: &dyn Fn(&str) -> Result<(), cleanup::Interrupted>,
) -> Result<(), cleanup::Interrupted> {
    let api = cluster.agent.api();
    let deadline = Instant::now() + Duration::from_secs(5);
    // The kernel of kxdp-a resolves the next hop when asked; a ping-less nudge is to let it.
    let _ = cluster
        .kxdp
        .run(|| Netlink::open().and_then(|mut nl| nl.route_get(IpAddr::V4(plan.flannel.ip))));
    loop {
        let resolved = api
            .call(&Request::Inspect {
                what: InspectWhat::Nodes,
            })
            .ok()
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|n| n["name"] == plan.flannel.name.as_str())
                    .map(|n| n["resolved"] == Value::Bool(true))
            });
        match resolved {
            Some(true) => {
                return step(&format!(
                    "{}: remote node {} known and its next hop resolved",
                    plan.kxdp.name, plan.flannel.name
                ));
            }
            _ if Instant::now() >= deadline => return cleanup::checkpoint(),
            _ => {}
        }
        if !cleanup::sleep(Duration::from_millis(100)) {
            return Err(cleanup::Interrupted);
        }
    }
}
