//! UDP datagrams (RFC 768). The view's buffer is the IP payload; the UDP length field bounds
//! the datagram. Checksum rules (the "0 means none" of IPv4, `0xffff` for a computed zero)
//! are explained in [`checksum`](super::checksum).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{IpProtocol, L4Ports, WireError, read_u16, write_u16};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = field::PAYLOAD;

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 8 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking `8 ≤ length field ≤ buffer length`. A length of 0 (the
    /// RFC 2675 jumbogram convention) is rejected as `Malformed`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, WireError> {
        let packet = UdpPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < UDP_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < UDP_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if field_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn ports(&self) -> L4Ports {
        L4Ports {
            src: self.src_port(),
            dst: self.dst_port(),
        }
    }

    /// The length field: header plus payload.
    #[inline]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the datagram has no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= UDP_HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The bytes the checksum covers besides the pseudo-header: header and payload.
    #[inline]
    fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// The payload, bounded by the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::PAYLOAD..usize::from(self.len()))
            .unwrap_or(&[])
    }

    #[inline]
    fn checksum_sum(&self, pseudo_header: u16) -> u16 {
        checksum::add(pseudo_header, checksum::sum(self.datagram()))
    }

    /// Whether the checksum is valid over IPv4; a checksum of 0 ("none") counts as valid.
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, self.len());
        self.checksum_sum(pseudo) == 0xffff
    }

    /// Whether the checksum is valid over IPv6, where it is mandatory: 0 counts as invalid.
    /// (Tunnels that allow zero-checksum UDP over IPv6, RFC 6935, test `checksum() == 0`
    /// themselves first.)
    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP, u32::from(self.len()));
        self.checksum_sum(pseudo) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..end)
            .unwrap_or(&mut [])
    }

    /// Computes the checksum over IPv4 from scratch (a computed 0 is written as `0xffff`).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, self.len());
        let csum = checksum::udp_nonzero(!self.checksum_sum(pseudo));
        self.set_checksum(csum);
    }

    /// Computes the checksum over IPv6 from scratch (a computed 0 is written as `0xffff`).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP, u32::from(self.len()));
        let csum = checksum::udp_nonzero(!self.checksum_sum(pseudo));
        self.set_checksum(csum);
    }

    /// Sets the source port and patches the checksum incrementally (a 0 checksum stays 0);
    /// returns the old port.
    #[inline]
    pub fn rewrite_src_port(&mut self, port: u16) -> u16 {
        let old = self.src_port();
        self.set_checksum(checksum::update_udp16(self.checksum(), old, port));
        self.set_src_port(port);
        old
    }

    /// As [`rewrite_src_port`](Self::rewrite_src_port) for the destination port.
    #[inline]
    pub fn rewrite_dst_port(&mut self, port: u16) -> u16 {
        let old = self.dst_port();
        self.set_checksum(checksum::update_udp16(self.checksum(), old, port));
        self.set_dst_port(port);
        old
    }

    /// Patches the checksum for an IP address change in the pseudo-header: pass the old and
    /// new address octets (4 or 16 bytes). A 0 checksum stays 0.
    #[inline]
    pub fn update_checksum_for_addr(&mut self, old: &[u8], new: &[u8]) {
        self.set_checksum(checksum::update_udp_bytes(self.checksum(), old, new));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of a UDP header, with the payload length it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses the header. The checksum is not verified: see
    /// [`UdpPacket::verify_checksum_v4`] and [`UdpPacket::verify_checksum_v6`].
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr, WireError> {
        packet.check_len()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - UDP_HEADER_LEN,
        })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        UDP_HEADER_LEN
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        UDP_HEADER_LEN + self.payload_len
    }

    /// Writes the header with a zero checksum; write the payload, then call
    /// `fill_checksum_v4`/`_v6` (or leave 0 over IPv4 for "none"). The buffer must hold at
    /// least [`UDP_HEADER_LEN`] bytes; a `payload_len` over 65527 saturates the length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(u16::try_from(self.buffer_len()).unwrap_or(u16::MAX));
        packet.set_checksum(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A DNS query header fragment: 10.0.0.1:53000 -> 10.0.0.2:53, payload "abcd".
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn known() -> Vec<u8> {
        let mut buf = vec![0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00];
        buf.extend_from_slice(b"abcd");
        buf
    }

    #[test]
    fn parses_and_checksums_known_datagram() {
        let mut buf = known();
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(packet.src_port(), 53000);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 12);
        assert_eq!(packet.payload(), b"abcd");
        assert!(packet.verify_checksum_v4(SRC, DST), "0 means none");
        packet.fill_checksum_v4(SRC, DST);
        // By hand: pseudo 0a00+0001+0a00+0002+0011+000c, header cf08+0035+000c, data 6162+6364.
        assert_eq!(packet.checksum(), 0x57cf);
        assert!(packet.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn rejects_bad_lengths() {
        let buf = known();
        assert_eq!(UdpPacket::new_checked(&buf[..7]), Err(WireError::Truncated));
        assert_eq!(
            UdpPacket::new_checked(&buf[..11]),
            Err(WireError::Truncated)
        );
        let mut short = buf.clone();
        short[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&short[..]),
            Err(WireError::Malformed)
        );
        let mut padded = buf.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(
            UdpPacket::new_checked(&padded[..]).unwrap().payload(),
            b"abcd"
        );
    }

    #[test]
    fn zero_checksum_survives_rewrites() {
        let mut buf = known();
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(packet.rewrite_src_port(40000), 53000);
        packet.update_checksum_for_addr(&SRC.octets(), &[192, 168, 1, 1]);
        assert_eq!(packet.checksum(), 0);
    }

    fn repr_strategy() -> impl Strategy<Value = UdpRepr> {
        (any::<u16>(), any::<u16>(), 0usize..300).prop_map(|(s, d, n)| UdpRepr {
            src_port: s,
            dst_port: d,
            payload_len: n,
        })
    }

    /// An emitted datagram with a filled IPv4 checksum.
    fn build_v4(repr: &UdpRepr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut packet);
        for (i, b) in packet.payload_mut().iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        packet.fill_checksum_v4(src, dst);
        buf
    }

    /// Every getter, the repr and the mutating helpers on arbitrary bytes: none may panic.
    fn exercise(data: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(packet) = UdpPacket::new_checked(data) {
            let _ = (
                packet.src_port(),
                packet.dst_port(),
                packet.ports(),
                packet.len(),
                packet.is_empty(),
                packet.checksum(),
                packet.payload(),
                packet.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
                packet.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST),
            );
            let repr = UdpRepr::parse(&packet).unwrap();
            prop_assert_eq!(repr.payload_len, packet.payload().len());
            let mut owned = data.to_vec();
            let mut packet = UdpPacket::new_checked(&mut owned[..]).unwrap();
            packet.rewrite_dst_port(1);
            packet.fill_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
            prop_assert!(packet.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
        }
        let _ = UdpRepr::parse(&UdpPacket::new_unchecked(data));
        Ok(())
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in repr_strategy()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]));
            let packet = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn checksums_agree_with_etherparse_v4(
            repr in repr_strategy(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let buf = build_v4(&repr, src, dst);
            let packet = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum_v4(src, dst));
            let theirs = etherparse::UdpHeader::with_ipv4_checksum(
                repr.src_port, repr.dst_port,
                &etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, src.octets(), dst.octets()).unwrap(),
                packet.payload(),
            ).unwrap();
            prop_assert_eq!(theirs.checksum, packet.checksum());
            prop_assert_eq!(theirs.length, packet.len());
            // And the other way round: their bytes parse and verify here.
            let mut bytes = theirs.to_bytes().to_vec();
            bytes.extend_from_slice(packet.payload());
            let ours = UdpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert!(ours.verify_checksum_v4(src, dst));
            prop_assert_eq!(UdpRepr::parse(&ours).unwrap(), repr);
        }

        #[test]
        fn checksums_agree_with_etherparse_v6(
            repr in repr_strategy(),
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
        ) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let mut buf = vec![0u8; repr.buffer_len()];
            let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
            repr.emit(&mut packet);
            packet.payload_mut().fill(0x5a);
            packet.fill_checksum_v6(&src, &dst);
            prop_assert!(packet.verify_checksum_v6(&src, &dst));
            let theirs = etherparse::UdpHeader::with_ipv6_checksum(
                repr.src_port, repr.dst_port,
                &etherparse::Ipv6Header {
                    source: src.octets(), destination: dst.octets(), ..Default::default()
                },
                packet.payload(),
            ).unwrap();
            prop_assert_eq!(theirs.checksum, packet.checksum());
        }

        #[test]
        fn incremental_rewrite_equals_recompute(
            repr in repr_strategy(),
            (src, dst, new_src, new_dst) in any::<([u8; 4], [u8; 4], [u8; 4], [u8; 4])>(),
            (new_sport, new_dport) in any::<(u16, u16)>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let (new_src, new_dst) = (Ipv4Addr::from(new_src), Ipv4Addr::from(new_dst));
            let mut buf = build_v4(&repr, src, dst);
            let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
            packet.rewrite_src_port(new_sport);
            packet.rewrite_dst_port(new_dport);
            packet.update_checksum_for_addr(&src.octets(), &new_src.octets());
            packet.update_checksum_for_addr(&dst.octets(), &new_dst.octets());
            let incremental = packet.checksum();
            prop_assert!(packet.verify_checksum_v4(new_src, new_dst));
            packet.fill_checksum_v4(new_src, new_dst);
            prop_assert_eq!(incremental, packet.checksum());
        }

        #[test]
        fn incremental_rewrite_equals_recompute_v6(
            repr in repr_strategy(),
            (src, dst, new_dst) in any::<([u8; 16], [u8; 16], [u8; 16])>(),
            new_dport in any::<u16>(),
        ) {
            let (src, dst, new_dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new_dst));
            let mut buf = vec![0u8; repr.buffer_len()];
            let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
            repr.emit(&mut packet);
            packet.fill_checksum_v6(&src, &dst);
            packet.rewrite_dst_port(new_dport);
            packet.update_checksum_for_addr(&dst.octets(), &new_dst.octets());
            let incremental = packet.checksum();
            packet.fill_checksum_v6(&src, &new_dst);
            prop_assert_eq!(incremental, packet.checksum());
        }

        #[test]
        fn hostile_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            exercise(&data)?;
        }

        /// A length field around the buffer's, to get past the first checks.
        #[test]
        fn hostile_near_valid_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 8..200),
            len in any::<u16>(),
        ) {
            let mut data = data;
            let len = len % (data.len() as u16 + 8);
            data[4..6].copy_from_slice(&len.to_be_bytes());
            exercise(&data)?;
        }
    }
}
