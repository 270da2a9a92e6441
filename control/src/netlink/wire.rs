//! Netlink wire format: the message header, attributes (NLAs) and the fixed family headers of
//! rtnetlink (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, `ndmsg`).
//!
//! Everything here is plain byte-buffer code with no I/O, so it is unit tested without root.
//! Netlink integers are in the host's byte order (`to_ne_bytes`); addresses inside attributes
//! are in network order, which is how `Ipv4Addr::octets` already lays them out. Every message
//! and every attribute starts on a 4-byte boundary (`NLMSG_ALIGN`, `NLA_ALIGN`).
//!
//! Constant values were checked against the uapi headers (`linux/rtnetlink.h`, `if_link.h`,
//! `neighbour.h`, `veth.h`, `if_addr.h`, `netlink.h`) of a 6.18 kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// The type bits of `nla_type`; the top two are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Marks an attribute whose payload is itself a list of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;

/// Rounds up to the 4-byte alignment of messages and attributes.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Message types (`nlmsg_type`).
pub mod kind {
    pub const NLMSG_NOOP: u16 = 1;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const NLMSG_OVERRUN: u16 = 4;
    pub const RTM_NEWLINK: u16 = 16;
    pub const RTM_DELLINK: u16 = 17;
    pub const RTM_GETLINK: u16 = 18;
    pub const RTM_SETLINK: u16 = 19;
    pub const RTM_NEWADDR: u16 = 20;
    pub const RTM_DELADDR: u16 = 21;
    pub const RTM_GETADDR: u16 = 22;
    pub const RTM_NEWROUTE: u16 = 24;
    pub const RTM_DELROUTE: u16 = 25;
    pub const RTM_GETROUTE: u16 = 26;
    pub const RTM_NEWNEIGH: u16 = 28;
    pub const RTM_DELNEIGH: u16 = 29;
    pub const RTM_GETNEIGH: u16 = 30;
}

/// Header flags (`nlmsg_flags`).
pub mod flags {
    pub const REQUEST: u16 = 0x1;
    pub const MULTI: u16 = 0x2;
    pub const ACK: u16 = 0x4;
    /// Set by the kernel on a dump part when the table changed during the dump.
    pub const DUMP_INTR: u16 = 0x10;
    /// `NLM_F_ROOT | NLM_F_MATCH`.
    pub const DUMP: u16 = 0x300;
    pub const REPLACE: u16 = 0x100;
    pub const EXCL: u16 = 0x200;
    pub const CREATE: u16 = 0x400;
}

/// Address families as carried in the family headers.
pub mod family {
    pub const AF_UNSPEC: u8 = 0;
    pub const AF_INET: u8 = 2;
    pub const AF_INET6: u8 = 10;
}

/// The family of `ip`, as the family headers carry it.
pub fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => family::AF_INET,
        IpAddr::V6(_) => family::AF_INET6,
    }
}

/// The octets of `ip` (4 or 16), as address attributes carry them.
pub fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Decodes an address attribute of 4 or 16 bytes.
pub fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// A malformed message or attribute. Names what was short, for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

/// Reads a host-order u32 attribute payload.
pub fn parse_u32(bytes: &[u8]) -> Result<u32, DecodeError> {
    Ok(u32::from_ne_bytes(
        bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError("u32 attribute shorter than 4 bytes"))?,
    ))
}

