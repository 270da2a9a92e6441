//! ICMPv4 (RFC 792): echo, destination unreachable (with the RFC 1191 next-hop MTU of
//! "fragmentation needed") and time exceeded. The view's buffer must be exactly the ICMP
//! message (the IP payload), since the checksum covers all of it.

use super::checksum;
use super::{Ipv4Packet, WireError, read_u16, write_u16};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    /// Bytes 4..8, the "rest of header", whose meaning depends on the type.
    pub const REST: std::ops::Range<usize> = 4..8;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ_NO: usize = 6;
    /// RFC 1191: the low half of the rest of a "fragmentation needed" header.
    pub const NEXT_HOP_MTU: usize = 6;
    pub const DATA: usize = 8;
}

/// Length of the ICMPv4 header (type, code, checksum and the four type-specific bytes).
pub const ICMPV4_HEADER_LEN: usize = field::DATA;

/// The most of the offending datagram an ICMP error quotes: RFC 1812 §4.3.2.3 asks for as much
/// as fits in a 576-byte datagram, so 576 − 20 (outer IPv4 header) − 8 (ICMP header).
pub const ICMPV4_ERROR_QUOTE_MAX: usize = 576 - 20 - ICMPV4_HEADER_LEN;

/// The prefix of `datagram` (from its IPv4 header on) that an ICMP error about it should quote.
#[inline]
pub fn icmpv4_error_quote(datagram: &[u8]) -> &[u8] {
    datagram.get(..ICMPV4_ERROR_QUOTE_MAX).unwrap_or(datagram)
}

/// The ICMPv4 message type (IANA "ICMP Type Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv4Type(pub u8);

impl Icmpv4Type {
    pub const ECHO_REPLY: Icmpv4Type = Icmpv4Type(0);
    pub const DST_UNREACHABLE: Icmpv4Type = Icmpv4Type(3);
    pub const REDIRECT: Icmpv4Type = Icmpv4Type(5);
    pub const ECHO_REQUEST: Icmpv4Type = Icmpv4Type(8);
    pub const TIME_EXCEEDED: Icmpv4Type = Icmpv4Type(11);
    pub const PARAM_PROBLEM: Icmpv4Type = Icmpv4Type(12);

