//! One-way latency under load: a low-rate probe stream beside the generator's flood.
//!
//! The live-frames generator sends a fixed template, so its frames cannot carry a send time.
//! Instead a UDP socket in the generator namespace sends probes (by default 1000 per second)
//! that take the same path through the node as the load (same service, same tunnel), each
//! carrying a magic, a sequence number and `CLOCK_MONOTONIC` nanoseconds at send. A UDP socket
//! in the sink receives them with `SO_TIMESTAMPNS`, the kernel's arrival time (realtime clock,
//! turned into monotonic time with the offset between the two clocks read at that moment), so
//! the receiver's own wake-up delay on a shared core is not counted. Latencies go into an
//! HdrHistogram, one per measurement window.
//!
//! Generator, node and sink run on one machine, so both timestamps come from one clock.

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::time::{ClockId, clock_gettime};
use serde::Serialize;

use crate::cpu;
use crate::netns::{Netns, NsThread};

/// First bytes of every probe payload.
const MAGIC: u32 = 0x6b78_6470; // "kxdp"
/// magic (4) + sequence (8) + send time (8).
const PAYLOAD: usize = 20;
/// Highest latency the histogram records (longer ones are clamped): 10 s.
const MAX_NS: u64 = 10_000_000_000;
/// The receiver wakes this often to notice a stop.
const POLL: Duration = Duration::from_millis(100);

/// Nanoseconds of `clock`.
fn now_ns(clock: ClockId) -> u64 {
    clock_gettime(clock).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// An empty latency histogram (1 ns .. 10 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3)
        .expect("constant bounds are valid: low >= 1, high >= 2 * low, 3 significant digits")
}

/// The probe payload for `seq` sent at `sent_ns`.
pub fn encode(seq: u64, sent_ns: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..4].copy_from_slice(&MAGIC.to_be_bytes());
    p[4..12].copy_from_slice(&seq.to_be_bytes());
    p[12..20].copy_from_slice(&sent_ns.to_be_bytes());
    p
}

/// Sequence number and send time of a probe payload; None for anything else.
pub fn decode(p: &[u8]) -> Option<(u64, u64)> {
    let p = p.get(..PAYLOAD)?;
    (p[..4] == MAGIC.to_be_bytes()).then(|| {
        let seq = u64::from_be_bytes(p[4..12].try_into().unwrap_or_default());
        let sent = u64::from_be_bytes(p[12..20].try_into().unwrap_or_default());
        (seq, sent)
    })
}

/// Percentiles of one path's probes, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// None for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(LatencySummary {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}

/// Sends probes from a UDP socket in the generator namespace until stopped.
#[derive(Debug)]
pub struct ProbeSender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: NsThread<Result<()>>,
}

impl ProbeSender {
    /// Starts sending `rate` probes per second from `src` to `dst`, the thread pinned to `core`.
    pub fn start(
        ns: &Netns,
        src: Ipv4Addr,
        dst: SocketAddrV4,
        rate: u32,
        core: usize,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let socket = ns
            .run(|| UdpSocket::bind((src, 0)))?
            .with_context(|| format!("probe socket on {src}"))?;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let thread = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            ns.spawn_thread("kxdp-probe-tx", move || -> Result<()> {
                cpu::pin(0, core)?;
                let mut next = Instant::now();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let payload = encode(seq, now_ns(ClockId::CLOCK_MONOTONIC));
                    // A full queue or a missing route loses the probe: counted as not received.
                    if socket.send_to(&payload, dst).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    seq += 1;
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                Ok(())
            })?
        };
        Ok(ProbeSender { stop, sent, thread })
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join()?
    }
}

/// Receives probes in the sink namespace and records their latency.
#[derive(Debug)]
pub struct ProbeReceiver {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    window: Arc<Mutex<Histogram<u64>>>,
    thread: NsThread<Result<()>>,
}

