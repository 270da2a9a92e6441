//! Linux VXLAN devices and their forwarding entries, for the kernel baselines (what flannel
//! sets up: `ip link add flannel.1 type vxlan id 1 local <node ip> dev <uplink> dstport 8472
//! nolearning`, then per remote node an FDB entry `<vtep mac> dst <node ip>` on the device, a
//! neighbour entry for the remote's gateway address and an onlink route to its pod CIDR).
//!
//! The device and the FDB entry are built here (RTM_NEWLINK kind "vxlan", RTM_NEWNEIGH of
//! family AF_BRIDGE); addresses, routes and neighbour entries go through
//! `kxdp_control::netlink`. Private to the benchmark.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use kxdp_control::netlink::wire::{IfInfoMsg, MessageBuilder, NdMsg, flags, kind};
use nix::sys::socket::SockProtocol;

use crate::netlink_raw::RawNetlink;
use crate::netns::Netns;

/// `IFLA_*` attributes used here (linux/if_link.h).
mod ifla {
    pub const ADDRESS: u16 = 1;
    pub const IFNAME: u16 = 3;
    pub const MTU: u16 = 4;
    pub const LINKINFO: u16 = 18;
    pub const INFO_KIND: u16 = 1;
    pub const INFO_DATA: u16 = 2;
    pub const VXLAN_ID: u16 = 1;
    pub const VXLAN_LINK: u16 = 3;
    pub const VXLAN_LOCAL: u16 = 4;
    pub const VXLAN_LEARNING: u16 = 7;
    pub const VXLAN_PORT: u16 = 15;
}

/// `NDA_*` attributes (linux/neighbour.h).
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `NTF_SELF`: the entry goes to the device's own FDB, not a bridge master's.
const NTF_SELF: u8 = 1 << 1;
const NUD_PERMANENT: u16 = 0x80;
const AF_BRIDGE: u8 = 7;

/// A VXLAN device to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    /// Outer source address.
    pub local: Ipv4Addr,
    /// The underlay device (by index) the tunnel sends through.
    pub link: u32,
    /// UDP destination port (flannel: 8472).
    pub port: u16,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
}

impl VxlanDevice {
    /// The RTM_NEWLINK request: learning off, as flannel creates it.
    pub fn request(&self) -> MessageBuilder {
        let mut m = MessageBuilder::new(kind::RTM_NEWLINK, flags::CREATE | flags::EXCL);
        m.header(&IfInfoMsg::default().emit());
        m.attr_str(ifla::IFNAME, &self.name);
        m.attr(ifla::ADDRESS, &self.mac);
        if let Some(mtu) = self.mtu {
            m.attr_u32(ifla::MTU, mtu);
        }
        let linkinfo = m.begin_nest(ifla::LINKINFO);
        m.attr_str(ifla::INFO_KIND, "vxlan");
        let data = m.begin_nest(ifla::INFO_DATA);
        m.attr_u32(ifla::VXLAN_ID, self.vni);
        m.attr_u32(ifla::VXLAN_LINK, self.link);
        m.attr(ifla::VXLAN_LOCAL, &self.local.octets());
        m.attr(ifla::VXLAN_LEARNING, &[0]);
        // The port attribute is big-endian (NLA_BE16).
        m.attr(ifla::VXLAN_PORT, &self.port.to_be_bytes());
        m.end_nest(data);
        m.end_nest(linkinfo);
        m
    }

    /// Creates the device in `ns` (down: bring it up with the rtnetlink client).
    pub fn create(&self, ns: &Netns) -> Result<()> {
        let request = self.request();
        ns.run(|| -> Result<()> {
            RawNetlink::open(SockProtocol::NetlinkRoute)?.request(
                request,
                "RTM_NEWLINK",
                &format!("vxlan {}", self.name),
            )?;
            Ok(())
        })?
        .with_context(|| format!("creating vxlan device {} in {}", self.name, ns.name()))
    }
}

