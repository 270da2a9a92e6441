//! Veth pairs whose two ends live in (usually different) namespaces.
//!
//! Both ends are created directly in their namespaces by one netlink request
//! (`ip -n A link add name X type veth peer name Y netns B`), so names only have to be unique
//! inside each namespace and nothing ever appears in the root namespace. Deleting either
//! namespace destroys the pair, so a `Veth` has no Drop of its own.

use anyhow::{Result, ensure};

use crate::link::{Link, check_ifname};
use crate::netns::Netns;

/// Options for [`Veth::create_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VethOptions {
    /// TX and RX queue count on both ends (`numtxqueues`/`numrxqueues`), which is also the
    /// active channel count `ethtool -l` shows. `None`: the kernel's default, which on veth is
    /// as many RX queues as CPUs but a single active channel.
    pub queues: Option<u32>,
    /// MTU on both ends. `None`: 1500.
    pub mtu: Option<u32>,
}

/// A veth pair: `a` in the first namespace, `b` (its peer) in the second. Both ends are left
/// down; bring them up after setting MACs and MTUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    pub a: Link,
    pub b: Link,
}

impl Veth {
    /// Creates `name_a` in `ns_a` peered with `name_b` in `ns_b`.
    pub fn create(ns_a: &Netns, name_a: &str, ns_b: &Netns, name_b: &str) -> Result<Veth> {
        Veth::create_with(ns_a, name_a, ns_b, name_b, &VethOptions::default())
    }

    /// [`create`](Self::create) with queue count and MTU.
    pub fn create_with(
        ns_a: &Netns,
        name_a: &str,
        ns_b: &Netns,
        name_b: &str,
        opts: &VethOptions,
    ) -> Result<Veth> {
        check_ifname(name_a)?;
        check_ifname(name_b)?;
        ensure!(
            ns_a.name() != ns_b.name() || name_a != name_b,
            "both veth ends are called {name_a} in {}",
            ns_a.name()
        );
        let queues = opts.queues.map(|q| q.to_string());
        // iproute2 parses the peer's attributes separately, so queue counts go on both sides.
        let mut per_end: Vec<&str> = Vec::new();
        if let Some(q) = queues.as_deref() {
            ensure!(q != "0", "a veth needs at least one queue");
            per_end.extend(["numtxqueues", q, "numrxqueues", q]);
        }
        let mut args = vec!["link", "add", "name", name_a];
        args.extend_from_slice(&per_end);
        args.extend(["type", "veth", "peer", "name", name_b, "netns", ns_b.name()]);
        args.extend_from_slice(&per_end);
        ns_a.ip(&args)?;

        let veth = Veth {
            a: ns_a.link(name_a),
            b: ns_b.link(name_b),
        };
        if let Some(mtu) = opts.mtu {
            veth.a.set_mtu(mtu)?;
            veth.b.set_mtu(mtu)?;
        }
        Ok(veth)
    }

    /// Brings both ends up.
    pub fn up(&self) -> Result<()> {
        self.a.up()?;
        self.b.up()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::require_root;

    #[test]
    fn pair_across_namespaces_with_queues_and_mtu() {
        if !require_root("veth::pair_across_namespaces_with_queues_and_mtu") {
            return;
        }
        let left = Netns::new("vethl").unwrap();
        let right = Netns::new("vethr").unwrap();
        let opts = VethOptions {
            queues: Some(2),
            mtu: Some(3000),
        };
        let veth = Veth::create_with(&left, "kx-left", &right, "kx-right", &opts).unwrap();
        veth.a.set_mac([0x02, 0, 0, 0, 0, 0x0a]).unwrap();
        veth.up().unwrap();

        let a = veth.a.info().unwrap();
        let b = veth.b.info().unwrap();
        assert_eq!(a.mac, [0x02, 0, 0, 0, 0, 0x0a]);
        assert!(a.up && b.up);
        assert_eq!((a.mtu, b.mtu), (3000, 3000));
        assert_eq!((a.tx_queues, a.rx_queues), (2, 2));
        assert_eq!((b.tx_queues, b.rx_queues), (2, 2));
        assert!(
            left.link_info("kx-right").is_err(),
            "peer must not stay in ns a"
        );

        // Addresses (v6 usable at once thanks to nodad) and a static neighbour.
        veth.a.addr_add("fd00:99::1".parse().unwrap(), 64).unwrap();
        veth.b.addr_add("fd00:99::2".parse().unwrap(), 64).unwrap();
        let addrs = left.ip(&["-6", "addr", "show", "dev", "kx-left"]).unwrap();
        let global = addrs.lines().find(|l| l.contains("fd00:99::1/64"));
        assert!(global.is_some_and(|l| !l.contains("tentative")), "{addrs}");
        veth.b
            .neigh_replace("fd00:99::1".parse().unwrap(), a.mac)
            .unwrap();
        let neigh = right.ip(&["neigh", "show", "dev", "kx-right"]).unwrap();
        assert!(neigh.contains("02:00:00:00:00:0a PERMANENT"), "{neigh}");
    }

    #[test]
    fn long_names_are_refused() {
        if !require_root("veth::long_names_are_refused") {
            return;
        }
        let ns = Netns::new("vethlong").unwrap();
        assert!(Veth::create(&ns, "this-name-is-too-long", &ns, "b").is_err());
    }
}
