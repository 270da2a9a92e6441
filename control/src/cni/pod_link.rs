//! The pod's veth pair: the host end (named from the container id and interface, so DEL
//! finds it without state) in the calling thread's namespace, the pod end created directly
//! in the pod's namespace and configured there (address, link up, `lo` up, default route
//! `onlink` via the gateway), TX checksum offload off on both ends.
//!
//! Why the offload goes off: the engine takes the pod's frames at the host end with XDP, so
//! nothing on their way finishes a `CHECKSUM_PARTIAL` checksum (see
//! [`af_xdp::set_tx_checksum_offload`]).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

use super::error::{CniError, ErrorCode};
use super::result::Cidr;
use crate::api::protocol::format_mac;
use crate::netlink::{self, AddressInfo, LinkInfo, Netlink, Route, VethConfig};

/// Prefix of the host ends' names (`kx` + 12 hex digits: 14 bytes, within IFNAMSIZ).
pub const HOST_PREFIX: &str = "kx";

/// The host end's name for a container's interface: stable, so DEL and CHECK find it
/// again from the environment alone. 48 bits of FNV-1a keep collisions between the few
/// hundred pods of a node out of reach.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = container_id
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(ifname.bytes())
        .fold(FNV_OFFSET, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
        });
    format!("{HOST_PREFIX}{:012x}", hash >> 16)
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLinkConfig {
    pub host_name: String,
    /// `CNI_IFNAME`, inside the pod.
    pub pod_name: String,
    pub queues: u32,
    pub mtu: u32,
    /// The pod's address and prefix length (from IPAM).
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// More routes than the default one (from IPAM), each via its own gateway or `gateway`.
    pub routes: Vec<(Cidr, Option<IpAddr>)>,
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    pub host_name: String,
    pub host_mac: String,
    pub pod_mac: String,
    pub pod_mac_bytes: [u8; 6],
}

/// Opens the pod's network namespace; a missing one is "unknown container" (code 3).
pub fn open_netns(path: &Path) -> Result<File, CniError> {
    File::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorCode::UnknownContainer
        } else {
            ErrorCode::IoFailure
        };
        CniError::new(
            code,
            format!("cannot open network namespace {}", path.display()),
        )
        .with_details(e)
    })
}

/// Creates and configures the pair; on failure removes what it created (the pod end goes
/// with the host end), so nothing half-made stays.
pub fn create(cfg: &PodLinkConfig, netns: &File) -> Result<PodLink, CniError> {
    let mut host = Netlink::open().map_err(setup_err("netlink socket"))?;
    let mut pod =
        Netlink::open_in(netns.as_fd()).map_err(setup_err("netlink socket in the pod"))?;
    if host
        .find_link(cfg.host_name.as_str())
        .map_err(setup_err("looking up the host interface"))?
        .is_some()
    {
        return Err(already_exists(format!(
            "host interface {} already exists",
            cfg.host_name
        )));
    }
    if pod
        .find_link(cfg.pod_name.as_str())
        .map_err(setup_err("looking up the pod interface"))?
        .is_some()
    {
        return Err(already_exists(format!(
            "interface {} already exists in the pod's network namespace",
            cfg.pod_name
        )));
    }
    let veth = VethConfig::new(&cfg.host_name, &cfg.pod_name)
        .queues(cfg.queues.max(1))
        .mtu(cfg.mtu);
    host.create_veth(&veth, Some(netns.as_fd()))
        .map_err(|e| match e.errno() {
            Some(Errno::EEXIST) => already_exists(format!(
                "interface {} or {} already exists",
                cfg.host_name, cfg.pod_name
            )),
            _ => setup_err("creating the veth pair")(e),
        })?;
    match configure(cfg, &mut host, &mut pod, netns.as_fd()) {
        Ok(link) => Ok(link),
        Err(e) => {
            if let Err(undo) = host.delete_link(cfg.host_name.as_str()) {
                tracing::warn!(host_if = %cfg.host_name, "undoing a failed setup: {undo}");
            }
            Err(e)
        }
    }
}

