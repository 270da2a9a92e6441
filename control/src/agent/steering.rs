//! What the uplink's XDP program steers to the engine for services, kept equal to what the
//! service compiler reported.
//!
//! The program has two maps (af_xdp/src/bpf/steer.rs): destination prefixes, either `All` or
//! `PortsOnly`, and one global set of (protocol, port) pairs that applies to every `PortsOnly`
//! address. So:
//! - NodePorts and the ports of external (LoadBalancer ingress, externalIPs) addresses go into
//!   the port set;
//! - each external address becomes a `PortsOnly` /32 (only its service ports come to us; ARP,
//!   ICMP and anything else to it stay with the kernel, which may own the address too);
//! - the node IP (`PortsOnly`, with the VXLAN port) and the pod CIDR (`All`) are steered by
//!   the node dataplane for the overlay: never touched here, even when an external address or
//!   port coincides with them.
//!
//! Stale entries go before the new tables are published and new ones after, so traffic is
//! never steered to the engine for a frontend it does not have yet. A failed map update is
//! logged and retried at the next publish.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use af_xdp::bpf::DstKind;
use kxdp_dataplane::Engine;

use crate::compile::ServiceReport;
use crate::overlay::Ipv4Net;

/// The steering program's maps, as the diff needs them (a fake in tests).
pub trait SteeringMaps {
    fn add_port(&self, proto: u8, port: u16) -> Result<(), String>;
    fn remove_port(&self, proto: u8, port: u16) -> Result<(), String>;
    /// Steer `ip`/32 (`PortsOnly`).
    fn add_address(&self, ip: Ipv4Addr) -> Result<(), String>;
    fn remove_address(&self, ip: Ipv4Addr) -> Result<(), String>;
}

impl SteeringMaps for Engine {
    fn add_port(&self, proto: u8, port: u16) -> Result<(), String> {
        self.steering()
            .add_port(proto, port)
            .map_err(|e| e.to_string())
    }
    fn remove_port(&self, proto: u8, port: u16) -> Result<(), String> {
        self.steering()
            .remove_port(proto, port)
            .map_err(|e| e.to_string())
    }
    fn add_address(&self, ip: Ipv4Addr) -> Result<(), String> {
        self.own_prefix(ip, 32, DstKind::PortsOnly)
            .map_err(|e| e.to_string())
    }
    fn remove_address(&self, ip: Ipv4Addr) -> Result<(), String> {
        self.steering()
            .remove_dst4(ip, 32)
            .map_err(|e| e.to_string())
    }
}

/// A set of steering entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SteeringSet {
    pub ports: BTreeSet<(u8, u16)>,
    pub addresses: BTreeSet<Ipv4Addr>,
}

/// The entries this agent added for services, and what it must leave alone.
#[derive(Debug)]
pub struct Steering {
    installed: SteeringSet,
    /// Steered for the overlay: the VXLAN port.
    fixed_ports: BTreeSet<(u8, u16)>,
    /// The node IP (already `PortsOnly`) and the pod CIDR (already `All`).
    node_ip: Ipv4Addr,
    pod_cidr: Ipv4Net,
}

impl Steering {
    pub fn new(node_ip: Ipv4Addr, pod_cidr: Ipv4Net, vxlan_port: u16) -> Self {
        Steering {
            installed: SteeringSet::default(),
            fixed_ports: BTreeSet::from([(libc::IPPROTO_UDP as u8, vxlan_port)]),
            node_ip,
            pod_cidr,
        }
    }

