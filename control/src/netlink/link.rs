//! Links: veth pairs, up/down, MTU, MAC, moving between namespaces, lookup and listing.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::error::{Error, Result};
use super::socket::Netlink;
use super::wire::{self, DecodeError, IfInfoMsg, MessageBuilder, flags, kind};

/// An Ethernet address.
pub type MacAddr = [u8; 6];

/// `IFLA_*` attribute types.
/// Per-interface IPv4 settings ([`Netlink::set_ipv4_conf`]): the kernel's `IPV4_DEVCONF_*`
/// indices (include/uapi/linux/ip.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Ipv4Conf {
    Forwarding = 1,
    RpFilter = 8,
    AcceptLocal = 23,
}

mod ifla {
    pub const ADDRESS: u16 = 1;
    pub const IFNAME: u16 = 3;
    pub const MTU: u16 = 4;
    pub const OPERSTATE: u16 = 16;
    pub const LINKINFO: u16 = 18;
    pub const AF_SPEC: u16 = 26;
    pub const NET_NS_FD: u16 = 28;
    /// Inside IFLA_AF_SPEC / AF_INET.
    pub const INET_CONF: u16 = 1;
    pub const EXT_MASK: u16 = 29;
    pub const NUM_TX_QUEUES: u16 = 31;
    pub const NUM_RX_QUEUES: u16 = 32;
    /// Inside IFLA_LINKINFO.
    pub const INFO_KIND: u16 = 1;
    pub const INFO_DATA: u16 = 2;
    /// Inside IFLA_INFO_DATA of a veth: the peer's ifinfomsg followed by its IFLA_* attributes.
    pub const VETH_INFO_PEER: u16 = 1;
}

/// `IFF_UP` in `ifi_flags`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOWER_UP` in `ifi_flags`: the carrier is up (a veth: both ends are up).
pub const IFF_LOWER_UP: u32 = 0x1_0000;
/// `RTEXT_FILTER_SKIP_STATS`: leave the counters out of link replies (they are most of them).
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// `IFNAMSIZ - 1`: the longest interface name.
const MAX_IFNAME: usize = 15;

/// Names a link by index or by name (resolved by the kernel in the socket's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkId {
    Index(u32),
    Name(String),
}

impl From<u32> for LinkId {
    fn from(index: u32) -> Self {
        LinkId::Index(index)
    }
}

impl From<&str> for LinkId {
    fn from(name: &str) -> Self {
        LinkId::Name(name.to_owned())
    }
}

impl From<String> for LinkId {
    fn from(name: String) -> Self {
        LinkId::Name(name)
    }
}

impl From<&String> for LinkId {
    fn from(name: &String) -> Self {
        LinkId::Name(name.clone())
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkId::Index(index) => write!(f, "ifindex {index}"),
            LinkId::Name(name) => f.write_str(name),
        }
    }
}

/// RFC 2863 operational state (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
    Other(u8),
}

impl From<u8> for OperState {
    fn from(value: u8) -> Self {
        match value {
            0 => OperState::Unknown,
            1 => OperState::NotPresent,
            2 => OperState::Down,
            3 => OperState::LowerLayerDown,
            4 => OperState::Testing,
            5 => OperState::Dormant,
            6 => OperState::Up,
            other => OperState::Other(other),
        }
    }
}

/// What the kernel reports about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// None for links without a 6-byte hardware address (tunnels without Ethernet).
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// `IFF_*` bits, e.g. [`IFF_UP`], [`IFF_LOWER_UP`].
    pub flags: u32,
    pub oper_state: OperState,
    /// `IFLA_INFO_KIND`: "veth", "vxlan", ...; None for physical devices and loopback.
    pub kind: Option<String>,
    pub tx_queues: u32,
    pub rx_queues: u32,
}

