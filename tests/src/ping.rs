//! ICMP echo from inside a namespace over a raw socket, so tests do not depend on
//! iputils-ping (missing from slim images, including this project's build machine).
//!
//! Raw ICMP sockets see every ICMP packet the namespace receives, so replies are matched on
//! type, source, identifier and sequence number. The kernel fills in the ICMPv6 checksum on
//! raw ICMPv6 sockets (RFC 3542 §3.1); the ICMPv4 checksum is ours to compute.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, recvfrom, sendto,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::netns::Netns;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PAYLOAD: &[u8; 16] = b"kxdp-tests-ping!";

/// Distinct identifiers for concurrent pings from the threads of one test binary.
static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// Like `ping -c <count> -W 1`: true if at least one of `count` echo requests from `ns` to
/// `addr` was answered within a second. Errors (no such route...) count as no answer.
pub fn ping(ns: &Netns, addr: IpAddr, count: u32) -> bool {
    match ping_replies(ns, addr, count, Duration::from_secs(1)) {
        Ok(replies) => replies > 0,
        Err(e) => {
            tracing::debug!("ping {addr} from {}: {e:#}", ns.name());
            false
        }
    }
}

/// Sends `count` echo requests from `ns` to `addr`, one at a time, each waiting up to `wait`
/// for its reply; returns how many were answered.
pub fn ping_replies(ns: &Netns, addr: IpAddr, count: u32, wait: Duration) -> Result<u32> {
    // Mixing in the pid keeps concurrent test binaries apart in a shared namespace.
    let id = NEXT_ID
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(std::process::id() as u16);
    ns.run(|| echo(addr, count, id, wait))?
}

fn echo(addr: IpAddr, count: u32, id: u16, wait: Duration) -> Result<u32> {
    let (family, protocol) = match addr {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let sock = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
        .context("raw ICMP socket")?;
    let dest = SockaddrStorage::from(SocketAddr::new(addr, 0));
    let mut replies = 0;
    for seq in 0..count {
        // Wrapping is fine: only the reply to the request in flight is awaited.
        let seq = seq as u16;
        let request = echo_request(addr.is_ipv6(), id, seq);
        sendto(sock.as_raw_fd(), &request, &dest, MsgFlags::empty())
            .with_context(|| format!("sending echo request to {addr}"))?;
        if await_reply(&sock, addr, id, seq, wait)? {
            replies += 1;
        }
    }
    Ok(replies)
}

fn await_reply(sock: &OwnedFd, addr: IpAddr, id: u16, seq: u16, wait: Duration) -> Result<bool> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // A zero timeout would mean "block forever"; `left` is at least 1 µs here.
        let micros = i64::try_from(left.as_micros()).unwrap_or(i64::MAX).max(1);
        setsockopt(
            sock,
            sockopt::ReceiveTimeout,
            &TimeVal::microseconds(micros),
        )?;
        let (len, from) = match recvfrom::<SockaddrStorage>(sock.as_raw_fd(), &mut buf) {
            Ok(got) => got,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => return Err(e).context("receiving ICMP"),
        };
        let from = from.and_then(|f| {
            f.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| f.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        });
        if from == Some(addr) && is_reply(&buf[..len], addr.is_ipv6(), id, seq) {
            return Ok(true);
        }
    }
}

fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut msg = vec![kind, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(PAYLOAD);
    if !v6 {
        let sum = internet_checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    msg
}

/// IPv4 raw sockets deliver the IP header too; IPv6 raw sockets start at the ICMPv6 header.
fn is_reply(packet: &[u8], v6: bool, id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        packet.get(ihl..).unwrap_or_default()
    };
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    icmp.len() >= 8
        && icmp[0] == want
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// RFC 1071 ones'-complement sum.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::require_root;

    #[test]
    fn checksum_of_request_verifies() {
        let msg = echo_request(false, 0x1234, 7);
        assert_eq!(internet_checksum(&msg), 0);
        // RFC 1071 example.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn reply_matching() {
        let mut reply = echo_request(true, 9, 3);
        reply[0] = ECHO_REPLY_V6;
        assert!(is_reply(&reply, true, 9, 3));
        assert!(!is_reply(&reply, true, 9, 4));
        assert!(!is_reply(&reply, true, 8, 3));
        let mut v4 = vec![0x45; 20];
        let mut icmp = echo_request(false, 9, 3);
        icmp[0] = ECHO_REPLY_V4;
        v4.extend_from_slice(&icmp);
        assert!(is_reply(&v4, false, 9, 3));
        assert!(!is_reply(&v4[..24], false, 9, 3));
    }

    #[test]
    fn loopback_answers() {
        if !require_root("ping::loopback_answers") {
            return;
        }
        let ns = Netns::new("ping").unwrap();
        let wait = Duration::from_secs(1);
        assert_eq!(
            ping_replies(&ns, "127.0.0.1".parse().unwrap(), 3, wait).unwrap(),
            3
        );
        assert_eq!(
            ping_replies(&ns, "::1".parse().unwrap(), 2, wait).unwrap(),
            2
        );
        // No route: an error, which ping() reports as no answer.
        assert!(!ping(&ns, "192.0.2.1".parse().unwrap(), 1));
    }
}