    /// Steers every port of `first..=last`, TCP and UDP, for good (the source NAT range: the
    /// replies of translated flows come to the node IP on these ports). A port that fails is
    /// logged; the rest are still added.
    pub fn fix_port_range(&mut self, maps: &impl SteeringMaps, (first, last): (u16, u16)) {
        let mut failed = 0;
        let mut first_error = None;
        for port in first..=last {
            for proto in [libc::IPPROTO_TCP as u8, libc::IPPROTO_UDP as u8] {
                if self.fixed_ports.contains(&(proto, port)) {
                    continue;
                }
                match maps.add_port(proto, port) {
                    Ok(()) => {
                        self.fixed_ports.insert((proto, port));
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            None => tracing::info!(first, last, "source NAT ports steered on the node IP"),
            Some(e) => tracing::error!(
                first,
                last,
                failed,
                "steering the source NAT ports: {e}; replies to those ports go to the kernel"
            ),
        }
    }

    /// What a compile asks for, less what the overlay owns.
    pub fn wanted(&self, report: &ServiceReport) -> SteeringSet {
        SteeringSet {
            ports: report
                .node_ports
                .iter()
                .chain(&report.external_ports)
                .copied()
                .filter(|p| !self.fixed_ports.contains(p))
                .collect(),
            addresses: report
                .external_ips
                .iter()
                .copied()
                .filter(|ip| *ip != self.node_ip && !self.pod_cidr.contains(*ip))
                .collect(),
        }
    }

    pub fn installed(&self) -> &SteeringSet {
        &self.installed
    }

    /// Remove what is installed but no longer wanted.
    pub fn remove_stale(&mut self, maps: &impl SteeringMaps, wanted: &SteeringSet) {
        let ports: Vec<(u8, u16)> = self
            .installed
            .ports
            .difference(&wanted.ports)
            .copied()
            .collect();
        for (proto, port) in ports {
            match maps.remove_port(proto, port) {
                Ok(()) => {
                    tracing::info!(proto, port, "port no longer steered");
                    self.installed.ports.remove(&(proto, port));
                }
                Err(e) => tracing::warn!(proto, port, "unsteering a port: {e}"),
            }
        }
        let addresses: Vec<Ipv4Addr> = self
            .installed
            .addresses
            .difference(&wanted.addresses)
            .copied()
            .collect();
        for ip in addresses {
            match maps.remove_address(ip) {
                Ok(()) => {
                    tracing::info!(%ip, "external address no longer steered");
                    self.installed.addresses.remove(&ip);
                }
                Err(e) => tracing::warn!(%ip, "unsteering an external address: {e}"),
            }
        }
    }

    /// Add what is wanted but not installed.
    pub fn add_new(&mut self, maps: &impl SteeringMaps, wanted: &SteeringSet) {
        let ports: Vec<(u8, u16)> = wanted
            .ports
            .difference(&self.installed.ports)
            .copied()
            .collect();
        for (proto, port) in ports {
            match maps.add_port(proto, port) {
                Ok(()) => {
                    tracing::info!(proto, port, "port steered to the engine");
                    self.installed.ports.insert((proto, port));
                }
                Err(e) => tracing::warn!(proto, port, "steering a port: {e}"),
            }
        }
        let addresses: Vec<Ipv4Addr> = wanted
            .addresses
            .difference(&self.installed.addresses)
            .copied()
            .collect();
        for ip in addresses {
            match maps.add_address(ip) {
                Ok(()) => {
                    tracing::info!(%ip, "external address steered to the engine");
                    self.installed.addresses.insert(ip);
                }
                Err(e) => tracing::warn!(%ip, "steering an external address: {e}"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records calls; fails the ones listed in `fail`.
    #[derive(Default)]
    struct Maps {
        calls: RefCell<Vec<String>>,
        fail: RefCell<BTreeSet<String>>,
    }

    impl Maps {
        fn call(&self, what: String) -> Result<(), String> {
            let failed = self.fail.borrow().contains(&what);
            self.calls.borrow_mut().push(what);
            if failed { Err("EPERM".into()) } else { Ok(()) }
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.borrow_mut())
        }
    }

    impl SteeringMaps for Maps {
        fn add_port(&self, proto: u8, port: u16) -> Result<(), String> {
            self.call(format!("+port {proto}/{port}"))
        }
        fn remove_port(&self, proto: u8, port: u16) -> Result<(), String> {
            self.call(format!("-port {proto}/{port}"))
        }
        fn add_address(&self, ip: Ipv4Addr) -> Result<(), String> {
            self.call(format!("+addr {ip}"))
        }
        fn remove_address(&self, ip: Ipv4Addr) -> Result<(), String> {
            self.call(format!("-addr {ip}"))
        }
    }

    fn report(node_ports: &[(u8, u16)], ips: &[[u8; 4]], ports: &[(u8, u16)]) -> ServiceReport {
        ServiceReport {
            node_ports: node_ports.to_vec(),
            external_ips: ips.iter().map(|o| Ipv4Addr::from(*o)).collect(),
            external_ports: ports.to_vec(),
            ..ServiceReport::default()
        }
    }

    fn sync(s: &mut Steering, maps: &Maps, r: &ServiceReport) -> Vec<String> {
        let wanted = s.wanted(r);
        s.remove_stale(maps, &wanted);
        s.add_new(maps, &wanted);
        maps.take()
    }

    #[test]
    fn adds_removes_and_leaves_the_overlay_alone() {
        let maps = Maps::default();
        let mut s = Steering::new(
            Ipv4Addr::new(192, 168, 77, 1),
            "10.244.1.0/24".parse().unwrap(),
            8472,
        );
        let r = report(
            &[(6, 30080), (17, 8472)],
            &[[203, 0, 113, 7], [192, 168, 77, 1], [10, 244, 1, 9]],
            &[(6, 443), (6, 30080)],
        );
        assert_eq!(
            sync(&mut s, &maps, &r),
            ["+port 6/443", "+port 6/30080", "+addr 203.0.113.7"],
            "the VXLAN port, the node IP and pod addresses are the overlay's"
        );
        assert!(sync(&mut s, &maps, &r).is_empty(), "nothing twice");

        // The LB service goes, a NodePort changes.
        let r = report(&[(6, 30081)], &[], &[]);
        assert_eq!(
            sync(&mut s, &maps, &r),
            [
                "-port 6/443",
                "-port 6/30080",
                "-addr 203.0.113.7",
                "+port 6/30081"
            ]
        );
        assert_eq!(s.installed().ports, BTreeSet::from([(6, 30081)]));
    }

    #[test]
    fn a_failed_update_is_retried_at_the_next_sync() {
        let maps = Maps::default();
        let mut s = Steering::new(
            Ipv4Addr::new(192, 168, 77, 1),
            "10.244.1.0/24".parse().unwrap(),
            8472,
        );
        maps.fail.borrow_mut().insert("+port 6/30080".into());
        let r = report(&[(6, 30080)], &[], &[]);
        assert_eq!(sync(&mut s, &maps, &r), ["+port 6/30080"]);
        assert!(s.installed().ports.is_empty());
        maps.fail.borrow_mut().clear();
        assert_eq!(sync(&mut s, &maps, &r), ["+port 6/30080"]);
        // A failed removal stays installed and is retried.
        maps.fail.borrow_mut().insert("-port 6/30080".into());
        let empty = report(&[], &[], &[]);
        assert_eq!(sync(&mut s, &maps, &empty), ["-port 6/30080"]);
        assert_eq!(s.installed().ports.len(), 1);
        maps.fail.borrow_mut().clear();
        assert_eq!(sync(&mut s, &maps, &empty), ["-port 6/30080"]);
        assert!(s.installed().ports.is_empty());
    }
}
