//! Bulk TCP between two namespaces with every byte checked: the test that a data path
//! rewriting, encapsulating or NATing packets keeps a stream intact (checksums, sequence
//! space, MSS/MTU, reordering, loss recovery).
//!
//! The listener is created inside the server namespace and the client socket inside the
//! client namespace; after that the streams are driven from ordinary threads (a socket stays
//! in the namespace it was created in). The sender writes a deterministic pseudo-random
//! pattern ([`fill_pattern`]), which the receiver regenerates and compares as it reads, so a
//! misplaced, duplicated or corrupted segment shows up as mismatched bytes at an offset.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::netns::Netns;

/// Write and read buffer size.
const CHUNK: usize = 64 << 10;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// The connecting side sends (an upload).
    #[default]
    ClientToServer,
    /// The accepting side sends (a download).
    ServerToClient,
}

/// Options for [`tcp_transfer_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOptions {
    pub bytes: u64,
    pub direction: Direction,
    /// For connecting and moving all bytes; past it the transfer fails.
    pub timeout: Duration,
    /// Selects the pattern; differing seeds tell concurrent transfers apart.
    pub seed: u64,
}

impl Default for TransferOptions {
    /// 1 MiB client → server, 20 s, seed 1.
    fn default() -> Self {
        TransferOptions {
            bytes: 1 << 20,
            direction: Direction::ClientToServer,
            timeout: Duration::from_secs(20),
            seed: 1,
        }
    }
}

/// What the receiving side saw, once the sender closed the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    pub direction: Direction,
    /// Bytes sent.
    pub expected: u64,
    /// Bytes read before end of stream.
    pub received: u64,
    /// Received bytes (within the first `expected`) that differ from the pattern.
    pub mismatches: u64,
    /// Offset of the first of them.
    pub first_mismatch: Option<u64>,
    /// From the connection being established to end of stream at the receiver.
    pub duration: Duration,
}

impl TransferReport {
    /// Every byte arrived, once, unchanged.
    pub fn is_intact(&self) -> bool {
        self.received == self.expected && self.mismatches == 0
    }

    /// Fails with the report unless [`is_intact`](Self::is_intact).
    pub fn check(&self) -> Result<()> {
        ensure!(self.is_intact(), "TCP stream damaged: {self:?}");
        Ok(())
    }

