//! Wire formats: zero-copy views over packet bytes, one module per layer.
//!
//! Every format comes in two halves, after smoltcp's `wire` module:
//!
//! - a **view** (`EthernetFrame<T>`, `Ipv4Packet<T>`, ...) over any `T: AsRef<[u8]>`. It owns
//!   nothing and copies nothing: getters read fixed big-endian offsets, setters (for
//!   `T: AsMut<[u8]>`) write them in place. `new_checked` validates the lengths once, after
//!   which no getter panics whatever the bytes are; `new_unchecked` skips that for buffers
//!   the caller built itself. This is what the hot path uses.
//! - a **`Repr`** (`Ipv4Repr`, `ArpRepr`, ...): a plain struct with `parse` and `emit`, for
//!   tests, building packets and slow paths (ARP replies, ICMP errors).
//!
//! | module       | format                                        | view / repr                    |
//! |--------------|-----------------------------------------------|--------------------------------|
//! | `ethernet`   | Ethernet II header (no VLAN tag parsing)      | `EthernetFrame`, `EthernetRepr`|
//! | `arp`        | ARP, Ethernet/IPv4 only (RFC 826)             | `ArpPacket`, `ArpRepr`         |
//! | `ipv4`       | IPv4 header, options skipped (RFC 791)        | `Ipv4Packet`, `Ipv4Repr`       |
//! | `ipv6`       | IPv6 fixed header only (RFC 8200)             | `Ipv6Packet`, `Ipv6Repr`       |
//! | `udp`        | UDP (RFC 768)                                 | `UdpPacket`, `UdpRepr`         |
//! | `tcp`        | TCP header, options kept raw (RFC 9293)       | `TcpPacket`, `TcpRepr`         |
//! | `icmpv4`     | ICMPv4 echo, dest unreachable, time exceeded  | `Icmpv4Packet`, `Icmpv4Repr`   |
//! | `vxlan`      | VXLAN header (RFC 7348)                       | `VxlanHeader`, `VxlanRepr`     |
//! | [`checksum`] | RFC 1071 sums, RFC 1624 incremental updates   | free functions                 |
//!
//! Checksums are never verified implicitly: `Repr::parse` and `new_checked` look at lengths and
//! versions only, and each view has explicit `verify_checksum*` / `fill_checksum*` methods, so
//! the caller decides (hardware may already have checked, a forwarded packet need not be).

mod arp;
pub mod checksum;
mod ethernet;
mod icmpv4;
mod ipv4;
mod ipv6;
mod tcp;
mod udp;
mod vxlan;

use std::fmt;

pub use self::arp::{ARP_PACKET_LEN, ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{ETHERNET_HEADER_LEN, EthernetFrame, EthernetRepr};
pub use self::icmpv4::{
    DstUnreachableCode, ICMPV4_ERROR_QUOTE_MAX, ICMPV4_HEADER_LEN, Icmpv4Packet, Icmpv4Repr,
    Icmpv4Type, TimeExceededCode, icmpv4_error_quote,
};
pub use self::ipv4::{IPV4_MIN_HEADER_LEN, Ipv4Packet, Ipv4Repr};
pub use self::ipv6::{IPV6_HEADER_LEN, Ipv6Packet, Ipv6Repr};
pub use self::tcp::{TCP_MAX_HEADER_LEN, TCP_MIN_HEADER_LEN, TcpFlags, TcpPacket, TcpRepr};
pub use self::udp::{UDP_HEADER_LEN, UdpPacket, UdpRepr};
pub use self::vxlan::{VXLAN_HEADER_LEN, VXLAN_UDP_PORT, VxlanHeader, VxlanRepr};

/// Why a buffer could not be read as a packet of some format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header, or than a length field in it claims.
    #[error("truncated packet: buffer shorter than the header or its length field")]
    Truncated,
    /// A field holds a value the format forbids (wrong version, header length too small, ...).
    #[error("malformed packet: a header field holds a value the format forbids")]
    Malformed,
    /// The packet is well formed but of a kind this module does not handle (ARP for a
    /// non-Ethernet/IPv4 pair, an ICMP type without a `Repr` variant, ...).
    #[error("unsupported packet: well formed but of a kind not handled here")]
    Unsupported,
}

/// The EtherType field of an Ethernet II header (IEEE 802.3, values from the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// An IEEE 802.1Q VLAN tag follows; this module does not parse it.
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// The IPv4 "protocol" / IPv6 "next header" field (IANA protocol numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("icmp"),
            IpProtocol::TCP => f.write_str("tcp"),
            IpProtocol::UDP => f.write_str("udp"),
            IpProtocol::ICMPV6 => f.write_str("icmpv6"),
            IpProtocol(other) => write!(f, "proto-{other}"),
        }
    }
}

/// A 48-bit IEEE 802 MAC address, displayed as `02:00:5e:10:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC address from the first six bytes of `bytes`, if there are six.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        let octets: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(octets))
    }

    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == MacAddr::BROADCAST
    }

    /// The I/G bit: group (multicast or broadcast) rather than individual.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> MacAddr {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The (source, destination) port pair of a UDP or TCP header, which both keep in their first
/// four bytes; what the engine hashes and looks up before it needs anything else of L4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct L4Ports {
    pub src: u16,
    pub dst: u16,
}

impl L4Ports {
    /// Reads the ports of a UDP or TCP header starting `offset` bytes into `buf`; `None` if
    /// fewer than four bytes are there. Nothing else of the header is checked.
    #[inline]
    pub fn read(buf: &[u8], offset: usize) -> Option<L4Ports> {
        let end = offset.checked_add(4)?;
        let &[s0, s1, d0, d1] = buf.get(offset..end)? else {
            return None;
        };
        Some(L4Ports {
            src: u16::from_be_bytes([s0, s1]),
            dst: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The pair seen from the other direction.
    #[inline]
    pub const fn reversed(self) -> L4Ports {
        L4Ports {
            src: self.dst,
            dst: self.src,
        }
    }
}

/// Reads the big-endian `u16` at `at` of `buf`. Callers index only offsets that their
/// `new_checked` proved in bounds.
#[inline]
fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mac_display_and_bits() {
        let mac = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
        assert_eq!(mac.to_string(), "02:00:5e:10:00:01");
        assert!(mac.is_unicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn l4_ports_reads_at_offset_and_never_panics() {
        let buf = [0xaa, 0x00, 0x35, 0x1f, 0x90, 0x00];
        assert_eq!(
            L4Ports::read(&buf, 1),
            Some(L4Ports {
                src: 0x0035,
                dst: 0x1f90
            })
        );
        assert_eq!(L4Ports::read(&buf, 3), None);
        assert_eq!(L4Ports::read(&buf, usize::MAX), None);
        assert_eq!(
            L4Ports::read(&buf, 1).unwrap().reversed(),
            L4Ports {
                src: 0x1f90,
                dst: 0x0035
            }
        );
    }

    #[test]
    fn display_of_small_types() {
        assert_eq!(EtherType::IPV6.to_string(), "0x86dd");
        assert_eq!(IpProtocol::UDP.to_string(), "udp");
        assert_eq!(IpProtocol(132).to_string(), "proto-132");
    }
}
