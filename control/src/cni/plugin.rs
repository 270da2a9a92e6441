//! ADD, DEL and CHECK: the agent, the IPAM delegate and the pod's veth, in that order, with
//! every step of a failed ADD undone in reverse.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use super::config::{NetConf, PodRange};
use super::env::{CniEnv, Command};
use super::error::{CniError, ErrorCode};
use super::ipam;
use super::pod_link::{self, PodLinkConfig};
use super::result::{Cidr, CniResult, Interface, IpConfig, RouteEntry};
use crate::api::{ApiClient, ClientError, InspectWhat, NodeInfo, PodAttach, Request};
use crate::overlay::Ipv4Net;

/// How long one request to the agent may take. Attaching a pod binds AF_XDP sockets on
/// every queue, well under a second; a runtime's own CNI timeout is minutes.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// ADD: returns the result to print.
pub fn add(env: &CniEnv, conf: &NetConf) -> Result<CniResult, CniError> {
    let ipam_type = conf.require_ipam()?;
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(ErrorCode::InvalidEnvironment, "CNI_NETNS is not set"))?;
    let agent = agent(conf);
    let node: NodeInfo = agent
        .call_as(&Request::NodeInfo)
        .map_err(|e| agent_error(conf, "asking for the node's pod network", e))?;
    let netns = pod_link::open_netns(netns_path)?;
    let host_name = pod_link::host_ifname(&env.container_id, &env.ifname);
    if pod_link::find_host(&host_name)?.is_some() {
        return Err(CniError::new(
            ErrorCode::AlreadyExists,
            format!(
                "container {} already has interface {} (host end {host_name})",
                env.container_id, env.ifname
            ),
        )
        .with_details("the runtime must DEL an attachment before adding it again"));
    }
    let range = node_range(&node)?;
    let ipam_config = conf.ipam_request(Some(range));
    let allocated = ipam::exec(env, Command::Add, ipam_type, &ipam_config)?.unwrap_or_default();
    tracing::debug!(container = %env.container_id, ips = ?allocated.ips, "IPAM allocated");
    let setup = Setup {
        env,
        conf,
        node: &node,
        agent: &agent,
        netns: &netns,
        netns_path,
        host_name: &host_name,
    };
    setup.run(&allocated).inspect_err(|_| {
        // Last step of the undo: give the address back.
        if let Err(e) = ipam::exec(env, Command::Del, ipam_type, &ipam_config) {
            tracing::warn!(container = %env.container_id, "undoing a failed ADD: IPAM DEL: {e}");
        }
    })
}

/// The part of ADD after IPAM, which its caller undoes by releasing the address.
struct Setup<'a> {
    env: &'a CniEnv,
    conf: &'a NetConf,
    node: &'a NodeInfo,
    agent: &'a ApiClient,
    netns: &'a std::fs::File,
    netns_path: &'a Path,
    host_name: &'a str,
}

impl Setup<'_> {
    fn run(&self, allocated: &CniResult) -> Result<CniResult, CniError> {
        let (address, prefix_len, ipam_gateway) = first_ipv4(allocated).ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                "the IPAM plugin returned no IPv4 address (kxdp is IPv4-only)",
            )
            .with_details(format!("{:?}", allocated.ips))
        })?;
        let gateway = ipam_gateway.unwrap_or(self.node.gateway);
        let mtu = self.conf.mtu.unwrap_or(self.node.pod_mtu);
        let extra_routes: Vec<(Cidr, Option<IpAddr>)> = allocated
            .routes
            .iter()
            .filter(|r| r.dst.prefix_len != 0 && r.dst.addr.is_ipv4())
            .map(|r| (r.dst, r.gw))
            .collect();
        let link = pod_link::create(
            &PodLinkConfig {
                host_name: self.host_name.to_owned(),
                pod_name: self.env.ifname.clone(),
                queues: self.node.queues,
                mtu: u32::from(mtu),
                address,
                prefix_len,
                gateway,
                routes: extra_routes.clone(),
            },
            self.netns,
        )?;
        let id = self.env.attachment_id();
        let attach = PodAttach {
            id: id.clone(),
            ifname: self.host_name.to_owned(),
            ip: address,
            mac: link.pod_mac.clone(),
            mtu,
            pod: self.env.pod(),
        };
        if let Err(e) = self.agent.call(&Request::AttachPod(attach)) {
            // Undo in reverse: the agent may have half-attached (or attached and then timed
            // out answering), then the veth.
            if let Err(undo) = self.agent.call(&Request::DetachPod { id: id.clone() }) {
                tracing::warn!(%id, "undoing a failed ADD: detach: {undo}");
            }
            if let Err(undo) = pod_link::delete(self.host_name) {
                tracing::warn!(%id, "undoing a failed ADD: deleting {}: {undo}", self.host_name);
            }
            return Err(agent_error(self.conf, "attaching the pod", e));
        }
        tracing::info!(%id, host_if = %self.host_name, ip = %address, "pod attached");

        let gw = IpAddr::V4(gateway);
        let mut routes = vec![RouteEntry {
            dst: Cidr {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix_len: 0,
            },
            gw: Some(gw),
        }];
        routes.extend(extra_routes.into_iter().map(|(dst, via)| RouteEntry {
            dst,
            gw: Some(via.unwrap_or(gw)),
        }));
        Ok(CniResult {
            interfaces: vec![
                Interface {
                    name: link.host_name,
                    mac: link.host_mac,
                    sandbox: None,
                },
                Interface {
                    name: self.env.ifname.clone(),
                    mac: link.pod_mac,
                    sandbox: Some(self.netns_path.display().to_string()),
                },
            ],
            ips: vec![IpConfig {
                address: Cidr {
                    addr: IpAddr::V4(address),
                    prefix_len,
                },
                gateway: Some(gw),
                interface: Some(1),
            }],
            routes,
            dns: allocated.dns.clone(),
        })
    }
}