impl ProbeReceiver {
    /// Listens on UDP `port` (any address) in `ns`, the thread pinned to `core`.
    pub fn start(ns: &Netns, port: u16, core: usize) -> Result<Self> {
        let socket = ns
            .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))?
            .with_context(|| format!("probe receiver on UDP port {port}"))?;
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).context("SO_TIMESTAMPNS")?;
        socket.set_read_timeout(Some(POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let window = Arc::new(Mutex::new(new_histogram()));
        let thread = {
            let (stop, received, window) = (
                Arc::clone(&stop),
                Arc::clone(&received),
                Arc::clone(&window),
            );
            ns.spawn_thread("kxdp-probe-rx", move || -> Result<()> {
                cpu::pin(0, core)?;
                let mut buf = [0u8; 256];
                let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
                while !stop.load(Ordering::Relaxed) {
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let msg = match recvmsg::<()>(
                        socket.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::empty(),
                    ) {
                        Ok(m) => m,
                        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(e).context("recvmsg (probes)"),
                    };
                    // Arrival in the kernel, on the realtime clock; user time as a fallback.
                    let mut arrived = None;
                    for c in msg.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::ScmTimestampns(ts) = c {
                            let rt = u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                                + u64::try_from(ts.tv_nsec()).unwrap_or(0);
                            let offset = now_ns(ClockId::CLOCK_REALTIME)
                                .wrapping_sub(now_ns(ClockId::CLOCK_MONOTONIC));
                            arrived = Some(rt.wrapping_sub(offset));
                        }
                    }
                    let len = msg.bytes;
                    let arrived = arrived.unwrap_or_else(|| now_ns(ClockId::CLOCK_MONOTONIC));
                    let Some((_, sent)) = decode(&buf[..len]) else {
                        continue;
                    };
                    received.fetch_add(1, Ordering::Relaxed);
                    let ns = arrived.saturating_sub(sent).clamp(1, MAX_NS);
                    let mut h = window.lock().unwrap_or_else(PoisonError::into_inner);
                    // In range by the clamp.
                    let _ = h.record(ns);
                }
                Ok(())
            })?
        };
        Ok(ProbeReceiver {
            stop,
            received,
            window,
            thread,
        })
    }

    /// Probes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The latencies recorded since the last call, and a fresh window.
    pub fn take(&self) -> Histogram<u64> {
        let mut h = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *h, new_histogram())
    }

    pub fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join()?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = encode(7, 123_456_789);
        assert_eq!(decode(&p), Some((7, 123_456_789)));
        assert_eq!(decode(&p[..10]), None);
        assert_eq!(decode(&[0u8; 20]), None);
    }

    #[test]
    fn percentiles_in_microseconds() {
        let mut h = new_histogram();
        // 1..=1000 µs, one sample each.
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = LatencySummary::of(&h).unwrap();
        assert_eq!(s.samples, 1000);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(near(s.p50_us, 500.0), "{s:?}");
        assert!(near(s.p90_us, 900.0), "{s:?}");
        assert!(near(s.p99_us, 990.0), "{s:?}");
        assert!(near(s.p999_us, 999.0), "{s:?}");
        assert!(near(s.max_us, 1000.0), "{s:?}");
        assert_eq!(LatencySummary::of(&new_histogram()), None);
    }

    #[test]
    fn probes_cross_a_namespace_pair() {
        if !kxdp_tests::require_root("latency::probes_cross_a_namespace_pair") {
            return;
        }
        let ns = Netns::new("probe").unwrap();
        let rx = ProbeReceiver::start(&ns, 8080, 0).unwrap();
        let tx = ProbeSender::start(
            &ns,
            Ipv4Addr::LOCALHOST,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080),
            1000,
            0,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        tx.stop().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let h = rx.take();
        assert!(rx.received() >= 50, "{}", rx.received());
        let s = LatencySummary::of(&h).unwrap();
        // Loopback: well under a second, above zero.
        assert!(s.p50_us > 0.0 && s.max_us < 1_000_000.0, "{s:?}");
        rx.stop().unwrap();
    }
}
