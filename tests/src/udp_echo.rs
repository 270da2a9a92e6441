//! UDP request/response between namespaces: an echo server and a client that counts answered
//! requests, the datagram counterpart of [`ping`](crate::ping()) for paths that treat UDP
//! specially (service NAT, conntrack, VXLAN port steering).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::tcp_transfer::fill_pattern;

/// How often the server thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Echoes every datagram back to its sender until dropped.
#[derive(Debug)]
pub struct UdpEchoServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl UdpEchoServer {
    /// Binds `bind` (port 0: any free port) inside `ns` and starts echoing.
    pub fn start(ns: &Netns, bind: SocketAddr) -> Result<UdpEchoServer> {
        let sock = ns
            .run(|| UdpSocket::bind(bind))?
            .with_context(|| format!("binding {bind} in {}", ns.name()))?;
        sock.set_read_timeout(Some(POLL))?;
        let local = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("udp-echo-{}", local.port()))
            .spawn(move || echo_loop(&sock, &flag))
            .context("spawning the echo thread")?;
        Ok(UdpEchoServer {
            local,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port if bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the server; returns how many datagrams it echoed.
    pub fn stop(mut self) -> u64 {
        self.halt()
    }

    fn halt(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(echoed)) => echoed,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => 0,
        }
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Never re-raise a panic from Drop.
            let _ = thread.join();
        }
    }
}

fn echo_loop(sock: &UdpSocket, stop: &AtomicBool) -> u64 {
    let mut buf = vec![0u8; 65_536];
    let mut echoed = 0;
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((len, from)) => {
                if sock.send_to(&buf[..len], from).is_ok() {
                    echoed += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // ICMP errors from earlier sends surface here (ECONNREFUSED); keep serving.
                tracing::debug!("udp echo server: {e}");
            }
        }
    }
    echoed
}

/// Sends `count` datagrams of `payload_len` bytes (at least 4) from `client` to `server`, one
/// at a time, each waiting up to `wait` for its echo; returns how many came back unchanged
/// from `server`'s address.
pub fn udp_echo(
    client: &Netns,
    server: SocketAddr,
    count: u32,
    payload_len: usize,
    wait: Duration,
) -> Result<u32> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let sock = client
        .run(|| UdpSocket::bind(bind))?
        .with_context(|| format!("binding {bind} in {}", client.name()))?;
    let mut request = vec![0u8; payload_len.max(4)];
    let mut buf = vec![0u8; 65_536];
    let mut answered = 0;
    for seq in 0..count {
        request[..4].copy_from_slice(&seq.to_be_bytes());
        fill_pattern(u64::from(seq), 0, &mut request[4..]);
        sock.send_to(&request, server)
            .with_context(|| format!("sending to {server}"))?;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match sock.recv_from(&mut buf) {
                Ok((len, from)) if from == server && buf[..len] == request[..] => {
                    answered += 1;
                    break;
                }
                // A late echo of an earlier request, or someone else's datagram.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                // ICMP port unreachable and the like: this request is lost, go on.
                Err(e) => {
                    tracing::debug!("udp echo to {server}: {e}");
                    break;
                }
            }
        }
    }
    Ok(answered)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::require_root;

    #[test]
    fn echo_on_loopback() {
        if !require_root("udp_echo::echo_on_loopback") {
            return;
        }
        let ns = Netns::new("udpecho").unwrap();
        let server = UdpEchoServer::start(&ns, "127.0.0.1:0".parse().unwrap()).unwrap();
        let wait = Duration::from_secs(1);
        let answered = udp_echo(&ns, server.local_addr(), 5, 1000, wait).unwrap();
        assert_eq!(answered, 5);
        assert_eq!(server.stop(), 5);
        // Nobody listening: no answers, no error.
        let closed = "127.0.0.1:9".parse().unwrap();
        let wait = Duration::from_millis(200);
        assert_eq!(udp_echo(&ns, closed, 2, 10, wait).unwrap(), 0);
    }
}
