//! A fast frame sender for end-to-end tests: AF_XDP transmit of prebuilt frames from one
//! interface (about 1 Mpps on veth, where AF_PACKET manages half that). The benchmarks have
//! their own generators (bench/); this one only needs to be fast enough to push a million
//! frames through the engine in a test.

use std::time::{Duration, Instant};

use af_xdp::{BindMode, FrameCounts, SocketConfig, UmemConfig, XskGroup};
use anyhow::{Context, Result, bail};

/// What a send run did.
#[derive(Debug, Clone, Copy)]
pub struct SendReport {
    pub sent: u64,
    pub elapsed: Duration,
    /// The sender's own UMEM accounting at the end (nothing held in userspace, nothing in TX).
    pub frames: FrameCounts,
}

/// Send `count` frames on `ifname` (in the calling thread's namespace), cycling through
/// `templates`. Returns when every frame has completed, or fails after `timeout`.
pub fn send_frames(
    ifname: &str,
    templates: &[Vec<u8>],
    count: u64,
    timeout: Duration,
) -> Result<SendReport> {
    if templates.is_empty() {
        bail!("no frames to send");
    }
    let mut group = XskGroup::new(&UmemConfig {
        frame_count: 4096,
        frame_size: 2048,
        headroom: 0,
        hugepages: false,
    })
    .context("UMEM for the sender")?;
    let cfg = SocketConfig {
        rx_size: 64,
        fill_size: 64,
        comp_size: 2048,
        tx_size: 2048,
        bind: BindMode::Copy,
    };
    let sock = group
        .add_socket_by_name(ifname, 0, &cfg)
        .with_context(|| format!("AF_XDP socket on {ifname}"))?;
    let start = Instant::now();
    let mut queued = 0u64;
    let mut batch = Vec::with_capacity(64);
    let mut next = 0usize;
    while queued < count || group.tx_outstanding() > 0 {
        if start.elapsed() > timeout {
            bail!(
                "sender timed out after {queued} frames queued, {} outstanding",
                group.tx_outstanding()
            );
        }
        group.complete(sock);
        while batch.len() < 64 && queued + (batch.len() as u64) < count {
            let Some(mut frame) = group.alloc() else {
                break;
            };
            let t = &templates[next % templates.len()];
            next += 1;
            let mut v = group.umem().view(&mut frame);
            if !v.set_len(t.len()) {
                group.release(frame);
                bail!("template of {} bytes does not fit a frame", t.len());
            }
            v.data_mut().copy_from_slice(t);
            batch.push(frame);
        }
        queued += u64::from(group.tx_burst(sock, &mut batch));
        group.kick_tx(sock);
    }
    for f in batch.drain(..) {
        group.release(f);
    }
    Ok(SendReport {
        sent: queued,
        elapsed: start.elapsed(),
        frames: group.counts(),
    })
}
