//! UDP traffic for end-to-end tests: send from one namespace, receive in another, and see the
//! TTL each datagram arrived with (a forwarder must decrement it).
//!
//! Sockets are created by a thread inside the namespace and then used from the caller's
//! thread: a socket stays in the namespace it was created in.
//!
//! The TTL: nix 0.29 can neither enable `IP_RECVTTL` nor decode its control message, and
//! unsafe code is denied here. So an IPv4 receiver also opens a raw `IPPROTO_UDP` socket,
//! which gets a copy of every UDP packet delivered in the namespace, IP header included, and
//! is served before the UDP socket (`ip_protocol_deliver_rcu` runs raw delivery first). Each
//! datagram the UDP socket returns is matched to its raw copy by source and payload. The UDP
//! socket stays the authority on what arrived: it drops bad checksums, which the raw copy
//! would not notice (and could not judge: a locally sent packet crossing veth may still
//! carry a partial checksum). IPv6 raw sockets omit the IP header, so IPv6 datagrams have no
//! TTL (hop limit) here.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket, sockopt,
};

use crate::netns::Netns;

/// Socket receive buffers, so a burst sent before the test starts reading is not dropped.
const RCVBUF: usize = 16 << 20;
/// Raw copies never matched (bad checksums) are forgotten beyond this many.
const MAX_UNMATCHED: usize = 65_536;

/// One received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub payload: Vec<u8>,
    pub src: SocketAddr,
    /// The IPv4 TTL it arrived with; `None` for IPv6, or if the raw copy was lost.
    pub ttl: Option<u8>,
}

/// Sends `count` copies of `payload` from `src` (port 0: any) to `dst`, from inside `ns`.
/// Retries briefly when the kernel is out of buffers, so `count` datagrams leave the socket.
pub fn udp_send_from(
    ns: &Netns,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    count: usize,
) -> Result<()> {
    ns.run(|| -> Result<()> {
        let sock = UdpSocket::bind(src).with_context(|| format!("binding {src}"))?;
        for _ in 0..count {
            let mut retries = 0;
            loop {
                match sock.send_to(payload, dst) {
                    Ok(_) => break,
                    Err(e)
                        if retries < 1000
                            && (e.raw_os_error() == Some(libc::ENOBUFS)
                                || e.kind() == ErrorKind::WouldBlock) =>
                    {
                        retries += 1;
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    Err(e) => return Err(e).with_context(|| format!("sending {src} -> {dst}")),
                }
            }
        }
        Ok(())
    })?
}

/// A bound UDP socket in a namespace. Bind it before sending, then collect.
#[derive(Debug)]
pub struct UdpReceiver {
    udp: UdpSocket,
    /// Raw IPv4 UDP socket for TTLs; `None` for IPv6.
    raw: Option<OwnedFd>,
    local: SocketAddr,
    unmatched: VecDeque<RawCopy>,
}

#[derive(Debug)]
struct RawCopy {
    src: SocketAddrV4,
    ttl: u8,
    payload: Vec<u8>,
}

impl UdpReceiver {
    /// Binds `addr` (port 0: any free port) inside `ns`.
    pub fn bind(ns: &Netns, addr: SocketAddr) -> Result<UdpReceiver> {
        let (udp, raw) = ns.run(|| -> Result<(UdpSocket, Option<OwnedFd>)> {
            // The raw socket first, so every datagram the UDP socket gets has a raw copy.
            let raw = if addr.is_ipv4() {
                let raw = socket(
                    AddressFamily::Inet,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::Udp,
                )
                .context("raw UDP socket")?;
                enlarge_rcvbuf(&raw);
                Some(raw)
            } else {
                None
            };
            let udp = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
            enlarge_rcvbuf(&udp);
            Ok((udp, raw))
        })??;
        let local = udp.local_addr()?;
        Ok(UdpReceiver {
            udp,
            raw,
            local,
            unmatched: VecDeque::new(),
        })
    }

    /// The bound address (with the real port if bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Returns as soon as `n` datagrams arrived, or whatever arrived within `timeout`.
    pub fn recv_n(&mut self, n: usize, timeout: Duration) -> Result<Vec<Datagram>> {
        self.recv_until(n, Instant::now() + timeout)
    }

    /// Everything that arrives within `window` (always waits the whole window).
    pub fn recv_for(&mut self, window: Duration) -> Result<Vec<Datagram>> {
        self.recv_until(usize::MAX, Instant::now() + window)
    }

    fn recv_until(&mut self, n: usize, deadline: Instant) -> Result<Vec<Datagram>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A zero read timeout would block forever.
            self.udp
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.udp.recv_from(&mut buf) {
                Ok((len, src)) => {
                    let payload = buf[..len].to_vec();
                    let ttl = self.ttl_of(src, &payload)?;
                    got.push(Datagram { payload, src, ttl });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("receiving UDP"),
            }
        }
        Ok(got)
    }

    /// Finds the raw copy of a datagram the UDP socket returned and takes its TTL.
    fn ttl_of(&mut self, src: SocketAddr, payload: &[u8]) -> Result<Option<u8>> {
        let Some(raw) = &self.raw else {
            return Ok(None);
        };
        let mut buf = vec![0u8; 65_536];
        loop {
            let len = match recv(raw.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(len) => len,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("receiving on the raw UDP socket"),
            };
            if let Some(copy) = parse_udp_v4(&buf[..len], self.local) {
                if self.unmatched.len() == MAX_UNMATCHED {
                    self.unmatched.pop_front();
                }
                self.unmatched.push_back(copy);
            }
        }
        let SocketAddr::V4(src) = src else {
            bail!("IPv6 source {src} on an IPv4 socket");
        };
        let found = self
            .unmatched
            .iter()
            .position(|c| c.src == src && c.payload == payload);
        Ok(found.and_then(|i| self.unmatched.remove(i)).map(|c| c.ttl))
    }
}

