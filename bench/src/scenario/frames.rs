//! Frame templates for the generator: UDP or TCP over IPv4 or IPv6, bare or inside VXLAN.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, ensure};

/// Ethernet + IPv4 headers.
const L3_HEADERS: usize = 14 + 20;

/// The L4 protocol of the load frames (`--proto`); latency probes are always UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Udp,
    /// Segments with ACK set, as in the middle of a connection (no handshake: the kernel's
    /// conntrack picks them up with `nf_conntrack_tcp_loose`, kxdp's as a new flow).
    Tcp,
}

impl Proto {
    /// As nftables and kube-proxy spell it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

impl Proto {
    /// Bytes of its header.
    fn header_len(self) -> usize {
        match self {
            Proto::Udp => 8,
            Proto::Tcp => 20,
        }
    }
}

/// Writes `proto`'s header (UDP; or TCP with ACK, window 65535) and `payload` after the IP
/// step `ip` of etherparse's builder (IPv4 or IPv6).
fn write_l4(
    proto: Proto,
    ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    match proto {
        Proto::Udp => ip.udp(src_port, dst_port).write(out, payload),
        Proto::Tcp => ip
            .tcp(src_port, dst_port, 1, 65535)
            .ack(1)
            .write(out, payload),
    }
    .with_context(|| format!("building a {} frame", proto.name()))
}

/// Checks `frame_bytes` against the headers before it and the Ethernet limits.
fn check_size(what: &str, headers: usize, frame_bytes: usize) -> Result<usize> {
    let min = headers.max(MIN_FRAME);
    ensure!(
        (min..=1514).contains(&frame_bytes),
        "{what} frame of {frame_bytes} bytes: need {min}..=1514"
    );
    Ok(frame_bytes - headers)
}

/// A `proto` frame `src` → `dst` of exactly `frame_bytes` (without FCS; at least 60), TTL 64,
/// checksums valid, zero payload.
pub fn l4(
    proto: Proto,
    src: Endpoint,
    dst: Endpoint,
    src_port: u16,
    dst_port: u16,
    frame_bytes: usize,
) -> Result<Vec<u8>> {
    let payload = check_size(proto.name(), L3_HEADERS + proto.header_len(), frame_bytes)?;
    let ip = etherparse::PacketBuilder::ethernet2(src.mac, dst.mac).ipv4(
        src.ip.octets(),
        dst.ip.octets(),
        64,
    );
    let mut v = Vec::with_capacity(frame_bytes);
    write_l4(proto, ip, src_port, dst_port, &vec![0u8; payload], &mut v)?;
    Ok(v)
}

/// A `proto` frame over IPv6 (hop limit 64) between `src` and `dst` MACs and addresses, of
/// exactly `frame_bytes` (without FCS): at least 62 bytes for UDP, 74 for TCP.
#[allow(clippy::too_many_arguments)]
pub fn l4_v6(
    proto: Proto,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    src_port: u16,
    dst_port: u16,
    frame_bytes: usize,
) -> Result<Vec<u8>> {
    let what = format!("IPv6 {}", proto.name());
    let payload = check_size(&what, 14 + 40 + proto.header_len(), frame_bytes)?;
    let ip =
        etherparse::PacketBuilder::ethernet2(src_mac, dst_mac).ipv6(src.octets(), dst.octets(), 64);
    let mut v = Vec::with_capacity(frame_bytes);
    write_l4(proto, ip, src_port, dst_port, &vec![0u8; payload], &mut v)?;
    Ok(v)
}

/// What VXLAN adds in front of an inner frame: outer Ethernet, IPv4, UDP, VXLAN headers.
pub const VXLAN_BYTES: usize = 14 + 20 + 8 + 8;
/// The shortest frame without FCS (60 + 4 = 64 on the wire).
pub const MIN_FRAME: usize = 60;

/// One end of a frame: MAC and IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

/// A UDP frame `src` → `dst` of exactly `frame_bytes` (without FCS; at least 60), TTL 64,
/// checksums valid, zero payload.
pub fn udp(
    src: Endpoint,
    dst: Endpoint,
    src_port: u16,
    dst_port: u16,
    frame_bytes: usize,
) -> Result<Vec<u8>> {
    l4(Proto::Udp, src, dst, src_port, dst_port, frame_bytes)
}

/// `inner` wrapped in VXLAN (RFC 7348) `outer_src` → `outer_dst`:`port`, the outer UDP source
/// port `src_port` and its checksum 0, as Linux's vxlan device sends by default.
pub fn vxlan(
    outer_src: Endpoint,
    outer_dst: Endpoint,
    src_port: u16,
    port: u16,
    vni: u32,
    inner: &[u8],
) -> Result<Vec<u8>> {
    let b = etherparse::PacketBuilder::ethernet2(outer_src.mac, outer_dst.mac)
        .ipv4(outer_src.ip.octets(), outer_dst.ip.octets(), 64)
        .udp(src_port, port);
    let mut payload = Vec::with_capacity(8 + inner.len());
    // Flags: I (valid VNI); VNI in the top 24 bits of the second word.
    payload.extend_from_slice(&[0x08, 0, 0, 0]);
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut v = Vec::with_capacity(VXLAN_BYTES + inner.len());
    b.write(&mut v, &payload)
        .context("building a VXLAN frame")?;
    // Zero UDP checksum (RFC 7348 §5 allows it over IPv4).
    v[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn ep(last: u8) -> Endpoint {
        Endpoint {
            mac: [2, 0, 0, 0, 0, last],
            ip: Ipv4Addr::new(10, 0, 0, last),
        }
    }

    #[test]
    fn udp_frames_have_the_asked_size() {
        for n in [60, 61, 128, 1514] {
            let f = udp(ep(1), ep(2), 10_000, 80, n).unwrap();
            assert_eq!(f.len(), n);
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
                panic!("not UDP")
            };
            assert_eq!((u.source_port(), u.destination_port()), (10_000, 80));
        }
        assert!(udp(ep(1), ep(2), 1, 2, 59).is_err());
    }

    #[test]
    fn tcp_frames_have_the_asked_size_and_valid_checksums() {
        for n in [60, 64, 1514] {
            let f = l4(Proto::Tcp, ep(1), ep(2), 10_000, 80, n).unwrap();
            assert_eq!(f.len(), n);
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
                panic!("not TCP")
            };
            let h = t.to_header();
            assert!(h.ack);
            let want = h
                .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                .unwrap();
            assert_eq!(h.checksum, want);
        }
    }

    #[test]
    fn ipv6_frames_have_the_asked_size() {
        let (s, d) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        for (proto, n) in [(Proto::Udp, 62), (Proto::Udp, 1514), (Proto::Tcp, 74)] {
            let f = l4_v6(proto, [2; 6], [4; 6], s, d, 1, 2, n).unwrap();
            assert_eq!(f.len(), n);
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            assert!(matches!(p.net, Some(etherparse::NetSlice::Ipv6(_))));
        }
        assert!(l4_v6(Proto::Tcp, [2; 6], [4; 6], s, d, 1, 2, 64).is_err());
    }

    #[test]
    fn vxlan_wraps_the_inner_frame() {
        let inner = udp(ep(3), ep(4), 1, 2, 60).unwrap();
        let f = vxlan(ep(1), ep(2), 4242, 8472, 1, &inner).unwrap();
        assert_eq!(f.len(), 60 + VXLAN_BYTES);
        assert_eq!(&f[36..38], &8472u16.to_be_bytes());
        assert_eq!(&f[40..42], &[0, 0], "UDP checksum 0");
        assert_eq!(&f[42..50], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&f[50..], &inner[..]);
    }
}
