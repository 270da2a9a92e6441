//! Kernel VXLAN devices and their forwarding database, as flanneld's VXLAN backend sets them
//! up (`pkg/backend/vxlan/device.go`):
//!
//! ```text
//!   ip link add flannel.1 type vxlan id 1 local 192.168.77.2 dev eth0 dstport 8472 nolearning
//!   bridge fdb replace <remote VtepMAC> dev flannel.1 dst <remote node IP> self permanent
//! ```
//!
//! The device looks the inner destination MAC up in its FDB for the outer destination IP;
//! with learning off, only the entries written here exist (flanneld writes one per remote
//! node). Used by `kxdp demo` to build the flannel node kxdp interoperates with.

use std::net::Ipv4Addr;

use super::bridge::{check_ifname, new_link_request};
use super::error::Result;
use super::link::{LinkId, MacAddr};
use super::socket::Netlink;
use super::wire::{MessageBuilder, NdMsg, flags, kind};

/// `IFLA_VXLAN_*` attribute types inside IFLA_INFO_DATA of a vxlan device
/// (`linux/if_link.h`); the link attributes around them are written by `new_link_request`.
mod ifla {
    pub const VXLAN_ID: u16 = 1;
    pub const VXLAN_LINK: u16 = 3;
    pub const VXLAN_LOCAL: u16 = 4;
    pub const VXLAN_LEARNING: u16 = 7;
    /// The destination UDP port, in network byte order.
    pub const VXLAN_PORT: u16 = 15;
}

/// `NDA_*` attribute types (`linux/neighbour.h`).
mod nda {
    pub const DST: u16 = 1;
    pub const LLADDR: u16 = 2;
}

/// `AF_BRIDGE`: neighbour messages of this family are FDB entries.
const AF_BRIDGE: u8 = 7;
/// `NTF_SELF`: the entry belongs to the device itself (the vxlan FDB), not to a bridge it is
/// a port of.
const NTF_SELF: u8 = 1 << 1;
/// `NUD_PERMANENT`.
const NUD_PERMANENT: u16 = 0x80;

/// A VXLAN device to create with [`Netlink::create_vxlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    pub name: String,
    /// The VNI (24 bits).
    pub vni: u32,
    /// Outer source address (the node's underlay address).
    pub local: Ipv4Addr,
    /// Outer UDP destination port (flannel: 8472, the Linux default; IANA's is 4789).
    pub port: u16,
    /// The underlay device the tunnel uses (`dev eth0`), by index.
    pub link: Option<u32>,
    /// Learn remote MACs from received packets; flannel turns it off and writes the FDB.
    pub learning: bool,
    /// The VtepMAC; `None`: a random one.
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
}

