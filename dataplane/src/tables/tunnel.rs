//! VXLAN tunnels (RFC 7348) with their encapsulation header precomputed, VPP-style: the table
//! compiler builds the 50 outer bytes once per tunnel, and encapsulation copies them in front
//! of the inner frame and patches the few fields that depend on the packet (lengths, DF, UDP
//! source port), fixing the outer IPv4 checksum incrementally (RFC 1624).

use std::net::Ipv4Addr;

use crate::verdict::PortId;
use crate::wire::checksum;
use crate::wire::{
    ETHERNET_HEADER_LEN, EtherType, EthernetFrame, EthernetRepr, IPV4_MIN_HEADER_LEN, IpProtocol,
    Ipv4Packet, Ipv4Repr, MacAddr, UDP_HEADER_LEN, VXLAN_HEADER_LEN, VxlanHeader, VxlanRepr,
};

/// Bytes encapsulation puts in front of the inner Ethernet frame: outer Ethernet, IPv4 (no
/// options), UDP and VXLAN headers.
pub const VXLAN_ENCAP_LEN: usize =
    ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;

/// What encapsulation adds to a packet's L3 size, for MTU checks: outer IPv4, UDP and VXLAN
/// headers plus the inner Ethernet header (the outer Ethernet header is not L3).
pub const VXLAN_OVERHEAD: usize =
    IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN;

/// Offsets of the patched fields inside the 50-byte template.
mod field {
    use super::{ETHERNET_HEADER_LEN, IPV4_MIN_HEADER_LEN};

    pub const IP: usize = ETHERNET_HEADER_LEN;
    pub const IP_LENGTH: usize = IP + 2;
    pub const IP_FLG_OFF: usize = IP + 6;
    pub const IP_CHECKSUM: usize = IP + 10;
    pub const UDP: usize = IP + IPV4_MIN_HEADER_LEN;
    pub const UDP_SRC_PORT: usize = UDP;
    pub const UDP_LENGTH: usize = UDP + 4;
    pub const VXLAN: usize = UDP + super::UDP_HEADER_LEN;
}

/// IPv4 "don't fragment" in the flags/fragment-offset word.
const FLAG_DF: u16 = 0x4000;

/// Outer TTL: what Linux's vxlan device uses when none is configured (the default hop limit),
/// which is how flannel sets it up.
const OUTER_TTL: u8 = 64;

/// Index of a tunnel in [`Tables::tunnels`](super::Tables::tunnels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u32);

impl TunnelId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Everything that defines a tunnel to a remote VTEP, as the control plane knows it (flannel's
/// node annotations give `remote` and `inner_dst_mac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSpec {
    /// The uplink the encapsulated packet leaves by.
    pub port: PortId,
    /// Next hop on the uplink toward `remote` (its MAC, or the gateway's).
    pub outer_dst_mac: [u8; 6],
    /// The uplink's MAC.
    pub outer_src_mac: [u8; 6],
    /// Our VTEP address (outer source).
    pub local: Ipv4Addr,
    /// The remote VTEP address (outer destination).
    pub remote: Ipv4Addr,
    /// 24 bits; higher bits are dropped.
    pub vni: u32,
    /// Outer UDP destination port (flannel: 8472).
    pub dst_port: u16,
    /// The remote VTEP MAC, destination of the inner frame.
    pub inner_dst_mac: [u8; 6],
    /// Our VTEP MAC, source of the inner frame.
    pub inner_src_mac: [u8; 6],
}

/// A tunnel ready for the data path: the outer header template and the inner L2 rewrite.
#[derive(Debug, Clone)]
pub struct VxlanTunnel {
    spec: TunnelSpec,
    /// Eth + IPv4 + UDP + VXLAN with IPv4 total length, flags, identification, UDP length and
    /// source port all zero, and the IPv4 checksum computed over exactly that header.
    header: [u8; VXLAN_ENCAP_LEN],
    /// Inner destination MAC then source MAC.
    inner_l2: [u8; 12],
}

impl VxlanTunnel {
    pub fn new(spec: &TunnelSpec) -> Self {
        let mut header = [0u8; VXLAN_ENCAP_LEN];
        EthernetRepr {
            dst_addr: MacAddr(spec.outer_dst_mac),
            src_addr: MacAddr(spec.outer_src_mac),
            ethertype: EtherType::IPV4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut header[..]));
        let mut ip = Ipv4Packet::new_unchecked(&mut header[field::IP..field::UDP]);
        Ipv4Repr {
            src_addr: spec.local,
            dst_addr: spec.remote,
            protocol: IpProtocol::UDP,
            payload_len: 0,
            ttl: OUTER_TTL,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut ip);
        // The data path adds the real length to a checksum computed for length 0.
        ip.set_total_len(0);
        ip.fill_checksum();
        let udp = &mut header[field::UDP..field::VXLAN];
        udp[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
        // UDP checksum stays 0: RFC 7348 §5 says it SHOULD be sent as zero over IPv4.
        VxlanRepr { vni: spec.vni }
            .emit(&mut VxlanHeader::new_unchecked(&mut header[field::VXLAN..]));
        let mut inner_l2 = [0u8; 12];
        inner_l2[..6].copy_from_slice(&spec.inner_dst_mac);
        inner_l2[6..].copy_from_slice(&spec.inner_src_mac);
        VxlanTunnel {
            spec: *spec,
            header,
            inner_l2,
        }
    }