/// Reads a NUL-terminated (or unterminated) string attribute.
pub fn parse_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Builds one request: header, fixed family header, then attributes (possibly nested).
///
/// The length and sequence number are written by [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    /// Starts a message of `kind` with `flags` (NLM_F_REQUEST is the caller's to add).
    pub fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq, patched in finish()
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 addresses the kernel
        MessageBuilder { buf }
    }

    /// The message type this builder was started with.
    pub fn kind(&self) -> u16 {
        u16::from_ne_bytes([self.buf[4], self.buf[5]])
    }

    /// The header flags this builder was started with.
    pub fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// Adds header flags (NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP are added by the socket).
    pub fn add_flags(&mut self, flags: u16) -> &mut Self {
        let merged = self.flags() | flags;
        self.buf[6..8].copy_from_slice(&merged.to_ne_bytes());
        self
    }

    /// Appends a fixed header (already laid out by its `emit`), padded to alignment.
    pub fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Appends attribute `kind` with `payload`, padded to alignment.
    pub fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&nla_len(len).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// A host-order u32 attribute.
    pub fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// A NUL-terminated string attribute (`NLA_STRING` / `NLA_NUL_STRING` both accept it).
    pub fn attr_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        self.attr(kind, &bytes)
    }

    /// Opens a nested attribute; everything appended until [`end_nest`](Self::end_nest) is
    /// inside it. Returns the token `end_nest` needs.
    pub fn begin_nest(&mut self, kind: u16) -> Nest {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // nla_len, patched in end_nest()
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Nest { start }
    }

    /// Closes a nested attribute opened by [`begin_nest`](Self::begin_nest).
    pub fn end_nest(&mut self, nest: Nest) -> &mut Self {
        let len = nla_len(self.buf.len() - nest.start);
        self.buf[nest.start..nest.start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// Writes the total length and `seq`, and returns the bytes to send.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }
}

/// An open nested attribute, from [`MessageBuilder::begin_nest`].
#[derive(Debug)]
#[must_use = "close the nest with MessageBuilder::end_nest"]
pub struct Nest {
    start: usize,
}

/// An attribute length as `nla_len` stores it. Requests are built from a few names and
/// addresses, far below 64 KiB; saturating keeps a mistake visible to the kernel's parser
/// (it rejects the message) instead of wrapping into a shorter, wrong one.
fn nla_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// One message from a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub port: u32,
    /// Everything after the header, up to `nlmsg_len` (the family header and attributes).
    pub payload: &'a [u8],
}

/// Iterates over the messages packed into one datagram. After a malformed header it yields
/// the error once and stops.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        if rest.len() < NLMSG_HDRLEN {
            return Some(Err(DecodeError("message header truncated")));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Some(Err(DecodeError("message length out of bounds")));
        }
        let message = Message {
            kind: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            port: u32::from_ne_bytes([rest[12], rest[13], rest[14], rest[15]]),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        self.rest = rest.get(align(len)..).unwrap_or_default();
        Some(Ok(message))
    }
}

/// One attribute: its type (without the NESTED/BYTEORDER bits) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attributes nested in this one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }
}

/// Iterates over a list of attributes. After a malformed one it yields the error once and
/// stops, so `collect::<Result<..>>()` reports it.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Attrs { rest: bytes }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Trailing bytes shorter than an attribute header are padding.
        if self.rest.len() < NLA_HDRLEN {
            self.rest = &[];
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        if len < NLA_HDRLEN || len > rest.len() {
            return Some(Err(DecodeError("attribute length out of bounds")));
        }
        let attr = Attr {
            kind: u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK,
            payload: &rest[NLA_HDRLEN..len],
        };
        self.rest = rest.get(align(len)..).unwrap_or_default();
        Some(Ok(attr))
    }
}

/// Splits a message payload into its fixed header of `size` bytes and its attributes.
pub fn split_header(payload: &[u8], size: usize) -> Result<(&[u8], Attrs<'_>), DecodeError> {
    if payload.len() < size {
        return Err(DecodeError("family header truncated"));
    }
    let attrs = payload.get(align(size)..).unwrap_or_default();
    Ok((&payload[..size], Attrs::new(attrs)))
}

/// `struct ifinfomsg` (16 bytes): the fixed header of link messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfInfoMsg {
    pub family: u8,
    pub link_type: u16,
    /// 0 in a request means "find the link by IFLA_IFNAME".
    pub index: u32,
    pub flags: u32,
    /// Which bits of `flags` a request changes.
    pub change: u32,
}

impl IfInfoMsg {
    pub const LEN: usize = 16;

