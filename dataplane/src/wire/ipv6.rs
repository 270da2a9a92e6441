//! IPv6 fixed headers (RFC 8200 §3). Extension headers are not walked: `next_header` is the
//! first one's type and the payload starts right after the 40 fixed bytes. Jumbograms (payload
//! length 0 with a Hop-by-Hop jumbo option, RFC 2675) read as an empty payload.

use std::net::Ipv6Addr;

use super::{IpProtocol, WireError, read_u16, read_u32, write_u16, write_u32};

mod field {
    use std::ops::Range;

    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the IPv6 fixed header.
pub const IPV6_HEADER_LEN: usize = field::DST_ADDR.end;

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 40 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after checking: version 6 and `40 + payload_len ≤ buffer length`. Bytes
    /// past the payload (Ethernet padding) are allowed and ignored.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, WireError> {
        let packet = Ipv6Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < IPV6_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::Malformed);
        }
        if IPV6_HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((self.ver_tc_flow() >> 20) & 0xff) as u8
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & FLOW_LABEL_MASK
    }

    /// Length of everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(octets)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(octets)
    }

    /// The payload, bounded by `payload_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = IPV6_HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_ref()
            .get(IPV6_HEADER_LEN..end)
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, mask: u32, bits: u32) {
        let old = self.ver_tc_flow();
        write_u32(
            self.buffer.as_mut(),
            field::VER_TC_FLOW,
            (old & !mask) | (bits & mask),
        );
    }

    #[inline]
    pub fn set_version(&mut self, version: u8) {
        self.set_ver_tc_flow(0xf000_0000, u32::from(version) << 28);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        self.set_ver_tc_flow(0x0ff0_0000, u32::from(tc) << 20);
    }

    /// Sets the flow label; bits above the low 20 are dropped.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        self.set_ver_tc_flow(FLOW_LABEL_MASK, label);
    }

    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_next_header(&mut self, next_header: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = next_header.0;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = IPV6_HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_mut()
            .get_mut(IPV6_HEADER_LEN..end)
            .unwrap_or(&mut [])
    }

    /// Forwarding's hop-limit step (IPv6 has no header checksum). Returns `None` and leaves the
    /// packet untouched when the hop limit is 0 or 1: the caller drops it (RFC 8200 §3).
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let hop_limit = self.hop_limit();
        if hop_limit <= 1 {
            return None;
        }
        self.set_hop_limit(hop_limit - 1);
        Some(hop_limit - 1)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of an IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, WireError> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        IPV6_HEADER_LEN
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        IPV6_HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header. The buffer must hold at least [`IPV6_HEADER_LEN`] bytes; a
    /// `payload_len` over 65535 saturates the length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        write_u32(
            packet.buffer.as_mut(),
            field::VER_TC_FLOW,
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & FLOW_LABEL_MASK),
        );
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// fe80::1 -> ff02::1, TC 0xb8, flow 0x12345, UDP, 8 payload bytes, hop limit 255.
    const PACKET: [u8; 48] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 0x11, 0xff, // ver/tc/flow, len, nh, hl
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // dst
        1, 2, 3, 4, 5, 6, 7, 8,
    ];

    #[test]
    fn parses_known_header() {
        let packet = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xb8);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload_len(), 8);
        assert_eq!(packet.next_header(), IpProtocol::UDP);
        assert_eq!(packet.hop_limit(), 255);
        assert_eq!(packet.src_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(packet.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(packet.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let repr = Ipv6Repr::parse(&packet).unwrap();
        let mut out = [0u8; 48];
        out[40..].copy_from_slice(&PACKET[40..]);
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, PACKET);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..39]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..47]),
            Err(WireError::Truncated)
        );
        let mut v4 = PACKET;
        v4[0] = 0x4b;
        assert_eq!(Ipv6Packet::new_checked(&v4[..]), Err(WireError::Malformed));
    }

    fn repr_strategy() -> impl Strategy<Value = Ipv6Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0usize..600,
            any::<u8>(),
            any::<u8>(),
            0u32..=FLOW_LABEL_MASK,
        )
            .prop_map(|(src, dst, nh, payload_len, hl, tc, flow)| Ipv6Repr {
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
                next_header: IpProtocol(nh),
                payload_len,
                hop_limit: hl,
                traffic_class: tc,
                flow_label: flow,
            })
    }

    /// Every getter, the repr and the mutating helpers on arbitrary bytes: none may panic.
    fn exercise(data: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(packet) = Ipv6Packet::new_checked(data) {
            let _ = (
                packet.version(),
                packet.traffic_class(),
                packet.flow_label(),
                packet.payload_len(),
                packet.next_header(),
                packet.hop_limit(),
                packet.src_addr(),
                packet.dst_addr(),
                packet.payload(),
            );
            let repr = Ipv6Repr::parse(&packet).unwrap();
            prop_assert_eq!(repr.payload_len, packet.payload().len());
            let mut owned = data.to_vec();
            let mut packet = Ipv6Packet::new_checked(&mut owned[..]).unwrap();
            let _ = packet.decrement_hop_limit();
            let _ = packet.payload_mut();
        }
        let _ = Ipv6Repr::parse(&Ipv6Packet::new_unchecked(data));
        Ok(())
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in repr_strategy()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            let packet = Ipv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&packet).unwrap(), repr);
            prop_assert_eq!(packet.payload().len(), repr.payload_len);
        }

        #[test]
        fn agrees_with_etherparse(repr in repr_strategy()) {
            let theirs = etherparse::Ipv6Header {
                traffic_class: repr.traffic_class,
                flow_label: etherparse::Ipv6FlowLabel::try_new(repr.flow_label).unwrap(),
                payload_length: repr.payload_len as u16,
                next_header: etherparse::IpNumber(repr.next_header.0),
                hop_limit: repr.hop_limit,
                source: repr.src_addr.octets(),
                destination: repr.dst_addr.octets(),
            };
            let mut bytes = theirs.to_bytes().to_vec();
            bytes.resize(repr.buffer_len(), 0);
            let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&packet).unwrap(), repr);

            let mut ours = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut ours[..]));
            let (back, _) = etherparse::Ipv6Header::from_slice(&ours).unwrap();
            prop_assert_eq!(back, theirs);
        }

        #[test]
        fn hostile_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            exercise(&data)?;
        }

        /// Version 6 and a payload length around the buffer's, to get past the first checks.
        #[test]
        fn hostile_near_valid_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 40..200),
            payload_len in any::<u16>(),
        ) {
            let mut data = data;
            data[0] = 0x60 | (data[0] & 0x0f);
            let payload_len = payload_len % (data.len() as u16 - 32);
            data[4..6].copy_from_slice(&payload_len.to_be_bytes());
            exercise(&data)?;
        }
    }
}