/// DEL: idempotent. What is already gone is skipped; an agent that is down is logged and
/// skipped (its attachments die with it). Only a failure to release the address, or an
/// agent that refuses the detach, fails the command, so the runtime retries.
pub fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let agent = agent(conf);
    let id = env.attachment_id();
    let mut failure = None;
    let node = match agent.call_as::<NodeInfo>(&Request::NodeInfo) {
        Ok(node) => Some(node),
        Err(e) => {
            tracing::warn!(%id, "DEL without the agent: {e}");
            None
        }
    };
    if node.is_some() {
        match agent.call(&Request::DetachPod { id: id.clone() }) {
            Ok(answer) => tracing::info!(%id, %answer, "pod detached"),
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Io { .. })) => {
                tracing::warn!(%id, "detach: {e}");
            }
            Err(e) => failure = Some(agent_error(conf, "detaching the pod", e)),
        }
    }
    let host_name = pod_link::host_ifname(&env.container_id, &env.ifname);
    match pod_link::delete(&host_name) {
        Ok(true) => tracing::info!(%id, host_if = %host_name, "veth deleted"),
        Ok(false) => tracing::debug!(%id, host_if = %host_name, "veth already gone"),
        Err(e) => {
            failure.get_or_insert(e);
        }
    }
    if let Some(ipam_type) = conf.ipam_type.as_deref() {
        let range = match (&node, &conf.prev_result) {
            (Some(node), _) => Some(node_range(node)?),
            (None, Some(prev)) => prev_range(prev),
            (None, None) => None,
        };
        if range.is_none() && !conf.ipam_has_range() {
            return Err(CniError::new(
                ErrorCode::TryAgainLater,
                format!(
                    "cannot release the address of {id}: the kxdp agent is not reachable at {} \
                     and there is no prevResult to learn the pod range from",
                    conf.api_socket.display()
                ),
            ));
        }
        ipam::exec(env, Command::Del, ipam_type, &conf.ipam_request(range))?;
    }
    failure.map_or(Ok(()), Err)
}

/// CHECK: the attachment is as ADD left it, or an error naming what is missing.
pub fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    if conf.cni_version.starts_with("0.3.") {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!("CHECK is not defined for CNI {}", conf.cni_version),
        ));
    }
    let ipam_type = conf.require_ipam()?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "CHECK needs the prevResult of ADD",
        )
    })?;
    let (address, prefix_len, _) = first_ipv4(prev).ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "prevResult has no IPv4 address",
        )
    })?;
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(ErrorCode::InvalidEnvironment, "CNI_NETNS is not set"))?;
    let failed = |msg: String| CniError::new(ErrorCode::CheckFailed, msg);

    let host_name = pod_link::host_ifname(&env.container_id, &env.ifname);
    if pod_link::find_host(&host_name)?.is_none() {
        return Err(failed(format!("host interface {host_name} is missing")));
    }
    let netns = pod_link::open_netns(netns_path)?;
    let Some((_, addrs)) = pod_link::find_pod(&netns, &env.ifname)? else {
        return Err(failed(format!(
            "interface {} is missing in {}",
            env.ifname,
            netns_path.display()
        )));
    };
    if !addrs
        .iter()
        .any(|a| a.address == IpAddr::V4(address) && a.prefix_len == prefix_len)
    {
        return Err(failed(format!(
            "interface {} in {} lacks address {address}/{prefix_len}",
            env.ifname,
            netns_path.display()
        )));
    }

    let agent = agent(conf);
    let id = env.attachment_id();
    let node: NodeInfo = agent
        .call_as(&Request::NodeInfo)
        .map_err(|e| agent_error(conf, "asking for the node's pod network", e))?;
    let attachments: Vec<serde_json::Value> = agent
        .call_as(&Request::Inspect {
            what: InspectWhat::Attachments,
        })
        .map_err(|e| agent_error(conf, "listing attachments", e))?;
    let Some(attached) = attachments.iter().find(|a| a["id"] == id.as_str()) else {
        return Err(failed(format!("the kxdp agent has no attachment {id}")));
    };
    if attached["ip"] != address.to_string().as_str() || attached["ifname"] != host_name.as_str() {
        return Err(failed(format!(
            "the kxdp agent's attachment {id} is {attached}, not {address} on {host_name}"
        )));
    }
    ipam::exec(
        env,
        Command::Check,
        ipam_type,
        &conf.ipam_request(Some(node_range(&node)?)),
    )?;
    Ok(())
}