    pub fn emit(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[2..4].copy_from_slice(&self.link_type.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.change.to_ne_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; Self::LEN] = b
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError("ifinfomsg truncated"))?;
        Ok(IfInfoMsg {
            family: b[0],
            link_type: u16::from_ne_bytes([b[2], b[3]]),
            index: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            flags: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            change: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// `struct ifaddrmsg` (8 bytes): the fixed header of address messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfAddrMsg {
    pub family: u8,
    pub prefix_len: u8,
    pub flags: u8,
    pub scope: u8,
    pub index: u32,
}

impl IfAddrMsg {
    pub const LEN: usize = 8;

    pub fn emit(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[1] = self.prefix_len;
        b[2] = self.flags;
        b[3] = self.scope;
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; Self::LEN] = b
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError("ifaddrmsg truncated"))?;
        Ok(IfAddrMsg {
            family: b[0],
            prefix_len: b[1],
            flags: b[2],
            scope: b[3],
            index: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// `struct rtmsg` (12 bytes): the fixed header of route messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtMsg {
    pub family: u8,
    pub dst_len: u8,
    pub src_len: u8,
    pub tos: u8,
    pub table: u8,
    pub protocol: u8,
    pub scope: u8,
    pub route_type: u8,
    pub flags: u32,
}

impl RtMsg {
    pub const LEN: usize = 12;

    pub fn emit(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&[
            self.family,
            self.dst_len,
            self.src_len,
            self.tos,
            self.table,
            self.protocol,
            self.scope,
            self.route_type,
        ]);
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; Self::LEN] = b
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError("rtmsg truncated"))?;
        Ok(RtMsg {
            family: b[0],
            dst_len: b[1],
            src_len: b[2],
            tos: b[3],
            table: b[4],
            protocol: b[5],
            scope: b[6],
            route_type: b[7],
            flags: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// `struct ndmsg` (12 bytes): the fixed header of neighbour messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NdMsg {
    pub family: u8,
    pub index: u32,
    /// `NUD_*` bits.
    pub state: u16,
    /// `NTF_*` bits (the extended ones travel in NDA_FLAGS_EXT).
    pub flags: u8,
    pub nd_type: u8,
}

impl NdMsg {
    pub const LEN: usize = 12;

    pub fn emit(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..10].copy_from_slice(&self.state.to_ne_bytes());
        b[10] = self.flags;
        b[11] = self.nd_type;
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; Self::LEN] = b
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError("ndmsg truncated"))?;
        Ok(NdMsg {
            family: b[0],
            index: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            state: u16::from_ne_bytes([b[8], b[9]]),
            flags: b[10],
            nd_type: b[11],
        })
    }
}

