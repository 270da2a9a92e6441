//! TCP segment headers (RFC 9293 §3.1). Options are kept raw; the header length comes from
//! the data offset. The view's buffer must be exactly the segment (the IP payload, not the rest
//! of an Ethernet frame): its length is the TCP length of the pseudo-header.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{IpProtocol, L4Ports, WireError, read_u16, read_u32, write_u16, write_u32};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const OFF_FLAGS: usize = 12;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

/// Length of a TCP header without options.
pub const TCP_MIN_HEADER_LEN: usize = field::OPTIONS;
/// Length of a TCP header with the most options a 4-bit data offset allows.
pub const TCP_MAX_HEADER_LEN: usize = 60;

/// The 12 bits after the data offset: the eight RFC 9293 control bits, the historic NS bit
/// (RFC 3540) and three reserved bits, kept as they came so a rewrite preserves them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x001);
    pub const SYN: TcpFlags = TcpFlags(0x002);
    pub const RST: TcpFlags = TcpFlags(0x004);
    pub const PSH: TcpFlags = TcpFlags(0x008);
    pub const ACK: TcpFlags = TcpFlags(0x010);
    pub const URG: TcpFlags = TcpFlags(0x020);
    pub const ECE: TcpFlags = TcpFlags(0x040);
    pub const CWR: TcpFlags = TcpFlags(0x080);
    pub const NS: TcpFlags = TcpFlags(0x100);
    /// Every bit the field holds.
    pub const MASK: u16 = 0x0fff;

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 9] = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::URG, "URG"),
            (TcpFlags::ECE, "ECE"),
            (TcpFlags::CWR, "CWR"),
            (TcpFlags::NS, "NS"),
        ];
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
            }
        }
        let reserved = self.0 & 0x0e00;
        if reserved != 0 || first {
            write!(f, "{}{:#05x}", if first { "" } else { "|" }, reserved)?;
        }
        Ok(())
    }
}

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 20 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after checking `20 ≤ header length ≤ buffer length`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let packet = TcpPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < TCP_MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < TCP_MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// The acknowledgment number field, meaningful only with [`TcpFlags::ACK`].
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFF_FLAGS] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(read_u16(self.buffer.as_ref(), field::OFF_FLAGS) & TcpFlags::MASK)
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags().contains(TcpFlags::FIN)
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags().contains(TcpFlags::SYN)
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags().contains(TcpFlags::RST)
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flags().contains(TcpFlags::PSH)
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags().contains(TcpFlags::ACK)
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_pointer(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The raw option bytes, padding included.
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::OPTIONS..self.header_len())
            .unwrap_or(&[])
    }

    /// The segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// The segment's one's-complement sum plus a pseudo-header sum; 0xffff when valid.
    #[inline]
    fn checksum_sum(&self, pseudo_header: u16) -> u16 {
        checksum::add(pseudo_header, checksum::sum(self.buffer.as_ref()))
    }

    /// The TCP length for the pseudo-header; `None` for a segment over 64 KiB, which no IPv4
    /// packet can carry.
    #[inline]
    fn tcp_len_u16(&self) -> Option<u16> {
        u16::try_from(self.buffer.as_ref().len()).ok()
    }

    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let Some(len) = self.tcp_len_u16() else {
            return false;
        };
        self.checksum_sum(checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, len)) == 0xffff
    }

    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        self.checksum_sum(checksum::pseudo_header_v6(src, dst, IpProtocol::TCP, len)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, seq);
    }

    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, ack);
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4, 20..=60),
    /// keeping the flags.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let offset = ((len / 4) & 0x0f) as u8;
        let b = &mut self.buffer.as_mut()[field::OFF_FLAGS];
        *b = (*b & 0x0f) | (offset << 4);
    }

    /// Sets all 12 flag bits, keeping the data offset.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        let old = read_u16(self.buffer.as_ref(), field::OFF_FLAGS);
        let new = (old & !TcpFlags::MASK) | (flags.0 & TcpFlags::MASK);
        write_u16(self.buffer.as_mut(), field::OFF_FLAGS, new);
    }

    #[inline]
    pub fn set_window_len(&mut self, window: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, window);
    }

    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    #[inline]
    pub fn set_urgent_pointer(&mut self, ptr: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, ptr);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(field::OPTIONS..end)
            .unwrap_or(&mut [])
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        self.buffer.as_mut().get_mut(start..).unwrap_or(&mut [])
    }

    /// Computes the checksum over IPv4 from scratch. A segment over 64 KiB is left with a
    /// zero checksum (IPv4 cannot carry it).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        if let Some(len) = self.tcp_len_u16() {
            let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, len);
            let csum = !self.checksum_sum(pseudo);
            self.set_checksum(csum);
        }
    }

    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let len = u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX);
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP, len);
        let csum = !self.checksum_sum(pseudo);
        self.set_checksum(csum);
    }

    /// Sets the source port and patches the checksum incrementally; returns the old port.
    #[inline]
    pub fn rewrite_src_port(&mut self, port: u16) -> u16 {
        let old = self.src_port();
        self.set_checksum(checksum::update16(self.checksum(), old, port));
        self.set_src_port(port);
        old
    }

    /// As [`rewrite_src_port`](Self::rewrite_src_port) for the destination port.
    #[inline]
    pub fn rewrite_dst_port(&mut self, port: u16) -> u16 {
        let old = self.dst_port();
        self.set_checksum(checksum::update16(self.checksum(), old, port));
        self.set_dst_port(port);
        old
    }

    /// Patches the checksum for an IP address change in the pseudo-header: pass the old and
    /// new address octets (4 or 16 bytes).
    #[inline]
    pub fn update_checksum_for_addr(&mut self, old: &[u8], new: &[u8]) {
        self.set_checksum(checksum::update_bytes(self.checksum(), old, new));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of a TCP header, options as raw bytes borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub urgent_pointer: u16,
    /// Raw options; `emit` pads them with zeros (end-of-list) to a multiple of 4 and writes at
    /// most 40 bytes.
    pub options: &'a [u8],
    pub payload_len: usize,
}