    pub fn spec(&self) -> &TunnelSpec {
        &self.spec
    }

    /// The uplink the tunnel's packets leave by.
    #[inline]
    pub fn port(&self) -> PortId {
        self.spec.port
    }

    /// Inner destination and source MACs, written over the inner frame's first 12 bytes.
    #[inline]
    pub fn inner_l2(&self) -> &[u8; 12] {
        &self.inner_l2
    }

    /// The template, with its packet-dependent fields zero.
    pub fn template(&self) -> &[u8; VXLAN_ENCAP_LEN] {
        &self.header
    }

    /// Writes the outer headers for an inner Ethernet frame of `inner_len` bytes into the
    /// first [`VXLAN_ENCAP_LEN`] bytes of `out`. `dont_frag` is copied from the inner header
    /// (so path MTU discovery keeps working through the tunnel); `src_port` is the flow's
    /// entropy (RFC 7348 §5). False, with `out` unchanged, if `out` is too short or the outer
    /// packet would exceed 64 KiB.
    #[inline]
    pub fn write_header(
        &self,
        out: &mut [u8],
        inner_len: usize,
        dont_frag: bool,
        src_port: u16,
    ) -> bool {
        let Some(hdr) = out.get_mut(..VXLAN_ENCAP_LEN) else {
            return false;
        };
        let udp_len = inner_len + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
        let Ok(ip_len) = u16::try_from(udp_len + IPV4_MIN_HEADER_LEN) else {
            return false;
        };
        // Fits: udp_len < ip_len.
        let udp_len = udp_len as u16;
        hdr.copy_from_slice(&self.header);
        let flags = if dont_frag { FLAG_DF } else { 0 };
        let template_csum = u16::from_be_bytes([
            self.header[field::IP_CHECKSUM],
            self.header[field::IP_CHECKSUM + 1],
        ]);
        // Two words went from 0 to their values (RFC 1624 eqn. 3, exact: see wire::checksum).
        let csum = checksum::update16(checksum::update16(template_csum, 0, ip_len), 0, flags);
        hdr[field::IP_LENGTH..field::IP_LENGTH + 2].copy_from_slice(&ip_len.to_be_bytes());
        hdr[field::IP_FLG_OFF..field::IP_FLG_OFF + 2].copy_from_slice(&flags.to_be_bytes());
        hdr[field::IP_CHECKSUM..field::IP_CHECKSUM + 2].copy_from_slice(&csum.to_be_bytes());
        hdr[field::UDP_SRC_PORT..field::UDP_SRC_PORT + 2].copy_from_slice(&src_port.to_be_bytes());
        hdr[field::UDP_LENGTH..field::UDP_LENGTH + 2].copy_from_slice(&udp_len.to_be_bytes());
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn spec() -> TunnelSpec {
        TunnelSpec {
            port: PortId(0),
            outer_dst_mac: [0x02, 0, 0, 0, 0, 0xd1],
            outer_src_mac: [0x02, 0, 0, 0, 0, 0x51],
            local: Ipv4Addr::new(192, 168, 1, 10),
            remote: Ipv4Addr::new(192, 168, 1, 20),
            vni: 1,
            dst_port: 8472,
            inner_dst_mac: [0x0a, 0, 0, 0, 0, 0x20],
            inner_src_mac: [0x0a, 0, 0, 0, 0, 0x10],
        }
    }

    proptest! {
        /// The patched header is what etherparse reads back, with a checksum a recomputation
        /// agrees with, for every length and DF setting.
        #[test]
        fn header_is_valid_for_any_length(len in 14usize..9000, df: bool, sport: u16, vni in 0u32..(1 << 24)) {
            let t = VxlanTunnel::new(&TunnelSpec { vni, ..spec() });
            let mut out = [0u8; VXLAN_ENCAP_LEN];
            prop_assert!(t.write_header(&mut out, len, df, sport));
            let (ip, rest) = etherparse::Ipv4Header::from_slice(&out[14..]).unwrap();
            prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            prop_assert_eq!(usize::from(ip.total_len), len + 36);
            prop_assert_eq!(ip.dont_fragment, df);
            prop_assert_eq!(ip.time_to_live, OUTER_TTL);
            let udp = etherparse::UdpHeader::from_slice(rest).unwrap().0;
            prop_assert_eq!(usize::from(udp.length), len + 16);
            prop_assert_eq!((udp.source_port, udp.destination_port, udp.checksum), (sport, 8472, 0));
            prop_assert_eq!(&out[42..50], &[0x08, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0]);
        }
    }

    #[test]
    fn refuses_short_buffers_and_huge_packets() {
        let t = VxlanTunnel::new(&spec());
        let mut out = [0u8; 49];
        assert!(!t.write_header(&mut out, 100, false, 1));
        assert_eq!(out, [0; 49]);
        let mut out = [0u8; 50];
        assert!(!t.write_header(&mut out, 65_500, false, 1));
        assert_eq!(t.inner_l2()[..6], spec().inner_dst_mac);
        assert_eq!(t.spec(), &spec());
    }
}