impl VxlanConfig {
    /// VNI `vni`, port 8472, learning off (flannel's settings).
    pub fn new(name: impl Into<String>, vni: u32, local: Ipv4Addr) -> Self {
        VxlanConfig {
            name: name.into(),
            vni,
            local,
            port: 8472,
            link: None,
            learning: false,
            mac: None,
            mtu: None,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn link(mut self, ifindex: u32) -> Self {
        self.link = Some(ifindex);
        self
    }

    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The RTM_NEWLINK request.
    pub(crate) fn request(&self) -> MessageBuilder {
        new_link_request(&self.name, self.mac, self.mtu, "vxlan", |m| {
            m.attr_u32(ifla::VXLAN_ID, self.vni);
            m.attr(ifla::VXLAN_LOCAL, &self.local.octets());
            if let Some(link) = self.link {
                m.attr_u32(ifla::VXLAN_LINK, link);
            }
            m.attr(ifla::VXLAN_PORT, &self.port.to_be_bytes());
            m.attr(ifla::VXLAN_LEARNING, &[u8::from(self.learning)]);
        })
    }
}

/// The RTM_NEWNEIGH request of `bridge fdb replace MAC dev DEV dst IP self permanent`.
fn fdb_request(index: u32, mac: MacAddr, dst: Ipv4Addr) -> MessageBuilder {
    // flanneld's NeighSet: create or replace, so there is one entry per VtepMAC.
    let mut m = MessageBuilder::new(kind::RTM_NEWNEIGH, flags::CREATE | flags::REPLACE);
    m.header(
        &NdMsg {
            family: AF_BRIDGE,
            index,
            state: NUD_PERMANENT,
            flags: NTF_SELF,
            nd_type: 0,
        }
        .emit(),
    );
    m.attr(nda::LLADDR, &mac);
    m.attr(nda::DST, &dst.octets());
    m
}

impl Netlink {
    /// Creates a VXLAN device (EEXIST if the name is taken). It starts down.
    pub fn create_vxlan(&mut self, vxlan: &VxlanConfig) -> Result<()> {
        const OP: &str = "RTM_NEWLINK";
        let object = format!("vxlan {} id {}", vxlan.name, vxlan.vni);
        check_ifname(OP, &object, &vxlan.name)?;
        self.execute(vxlan.request(), OP, &object)
    }

    /// Adds or replaces the FDB entry `mac` → outer destination `dst` on a VXLAN device
    /// (`bridge fdb replace MAC dev DEV dst DST self permanent`).
    pub fn replace_fdb_entry(
        &mut self,
        link: impl Into<LinkId>,
        mac: MacAddr,
        dst: Ipv4Addr,
    ) -> Result<()> {
        let link = link.into();
        let object = format!(
            "fdb {} dev {link} dst {dst}",
            crate::api::protocol::format_mac(mac)
        );
        let index = self.resolve_index(link)?;
        self.execute(fdb_request(index, mac, dst), "RTM_NEWNEIGH", &object)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::netlink::LinkInfo;
    use crate::netlink::link::attrs_of;
    use crate::netlink::wire::{self, Attr, Attrs, Messages};

    fn find<'a>(attrs: Attrs<'a>, kind: u16) -> Option<Attr<'a>> {
        attrs.map(Result::unwrap).find(|a| a.kind == kind)
    }

    #[test]
    fn vxlan_request_is_flannels_device() {
        let cfg = VxlanConfig::new("flannel.1", 1, Ipv4Addr::new(192, 168, 77, 2))
            .link(2)
            .mac([0x0e, 0x46, 192, 168, 77, 2])
            .mtu(1450);
        let bytes = cfg.request().finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        assert_eq!(msg.kind, kind::RTM_NEWLINK);
        let info = LinkInfo::parse(msg.payload).unwrap();
        assert_eq!(info.name, "flannel.1");
        assert_eq!(info.kind.as_deref(), Some("vxlan"));
        assert_eq!(info.mac, Some([0x0e, 0x46, 192, 168, 77, 2]));
        assert_eq!(info.mtu, 1450);

        let linkinfo = find(
            attrs_of(msg.payload),
            crate::netlink::bridge::ifla::LINKINFO,
        )
        .unwrap();
        let data = find(linkinfo.nested(), crate::netlink::bridge::ifla::INFO_DATA).unwrap();
        let get = |k| find(data.nested(), k).unwrap().payload;
        assert_eq!(wire::parse_u32(get(ifla::VXLAN_ID)).unwrap(), 1);
        assert_eq!(wire::parse_u32(get(ifla::VXLAN_LINK)).unwrap(), 2);
        assert_eq!(get(ifla::VXLAN_LOCAL), [192, 168, 77, 2]);
        // The port travels in network byte order: 8472 = 0x2118.
        assert_eq!(get(ifla::VXLAN_PORT), [0x21, 0x18]);
        assert_eq!(get(ifla::VXLAN_LEARNING), [0]);
    }

    #[test]
    fn fdb_request_is_a_permanent_self_entry_of_the_bridge_family() {
        let mac = [0x0e, 0x6b, 192, 168, 77, 1];
        let bytes = fdb_request(7, mac, Ipv4Addr::new(192, 168, 77, 1)).finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        assert_eq!(msg.kind, kind::RTM_NEWNEIGH);
        assert_eq!(msg.flags, flags::CREATE | flags::REPLACE);
        let (header, attrs) = wire::split_header(msg.payload, NdMsg::LEN).unwrap();
        let header = NdMsg::parse(header).unwrap();
        assert_eq!(
            (header.family, header.index, header.state, header.flags),
            (AF_BRIDGE, 7, NUD_PERMANENT, NTF_SELF)
        );
        let attrs: Vec<Attr<'_>> = attrs.map(Result::unwrap).collect();
        assert_eq!(attrs[0].kind, nda::LLADDR);
        assert_eq!(attrs[0].payload, mac);
        assert_eq!(attrs[1].kind, nda::DST);
        assert_eq!(attrs[1].payload, [192, 168, 77, 1]);
    }
}
