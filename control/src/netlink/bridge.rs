//! Linux bridges: creating one (`ip link add NAME type bridge`) and enslaving ports to it
//! (`ip link set PORT master BRIDGE`).
//!
//! Used where a virtual L2 segment is needed: the underlay of `kxdp demo`, and `cni0` of a
//! flannel-style node.

use super::error::{Error, Result};
use super::link::{LinkId, MacAddr};
use super::socket::Netlink;
use super::wire::{IfInfoMsg, MessageBuilder, flags, kind};

/// `IFLA_*` attribute types (`linux/if_link.h`).
pub(super) mod ifla {
    pub const ADDRESS: u16 = 1;
    pub const IFNAME: u16 = 3;
    pub const MTU: u16 = 4;
    pub const MASTER: u16 = 10;
    pub const LINKINFO: u16 = 18;
    /// Inside IFLA_LINKINFO.
    pub const INFO_KIND: u16 = 1;
    pub const INFO_DATA: u16 = 2;
    /// Inside IFLA_INFO_DATA of a bridge (`IFLA_BR_*`).
    pub const BR_STP_STATE: u16 = 5;
    pub const BR_MCAST_SNOOPING: u16 = 23;
}

/// `IFNAMSIZ - 1`.
const MAX_IFNAME: usize = 15;

/// A bridge to create with [`Netlink::create_bridge`].
///
/// STP is off (the kernel's default), so ports forward as soon as they are up; multicast
/// snooping is off, so IPv6 neighbour discovery floods like ARP does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeConfig {
    pub name: String,
    /// A bridge without a MAC of its own takes the lowest of its ports' and changes it as
    /// ports come and go (invalidating neighbours' caches when it holds an address): give it
    /// one when it is a gateway.
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
}

impl BridgeConfig {
    pub fn new(name: impl Into<String>) -> Self {
        BridgeConfig {
            name: name.into(),
            ..BridgeConfig::default()
        }
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
        new_link_request(&self.name, self.mac, self.mtu, "bridge", |m| {
            m.attr_u32(ifla::BR_STP_STATE, 0);
            m.attr(ifla::BR_MCAST_SNOOPING, &[0]);
        })
    }
}

/// Refuses a name the kernel would (`dev_valid_name`), before anything is sent, so the error
/// names the request.
pub(super) fn check_ifname(op: &'static str, object: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_IFNAME
        || name.contains(['/', ':', '\0'])
        || name.contains(char::is_whitespace)
    {
        return Err(Error::Invalid {
            op,
            object: object.to_owned(),
            reason: "interface names are 1-15 bytes without '/', ':', NUL or whitespace",
        });
    }
    Ok(())
}

impl Netlink {
    /// Creates a bridge (EEXIST if the name is taken). It starts down, without ports.
    pub fn create_bridge(&mut self, bridge: &BridgeConfig) -> Result<()> {
        const OP: &str = "RTM_NEWLINK";
        let object = format!("bridge {}", bridge.name);
        check_ifname(OP, &object, &bridge.name)?;
        self.execute(bridge.request(), OP, &object)
    }

    /// Makes `port` a port of `bridge` (`ip link set PORT master BRIDGE`).
    pub fn set_master(&mut self, port: impl Into<LinkId>, bridge: impl Into<LinkId>) -> Result<()> {
        let (port, bridge) = (port.into(), bridge.into());
        let object = format!("link {port} master {bridge}");
        let master = self.resolve_index(bridge)?;
        let port_index = self.resolve_index(port)?;
        let mut m = MessageBuilder::new(kind::RTM_SETLINK, 0);
        m.header(
            &IfInfoMsg {
                index: port_index,
                ..IfInfoMsg::default()
            }
            .emit(),
        );
        m.attr_u32(ifla::MASTER, master);
        self.execute(m, "RTM_SETLINK", &object)
    }
}

/// An RTM_NEWLINK request creating a link of `kind` (name, optional MAC and MTU), with the
/// kind's own attributes written by `data` inside IFLA_LINKINFO / IFLA_INFO_DATA.
pub(crate) fn new_link_request(
    name: &str,
    mac: Option<MacAddr>,
    mtu: Option<u32>,
    kind_name: &str,
    data: impl FnOnce(&mut MessageBuilder),
) -> MessageBuilder {
    let mut m = MessageBuilder::new(kind::RTM_NEWLINK, flags::CREATE | flags::EXCL);
    m.header(&IfInfoMsg::default().emit());
    m.attr_str(ifla::IFNAME, name);
    if let Some(mac) = mac {
        m.attr(ifla::ADDRESS, &mac);
    }
    if let Some(mtu) = mtu {
        m.attr_u32(ifla::MTU, mtu);
    }
    let linkinfo = m.begin_nest(ifla::LINKINFO);
    m.attr_str(ifla::INFO_KIND, kind_name);
    let nest = m.begin_nest(ifla::INFO_DATA);
    data(&mut m);
    m.end_nest(nest);
    m.end_nest(linkinfo);
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::netlink::LinkInfo;
    use crate::netlink::link::attrs_of;
    use crate::netlink::wire::{Attr, Attrs, Messages};

    fn find<'a>(attrs: Attrs<'a>, kind: u16) -> Option<Attr<'a>> {
        attrs.map(Result::unwrap).find(|a| a.kind == kind)
    }

    #[test]
    fn bridge_request_names_kind_and_turns_stp_and_snooping_off() {
        let bytes = BridgeConfig::new("br0")
            .mac([0x0a, 0x58, 10, 244, 2, 1])
            .mtu(1450)
            .request()
            .finish(3);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        assert_eq!(msg.kind, kind::RTM_NEWLINK);
        assert_eq!(msg.flags, flags::CREATE | flags::EXCL);
        let info = LinkInfo::parse(msg.payload).unwrap();
        assert_eq!(info.name, "br0");
        assert_eq!(info.kind.as_deref(), Some("bridge"));
        assert_eq!(info.mac, Some([0x0a, 0x58, 10, 244, 2, 1]));
        assert_eq!(info.mtu, 1450);
        let linkinfo = find(attrs_of(msg.payload), ifla::LINKINFO).unwrap();
        let data = find(linkinfo.nested(), ifla::INFO_DATA).unwrap();
        let stp = find(data.nested(), ifla::BR_STP_STATE).unwrap();
        assert_eq!(stp.payload, 0u32.to_ne_bytes());
        let snooping = find(data.nested(), ifla::BR_MCAST_SNOOPING).unwrap();
        assert_eq!(snooping.payload, [0]);
    }

    #[test]
    fn bad_names_are_refused_before_sending() {
        assert!(check_ifname("op", "x", "flannel.1").is_ok());
        assert!(check_ifname("op", "x", "").is_err());
        assert!(check_ifname("op", "x", "a-name-of-16-chr").is_err());
        assert!(check_ifname("op", "x", "a b").is_err());
    }
}