impl<'a> TcpRepr<'a> {
    /// Parses the header. The checksum is not verified: see
    /// [`TcpPacket::verify_checksum_v4`] and [`TcpPacket::verify_checksum_v6`].
    pub fn parse<T: AsRef<[u8]>>(packet: &'a TcpPacket<T>) -> Result<TcpRepr<'a>, WireError> {
        packet.check_len()?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_pointer: packet.urgent_pointer(),
            options: packet.options(),
            payload_len: packet.payload().len(),
        })
    }

    #[inline]
    fn options_len(&self) -> usize {
        self.options.len().next_multiple_of(4).min(40)
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        TCP_MIN_HEADER_LEN + self.options_len()
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header and options with a zero checksum; write the payload, then call
    /// `fill_checksum_v4`/`_v6`. The buffer must hold at least `header_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        write_u16(packet.buffer.as_mut(), field::OFF_FLAGS, 0);
        packet.set_header_len(self.header_len());
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_pointer(self.urgent_pointer);
        let options = packet.options_mut();
        let n = self.options.len().min(options.len());
        let (data, padding) = options.split_at_mut(n);
        data.copy_from_slice(self.options.get(..n).unwrap_or(&[]));
        padding.fill(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A SYN 10.0.0.1:40000 -> 10.0.0.2:80 with MSS 1460, window 64240.
    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, // ports
        0x00, 0x00, 0x00, 0x01, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0x60, 0x02, 0xfa, 0xf0, // offset 6, SYN, window
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
    ];

    #[test]
    fn parses_known_syn() {
        let packet = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(
            packet.ports(),
            L4Ports {
                src: 40000,
                dst: 80
            }
        );
        assert_eq!(packet.seq_number(), 1);
        assert_eq!(packet.header_len(), 24);
        assert!(packet.syn() && !packet.ack() && !packet.fin() && !packet.rst());
        assert_eq!(packet.flags(), TcpFlags::SYN);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert!(packet.payload().is_empty());
        assert_eq!(format!("{:?}", TcpFlags::SYN | TcpFlags::ACK), "SYN|ACK");
    }

    #[test]
    fn known_checksum() {
        let mut buf = SYN;
        let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v4(SRC, DST);
        // By hand: pseudo 0a00+0001+0a00+0002+0006+0018, header 9c40+0050+0000+0001+0000+0000
        // +6002+faf0+0000+0000, options 0204+05b4.
        assert_eq!(packet.checksum(), 0xeca1);
        assert!(packet.verify_checksum_v4(SRC, DST));
        assert!(!packet.verify_checksum_v4(SRC, Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn rejects_bad_offsets() {
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            TcpPacket::new_checked(&SYN[..23]),
            Err(WireError::Truncated)
        );
        let mut small = SYN;
        small[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&small[..]),
            Err(WireError::Malformed)
        );
    }

    /// A repr's scalar fields; options and payload come separately.
    fn repr_fields() -> impl Strategy<Value = (u16, u16, u32, u32, u16, u16, u16)> {
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            0u16..=0x01ff,
            any::<u16>(),
            any::<u16>(),
        )
    }

    fn options_strategy() -> impl Strategy<Value = Vec<u8>> {
        (0usize..=10).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4))
    }

    fn repr<'a>(
        (sp, dp, seq, ack, flags, win, urg): (u16, u16, u32, u32, u16, u16, u16),
        options: &'a [u8],
        payload_len: usize,
    ) -> TcpRepr<'a> {
        TcpRepr {
            src_port: sp,
            dst_port: dp,
            seq_number: seq,
            ack_number: ack,
            flags: TcpFlags(flags),
            window_len: win,
            urgent_pointer: urg,
            options,
            payload_len,
        }
    }

    fn build(repr: &TcpRepr<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut packet);
        for (i, b) in packet.payload_mut().iter_mut().enumerate() {
            *b = (i * 13) as u8;
        }
        buf
    }

    proptest! {
        #[test]
        fn repr_round_trip(fields in repr_fields(), options in options_strategy(), n in 0usize..200) {
            let repr = repr(fields, &options, n);
            let buf = build(&repr);
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(TcpRepr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn agrees_with_etherparse(
            fields in repr_fields(),
            options in options_strategy(),
            n in 0usize..200,
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let repr = repr(fields, &options, n);
            let mut buf = build(&repr);
            let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum_v4(src, dst);
            let ours = packet.checksum();

            let (theirs, payload) = etherparse::TcpHeader::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.source_port, repr.src_port);
            prop_assert_eq!(theirs.destination_port, repr.dst_port);
            prop_assert_eq!(theirs.sequence_number, repr.seq_number);
            prop_assert_eq!(theirs.acknowledgment_number, repr.ack_number);
            prop_assert_eq!(theirs.fin, repr.flags.contains(TcpFlags::FIN));
            prop_assert_eq!(theirs.syn, repr.flags.contains(TcpFlags::SYN));
            prop_assert_eq!(theirs.rst, repr.flags.contains(TcpFlags::RST));
            prop_assert_eq!(theirs.psh, repr.flags.contains(TcpFlags::PSH));
            prop_assert_eq!(theirs.ack, repr.flags.contains(TcpFlags::ACK));
            prop_assert_eq!(theirs.urg, repr.flags.contains(TcpFlags::URG));
            prop_assert_eq!(theirs.ece, repr.flags.contains(TcpFlags::ECE));
            prop_assert_eq!(theirs.cwr, repr.flags.contains(TcpFlags::CWR));
            prop_assert_eq!(theirs.ns, repr.flags.contains(TcpFlags::NS));
            prop_assert_eq!(theirs.window_size, repr.window_len);
            prop_assert_eq!(theirs.urgent_pointer, repr.urgent_pointer);
            prop_assert_eq!(theirs.options.as_slice(), &options[..]);
            prop_assert_eq!(payload.len(), n);
            prop_assert_eq!(theirs.calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload).unwrap(), ours);

            let mut theirs_bytes = theirs.to_bytes().to_vec();
            theirs_bytes.extend_from_slice(payload);
            let back = TcpPacket::new_checked(&theirs_bytes[..]).unwrap();
            prop_assert!(back.verify_checksum_v4(src, dst));
        }

        #[test]
        fn checksum_v6_agrees_with_etherparse(
            fields in repr_fields(),
            n in 0usize..200,
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
        ) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let repr = repr(fields, &[], n);
            let mut buf = build(&repr);
            let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum_v6(&src, &dst);
            prop_assert!(packet.verify_checksum_v6(&src, &dst));
            let ours = packet.checksum();
            let (theirs, payload) = etherparse::TcpHeader::from_slice(&buf).unwrap();
            prop_assert_eq!(theirs.calc_checksum_ipv6_raw(src.octets(), dst.octets(), payload).unwrap(), ours);
        }

        #[test]
        fn incremental_rewrite_equals_recompute(
            fields in repr_fields(),
            n in 0usize..200,
            (src, dst, new_src, new_dst) in any::<([u8; 4], [u8; 4], [u8; 4], [u8; 4])>(),
            (new_sport, new_dport) in any::<(u16, u16)>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let (new_src, new_dst) = (Ipv4Addr::from(new_src), Ipv4Addr::from(new_dst));
            let repr = repr(fields, &[], n);
            let mut buf = build(&repr);
            let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum_v4(src, dst);
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
            fields in repr_fields(),
            n in 0usize..200,
            (src, dst, new_src) in any::<([u8; 16], [u8; 16], [u8; 16])>(),
            new_sport in any::<u16>(),
        ) {
            let (src, dst, new_src) = (Ipv6Addr::from(src), Ipv6Addr::from(dst), Ipv6Addr::from(new_src));
            let repr = repr(fields, &[], n);
            let mut buf = build(&repr);
            let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum_v6(&src, &dst);
            packet.rewrite_src_port(new_sport);
            packet.update_checksum_for_addr(&src.octets(), &new_src.octets());
            let incremental = packet.checksum();
            packet.fill_checksum_v6(&new_src, &dst);
            prop_assert_eq!(incremental, packet.checksum());
        }

        #[test]
        fn hostile_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(packet) = TcpPacket::new_checked(&data[..]) {
                let _ = (
                    packet.ports(), packet.seq_number(), packet.ack_number(),
                    packet.header_len(), packet.flags(), packet.fin(), packet.syn(),
                    packet.rst(), packet.psh(), packet.ack(), packet.window_len(),
                    packet.checksum(), packet.urgent_pointer(), packet.options(),
                    packet.payload(),
                    packet.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
                    packet.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST),
                );
                let repr = TcpRepr::parse(&packet).unwrap();
                prop_assert_eq!(repr.header_len() + repr.payload_len, data.len());
            }
            let packet = TcpPacket::new_unchecked(&data[..]);
            let _ = TcpRepr::parse(&packet);
        }
    }
}