impl LinkInfo {
    /// Administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Parses the payload of an RTM_NEWLINK message.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let (header, attrs) = wire::split_header(payload, IfInfoMsg::LEN)?;
        let header = IfInfoMsg::parse(header)?;
        let mut info = LinkInfo {
            index: header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            flags: header.flags,
            oper_state: OperState::Unknown,
            kind: None,
            tx_queues: 0,
            rx_queues: 0,
        };
        for attr in attrs {
            let attr = attr?;
            match attr.kind {
                ifla::IFNAME => info.name = wire::parse_string(attr.payload),
                ifla::ADDRESS => info.mac = attr.payload.try_into().ok(),
                ifla::MTU => info.mtu = wire::parse_u32(attr.payload)?,
                ifla::OPERSTATE => {
                    let state = attr
                        .payload
                        .first()
                        .ok_or(DecodeError("empty IFLA_OPERSTATE"))?;
                    info.oper_state = OperState::from(*state);
                }
                ifla::NUM_TX_QUEUES => info.tx_queues = wire::parse_u32(attr.payload)?,
                ifla::NUM_RX_QUEUES => info.rx_queues = wire::parse_u32(attr.payload)?,
                ifla::LINKINFO => {
                    for inner in attr.nested() {
                        let inner = inner?;
                        if inner.kind == ifla::INFO_KIND {
                            info.kind = Some(wire::parse_string(inner.payload));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// A veth pair to create with [`Netlink::create_veth`]. Unset fields take the kernel's
/// defaults (random MACs, MTU 1500, one queue each way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VethConfig {
    pub name: String,
    pub peer_name: String,
    pub mac: Option<MacAddr>,
    pub peer_mac: Option<MacAddr>,
    /// Applied to both ends (a veth drops frames larger than the receiving end's MTU).
    pub mtu: Option<u32>,
    /// Applied to both ends; AF_XDP binds one socket per queue, so the engine's end wants one
    /// queue per worker.
    pub tx_queues: Option<u32>,
    pub rx_queues: Option<u32>,
}

impl VethConfig {
    pub fn new(name: impl Into<String>, peer_name: impl Into<String>) -> Self {
        VethConfig {
            name: name.into(),
            peer_name: peer_name.into(),
            ..VethConfig::default()
        }
    }

    /// Sets both the TX and the RX queue count of both ends.
    pub fn queues(mut self, queues: u32) -> Self {
        self.tx_queues = Some(queues);
        self.rx_queues = Some(queues);
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.peer_mac = Some(mac);
        self
    }

    /// The RTM_NEWLINK request. `peer_netns_fd` is a raw fd the caller keeps open until the
    /// request is acknowledged.
    pub(crate) fn request(&self, peer_netns_fd: Option<i32>) -> MessageBuilder {
        let mut m = MessageBuilder::new(kind::RTM_NEWLINK, flags::CREATE | flags::EXCL);
        m.header(&IfInfoMsg::default().emit());
        self.end_attrs(&mut m, &self.name, self.mac);
        let linkinfo = m.begin_nest(ifla::LINKINFO);
        m.attr_str(ifla::INFO_KIND, "veth");
        let data = m.begin_nest(ifla::INFO_DATA);
        let peer = m.begin_nest(ifla::VETH_INFO_PEER);
        m.header(&IfInfoMsg::default().emit());
        self.end_attrs(&mut m, &self.peer_name, self.peer_mac);
        if let Some(fd) = peer_netns_fd {
            m.attr_u32(ifla::NET_NS_FD, fd.cast_unsigned());
        }
        m.end_nest(peer);
        m.end_nest(data);
        m.end_nest(linkinfo);
        m
    }

    /// The attributes one end shares with the other: name, MAC, MTU, queues.
    fn end_attrs(&self, m: &mut MessageBuilder, name: &str, mac: Option<MacAddr>) {
        m.attr_str(ifla::IFNAME, name);
        if let Some(mac) = mac {
            m.attr(ifla::ADDRESS, &mac);
        }
        if let Some(mtu) = self.mtu {
            m.attr_u32(ifla::MTU, mtu);
        }
        if let Some(tx) = self.tx_queues {
            m.attr_u32(ifla::NUM_TX_QUEUES, tx);
        }
        if let Some(rx) = self.rx_queues {
            m.attr_u32(ifla::NUM_RX_QUEUES, rx);
        }
    }
}

/// A request addressed to one link: by index in the header, or by name (index 0).
fn link_request(
    msg_kind: u16,
    msg_flags: u16,
    link: &LinkId,
    ifi_flags: u32,
    change: u32,
) -> MessageBuilder {
    let mut m = MessageBuilder::new(msg_kind, msg_flags);
    let index = match link {
        LinkId::Index(index) => *index,
        LinkId::Name(_) => 0,
    };
    m.header(
        &IfInfoMsg {
            index,
            flags: ifi_flags,
            change,
            ..IfInfoMsg::default()
        }
        .emit(),
    );
    if let LinkId::Name(name) = link {
        m.attr_str(ifla::IFNAME, name);
    }
    m
}

fn check_name(op: &'static str, object: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_IFNAME
        || name.contains(['/', '\0'])
        || name.contains(char::is_whitespace)
    {
        return Err(Error::Invalid {
            op,
            object: object.to_owned(),
            reason: "interface names are 1-15 bytes without '/', NUL or whitespace",
        });
    }
    Ok(())
}

impl Netlink {
    /// Creates a veth pair. With `peer_netns`, the peer end is created directly in that
    /// namespace (IFLA_NET_NS_FD), so it never appears in this one.
    pub fn create_veth(
        &mut self,
        veth: &VethConfig,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        const OP: &str = "RTM_NEWLINK";
        let object = format!("veth {}", veth.name);
        check_name(OP, &object, &veth.name)?;
        check_name(OP, &object, &veth.peer_name)?;
        let request = veth.request(peer_netns.map(|fd| fd.as_raw_fd()));
        self.execute(request, OP, &object)
    }

    /// Deletes a link (for a veth, both ends go).
    pub fn delete_link(&mut self, link: impl Into<LinkId>) -> Result<()> {
        let link = link.into();
        let request = link_request(kind::RTM_DELLINK, 0, &link, 0, 0);
        self.execute(request, "RTM_DELLINK", &format!("link {link}"))
    }

    /// Sets `IFF_UP`.
    pub fn set_link_up(&mut self, link: impl Into<LinkId>) -> Result<()> {
        let link = link.into();
        let request = link_request(kind::RTM_SETLINK, 0, &link, IFF_UP, IFF_UP);
        self.execute(request, "RTM_SETLINK", &format!("link {link} up"))
    }

    /// Clears `IFF_UP`.
    pub fn set_link_down(&mut self, link: impl Into<LinkId>) -> Result<()> {
        let link = link.into();
        let request = link_request(kind::RTM_SETLINK, 0, &link, 0, IFF_UP);
        self.execute(request, "RTM_SETLINK", &format!("link {link} down"))
    }

    pub fn set_mtu(&mut self, link: impl Into<LinkId>, mtu: u32) -> Result<()> {
        let link = link.into();
        let mut request = link_request(kind::RTM_SETLINK, 0, &link, 0, 0);
        request.attr_u32(ifla::MTU, mtu);
        self.execute(request, "RTM_SETLINK", &format!("link {link} mtu {mtu}"))
    }

    /// Sets per-interface IPv4 settings (`net.ipv4.conf.<link>.*`, see [`Ipv4Conf`]) through
    /// rtnetlink (`IFLA_AF_SPEC`/`AF_INET`/`IFLA_INET_CONF`), which needs CAP_NET_ADMIN but
    /// not a writable `/proc/sys` (container runtimes mount it read-only).
    pub fn set_ipv4_conf(
        &mut self,
        link: impl Into<LinkId>,
        conf: &[(Ipv4Conf, u32)],
    ) -> Result<()> {
        let link = link.into();
        let mut request = link_request(kind::RTM_SETLINK, 0, &link, 0, 0);
        let spec = request.begin_nest(ifla::AF_SPEC);
        let inet = request.begin_nest(libc::AF_INET as u16);
        let values = request.begin_nest(ifla::INET_CONF);
        for (key, value) in conf {
            request.attr_u32(*key as u16, *value);
        }
        request.end_nest(values);
        request.end_nest(inet);
        request.end_nest(spec);
        let names: Vec<String> = conf.iter().map(|(k, v)| format!("{k:?}={v}")).collect();
        self.execute(
            request,
            "RTM_SETLINK",
            &format!("link {link} ipv4 conf {}", names.join(",")),
        )
    }

    pub fn set_mac(&mut self, link: impl Into<LinkId>, mac: MacAddr) -> Result<()> {
        let link = link.into();
        let mut request = link_request(kind::RTM_SETLINK, 0, &link, 0, 0);
        request.attr(ifla::ADDRESS, &mac);
        self.execute(request, "RTM_SETLINK", &format!("link {link} address"))
    }

    /// Moves a link into the namespace `netns` (it goes down on the way and keeps its name,
    /// which must be free there). Its index may change in the new namespace.
    pub fn move_to_netns(&mut self, link: impl Into<LinkId>, netns: BorrowedFd<'_>) -> Result<()> {
        let link = link.into();
        let mut request = link_request(kind::RTM_SETLINK, 0, &link, 0, 0);
        request.attr_u32(ifla::NET_NS_FD, netns.as_raw_fd().cast_unsigned());
        self.execute(request, "RTM_SETLINK", &format!("link {link} netns"))
    }

    /// Looks a link up; ENODEV when there is none (see [`find_link`](Self::find_link)).
    pub fn link(&mut self, link: impl Into<LinkId>) -> Result<LinkInfo> {
        const OP: &str = "RTM_GETLINK";
        let link = link.into();
        let object = format!("link {link}");
        if let LinkId::Name(name) = &link {
            check_name(OP, &object, name)?;
        }
        let mut request = link_request(kind::RTM_GETLINK, 0, &link, 0, 0);
        request.attr_u32(ifla::EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        let replies = self.query(request, OP, &object)?;
        let payload = replies.first().ok_or_else(|| Error::MissingReply {
            op: OP,
            object: object.clone(),
            expected: "RTM_NEWLINK",
        })?;
        LinkInfo::parse(payload).map_err(|source| Error::Malformed {
            op: OP,
            object,
            source,
        })
    }

    /// Like [`link`](Self::link), but a missing link is `Ok(None)`.
    pub fn find_link(&mut self, link: impl Into<LinkId>) -> Result<Option<LinkInfo>> {
        match self.link(link) {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the socket's namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        const OP: &str = "RTM_GETLINK";
        let mut request = MessageBuilder::new(kind::RTM_GETLINK, 0);
        request.header(&IfInfoMsg::default().emit());
        request.attr_u32(ifla::EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        let parts = self.dump(&request, OP, "dump")?;
        parts
            .iter()
            .map(|p| LinkInfo::parse(p))
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Malformed {
                op: OP,
                object: "dump".to_owned(),
                source,
            })
    }

    /// The index of `link`, asking the kernel only when it is given by name.
    pub(crate) fn resolve_index(&mut self, link: LinkId) -> Result<u32> {
        match link {
            LinkId::Index(index) => Ok(index),
            name => Ok(self.link(name)?.index),
        }
    }
}

/// The attribute list of a link message, for tests that decode requests.
#[cfg(test)]
pub(crate) fn attrs_of(payload: &[u8]) -> wire::Attrs<'_> {
    wire::split_header(payload, IfInfoMsg::LEN)
        .map(|(_, attrs)| attrs)
        .unwrap_or_else(|_| wire::Attrs::new(&[]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::netlink::wire::{Attr, Attrs, Messages};

    fn find<'a>(attrs: Attrs<'a>, kind: u16) -> Option<Attr<'a>> {
        attrs.map(Result::unwrap).find(|a| a.kind == kind)
    }

    #[test]
    fn veth_request_carries_both_ends() {
        let veth = VethConfig::new("kx-a", "kx-b")
            .queues(2)
            .mtu(1450)
            .mac([2, 0, 0, 0, 0, 1])
            .peer_mac([2, 0, 0, 0, 0, 2]);
        let bytes = veth.request(Some(9)).finish(5);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        assert_eq!(msg.kind, kind::RTM_NEWLINK);
        assert_eq!(msg.flags, flags::CREATE | flags::EXCL);

        // The outer end, decoded the same way the kernel's reply would be.
        let info = LinkInfo::parse(msg.payload).unwrap();
        assert_eq!(info.name, "kx-a");
        assert_eq!(info.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!((info.mtu, info.tx_queues, info.rx_queues), (1450, 2, 2));
        assert_eq!(info.kind.as_deref(), Some("veth"));

        // The peer: IFLA_LINKINFO / IFLA_INFO_DATA / VETH_INFO_PEER = ifinfomsg + attributes.
        let linkinfo = find(attrs_of(msg.payload), ifla::LINKINFO).unwrap();
        let data = find(linkinfo.nested(), ifla::INFO_DATA).unwrap();
        let peer = find(data.nested(), ifla::VETH_INFO_PEER).unwrap();
        let peer_info = LinkInfo::parse(peer.payload).unwrap();
        assert_eq!(peer_info.name, "kx-b");
        assert_eq!(peer_info.mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(
            (peer_info.mtu, peer_info.tx_queues, peer_info.rx_queues),
            (1450, 2, 2)
        );
        let ns = find(attrs_of(peer.payload), ifla::NET_NS_FD).unwrap();
        assert_eq!(wire::parse_u32(ns.payload).unwrap(), 9);
    }

    #[test]
    fn requests_by_name_use_index_zero() {
        let bytes = link_request(kind::RTM_SETLINK, 0, &"eth0".into(), IFF_UP, IFF_UP).finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let info = LinkInfo::parse(msg.payload).unwrap();
        assert_eq!(
            (info.index, info.name.as_str(), info.flags),
            (0, "eth0", IFF_UP)
        );

        let bytes = link_request(kind::RTM_DELLINK, 0, &7.into(), 0, 0).finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let info = LinkInfo::parse(msg.payload).unwrap();
        assert_eq!((info.index, info.name.as_str()), (7, ""));
    }

    #[test]
    fn bad_names_are_refused_before_sending() {
        assert!(check_name("op", "x", "kxdp0").is_ok());
        assert!(check_name("op", "x", "").is_err());
        assert!(check_name("op", "x", "a-name-of-16-chr").is_err());
        assert!(check_name("op", "x", "a/b").is_err());
        assert!(check_name("op", "x", "a b").is_err());
    }

    #[test]
    fn link_ids_display_for_error_messages() {
        assert_eq!(LinkId::from("kxdp0").to_string(), "kxdp0");
        assert_eq!(LinkId::from(3).to_string(), "ifindex 3");
    }
}
