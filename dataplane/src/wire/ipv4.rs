//! IPv4 headers (RFC 791). Options are skipped, not parsed: the header length comes from IHL
//! and [`Ipv4Packet::options`] hands out the raw bytes.

use std::net::Ipv4Addr;

use super::checksum;
use super::{IpProtocol, WireError, read_u16, write_u16};

mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 20 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking: version 4, IHL ≥ 5, the header within the buffer, and
    /// `header_len ≤ total_len ≤ buffer length`. Bytes past `total_len` (Ethernet padding) are
    /// allowed and ignored by [`payload`](Self::payload).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let packet = Ipv4Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// As [`new_checked`](Self::new_checked) but allowing `total_len` past the buffer end: for
    /// the datagram quoted in an ICMP error, of which only the start is carried. The payload is
    /// then whatever of it the buffer holds.
    #[inline]
    pub fn new_checked_truncated(buffer: T) -> Result<Ipv4Packet<T>, WireError> {
        let packet = Ipv4Packet::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Everything of [`check_len`](Self::check_len) except the total length fitting.
    #[inline]
    fn check_header(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < IPV4_MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = self.header_len();
        if header_len < IPV4_MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        if usize::from(self.total_len()) < header_len {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is any fragment (first, middle or last) rather than a whole datagram.
    /// Only the first fragment (offset 0) carries the L4 header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let mut octets = [0u8; 4];
        octets.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv4Addr::from(octets)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let mut octets = [0u8; 4];
        octets.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv4Addr::from(octets)
    }

    /// The header, options included; empty if IHL points past the buffer.
    #[inline]
    pub fn header(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }

    /// The option bytes between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(IPV4_MIN_HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The payload, bounded by `total_len` (and, for a truncated quote, by the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(buf.len());
        buf.get(self.header_len()..end).unwrap_or(&[])
    }

    /// Whether the header checksum is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = self.header();
        !header.is_empty() && checksum::verify(header)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble, keeping IHL.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets IHL from a header length in bytes (a multiple of 4, 20..=60), keeping the version.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = ((len / 4) & 0x0f) as u8;
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ihl;
    }

    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    #[inline]
    fn set_flg_off_bits(&mut self, mask: u16, bits: u16) {
        let old = read_u16(self.buffer.as_ref(), field::FLG_OFF);
        write_u16(
            self.buffer.as_mut(),
            field::FLG_OFF,
            (old & !mask) | (bits & mask),
        );
    }

    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset from bytes; the low three bits are dropped.
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flg_off_bits(FRAG_OFFSET_MASK, offset >> 3);
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.0;
    }

    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload, bounded as in [`payload`](Ipv4Packet::payload).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let end = usize::from(self.total_len());
        let buf = self.buffer.as_mut();
        let end = end.min(buf.len());
        buf.get_mut(header_len..end).unwrap_or(&mut [])
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::checksum(self.header());
        self.set_checksum(csum);
    }

    /// Forwarding's TTL step: decrements the TTL and patches the header checksum incrementally
    /// (RFC 1624; the TTL is the high byte of the TTL|protocol word), returning the new TTL.
    ///
    /// Returns `None` and leaves the packet untouched when the TTL is 0 or 1: such a datagram
    /// must not be forwarded (RFC 1812 §5.3.1) and the caller owes an ICMP time exceeded.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        let protocol = self.protocol().0;
        let new_ttl = ttl - 1;
        let csum = checksum::update16(
            self.checksum(),
            u16::from_be_bytes([ttl, protocol]),
            u16::from_be_bytes([new_ttl, protocol]),
        );
        self.set_ttl(new_ttl);
        self.set_checksum(csum);
        Some(new_ttl)
    }

    /// Sets the source address and patches the header checksum incrementally, returning the
    /// old address. The L4 checksum covers the address too (pseudo-header): fix it with
    /// `UdpPacket::update_checksum_for_addr` / `TcpPacket::update_checksum_for_addr`.
    #[inline]
    pub fn rewrite_src_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.src_addr();
        let csum = checksum::update32(self.checksum(), old.to_bits(), addr.to_bits());
        self.set_src_addr(addr);
        self.set_checksum(csum);
        old
    }

    /// As [`rewrite_src_addr`](Self::rewrite_src_addr) for the destination address.
    #[inline]
    pub fn rewrite_dst_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst_addr();
        let csum = checksum::update32(self.checksum(), old.to_bits(), addr.to_bits());
        self.set_dst_addr(addr);
        self.set_checksum(csum);
        old
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of an IPv4 header, options aside: `parse` skips them and `emit` writes none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Payload length in bytes (`total_len - header_len`).
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp: u8,
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes, a multiple of 8.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Parses the header. The checksum is not verified: see
    /// [`Ipv4Packet::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        IPV4_MIN_HEADER_LEN
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        IPV4_MIN_HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header with a valid checksum. The buffer must hold at least
    /// [`IPV4_MIN_HEADER_LEN`] bytes; a `payload_len` over 65515 saturates the length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.buffer.as_mut()[field::VER_IHL] = 0x45;
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len(u16::try_from(self.buffer_len()).unwrap_or(u16::MAX));
        packet.set_ident(self.ident);
        write_u16(packet.buffer.as_mut(), field::FLG_OFF, 0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 192.168.0.1 -> 192.168.0.199, UDP, total length 0x73, DF, TTL 64, checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn known_packet() -> Vec<u8> {
        let mut buf = HEADER.to_vec();
        buf.resize(0x73, 0xab);
        buf
    }

    #[test]
    fn parses_known_header() {
        let buf = known_packet();
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 0x73);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IpProtocol::UDP);
        assert_eq!(packet.checksum(), 0xb861);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(packet.payload().len(), 0x73 - 20);
        assert!(packet.verify_checksum());
    }

    #[test]
    fn payload_ignores_ethernet_padding() {
        let mut buf = HEADER.to_vec();
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf.resize(46, 0); // a 60-byte Ethernet frame's worth
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.payload().len(), 8);
    }

    #[test]
    fn rejects_bad_headers() {
        let buf = known_packet();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = buf.clone();
            f(&mut b);
            Ipv4Packet::new_checked(b).map(|_| ())
        };
        assert_eq!(with(&|b| b.truncate(19)), Err(WireError::Truncated));
        assert_eq!(with(&|b| b[0] = 0x65), Err(WireError::Malformed));
        assert_eq!(with(&|b| b[0] = 0x44), Err(WireError::Malformed));
        assert_eq!(with(&|b| b[0] = 0x4f), Ok(())); // 60-byte header, still within total_len
        assert_eq!(with(&|b| b[3] = 19), Err(WireError::Malformed));
        assert_eq!(with(&|b| b.truncate(0x72)), Err(WireError::Truncated));
        assert_eq!(
            with(&|b| {
                b[0] = 0x46;
                b.truncate(22);
            }),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn truncated_quote_is_accepted_by_the_quote_constructor() {
        let buf = known_packet();
        let quote = &buf[..28];
        assert_eq!(
            Ipv4Packet::new_checked(quote).map(|_| ()),
            Err(WireError::Truncated)
        );
        let packet = Ipv4Packet::new_checked_truncated(quote).unwrap();
        assert_eq!(packet.payload(), &buf[20..28]);
    }

    #[test]
    fn decrement_ttl_stops_at_one() {
        let mut buf = known_packet();
        buf[8] = 2;
        let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum();
        assert_eq!(packet.decrement_ttl(), Some(1));
        assert!(packet.verify_checksum());
        let before = packet.as_ref().to_vec();
        assert_eq!(packet.decrement_ttl(), None);
        assert_eq!(packet.as_ref(), &before[..]);
    }

    fn repr_strategy() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..1500,
            any::<u8>(),
            (0u8..64, 0u8..4),
            any::<u16>(),
            any::<(bool, bool)>(),
            0u16..8192,
        )
            .prop_map(
                |(src, dst, proto, payload_len, ttl, (dscp, ecn), ident, (df, mf), off)| Ipv4Repr {
                    src_addr: Ipv4Addr::from(src),
                    dst_addr: Ipv4Addr::from(dst),
                    protocol: IpProtocol(proto),
                    payload_len,
                    ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off * 8,
                },
            )
    }

    /// An etherparse header with arbitrary fields and options, and its serialised packet.
    fn etherparse_strategy() -> impl Strategy<Value = (etherparse::Ipv4Header, Vec<u8>)> {
        (
            repr_strategy(),
            (0usize..=10).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4)),
        )
            .prop_map(|(r, options)| {
                let mut h = etherparse::Ipv4Header {
                    dscp: etherparse::Ipv4Dscp::try_new(r.dscp).unwrap(),
                    ecn: etherparse::Ipv4Ecn::try_new(r.ecn).unwrap(),
                    total_len: 0,
                    identification: r.ident,
                    dont_fragment: r.dont_frag,
                    more_fragments: r.more_frags,
                    fragment_offset: etherparse::IpFragOffset::try_new(r.frag_offset / 8).unwrap(),
                    time_to_live: r.ttl,
                    protocol: etherparse::IpNumber(r.protocol.0),
                    header_checksum: 0,
                    source: r.src_addr.octets(),
                    destination: r.dst_addr.octets(),
                    options: etherparse::Ipv4Options::try_from(&options[..]).unwrap(),
                };
                h.total_len = (h.header_len() + r.payload_len) as u16;
                h.header_checksum = h.calc_header_checksum();
                let mut bytes = h.to_bytes().to_vec();
                bytes.extend((0..r.payload_len).map(|i| i as u8));
                (h, bytes)
            })
    }

    /// Every getter, the repr and the mutating helpers on arbitrary bytes: none may panic.
    fn exercise(data: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(packet) = Ipv4Packet::new_checked(data) {
            let _ = (
                packet.version(),
                packet.header_len(),
                packet.dscp(),
                packet.ecn(),
                packet.total_len(),
                packet.ident(),
                packet.dont_frag(),
                packet.more_frags(),
                packet.frag_offset(),
                packet.is_fragment(),
                packet.ttl(),
                packet.protocol(),
                packet.checksum(),
                packet.src_addr(),
                packet.dst_addr(),
                packet.options(),
                packet.payload(),
                packet.verify_checksum(),
            );
            let repr = Ipv4Repr::parse(&packet).unwrap();
            prop_assert_eq!(repr.payload_len, packet.payload().len());
            let mut owned = data.to_vec();
            let mut packet = Ipv4Packet::new_checked(&mut owned[..]).unwrap();
            let _ = packet.decrement_ttl();
            let _ = packet.payload_mut();
        }
        if let Ok(packet) = Ipv4Packet::new_checked_truncated(data) {
            let _ = (packet.payload(), packet.options(), packet.verify_checksum());
        }
        let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(data));
        Ok(())
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in repr_strategy()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn agrees_with_etherparse((theirs, bytes) in etherparse_strategy()) {
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(packet.header_len(), theirs.header_len());
            prop_assert_eq!(packet.total_len(), theirs.total_len);
            prop_assert_eq!(packet.dscp(), theirs.dscp.value());
            prop_assert_eq!(packet.ecn(), theirs.ecn.value());
            prop_assert_eq!(packet.ident(), theirs.identification);
            prop_assert_eq!(packet.dont_frag(), theirs.dont_fragment);
            prop_assert_eq!(packet.more_frags(), theirs.more_fragments);
            prop_assert_eq!(packet.frag_offset(), theirs.fragment_offset.value() * 8);
            prop_assert_eq!(packet.ttl(), theirs.time_to_live);
            prop_assert_eq!(packet.protocol().0, theirs.protocol.0);
            prop_assert_eq!(packet.checksum(), theirs.header_checksum);
            prop_assert_eq!(packet.src_addr().octets(), theirs.source);
            prop_assert_eq!(packet.dst_addr().octets(), theirs.destination);
            prop_assert_eq!(packet.options(), theirs.options.as_slice());
            prop_assert_eq!(packet.payload().len(), theirs.payload_len().unwrap() as usize);
        }

        #[test]
        fn our_checksum_validates_in_etherparse(repr in repr_strategy()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let (theirs, _) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.header_checksum, theirs.calc_header_checksum());
            prop_assert_eq!(theirs.time_to_live, repr.ttl);
        }

        #[test]
        fn decrement_ttl_equals_recompute((_, bytes) in etherparse_strategy()) {
            let mut bytes = bytes;
            let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            let ttl = packet.ttl();
            match packet.decrement_ttl() {
                None => prop_assert!(ttl <= 1),
                Some(new_ttl) => {
                    prop_assert_eq!(new_ttl, ttl - 1);
                    let incremental = packet.checksum();
                    packet.fill_checksum();
                    prop_assert_eq!(incremental, packet.checksum());
                }
            }
        }

        #[test]
        fn address_rewrite_equals_recompute(
            (_, bytes) in etherparse_strategy(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let mut bytes = bytes;
            let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            let old_src = packet.rewrite_src_addr(Ipv4Addr::from(src));
            packet.rewrite_dst_addr(Ipv4Addr::from(dst));
            prop_assert!(packet.verify_checksum());
            let incremental = packet.checksum();
            packet.fill_checksum();
            prop_assert_eq!(incremental, packet.checksum());
            prop_assert_eq!(packet.rewrite_src_addr(old_src), Ipv4Addr::from(src));
        }

        #[test]
        fn hostile_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            exercise(&data)?;
        }

        /// Random bytes rarely get past the version check; these do, with a total length
        /// around the buffer's.
        #[test]
        fn hostile_near_valid_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 20..200),
            total_len in any::<u16>(),
        ) {
            let mut data = data;
            data[0] = 0x40 | (data[0] & 0x0f);
            let total_len = total_len % (data.len() as u16 + 8);
            data[2..4].copy_from_slice(&total_len.to_be_bytes());
            exercise(&data)?;
        }
    }
}
