//! A worker: one thread, optionally pinned to a core, owning one UMEM and a socket per port
//! (its own queue on every port). The loop is RX burst → pipeline → TX burst → completion →
//! refill, busy-polling while there is traffic and sleeping in epoll when there is none.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use af_xdp::bpf::SteeringProgram;
use af_xdp::{Frame, FrameCounts, SocketConfig, SocketId, UmemConfig, XskGroup};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::EngineError;
use crate::pipeline::{BATCH_SIZE, Batch, Pipeline};
use crate::stats::{MAX_PORTS, WorkerStats, bump};
use crate::tables::TableHandle;
use crate::verdict::{DropReason, PortId, Verdict};

/// When an idle worker stops spinning and sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Consecutive empty loops before sleeping (each loop polls every port once).
    pub spins: u32,
    /// Longest sleep; the worker also wakes on any socket becoming readable.
    pub max_sleep: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            spins: 4096,
            max_sleep: Duration::from_millis(100),
        }
    }
}

/// One port as a worker sees it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerPort {
    pub ifindex: u32,
    /// XSKMAP slot of queue 0 of this port; the worker's queue is added to it.
    pub xsk_base: u32,
}

/// Everything a worker thread needs; moved into it.
#[derive(Debug)]
pub(crate) struct WorkerSetup {
    pub index: u32,
    pub core: Option<usize>,
    pub ports: Vec<WorkerPort>,
    pub umem: UmemConfig,
    pub socket: SocketConfig,
    pub idle: IdlePolicy,
    pub tables: Arc<TableHandle>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    pub steering: Arc<SteeringProgram>,
}