/// Reads the errno of an NLMSG_ERROR payload (`struct nlmsgerr`): 0 is an ACK, otherwise the
/// kernel's negative errno, returned here as positive.
pub fn parse_error_code(payload: &[u8]) -> Result<i32, DecodeError> {
    let code = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or(DecodeError("nlmsgerr truncated"))?;
    Ok(code.saturating_neg())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn builder_lays_out_header_and_aligned_attributes() {
        let mut m = MessageBuilder::new(kind::RTM_NEWLINK, flags::REQUEST | flags::ACK);
        m.header(&IfInfoMsg::default().emit())
            .attr_str(3, "veth0") // 6 bytes + 4 header = 10, padded to 12
            .attr_u32(4, 1500);
        let bytes = m.finish(42);
        assert_eq!(bytes.len(), 16 + 16 + 12 + 8);
        assert_eq!(bytes.len() % 4, 0);

        let msgs: Vec<_> = Messages::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        let msg = msgs[0];
        assert_eq!(msg.kind, kind::RTM_NEWLINK);
        assert_eq!(msg.flags, flags::REQUEST | flags::ACK);
        assert_eq!(msg.seq, 42);
        let (hdr, attrs) = split_header(msg.payload, IfInfoMsg::LEN).unwrap();
        assert_eq!(IfInfoMsg::parse(hdr).unwrap(), IfInfoMsg::default());
        let attrs: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].kind, 3);
        assert_eq!(parse_string(attrs[0].payload), "veth0");
        assert_eq!(attrs[0].payload.len(), 6, "payload excludes the padding");
        assert_eq!(parse_u32(attrs[1].payload).unwrap(), 1500);
    }

    #[test]
    fn nested_attributes_round_trip() {
        let mut m = MessageBuilder::new(kind::RTM_NEWLINK, flags::REQUEST);
        m.header(&IfInfoMsg::default().emit());
        let outer = m.begin_nest(18);
        m.attr_str(1, "veth");
        let inner = m.begin_nest(2);
        m.attr(7, &[1, 2, 3]);
        m.end_nest(inner);
        m.end_nest(outer);
        m.attr_u32(4, 9000);
        let bytes = m.finish(1);

        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let (_, attrs) = split_header(msg.payload, IfInfoMsg::LEN).unwrap();
        let attrs: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].kind, 18, "the NESTED bit is masked off");
        let inner: Vec<_> = attrs[0].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(parse_string(inner[0].payload), "veth");
        assert_eq!(inner[1].kind, 2);
        let innermost: Vec<_> = inner[1].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            innermost,
            vec![Attr {
                kind: 7,
                payload: &[1, 2, 3]
            }]
        );
        assert_eq!(parse_u32(attrs[1].payload).unwrap(), 9000);
    }

    #[test]
    fn several_messages_in_one_datagram() {
        let mut datagram = Vec::new();
        for seq in 1..=3 {
            let mut m = MessageBuilder::new(kind::RTM_NEWNEIGH, flags::MULTI);
            m.header(&NdMsg::default().emit()).attr(1, &[10, 0, 0, 1]);
            datagram.extend(m.finish(seq));
        }
        let seqs: Vec<u32> = Messages::new(&datagram).map(|m| m.unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut m = MessageBuilder::new(kind::RTM_NEWLINK, 0);
        m.header(&IfInfoMsg::default().emit()).attr_u32(4, 1);
        let bytes = m.finish(1);
        for cut in 0..bytes.len() {
            for msg in Messages::new(&bytes[..cut]).flatten() {
                let _ = split_header(msg.payload, IfInfoMsg::LEN).map(|(_, a)| a.count());
            }
        }
        assert!(Messages::new(&bytes[..10]).next().unwrap().is_err());
        // An attribute claiming more than is there.
        let bad = [200u8, 0, 1, 0, 0, 0, 0, 0];
        assert!(Attrs::new(&bad).next().unwrap().is_err());
        assert_eq!(Attrs::new(&bad).count(), 1, "stops after the error");
    }

    #[test]
    fn fixed_headers_round_trip() {
        let info = IfInfoMsg {
            family: 0,
            link_type: 1,
            index: 7,
            flags: 0x1003,
            change: 1,
        };
        assert_eq!(IfInfoMsg::parse(&info.emit()).unwrap(), info);
        let addr = IfAddrMsg {
            family: family::AF_INET6,
            prefix_len: 64,
            flags: 0x80,
            scope: 253,
            index: 3,
        };
        assert_eq!(IfAddrMsg::parse(&addr.emit()).unwrap(), addr);
        let rt = RtMsg {
            family: family::AF_INET,
            dst_len: 24,
            src_len: 0,
            tos: 0,
            table: 254,
            protocol: 4,
            scope: 253,
            route_type: 1,
            flags: 4,
        };
        assert_eq!(RtMsg::parse(&rt.emit()).unwrap(), rt);
        let nd = NdMsg {
            family: family::AF_INET,
            index: 9,
            state: 0x80,
            flags: 0x2,
            nd_type: 1,
        };
        assert_eq!(NdMsg::parse(&nd.emit()).unwrap(), nd);
        assert!(NdMsg::parse(&nd.emit()[..11]).is_err());
    }

    #[test]
    fn error_codes_are_positive_errnos() {
        assert_eq!(parse_error_code(&(-17i32).to_ne_bytes()).unwrap(), 17);
        assert_eq!(parse_error_code(&0i32.to_ne_bytes()).unwrap(), 0);
        assert!(parse_error_code(&[0, 0]).is_err());
    }

    #[test]
    fn ip_attributes_round_trip() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V6("fd00::1".parse().unwrap()),
        ] {
            assert_eq!(parse_ip(&ip_bytes(&ip)), Some(ip));
        }
        assert_eq!(parse_ip(&[1, 2, 3]), None);
    }
}
