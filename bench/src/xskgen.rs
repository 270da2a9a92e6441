//! AF_XDP copy-mode transmit generator: the fallback when XDP live frames are unavailable.
//!
//! On veth every copy-mode transmit builds an skb and calls `veth_xmit` inside `sendto`
//! (about 1 µs per frame where the receiver's NAPI shares the core, less where it runs
//! elsewhere), so this generator is not much faster than a node that forwards: reports say so.
//!
//! One socket per generator run, kept for the whole run ([`kxdp_tests::xsk_sender::send_frames`]
//! builds one per call): binding a new socket to the queue right after closing the last one
//! fails with EBUSY while the kernel still tears the old one down.

use std::time::{Duration, Instant};

use af_xdp::{BindMode, Frame, SocketConfig, SocketId, UmemConfig, XskError, XskGroup};
use anyhow::{Context, Result, bail};

/// Frames put on the TX ring per kick.
const BATCH: usize = 256;
/// How long to retry a bind refused with EBUSY.
const BIND_RETRY: Duration = Duration::from_secs(3);

/// A bound TX socket cycling through frame templates.
#[derive(Debug)]
pub struct XskTx {
    group: XskGroup,
    sock: SocketId,
    templates: Vec<Vec<u8>>,
    next: usize,
    batch: Vec<Frame>,
}

impl XskTx {
    /// Binds a copy-mode socket to `queue` of `ifname` (in the calling thread's namespace).
    pub fn new(ifname: &str, queue: u32, templates: &[Vec<u8>]) -> Result<Self> {
        if templates.is_empty() {
            bail!("no frames to send");
        }
        let cfg = SocketConfig {
            rx_size: 64,
            fill_size: 64,
            comp_size: 4096,
            tx_size: 4096,
            bind: BindMode::Copy,
        };
        // The previous run's socket on this queue may still be tearing down (its UMEM pool is
        // released in deferred work): bind says EBUSY until it is gone. The UMEM's first socket
        // is the UMEM's own fd, rings already set, so a retry starts from a new UMEM.
        let deadline = Instant::now() + BIND_RETRY;
        let (group, sock) = loop {
            let mut group = XskGroup::new(&UmemConfig {
                frame_count: 8192,
                frame_size: 2048,
                headroom: 0,
                hugepages: false,
            })
            .context("UMEM for the AF_XDP generator")?;
            match group.add_socket_by_name(ifname, queue, &cfg) {
                Ok(sock) => break (group, sock),
                Err(XskError::Os { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("AF_XDP socket on {ifname} queue {queue}"));
                }
            }
        };
        Ok(XskTx {
            group,
            sock,
            templates: templates.to_vec(),
            next: 0,
            batch: Vec::with_capacity(BATCH),
        })
    }

    /// Reaps completions, queues up to a batch of new frames and kicks the kernel. Returns the
    /// frames the kernel completed (transmitted, or dropped by the peer: offered load).
    pub fn step(&mut self) -> Result<u64> {
        let done = self.group.complete(self.sock);
        while self.batch.len() < BATCH {
            let Some(mut frame) = self.group.alloc() else {
                break;
            };
            let t = &self.templates[self.next % self.templates.len()];
            self.next = self.next.wrapping_add(1);
            let mut v = self.group.umem().view(&mut frame);
            if !v.set_len(t.len()) {
                self.group.release(frame);
                bail!("template of {} bytes does not fit a frame", t.len());
            }
            v.data_mut().copy_from_slice(t);
            self.batch.push(frame);
        }
        self.group.tx_burst(self.sock, &mut self.batch);
        if !self.group.kick_tx(self.sock) {
            bail!("AF_XDP transmit kick failed (interface down?)");
        }
        Ok(u64::from(done))
    }
}