    /// Goodput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.received as f64 * 8.0 / self.duration.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Sends `bytes` from a client in `client` to a server listening on `server_ip:port` in
/// `server` (port 0: any free port) and checks them byte for byte. An error means the
/// transfer could not run (refused, reset, timed out after 20 s); a damaged stream that ended
/// cleanly is an `Ok` report that is not [`intact`](TransferReport::is_intact).
pub fn tcp_transfer(
    server: &Netns,
    server_ip: IpAddr,
    port: u16,
    client: &Netns,
    bytes: u64,
) -> Result<TransferReport> {
    let opts = TransferOptions {
        bytes,
        ..TransferOptions::default()
    };
    tcp_transfer_with(server, SocketAddr::new(server_ip, port), client, &opts)
}

/// [`tcp_transfer`] with a direction, timeout and seed.
pub fn tcp_transfer_with(
    server: &Netns,
    listen: SocketAddr,
    client: &Netns,
    opts: &TransferOptions,
) -> Result<TransferReport> {
    let deadline = Instant::now() + opts.timeout;
    let listener = server
        .run(|| TcpListener::bind(listen))?
        .with_context(|| format!("listening on {listen} in {}", server.name()))?;
    let target = SocketAddr::new(listen.ip(), listener.local_addr()?.port());
    listener.set_nonblocking(true)?;

    let give_up = AtomicBool::new(false);
    let (client_stream, server_stream) = std::thread::scope(|s| -> Result<_> {
        let acceptor = s.spawn(|| accept_until(&listener, deadline, &give_up));
        let connected = client
            .run(|| TcpStream::connect_timeout(&target, left(deadline)))
            .and_then(|c| {
                c.with_context(|| format!("connecting to {target} from {}", client.name()))
            });
        if connected.is_err() {
            give_up.store(true, Ordering::Relaxed);
        }
        let accepted = match acceptor.join() {
            Ok(accepted) => accepted,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        Ok((connected?, accepted?))
    })?;
    let (sender, receiver) = match opts.direction {
        Direction::ClientToServer => (client_stream, server_stream),
        Direction::ServerToClient => (server_stream, client_stream),
    };
    let start = Instant::now();
    let (sent, report) = std::thread::scope(|s| {
        let sending = s.spawn(|| send_pattern(&sender, opts.bytes, opts.seed, deadline));
        let received = receive_and_check(&receiver, opts, deadline);
        // Unblocks a sender stuck on a full window if the receiver gave up.
        let _ = receiver.shutdown(Shutdown::Both);
        let sent = match sending.join() {
            Ok(sent) => sent,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (sent, received)
    });
    let (received, mismatches, first_mismatch) = report?;
    sent.context("sending")?;
    Ok(TransferReport {
        direction: opts.direction,
        expected: opts.bytes,
        received,
        mismatches,
        first_mismatch,
        duration: start.elapsed(),
    })
}

/// Byte `offset` onwards of pattern `seed`, into `buf`: 8-byte words of SplitMix64 over the
/// word index, so any slice can be regenerated without the bytes before it.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut word_index = offset / 8;
    let mut word = splitmix64(seed.wrapping_add(word_index)).to_le_bytes();
    let mut at = (offset % 8) as usize;
    for byte in buf {
        if at == 8 {
            word_index += 1;
            word = splitmix64(seed.wrapping_add(word_index)).to_le_bytes();
            at = 0;
        }
        *byte = word[at];
        at += 1;
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Time left until `deadline`, at least 1 ms (a zero socket timeout means "forever").
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn accept_until(
    listener: &TcpListener,
    deadline: Instant,
    give_up: &AtomicBool,
) -> Result<TcpStream> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                // Linux does not pass O_NONBLOCK on to accepted sockets; be explicit anyway.
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                if Instant::now() >= deadline || give_up.load(Ordering::Relaxed) {
                    bail!("no connection accepted before the deadline");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e).context("accepting"),
        }
    }
}

fn send_pattern(stream: &TcpStream, bytes: u64, seed: u64, deadline: Instant) -> Result<()> {
    let mut stream = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < bytes {
        let n = usize::try_from(bytes - sent).map_or(CHUNK, |rest| rest.min(CHUNK));
        fill_pattern(seed, sent, &mut buf[..n]);
        stream.set_write_timeout(Some(left(deadline)))?;
        stream
            .write_all(&buf[..n])
            .with_context(|| format!("after {sent} of {bytes} bytes"))?;
        sent += n as u64;
    }
    stream.shutdown(Shutdown::Write).context("closing")
}

/// Reads to end of stream; returns (bytes, mismatched bytes, first mismatch offset).
fn receive_and_check(
    stream: &TcpStream,
    opts: &TransferOptions,
    deadline: Instant,
) -> Result<(u64, u64, Option<u64>)> {
    let mut stream = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    let (mut received, mut mismatches, mut first) = (0u64, 0u64, None);
    loop {
        stream.set_read_timeout(Some(left(deadline)))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok((received, mismatches, first)),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "receiving, after {received} of {} bytes ({mismatches} mismatched)",
                        opts.bytes
                    )
                });
            }
        };
        // Only the first `opts.bytes` have an expected value; the rest shows in `received`.
        let checked = usize::try_from(opts.bytes.saturating_sub(received)).map_or(n, |r| r.min(n));
        fill_pattern(opts.seed, received, &mut want[..checked]);
        for (i, (got, expected)) in buf[..checked].iter().zip(&want[..checked]).enumerate() {
            if got != expected {
                mismatches += 1;
                first.get_or_insert(received + i as u64);
            }
        }
        received += n as u64;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::require_root;

    #[test]
    fn pattern_is_position_addressable() {
        let mut whole = vec![0u8; 1000];
        fill_pattern(7, 0, &mut whole);
        for (start, len) in [(0, 1), (3, 17), (8, 8), (13, 500), (999, 1)] {
            let mut part = vec![0u8; len];
            fill_pattern(7, start as u64, &mut part);
            assert_eq!(part, whole[start..start + len], "at {start}+{len}");
        }
        let mut other = vec![0u8; 1000];
        fill_pattern(8, 0, &mut other);
        assert_ne!(other, whole);
        // Not trivially repetitive.
        assert_ne!(whole[..8], whole[8..16]);
    }

    #[test]
    fn loopback_both_ways_and_damage_is_reported() {
        if !require_root("tcp_transfer::loopback_both_ways_and_damage_is_reported") {
            return;
        }
        let ns = Netns::new("tcpxfer").unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let up = tcp_transfer(&ns, lo, 0, &ns, 3 << 20).unwrap();
        assert!(up.is_intact(), "{up:?}");
        let opts = TransferOptions {
            bytes: 100_001,
            direction: Direction::ServerToClient,
            ..TransferOptions::default()
        };
        let down = tcp_transfer_with(&ns, SocketAddr::new(lo, 0), &ns, &opts).unwrap();
        assert!(down.is_intact(), "{down:?}");
        assert_eq!(down.direction, Direction::ServerToClient);

        // A receiver expecting another pattern sees nearly every byte differ.
        let sender = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = sender.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let (s, _) = sender.accept().unwrap();
            send_pattern(&s, 4096, 99, Instant::now() + Duration::from_secs(5)).unwrap();
        });
        let stream = TcpStream::connect(addr).unwrap();
        let check = TransferOptions {
            bytes: 5000,
            ..TransferOptions::default()
        };
        let (received, mismatches, first) =
            receive_and_check(&stream, &check, Instant::now() + Duration::from_secs(5)).unwrap();
        client.join().unwrap();
        assert_eq!(received, 4096);
        assert!(mismatches > 4000, "{mismatches}");
        assert_eq!(first, Some(0));
    }
}