fn configure(
    cfg: &PodLinkConfig,
    host: &mut Netlink,
    pod: &mut Netlink,
    netns: BorrowedFd<'_>,
) -> Result<PodLink, CniError> {
    let pod_if = pod
        .link(cfg.pod_name.as_str())
        .map_err(setup_err("the new pod interface"))?;
    let pod_mac_bytes = pod_if.mac.unwrap_or_default();
    let idx = pod_if.index;
    let name = cfg.pod_name.clone();
    in_netns(netns, move || af_xdp::set_tx_checksum_offload(&name, false))?.map_err(|e| {
        CniError::new(
            ErrorCode::InterfaceSetup,
            format!(
                "turning TX checksum offload off on {} in the pod",
                cfg.pod_name
            ),
        )
        .with_details(e)
    })?;
    pod.add_address(idx, IpAddr::V4(cfg.address), cfg.prefix_len)
        .map_err(setup_err("adding the pod's address"))?;
    pod.set_link_up(idx)
        .map_err(setup_err("pod interface up"))?;
    pod.set_link_up("lo")
        .map_err(setup_err("pod loopback up"))?;
    let gateway = IpAddr::V4(cfg.gateway);
    // onlink: the gateway need not be inside the pod's prefix (any address the engine
    // answers ARP for will do).
    pod.add_route(
        &Route::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            .via(gateway)
            .dev(idx)
            .onlink(),
    )
    .map_err(setup_err("adding the pod's default route"))?;
    for (dst, gw) in &cfg.routes {
        if dst.prefix_len == 0 || !dst.addr.is_ipv4() {
            continue;
        }
        pod.add_route(
            &Route::new(dst.addr, dst.prefix_len)
                .via(gw.unwrap_or(gateway))
                .dev(idx)
                .onlink(),
        )
        .map_err(setup_err("adding a route from IPAM"))?;
    }
    af_xdp::set_tx_checksum_offload(&cfg.host_name, false).map_err(|e| {
        CniError::new(
            ErrorCode::InterfaceSetup,
            format!("turning TX checksum offload off on {}", cfg.host_name),
        )
        .with_details(e)
    })?;
    host.set_link_up(cfg.host_name.as_str())
        .map_err(setup_err("host interface up"))?;
    let host_if = host
        .link(cfg.host_name.as_str())
        .map_err(setup_err("the new host interface"))?;
    Ok(PodLink {
        host_name: cfg.host_name.clone(),
        host_mac: host_if.mac.map(format_mac).unwrap_or_default(),
        pod_mac: format_mac(pod_mac_bytes),
        pod_mac_bytes,
    })
}

/// Deletes the host end (and with it the pod end); false when it was not there.
pub fn delete(host_name: &str) -> Result<bool, CniError> {
    let mut host = Netlink::open().map_err(setup_err("netlink socket"))?;
    match host.delete_link(host_name) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(setup_err("deleting the host interface")(e)),
    }
}

/// The host end, if it exists in the calling thread's namespace.
pub fn find_host(host_name: &str) -> Result<Option<LinkInfo>, CniError> {
    let mut host = Netlink::open().map_err(setup_err("netlink socket"))?;
    host.find_link(host_name)
        .map_err(setup_err("looking up the host interface"))
}

/// The pod's interface and its addresses, if it exists in `netns`.
pub fn find_pod(
    netns: &File,
    pod_name: &str,
) -> Result<Option<(LinkInfo, Vec<AddressInfo>)>, CniError> {
    let mut pod =
        Netlink::open_in(netns.as_fd()).map_err(setup_err("netlink socket in the pod"))?;
    let Some(link) = pod
        .find_link(pod_name)
        .map_err(setup_err("looking up the pod interface"))?
    else {
        return Ok(None);
    };
    let addrs = pod
        .addresses(Some(link.index.into()))
        .map_err(setup_err("listing the pod's addresses"))?;
    Ok(Some((link, addrs)))
}

/// Runs `f` on a short-lived thread inside `netns` (setns changes only the calling thread;
/// the thread dies with it, so nothing is left in the wrong namespace).
fn in_netns<T: Send>(netns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> Result<T, CniError> {
    std::thread::scope(|scope| {
        let helper = scope.spawn(move || setns(netns, CloneFlags::CLONE_NEWNET).map(|()| f()));
        match helper.join() {
            Ok(result) => result.map_err(|errno| {
                CniError::new(
                    ErrorCode::InterfaceSetup,
                    "entering the pod's network namespace",
                )
                .with_details(errno)
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn setup_err(what: &'static str) -> impl Fn(netlink::Error) -> CniError {
    move |e| CniError::new(ErrorCode::InterfaceSetup, what).with_details(e)
}

fn already_exists(msg: String) -> CniError {
    CniError::new(ErrorCode::AlreadyExists, msg)
        .with_details("the runtime must DEL an attachment before adding it again")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_ifname("0123456789abcdef0123456789abcdef", "eth0");
        assert_eq!(a, host_ifname("0123456789abcdef0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("kx"));
        assert!(a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, host_ifname("0123456789abcdef0123456789abcdef", "eth1"));
        assert_ne!(a, host_ifname("0123456789abcdef0123456789abcdee", "eth0"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
        // Pinned: a changed hash would orphan the veths of running pods across an upgrade.
        assert_eq!(host_ifname("c1", "eth0"), "kx9e27a0abdbb0");
    }
}