    /// Whether messages of this type quote an offending datagram (RFC 1122 §3.2.2).
    #[inline]
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

/// Codes of [`Icmpv4Type::DST_UNREACHABLE`] (RFC 792, RFC 1122, RFC 1812).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DstUnreachableCode(pub u8);

impl DstUnreachableCode {
    pub const NET_UNREACHABLE: DstUnreachableCode = DstUnreachableCode(0);
    pub const HOST_UNREACHABLE: DstUnreachableCode = DstUnreachableCode(1);
    pub const PROTO_UNREACHABLE: DstUnreachableCode = DstUnreachableCode(2);
    pub const PORT_UNREACHABLE: DstUnreachableCode = DstUnreachableCode(3);
    /// "Fragmentation needed and DF set": carries the next-hop MTU (RFC 1191).
    pub const FRAG_NEEDED: DstUnreachableCode = DstUnreachableCode(4);
    pub const SOURCE_ROUTE_FAILED: DstUnreachableCode = DstUnreachableCode(5);
    pub const NET_UNKNOWN: DstUnreachableCode = DstUnreachableCode(6);
    pub const HOST_UNKNOWN: DstUnreachableCode = DstUnreachableCode(7);
    pub const NET_PROHIBITED: DstUnreachableCode = DstUnreachableCode(9);
    pub const HOST_PROHIBITED: DstUnreachableCode = DstUnreachableCode(10);
    pub const ADMIN_PROHIBITED: DstUnreachableCode = DstUnreachableCode(13);
}

/// Codes of [`Icmpv4Type::TIME_EXCEEDED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeExceededCode(pub u8);

impl TimeExceededCode {
    pub const TTL_EXCEEDED: TimeExceededCode = TimeExceededCode(0);
    pub const FRAG_REASSEMBLY: TimeExceededCode = TimeExceededCode(1);
}

/// A zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 8 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, WireError> {
        let packet = Icmpv4Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The check of [`new_checked`](Self::new_checked).
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ICMPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type(self.buffer.as_ref()[field::TYPE])
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (echo request/reply only).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request/reply only).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// Next-hop MTU (destination unreachable, fragmentation needed only; RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(field::DATA..).unwrap_or(&[])
    }

    /// The IPv4 header quoted by an error message, as a view that tolerates the quote being
    /// cut short (see [`Ipv4Packet::new_checked_truncated`]). Its payload is what was quoted of
    /// the L4 header (at least 8 bytes by RFC 792, enough for the ports).
    #[inline]
    pub fn quoted_ipv4(&self) -> Result<Ipv4Packet<&[u8]>, WireError> {
        if !self.msg_type().is_error() {
            return Err(WireError::Unsupported);
        }
        Ipv4Packet::new_checked_truncated(self.data())
    }

    /// Whether the checksum over the whole message is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: Icmpv4Type) {
        self.buffer.as_mut()[field::TYPE] = value.0;
    }

    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, value);
    }

    /// Zeroes the four type-specific header bytes ("unused" in error messages).
    #[inline]
    pub fn clear_rest_of_header(&mut self) {
        self.buffer.as_mut()[field::REST].fill(0);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::DATA..)
            .unwrap_or(&mut [])
    }

    /// Computes the checksum over the whole buffer from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(csum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMPv4 messages the dataplane answers or originates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    DstUnreachable {
        code: DstUnreachableCode,
        /// Only with [`DstUnreachableCode::FRAG_NEEDED`]; 0 (and ignored) otherwise.
        next_hop_mtu: u16,
        /// The offending datagram from its IP header on; see [`icmpv4_error_quote`].
        original: &'a [u8],
    },
    TimeExceeded {
        code: TimeExceededCode,
        /// The offending datagram from its IP header on; see [`icmpv4_error_quote`].
        original: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses the message; types other than the four above are `Unsupported`. Neither the
    /// checksum nor the quoted datagram is checked: see [`Icmpv4Packet::verify_checksum`] and
    /// [`Icmpv4Packet::quoted_ipv4`].
    pub fn parse<T: AsRef<[u8]>>(packet: &'a Icmpv4Packet<T>) -> Result<Icmpv4Repr<'a>, WireError> {
        packet.check_len()?;
        let data = packet.data();
        match packet.msg_type() {
            Icmpv4Type::ECHO_REQUEST => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Type::ECHO_REPLY => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Type::DST_UNREACHABLE => {
                let code = DstUnreachableCode(packet.msg_code());
                let next_hop_mtu = if code == DstUnreachableCode::FRAG_NEEDED {
                    packet.next_hop_mtu()
                } else {
                    0
                };
                Ok(Icmpv4Repr::DstUnreachable {
                    code,
                    next_hop_mtu,
                    original: data,
                })
            }
            Icmpv4Type::TIME_EXCEEDED => Ok(Icmpv4Repr::TimeExceeded {
                code: TimeExceededCode(packet.msg_code()),
                original: data,
            }),
            _ => Err(WireError::Unsupported),
        }
    }

    /// The bytes after the header.
    #[inline]
    fn data(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => data,
            Icmpv4Repr::DstUnreachable { original, .. }
            | Icmpv4Repr::TimeExceeded { original, .. } => original,
        }
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        ICMPV4_HEADER_LEN
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        ICMPV4_HEADER_LEN + self.data().len()
    }

    /// Writes the message and its checksum. The buffer must be exactly `buffer_len()` bytes:
    /// the checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        packet.clear_rest_of_header();
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => {
                packet.set_msg_type(Icmpv4Type::ECHO_REQUEST);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => {
                packet.set_msg_type(Icmpv4Type::ECHO_REPLY);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Icmpv4Repr::DstUnreachable {
                code, next_hop_mtu, ..
            } => {
                packet.set_msg_type(Icmpv4Type::DST_UNREACHABLE);
                packet.set_msg_code(code.0);
                if code == DstUnreachableCode::FRAG_NEEDED {
                    packet.set_next_hop_mtu(next_hop_mtu);
                }
            }
            Icmpv4Repr::TimeExceeded { code, .. } => {
                packet.set_msg_type(Icmpv4Type::TIME_EXCEEDED);
                packet.set_msg_code(code.0);
            }
        }
        let data = self.data();
        let out = packet.data_mut();
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        packet.fill_checksum();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ipv4Repr, L4Ports};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// `ping` with ident 0x1234, seq 1, data "abcd".
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn parses_known_echo_and_checksums() {
        let mut buf = ECHO;
        let mut packet = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum();
        // By hand: ~(0800 + 1234 + 0001 + 6162 + 6364) = ~0xdefb.
        assert_eq!(packet.checksum(), 0x2104);
        assert!(packet.verify_checksum());
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&packet).unwrap(),
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcd"
            }
        );
        assert_eq!(
            packet.quoted_ipv4().map(|_| ()),
            Err(WireError::Unsupported)
        );
    }

    #[test]
    fn frag_needed_quotes_the_offending_datagram() {
        // The offending datagram: 10.0.0.1:40000 -> 10.0.0.2:80 TCP, 1500 bytes, quoted short.
        let inner = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::TCP,
            payload_len: 1480,
            ttl: 63,
            dscp: 0,
            ecn: 0,
            ident: 7,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        };
        let mut datagram = vec![0u8; inner.buffer_len()];
        inner.emit(&mut Ipv4Packet::new_unchecked(&mut datagram[..]));
        datagram[20..24].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
        let quote = icmpv4_error_quote(&datagram);
        assert_eq!(quote.len(), ICMPV4_ERROR_QUOTE_MAX);

        let repr = Icmpv4Repr::DstUnreachable {
            code: DstUnreachableCode::FRAG_NEEDED,
            next_hop_mtu: 1450,
            original: quote,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..8], &[3, 4, buf[2], buf[3], 0, 0, 0x05, 0xaa]);

        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(packet.next_hop_mtu(), 1450);
        assert_eq!(Icmpv4Repr::parse(&packet).unwrap(), repr);
        let quoted = packet.quoted_ipv4().unwrap();
        assert_eq!(quoted.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(quoted.total_len(), 1500);
        assert_eq!(
            L4Ports::read(quoted.payload(), 0),
            Some(L4Ports {
                src: 40000,
                dst: 80
            })
        );
    }

    #[test]
    fn unknown_types_are_unsupported() {
        let mut buf = ECHO;
        buf[0] = 13; // timestamp
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(WireError::Unsupported));
        assert_eq!(
            Icmpv4Packet::new_checked(&buf[..7]),
            Err(WireError::Truncated)
        );
    }

    /// Our repr and the etherparse type describing the same message.
    fn repr_strategy() -> impl Strategy<Value = (u8, u8, u16, u16, Vec<u8>)> {
        (
            0u8..4,
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..100),
        )
    }

    fn make<'a>(kind: u8, code: u8, a: u16, b: u16, data: &'a [u8]) -> Icmpv4Repr<'a> {
        match kind {
            0 => Icmpv4Repr::EchoRequest {
                ident: a,
                seq_no: b,
                data,
            },
            1 => Icmpv4Repr::EchoReply {
                ident: a,
                seq_no: b,
                data,
            },
            2 => {
                let code = DstUnreachableCode(code % 16);
                Icmpv4Repr::DstUnreachable {
                    code,
                    next_hop_mtu: if code == DstUnreachableCode::FRAG_NEEDED {
                        a
                    } else {
                        0
                    },
                    original: data,
                }
            }
            _ => Icmpv4Repr::TimeExceeded {
                code: TimeExceededCode(code % 2),
                original: data,
            },
        }
    }

    fn etherparse_type(repr: &Icmpv4Repr<'_>) -> etherparse::Icmpv4Type {
        use etherparse::{IcmpEchoHeader, Icmpv4Type as T, icmpv4};
        match *repr {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => T::EchoRequest(IcmpEchoHeader {
                id: ident,
                seq: seq_no,
            }),
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => T::EchoReply(IcmpEchoHeader {
                id: ident,
                seq: seq_no,
            }),
            Icmpv4Repr::DstUnreachable {
                code, next_hop_mtu, ..
            } => T::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::from_values(code.0, next_hop_mtu).unwrap(),
            ),
            Icmpv4Repr::TimeExceeded { code, .. } => {
                T::TimeExceeded(icmpv4::TimeExceededCode::from_u8(code.0).unwrap())
            }
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip((kind, code, a, b, data) in repr_strategy()) {
            let repr = make(kind, code, a, b, &data);
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
            let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn agrees_with_etherparse((kind, code, a, b, data) in repr_strategy()) {
            let repr = make(kind, code, a, b, &data);
            let theirs = etherparse::Icmpv4Header::with_checksum(etherparse_type(&repr), &data);
            let mut their_bytes = theirs.to_bytes().to_vec();
            their_bytes.extend_from_slice(&data);
            prop_assert_eq!(their_bytes.len(), repr.buffer_len());

            let mut ours = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut ours[..]));
            prop_assert_eq!(&ours, &their_bytes);

            let packet = Icmpv4Packet::new_checked(&their_bytes[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn hostile_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(packet) = Icmpv4Packet::new_checked(&data[..]) {
                let _ = (
                    packet.msg_type(), packet.msg_code(), packet.checksum(),
                    packet.echo_ident(), packet.echo_seq_no(), packet.next_hop_mtu(),
                    packet.data(), packet.verify_checksum(),
                );
                if let Ok(Icmpv4Repr::DstUnreachable { original, .. } | Icmpv4Repr::TimeExceeded { original, .. }) = Icmpv4Repr::parse(&packet) {
                    prop_assert_eq!(original, packet.data());
                }
                if let Ok(quoted) = packet.quoted_ipv4() {
                    let _ = (quoted.src_addr(), quoted.dst_addr(), quoted.payload(), quoted.options());
                }
            }
            let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&data[..]));
        }
    }
}