/// Binds `bind` in `ns` and returns everything that arrives within `timeout` (it waits the
/// whole time, so start the sender on another thread first, or use [`UdpReceiver`]).
pub fn udp_recv_in(ns: &Netns, bind: SocketAddr, timeout: Duration) -> Result<Vec<Datagram>> {
    UdpReceiver::bind(ns, bind)?.recv_for(timeout)
}

/// Best effort: with the default buffer (~200 KiB) a burst of a few hundred datagrams
/// already overflows it.
fn enlarge_rcvbuf<F: std::os::fd::AsFd>(sock: &F) {
    if let Err(e) = setsockopt(sock, sockopt::RcvBufForce, &RCVBUF) {
        tracing::warn!("SO_RCVBUFFORCE {RCVBUF}: {e}");
    }
}

/// An IPv4 UDP packet addressed to `local` (any address if `local`'s is unspecified).
fn parse_udp_v4(pkt: &[u8], local: SocketAddr) -> Option<RawCopy> {
    let SocketAddr::V4(local) = local else {
        return None;
    };
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != libc::IPPROTO_UDP as u8 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    let pkt = pkt.get(..total)?;
    let udp = pkt.get(ihl..)?;
    if ihl < 20 || udp.len() < 8 {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(pkt[at], pkt[at + 1], pkt[at + 2], pkt[at + 3]);
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    let (src, dst) = (ip(12), ip(16));
    let (sport, dport) = (port(0), port(2));
    if dport != local.port() || !(local.ip().is_unspecified() || *local.ip() == dst) {
        return None;
    }
    let udp_len = usize::from(port(4));
    Some(RawCopy {
        src: SocketAddrV4::new(src, sport),
        ttl: pkt[8],
        payload: udp.get(8..udp_len)?.to_vec(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::{Topology, TopologyOptions, require_root};

    fn v4_udp(ttl: u8, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, 17, 0, 0];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[10, 0, 0, 1]);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&1234u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn raw_copy_parsing() {
        let local: SocketAddr = "10.0.0.2:9000".parse().unwrap();
        let pkt = v4_udp(61, [10, 0, 0, 2], 9000, b"hi");
        let copy = parse_udp_v4(&pkt, local).unwrap();
        assert_eq!(copy.ttl, 61);
        assert_eq!(copy.src, "10.0.0.1:1234".parse().unwrap());
        assert_eq!(copy.payload, b"hi");
        // Other port, other address, truncated: not ours.
        assert!(parse_udp_v4(&v4_udp(61, [10, 0, 0, 2], 9001, b"hi"), local).is_none());
        assert!(parse_udp_v4(&v4_udp(61, [10, 0, 0, 3], 9000, b"hi"), local).is_none());
        assert!(parse_udp_v4(&pkt[..pkt.len() - 1], local).is_none());
        // A wildcard bind takes any destination address.
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert!(parse_udp_v4(&v4_udp(61, [10, 0, 0, 3], 9000, b"hi"), any).is_some());
    }

    #[test]
    fn udp_through_kernel_forwarding_decrements_ttl() {
        if !require_root("traffic::udp_through_kernel_forwarding_decrements_ttl") {
            return;
        }
        let opts = TopologyOptions {
            kernel_forwarding: true,
            ..TopologyOptions::default()
        };
        let topo = Topology::chain3_with("udp", &opts).unwrap();
        let sink = SocketAddr::new(topo.sink_ip(), 9000);
        let src = SocketAddr::new(topo.gen_ip(), 5000);
        let mut rx = UdpReceiver::bind(&topo.sink, sink).unwrap();
        udp_send_from(&topo.generator, src, sink, b"hello", 500).unwrap();
        let got = rx.recv_n(500, Duration::from_secs(5)).unwrap();
        assert_eq!(got.len(), 500);
        for d in &got {
            assert_eq!(d.payload, b"hello");
            assert_eq!(d.src, src);
            assert_eq!(d.ttl, Some(63));
        }

        // IPv6 goes through too, without a TTL.
        let sink6 = SocketAddr::new(topo.sink_if.ipv6.into(), 9001);
        let mut rx6 = UdpReceiver::bind(&topo.sink, sink6).unwrap();
        let src6 = SocketAddr::new(topo.gen_if.ipv6.into(), 0);
        udp_send_from(&topo.generator, src6, sink6, b"six", 3).unwrap();
        let got = rx6.recv_n(3, Duration::from_secs(5)).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.payload == b"six" && d.ttl.is_none()));
    }

    #[test]
    fn nothing_crosses_without_forwarding() {
        if !require_root("traffic::nothing_crosses_without_forwarding") {
            return;
        }
        let topo = Topology::chain3("noudp").unwrap();
        let sink = SocketAddr::new(topo.sink_ip(), 9000);
        let generator = &topo.generator;
        let (sent, got) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                udp_send_from(generator, "0.0.0.0:0".parse().unwrap(), sink, b"x", 10)
            });
            let got = udp_recv_in(&topo.sink, sink, Duration::from_millis(500)).unwrap();
            (sender.join().unwrap(), got)
        });
        sent.unwrap();
        assert!(got.is_empty(), "{got:?}");
        // The node's kernel received them on node-gen and dropped them (forwarding off).
        let stats = topo.node.link_stats("node-gen").unwrap();
        assert!(stats.rx_packets >= 10, "{stats:?}");
    }
}