fn agent(conf: &NetConf) -> ApiClient {
    ApiClient::new(&conf.api_socket).with_timeout(AGENT_TIMEOUT)
}

/// A failed agent request: down or unresponsive is "try again later" (11).
fn agent_error(conf: &NetConf, doing: &str, e: ClientError) -> CniError {
    match e {
        ClientError::Unreachable { source, .. } => CniError::new(
            ErrorCode::TryAgainLater,
            format!("kxdp agent not reachable at {}", conf.api_socket.display()),
        )
        .with_details(format!("{doing}: {source} (is the agent running?)")),
        ClientError::Io { source, .. } => CniError::new(
            ErrorCode::TryAgainLater,
            format!("kxdp agent at {} did not answer", conf.api_socket.display()),
        )
        .with_details(format!("{doing}: {source}")),
        ClientError::Refused(why) => CniError::new(
            ErrorCode::AgentRefused,
            format!("the kxdp agent refused {doing}"),
        )
        .with_details(why),
        ClientError::Protocol(why) => CniError::new(
            ErrorCode::AgentRefused,
            format!("unexpected answer from the kxdp agent {doing}"),
        )
        .with_details(why),
    }
}

/// The node's pod CIDR and gateway, for IPAM.
fn node_range(node: &NodeInfo) -> Result<PodRange, CniError> {
    let subnet: Ipv4Net = node.pod_cidr.parse().map_err(|e| {
        CniError::new(
            ErrorCode::AgentRefused,
            "the kxdp agent reported an unusable pod CIDR",
        )
        .with_details(e)
    })?;
    Ok(PodRange {
        subnet,
        gateway: node.gateway,
    })
}

/// The range an earlier ADD allocated from, as far as its result tells.
fn prev_range(prev: &CniResult) -> Option<PodRange> {
    let (addr, prefix_len, gateway) = first_ipv4(prev)?;
    let subnet = Ipv4Net::new(addr, prefix_len).ok()?;
    Some(PodRange {
        subnet,
        gateway: gateway.unwrap_or(subnet.nth(1)),
    })
}

/// The first IPv4 address of a result, its prefix length and gateway.
fn first_ipv4(result: &CniResult) -> Option<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
    result.ips.iter().find_map(|ip| match ip.address.addr {
        IpAddr::V4(addr) => Some((
            addr,
            ip.address.prefix_len,
            match ip.gateway {
                Some(IpAddr::V4(gw)) => Some(gw),
                _ => None,
            },
        )),
        IpAddr::V6(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_the_node_or_from_the_previous_result() {
        let node = NodeInfo {
            node_name: "n1".into(),
            pod_cidr: "10.244.1.0/24".into(),
            gateway: Ipv4Addr::new(10, 244, 1, 1),
            pod_mtu: 1450,
            queues: 1,
            router_mac: "ee:ee:ee:ee:ee:ee".into(),
        };
        let r = node_range(&node).unwrap();
        assert_eq!(r.subnet.to_string(), "10.244.1.0/24");
        let bad = NodeInfo {
            pod_cidr: "nope".into(),
            ..node
        };
        assert_eq!(node_range(&bad).unwrap_err().code, ErrorCode::AgentRefused);

        let prev = CniResult::from_json(&serde_json::json!({
            "ips": [{"address": "fd00::5/64"}, {"address": "10.244.1.5/24"}]
        }))
        .unwrap();
        let r = prev_range(&prev).unwrap();
        assert_eq!(r.subnet.to_string(), "10.244.1.0/24");
        assert_eq!(r.gateway, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(prev_range(&CniResult::default()), None);
    }

    #[test]
    fn an_unreachable_agent_is_try_again_later() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"kxdp-cni","apiSocket":"/nonexistent/kxdp.sock","ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        let e = agent(&conf).call(&Request::NodeInfo).unwrap_err();
        let e = agent_error(&conf, "asking", e);
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        assert_eq!(e.msg, "kxdp agent not reachable at /nonexistent/kxdp.sock");
    }
}