/// Builds the worker's sockets (in the calling thread's network namespace), reports readiness,
/// then runs until `stop` is set. Returns the UMEM accounting after draining transmissions.
pub(crate) fn run(
    setup: WorkerSetup,
    ready: std::sync::mpsc::Sender<Result<(), EngineError>>,
) -> FrameCounts {
    if let Some(core) = setup.core
        && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
    {
        tracing::warn!(worker = setup.index, core, "could not pin worker to core");
    }
    let mut worker = match Worker::new(&setup) {
        Ok(w) => w,
        Err(e) => {
            let _ = ready.send(Err(e));
            return FrameCounts::default();
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    worker.run(&setup);
    worker.drain(Duration::from_millis(200));
    worker.publish_frames(&setup.stats);
    worker.group.counts()
}

struct Worker {
    group: XskGroup,
    sockets: Vec<SocketId>,
    batch: Batch,
    pipeline: Pipeline,
    /// Frames waiting for transmission, per egress port.
    txq: Vec<Vec<Frame>>,
    poll: Poll,
    events: Events,
    local: Local,
}

/// Counters accumulated over one loop, published with one store each.
struct Local {
    rx: Vec<(u64, u64)>,
    tx: Vec<(u64, u64)>,
    drops: [u64; DropReason::COUNT],
}

impl Worker {
    fn new(setup: &WorkerSetup) -> Result<Self, EngineError> {
        let mut group = XskGroup::new(&setup.umem)?;
        let mut sockets = Vec::with_capacity(setup.ports.len());
        for port in &setup.ports {
            let id = group.add_socket(port.ifindex, setup.index, &setup.socket)?;
            setup.steering.set_socket(
                port.xsk_base + setup.index,
                std::os::fd::AsFd::as_fd(group.socket(id)),
            )?;
            sockets.push(id);
        }
        let poll = Poll::new().map_err(|e| EngineError::Os {
            op: "epoll_create",
            source: e,
        })?;
        let fds: Vec<RawFd> = group.raw_fds().collect();
        for (i, fd) in fds.iter().enumerate() {
            poll.registry()
                .register(&mut SourceFd(fd), Token(i), Interest::READABLE)
                .map_err(|e| EngineError::Os {
                    op: "epoll_ctl",
                    source: e,
                })?;
        }
        let n = setup.ports.len();
        Ok(Worker {
            group,
            sockets,
            batch: Batch::default(),
            pipeline: Pipeline::default(),
            txq: (0..n).map(|_| Vec::with_capacity(BATCH_SIZE)).collect(),
            poll,
            events: Events::with_capacity(n.max(1)),
            local: Local {
                rx: vec![(0, 0); n],
                tx: vec![(0, 0); n],
                drops: [0; DropReason::COUNT],
            },
        })
    }

    fn run(&mut self, setup: &WorkerSetup) {
        let mut empty: u32 = 0;
        let mut loops: u32 = 0;
        while !setup.stop.load(Ordering::Relaxed) {
            let moved = self.poll_once(&setup.tables);
            self.publish(&setup.stats);
            bump(&setup.stats.batches, 1);
            loops = loops.wrapping_add(1);
            if loops.is_multiple_of(4096) {
                // A getsockopt per socket: rare enough to stay off the per-batch budget.
                self.publish_frames(&setup.stats);
            }
            if moved > 0 {
                empty = 0;
                continue;
            }
            empty += 1;
            bump(&setup.stats.idle_polls, 1);
            if empty >= setup.idle.spins {
                empty = 0;
                bump(&setup.stats.sleeps, 1);
                self.publish_frames(&setup.stats);
                // Sleep until a socket is readable; short when transmissions are in flight so
                // their frames come back promptly.
                let timeout = if self.group.tx_outstanding() > 0 {
                    Duration::from_millis(1)
                } else {
                    setup.idle.max_sleep
                };
                let _ = self.poll.poll(&mut self.events, Some(timeout));
            }
        }
    }

    /// One pass over every port. Returns frames received.
    #[inline]
    fn poll_once(&mut self, tables: &TableHandle) -> u32 {
        // One snapshot for everything this pass does: a batch sees one version of the tables.
        let tables = tables.load();
        let mut moved = 0;
        for p in 0..self.sockets.len() {
            let sid = self.sockets[p];
            self.group.complete(sid);
            let n = self
                .group
                .rx_burst(sid, &mut self.batch.frames, BATCH_SIZE as u32);
            if n > 0 {
                moved += n;
                self.batch.in_port = PortId(p as u16);
                let rx = &mut self.local.rx[p];
                rx.0 += u64::from(n);
                rx.1 += self
                    .batch
                    .frames
                    .iter()
                    .map(|f| f.len() as u64)
                    .sum::<u64>();
                self.pipeline
                    .run(&tables, self.group.umem(), &mut self.batch);
                self.dispatch();
            }
            self.group.refill(sid);
        }
        moved
    }

    /// Send every packet of the batch where its verdict says, then flush the TX queues.
    #[inline]
    fn dispatch(&mut self) {
        let Batch { frames, meta, .. } = &mut self.batch;
        for (i, frame) in frames.drain(..).enumerate() {
            match crate::pipeline::final_verdict(meta[i]) {
                Verdict::Forward(port) if port.index() < self.txq.len() => {
                    self.txq[port.index()].push(frame);
                }
                Verdict::Forward(_) | Verdict::ToHost => {
                    self.local.drops[DropReason::NoHostPath as usize] += 1;
                    self.group.release(frame);
                }
                Verdict::Drop(reason) => {
                    self.local.drops[reason as usize] += 1;
                    self.group.release(frame);
                }
            }
        }
        for q in 0..self.txq.len() {
            if self.txq[q].is_empty() {
                continue;
            }
            let sid = self.sockets[q];
            let bytes: u64 = self.txq[q].iter().map(|f| f.len() as u64).sum();
            let want = self.txq[q].len();
            let sent = self.group.tx_burst(sid, &mut self.txq[q]);
            let tx = &mut self.local.tx[q];
            tx.0 += u64::from(sent);
            tx.1 += if sent as usize == want {
                bytes
            } else {
                bytes - self.txq[q].iter().map(|f| f.len() as u64).sum::<u64>()
            };
            for frame in self.txq[q].drain(..) {
                self.local.drops[DropReason::TxRingFull as usize] += 1;
                self.group.release(frame);
            }
            self.group.kick_tx(sid);
        }
    }

    fn publish(&mut self, stats: &WorkerStats) {
        for (i, (rx, tx)) in self
            .local
            .rx
            .iter_mut()
            .zip(self.local.tx.iter_mut())
            .enumerate()
        {
            if let Some(c) = stats.ports.get(i) {
                bump(&c.rx_packets, rx.0);
                bump(&c.rx_bytes, rx.1);
                bump(&c.tx_packets, tx.0);
                bump(&c.tx_bytes, tx.1);
            }
            *rx = (0, 0);
            *tx = (0, 0);
        }
        for (i, d) in self.local.drops.iter_mut().enumerate() {
            bump(&stats.drops[i], *d);
            *d = 0;
        }
    }

    fn publish_frames(&self, stats: &WorkerStats) {
        let c = self.group.counts();
        stats.frames_total.store(c.total, Ordering::Relaxed);
        stats.frames_free.store(c.free, Ordering::Relaxed);
        stats.frames_fill.store(c.fill, Ordering::Relaxed);
        stats.frames_tx.store(c.tx, Ordering::Relaxed);
        stats.frames_user.store(c.user, Ordering::Relaxed);
        let mut k = af_xdp::SocketStats::default();
        for (_, sock) in self.group.sockets() {
            if let Ok(s) = sock.stats() {
                k.rx_ring_full += s.rx_ring_full;
                k.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
                k.rx_dropped += s.rx_dropped;
            }
        }
        stats
            .xsk_rx_ring_full
            .store(k.rx_ring_full, Ordering::Relaxed);
        stats
            .xsk_fill_ring_empty
            .store(k.rx_fill_ring_empty_descs, Ordering::Relaxed);
        stats.xsk_rx_dropped.store(k.rx_dropped, Ordering::Relaxed);
    }

    /// After stop: keep kicking and reaping until every transmitted frame has completed.
    fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.group.tx_outstanding() > 0 && Instant::now() < deadline {
            for &sid in &self.sockets {
                self.group.kick_tx(sid);
                self.group.complete(sid);
            }
            std::thread::yield_now();
        }
    }
}

const _: () = assert!(MAX_PORTS <= u16::MAX as usize);