/// The AF_BRIDGE RTM_NEWNEIGH request for `bridge fdb replace <mac> dev <ifindex> dst <remote>
/// self permanent`: frames to `mac` on the VXLAN device go to the VTEP at `remote`.
pub fn fdb_request(ifindex: u32, mac: [u8; 6], remote: Ipv4Addr) -> MessageBuilder {
    let mut m = MessageBuilder::new(kind::RTM_NEWNEIGH, flags::CREATE | flags::REPLACE);
    m.header(
        &NdMsg {
            family: AF_BRIDGE,
            index: ifindex,
            state: NUD_PERMANENT,
            flags: NTF_SELF,
            ..NdMsg::default()
        }
        .emit(),
    );
    m.attr(NDA_LLADDR, &mac);
    m.attr(NDA_DST, &remote.octets());
    m
}

/// Adds (or replaces) an FDB entry on the VXLAN device `ifindex` in `ns`.
pub fn fdb_replace(ns: &Netns, ifindex: u32, mac: [u8; 6], remote: Ipv4Addr) -> Result<()> {
    let request = fdb_request(ifindex, mac, remote);
    ns.run(|| -> Result<()> {
        RawNetlink::open(SockProtocol::NetlinkRoute)?.request(
            request,
            "RTM_NEWNEIGH",
            &format!("fdb dst {remote} dev {ifindex}"),
        )?;
        Ok(())
    })?
    .with_context(|| format!("adding an FDB entry to {remote} in {}", ns.name()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// The attribute (type, payload) pairs of a finished request, nested ones flattened with
    /// their parent's type in front.
    fn attrs(bytes: &[u8], header: usize) -> Vec<(Vec<u16>, Vec<u8>)> {
        fn walk(b: &[u8], path: &[u16], out: &mut Vec<(Vec<u16>, Vec<u8>)>) {
            for a in kxdp_control::netlink::wire::Attrs::new(b) {
                let a = a.unwrap();
                let mut p = path.to_vec();
                p.push(a.kind);
                if matches!(p.as_slice(), [18] | [18, 2]) {
                    walk(a.payload, &p, out);
                } else {
                    out.push((p, a.payload.to_vec()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&bytes[16 + header..], &[], &mut out);
        out
    }

    #[test]
    fn vxlan_request_carries_flannels_settings() {
        let dev = VxlanDevice {
            name: "kb-vx".into(),
            vni: 1,
            local: Ipv4Addr::new(10, 200, 2, 1),
            link: 7,
            port: 8472,
            mac: [2, 0, 0, 0, 0xee, 1],
            mtu: None,
        };
        let bytes = dev.request().finish(1);
        let a = attrs(&bytes, IfInfoMsg::LEN);
        let get = |p: &[u16]| a.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone());
        assert_eq!(get(&[3]).unwrap(), b"kb-vx\0");
        assert_eq!(get(&[18, 1]).unwrap(), b"vxlan\0");
        assert_eq!(get(&[18, 2, 1]).unwrap(), 1u32.to_ne_bytes());
        assert_eq!(get(&[18, 2, 3]).unwrap(), 7u32.to_ne_bytes());
        assert_eq!(get(&[18, 2, 4]).unwrap(), [10, 200, 2, 1]);
        assert_eq!(get(&[18, 2, 7]).unwrap(), [0]);
        assert_eq!(get(&[18, 2, 15]).unwrap(), [0x21, 0x18]); // 8472 big-endian
    }

    #[test]
    fn fdb_request_is_a_permanent_bridge_entry() {
        let bytes = fdb_request(9, [2, 0, 0, 0, 0xee, 2], Ipv4Addr::new(10, 200, 2, 100)).finish(1);
        let nd = NdMsg::parse(&bytes[16..16 + NdMsg::LEN]).unwrap();
        assert_eq!(
            (nd.family, nd.index, nd.state, nd.flags),
            (AF_BRIDGE, 9, NUD_PERMANENT, NTF_SELF)
        );
        let a = attrs(&bytes, NdMsg::LEN);
        assert_eq!(a[0], (vec![NDA_LLADDR], vec![2, 0, 0, 0, 0xee, 2]));
        assert_eq!(a[1], (vec![NDA_DST], vec![10, 200, 2, 100]));
    }
}
