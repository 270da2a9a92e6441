//! Interface features through ethtool's generic netlink family, as `ethtool -K <dev> gro on`
//! does (the lent machines have no `ethtool` program): `ETHTOOL_MSG_FEATURES_SET` with the
//! wanted bits named (a "verbose" bitset: only the named bits change).

use anyhow::{Context, Result, bail};
use kxdp_control::netlink::wire::{self, MessageBuilder};
use nix::sys::socket::SockProtocol;

use crate::netlink_raw::RawNetlink;
use crate::netns::Netns;

/// Generic netlink controller (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// linux/ethtool_netlink.h.
const ETHTOOL_GENL_NAME: &str = "ethtool";
const ETHTOOL_GENL_VERSION: u8 = 1;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// The features `ethtool -K <dev> tso off` turns off: every bit of `NETIF_F_ALL_TSO`, which is
/// what veth checks before handing a sender's skb to the peer's NAPI
/// (`veth_skb_is_eligible_for_gro`).
pub const ALL_TSO: [&str; 4] = [
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
];

/// A TSO bit of newer kernels (6.18 lists it); older ones refuse the unknown name.
const ACCECN_TSO: &str = "tx-tcp-accecn-segmentation";

/// Turns every TSO feature of `ifname` off (`ethtool -K <dev> tso off`).
pub fn tso_off(ns: &Netns, ifname: &str) -> Result<()> {
    set_features(ns, ifname, &ALL_TSO.map(|f| (f, false)))?;
    // Absent before 6.18: then there is nothing to turn off.
    let _ = set_features(ns, ifname, &[(ACCECN_TSO, false)]);
    Ok(())
}

/// `struct genlmsghdr`: command, version, 2 reserved bytes.
fn genl_header(cmd: u8, version: u8) -> [u8; 4] {
    [cmd, version, 0, 0]
}

/// The FEATURES_SET request turning each named feature on or off.
pub fn features_request(family: u16, ifname: &str, features: &[(&str, bool)]) -> MessageBuilder {
    let mut m = MessageBuilder::new(family, 0);
    m.header(&genl_header(ETHTOOL_MSG_FEATURES_SET, ETHTOOL_GENL_VERSION));
    let h = m.begin_nest(ETHTOOL_A_FEATURES_HEADER);
    m.attr_str(ETHTOOL_A_HEADER_DEV_NAME, ifname);
    m.end_nest(h);
    let wanted = m.begin_nest(ETHTOOL_A_FEATURES_WANTED);
    let bits = m.begin_nest(ETHTOOL_A_BITSET_BITS);
    for (name, on) in features {
        let bit = m.begin_nest(ETHTOOL_A_BITSET_BITS_BIT);
        m.attr_str(ETHTOOL_A_BITSET_BIT_NAME, name);
        if *on {
            // A flag attribute: present means set.
            m.attr(ETHTOOL_A_BITSET_BIT_VALUE, &[]);
        }
        m.end_nest(bit);
    }
    m.end_nest(bits);
    m.end_nest(wanted);
    m
}

/// Sets features of `ifname` in `ns` (`ethtool -K`). A feature the device cannot change is
/// left as it is by the kernel, as with `ethtool -K`.
pub fn set_features(ns: &Netns, ifname: &str, features: &[(&str, bool)]) -> Result<()> {
    ns.run(|| -> Result<()> {
        let mut nl = RawNetlink::open(SockProtocol::NetlinkGeneric)?;
        let family = resolve_family(&mut nl, ETHTOOL_GENL_NAME)?;
        nl.request(
            features_request(family, ifname, features),
            "ETHTOOL_MSG_FEATURES_SET",
            ifname,
        )?;
        Ok(())
    })?
    .with_context(|| format!("setting features {features:?} of {ifname} in {}", ns.name()))
}

/// The id of a generic netlink family.
fn resolve_family(nl: &mut RawNetlink, name: &str) -> Result<u16> {
    let mut m = MessageBuilder::new(GENL_ID_CTRL, 0);
    m.header(&genl_header(CTRL_CMD_GETFAMILY, 1));
    m.attr_str(CTRL_ATTR_FAMILY_NAME, name);
    for reply in nl.request(m, "CTRL_CMD_GETFAMILY", name)? {
        let Some(attrs) = reply.get(4..) else {
            continue;
        };
        for attr in wire::Attrs::new(attrs) {
            let attr = attr.map_err(|e| anyhow::anyhow!("{}", e.0))?;
            if attr.kind == CTRL_ATTR_FAMILY_ID
                && let Ok(id) = <[u8; 2]>::try_from(attr.payload)
            {
                return Ok(u16::from_ne_bytes(id));
            }
        }
    }
    bail!("generic netlink family {name} not found")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn features_request_names_each_bit() {
        let bytes =
            features_request(30, "kb-ngen", &[("rx-gro", true), (ALL_TSO[0], false)]).finish(1);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 30);
        assert_eq!(&bytes[16..20], &[ETHTOOL_MSG_FEATURES_SET, 1, 0, 0]);
        let top: Vec<_> = wire::Attrs::new(&bytes[20..]).map(|a| a.unwrap()).collect();
        assert_eq!(top[0].kind, ETHTOOL_A_FEATURES_HEADER);
        assert_eq!(top[1].kind, ETHTOOL_A_FEATURES_WANTED);
        let bits = top[1].nested().next().unwrap().unwrap();
        assert_eq!(bits.kind, ETHTOOL_A_BITSET_BITS);
        let each: Vec<Vec<u16>> = bits
            .nested()
            .map(|b| b.unwrap().nested().map(|a| a.unwrap().kind).collect())
            .collect();
        assert_eq!(
            each,
            [
                vec![ETHTOOL_A_BITSET_BIT_NAME, ETHTOOL_A_BITSET_BIT_VALUE],
                vec![ETHTOOL_A_BITSET_BIT_NAME]
            ]
        );
    }

    #[test]
    fn gro_on_through_netlink() {
        if !kxdp_tests::require_root("offload::gro_on_through_netlink") {
            return;
        }
        let ns = Netns::new("offload").unwrap();
        let mut nl = ns.netlink().unwrap();
        nl.create_veth(
            &kxdp_control::netlink::VethConfig::new("kb-o0", "kb-o1"),
            None,
        )
        .unwrap();
        set_features(&ns, "kb-o0", &[("rx-gro", true)]).unwrap();
        tso_off(&ns, "kb-o0").unwrap();
        if let Ok(out) = ns.exec(&["ethtool", "-k", "kb-o0"], None) {
            assert!(out.contains("generic-receive-offload: on"), "{out}");
            for f in ALL_TSO {
                assert!(out.contains(&format!("{f}: off")), "{f}: {out}");
            }
        }
    }
}
