//! Per-worker counters: written by one worker only, read by metrics and inspection.
//!
//! A worker accumulates into plain integers during a batch and publishes with relaxed stores
//! of its own cache-padded atomics: no read-modify-write and no cache line shared between
//! workers on the hot path. Readers sum across workers.
//!
//! Per-port counters have a slot for every possible [`PortId`](crate::PortId) (ports come and
//! go while the engine runs); a removed port's counters keep their last values until its id is
//! given to a new port, when the worker resets them.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::verdict::DropReason;

/// Most ports one engine handles (uplink + pod veths).
pub const MAX_PORTS: usize = 256;

/// Packet and byte counters of one port on one worker.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
}

/// Counters of one worker.
#[derive(Debug)]
pub struct WorkerStats {
    /// Indexed by `PortId`, [`MAX_PORTS`] slots.
    pub ports: Box<[PortCounters]>,
    pub drops: CachePadded<[AtomicU64; DropReason::COUNT]>,
    pub to_host: AtomicU64,
    pub batches: AtomicU64,
    /// Batch loops that found nothing to do.
    pub idle_polls: AtomicU64,
    /// Times the worker went to sleep in epoll.
    pub sleeps: AtomicU64,
    /// UMEM frames per state (see `af_xdp::FrameCounts`).
    pub frames_free: AtomicU64,
    pub frames_fill: AtomicU64,
    pub frames_tx: AtomicU64,
    pub frames_user: AtomicU64,
    pub frames_total: AtomicU64,
    /// Kernel-side drops on this worker's sockets (`XDP_STATISTICS`, summed over ports): the
    /// RX ring was full, the fill ring was empty, or other reasons.
    pub xsk_rx_ring_full: AtomicU64,
    pub xsk_fill_ring_empty: AtomicU64,
    pub xsk_rx_dropped: AtomicU64,
    /// Packets the engine answered, built or translated, and conntrack writes, as the pipeline
    /// counted them (in [`PipelineCounters::to_array`](crate::pipeline::PipelineCounters::to_array)
    /// order); stored by the worker after each loop.
    pub events: [AtomicU64; crate::pipeline::PipelineCounters::COUNT],
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerStats {
    /// Zeroed counters, with a slot for each of the [`MAX_PORTS`] port ids.
    pub fn new() -> Self {
        WorkerStats {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            drops: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            to_host: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            idle_polls: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            frames_free: AtomicU64::new(0),
            frames_fill: AtomicU64::new(0),
            frames_tx: AtomicU64::new(0),
            frames_user: AtomicU64::new(0),
            frames_total: AtomicU64::new(0),
            xsk_rx_ring_full: AtomicU64::new(0),
            xsk_fill_ring_empty: AtomicU64::new(0),
            xsk_rx_dropped: AtomicU64::new(0),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Read every counter.
    pub fn snapshot(&self) -> WorkerSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerSnapshot {
            ports: self
                .ports
                .iter()
                .map(|p| PortSnapshot {
                    rx_packets: r(&p.rx_packets),
                    rx_bytes: r(&p.rx_bytes),
                    tx_packets: r(&p.tx_packets),
                    tx_bytes: r(&p.tx_bytes),
                })
                .collect(),
            drops: std::array::from_fn(|i| r(&self.drops[i])),
            to_host: r(&self.to_host),
            batches: r(&self.batches),
            idle_polls: r(&self.idle_polls),
            sleeps: r(&self.sleeps),
            frames: af_xdp::FrameCounts {
                total: r(&self.frames_total),
                free: r(&self.frames_free),
                fill: r(&self.frames_fill),
                tx: r(&self.frames_tx),
                user: r(&self.frames_user),
            },
            xsk: af_xdp::SocketStats {
                rx_ring_full: r(&self.xsk_rx_ring_full),
                rx_fill_ring_empty_descs: r(&self.xsk_fill_ring_empty),
                rx_dropped: r(&self.xsk_rx_dropped),
                ..Default::default()
            },
            events: crate::pipeline::PipelineCounters::from_array(std::array::from_fn(|i| {
                r(&self.events[i])
            })),
        }
    }
}

impl PortCounters {
    /// Zero the counters (by their only writer, when a port id is reused).
    pub(crate) fn reset(&self) {
        for c in [
            &self.rx_packets,
            &self.rx_bytes,
            &self.tx_packets,
            &self.tx_bytes,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Adds `n` to a counter only this thread writes (a plain load and store, no lock prefix).
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Counters of one port at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Counters of one worker at one moment.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// Indexed by `PortId` ([`MAX_PORTS`] entries; ids without a port read zero, or a removed
    /// port's last values until the id is reused).
    pub ports: Vec<PortSnapshot>,
    pub drops: [u64; DropReason::COUNT],
    pub to_host: u64,
    pub batches: u64,
    pub idle_polls: u64,
    pub sleeps: u64,
    pub frames: af_xdp::FrameCounts,
    /// Kernel-side socket counters (summed over ports; refreshed every few thousand loops).
    pub xsk: af_xdp::SocketStats,
    /// Packets the engine answered or built.
    pub events: crate::pipeline::PipelineCounters,
}

impl WorkerSnapshot {
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn rx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_packets).sum()
    }

    pub fn tx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_packets).sum()
    }
}
