//! A worker: one thread, optionally pinned to a core, owning one UMEM and a socket per port
//! (its own queue on every port that has it). The loop is commands → RX burst → pipeline →
//! TX burst → completion → refill, busy-polling while there is traffic and sleeping in epoll
//! when there is none.
//!
//! Ports come and go while the worker runs: the engine sends [`Command`]s through a channel the
//! loop polls once per pass (`try_recv`, no lock) and wakes a sleeping worker with a
//! [`mio::Waker`]. The worker binds and closes its own sockets, in its own thread, so nothing
//! else ever touches its UMEM or rings.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use af_xdp::bpf::SteeringProgram;
use af_xdp::{
    Frame, FrameCounts, Reclaimed, SocketConfig, SocketId, UmemConfig, XskError, XskGroup,
};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::EngineError;
use crate::conntrack::Conntrack;
use crate::pipeline::{BATCH_SIZE, Batch, Pipeline};
use crate::stats::{MAX_PORTS, WorkerStats, bump};
use crate::tables::TableHandle;
use crate::verdict::{DropReason, PortId, Verdict};

/// epoll token of the engine's waker; sockets use their port id (< `MAX_PORTS`).
pub(crate) const WAKE_TOKEN: Token = Token(MAX_PORTS);

/// How long a worker waits for a removed port's transmissions to complete before it closes the
/// socket anyway (its frames come back either way).
const REMOVE_TX_WAIT: Duration = Duration::from_millis(100);

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

/// What the engine asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Bind this worker's queue (its index) of `ifindex`, put the socket in XSKMAP slot
    /// `xsk_base + queue`, and answer whether it bound (false: the port has no such queue).
    AddPort {
        id: PortId,
        ifindex: u32,
        xsk_base: u32,
        reply: Sender<Result<bool, EngineError>>,
    },
    /// Close this worker's socket on the port (if any), taking back its frames. The engine has
    /// already stopped steering to it.
    RemovePort {
        id: PortId,
        reply: Sender<Reclaimed>,
    },
    /// Start copying the frames this worker handles into the sink (replacing any earlier one).
    Capture(crate::capture::CaptureSink),
}

/// Everything a worker thread needs; moved into it.
#[derive(Debug)]
pub(crate) struct WorkerSetup {
    pub index: u32,
    pub core: Option<usize>,
    pub umem: UmemConfig,
    pub socket: SocketConfig,
    pub idle: IdlePolicy,
    pub tables: Arc<TableHandle>,
    /// Service NAT's flows, shared by every worker of the engine.
    pub conntrack: Arc<Conntrack>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    pub steering: Arc<SteeringProgram>,
    pub commands: Receiver<Command>,
}

/// Builds the worker's UMEM, reports readiness, then serves commands and traffic until `stop`
/// is set. Returns the UMEM accounting after draining transmissions. `poll` was created by the
/// engine, which keeps a waker registered on it as [`WAKE_TOKEN`].
pub(crate) fn run(
    setup: WorkerSetup,
    poll: Poll,
    ready: std::sync::mpsc::Sender<Result<(), EngineError>>,
) -> FrameCounts {
    if let Some(core) = setup.core
        && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
    {
        tracing::warn!(worker = setup.index, core, "could not pin worker to core");
    }
    let mut worker = match Worker::new(&setup, poll) {
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
    /// Per port id: this worker's socket on the port, while it is usable.
    sockets: Vec<Option<SocketId>>,
    /// Ports with a usable socket here, in polling order.
    active: Vec<PortId>,
    /// Sockets that failed hard (their interface went away): no longer polled or sent to,
    /// kept until the port is removed so that their frames are taken back then.
    parked: Vec<(PortId, SocketId)>,
    batch: Batch,
    pipeline: Pipeline,
    /// Frames waiting for transmission, per port id.
    txq: Vec<Vec<Frame>>,
    poll: Poll,
    events: Events,
    local: Local,
    /// `kxdp capture` is running: copies of what this worker handles go there.
    capture: Option<crate::capture::CaptureSink>,
}

/// Counters accumulated over one loop, published with one store each.
struct Local {
    /// Per port id: (packets, bytes).
    rx: Vec<(u64, u64)>,
    tx: Vec<(u64, u64)>,
    drops: [u64; DropReason::COUNT],
}

impl Worker {
    fn new(setup: &WorkerSetup, poll: Poll) -> Result<Self, EngineError> {
        Ok(Worker {
            group: XskGroup::new(&setup.umem)?,
            sockets: vec![None; MAX_PORTS],
            active: Vec::new(),
            parked: Vec::new(),
            batch: Batch::default(),
            pipeline: Pipeline::new(Arc::clone(&setup.conntrack)),
            // Capacity is given when a port arrives: 256 idle queues cost nothing.
            txq: (0..MAX_PORTS).map(|_| Vec::new()).collect(),
            poll,
            events: Events::with_capacity(64),
            local: Local {
                rx: vec![(0, 0); MAX_PORTS],
                tx: vec![(0, 0); MAX_PORTS],
                drops: [0; DropReason::COUNT],
            },
            capture: None,
        })
    }

    fn run(&mut self, setup: &WorkerSetup) {
        let mut empty: u32 = 0;
        let mut loops: u32 = 0;
        while !setup.stop.load(Ordering::Relaxed) {
            while let Ok(cmd) = setup.commands.try_recv() {
                self.command(setup, cmd);
            }
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
                // Sleep until a socket is readable or the engine wakes us; short when
                // transmissions are in flight so their frames come back promptly.
                let timeout = if self.live_tx_outstanding() > 0 {
                    Duration::from_millis(1)
                } else {
                    setup.idle.max_sleep
                };
                let _ = self.poll.poll(&mut self.events, Some(timeout));
            }
        }
    }

    fn command(&mut self, setup: &WorkerSetup, cmd: Command) {
        match cmd {
            Command::AddPort {
                id,
                ifindex,
                xsk_base,
                reply,
            } => {
                let r = self.add_port(setup, id, ifindex, xsk_base);
                let _ = reply.send(r);
            }
            Command::RemovePort { id, reply } => {
                let r = self.remove_port(id);
                let _ = reply.send(r);
            }
            Command::Capture(sink) => self.capture = Some(sink),
        }
        self.publish_frames(&setup.stats);
    }

    fn add_port(
        &mut self,
        setup: &WorkerSetup,
        id: PortId,
        ifindex: u32,
        xsk_base: u32,
    ) -> Result<bool, EngineError> {
        let p = id.index();
        if p >= MAX_PORTS || self.sockets[p].is_some() || self.parked.iter().any(|x| x.0 == id) {
            return Err(EngineError::Config(format!(
                "worker {}: port id {} is out of range or in use",
                setup.index, id.0
            )));
        }
        // The id may have been another port's: its counters start again from zero.
        if let Some(c) = setup.stats.ports.get(p) {
            c.reset();
        }
        self.local.rx[p] = (0, 0);
        self.local.tx[p] = (0, 0);
        let queue = setup.index;
        let sid = match self.group.add_socket(ifindex, queue, &setup.socket) {
            Ok(sid) => sid,
            Err(XskError::QueueUnavailable { ifname, .. }) => {
                tracing::debug!(
                    worker = setup.index,
                    %ifname,
                    queue,
                    "no such queue on the port; this worker has no socket there"
                );
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.attach_socket(setup, id, sid, xsk_base + queue) {
            self.group.remove_socket(sid, Duration::ZERO);
            return Err(e);
        }
        self.sockets[p] = Some(sid);
        self.active.push(id);
        self.txq[p].reserve(BATCH_SIZE);
        Ok(true)
    }

    /// Registers a new socket with epoll and puts it in its XSKMAP slot.
    fn attach_socket(
        &mut self,
        setup: &WorkerSetup,
        id: PortId,
        sid: SocketId,
        slot: u32,
    ) -> Result<(), EngineError> {
        let Some(sock) = self.group.socket(sid) else {
            return Err(EngineError::Config(format!(
                "socket of port {} vanished",
                id.0
            )));
        };
        let fd = sock.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE)
            .map_err(|e| EngineError::Os {
                op: "epoll_ctl(ADD)",
                source: e,
            })?;
        if let Err(e) = setup.steering.set_socket(slot, sock.as_fd()) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            return Err(e.into());
        }
        Ok(())
    }

    fn remove_port(&mut self, id: PortId) -> Reclaimed {
        let sid = match self.sockets.get_mut(id.index()).and_then(Option::take) {
            Some(sid) => sid,
            None => match self.parked.iter().position(|x| x.0 == id) {
                Some(i) => self.parked.swap_remove(i).1,
                None => return Reclaimed::default(),
            },
        };
        self.active.retain(|p| *p != id);
        if let Some(sock) = self.group.socket(sid) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&sock.as_raw_fd()));
        }
        self.group
            .remove_socket(sid, REMOVE_TX_WAIT)
            .unwrap_or_default()
    }

    /// Stops using a socket that failed hard; its frames come back when the port is removed.
    #[cold]
    fn park(&mut self, port: PortId) {
        let Some(sid) = self.sockets.get_mut(port.index()).and_then(Option::take) else {
            return;
        };
        tracing::warn!(
            port = port.0,
            "AF_XDP socket failed (interface gone?); not using the port until it is removed"
        );
        self.active.retain(|p| *p != port);
        self.parked.push((port, sid));
        if let Some(sock) = self.group.socket(sid) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&sock.as_raw_fd()));
        }
    }

    /// Transmissions in flight on the sockets still in use.
    fn live_tx_outstanding(&self) -> u64 {
        self.active
            .iter()
            .filter_map(|p| self.sockets[p.index()])
            .filter_map(|sid| self.group.socket_frames(sid))
            .map(|(_, tx)| tx)
            .sum()
    }

    /// One pass over every port. Returns frames received.
    #[inline]
    fn poll_once(&mut self, tables: &TableHandle) -> u32 {
        // One snapshot for everything this pass does: a batch sees one version of the tables.
        let tables = tables.load();
        let mut moved = 0;
        let mut i = 0;
        // `active` may shrink during the pass (a socket failing hard in dispatch).
        while let Some(&port) = self.active.get(i) {
            i += 1;
            let Some(sid) = self.sockets[port.index()] else {
                continue;
            };
            self.group.complete(sid);
            let n = self
                .group
                .rx_burst(sid, &mut self.batch.frames, BATCH_SIZE as u32);
            if n > 0 {
                moved += n;
                self.batch.in_port = port;
                let rx = &mut self.local.rx[port.index()];
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
        if let Some(sink) = &mut self.capture {
            let Batch {
                frames,
                meta,
                in_port,
            } = &mut self.batch;
            for (i, frame) in frames.iter_mut().enumerate() {
                let verdict = crate::pipeline::final_verdict(meta[i]);
                if sink.wants(*in_port, verdict) {
                    sink.record(*in_port, verdict, self.group.umem().view(frame).data());
                }
            }
            if sink.closed {
                self.capture = None;
            }
        }
        let Batch { frames, meta, .. } = &mut self.batch;
        for (i, frame) in frames.drain(..).enumerate() {
            match crate::pipeline::final_verdict(meta[i]) {
                Verdict::Forward(port)
                    if self.sockets.get(port.index()).is_some_and(Option::is_some) =>
                {
                    self.txq[port.index()].push(frame);
                }
                // A port this worker has no socket on: gone, or without this worker's queue.
                Verdict::Forward(_) => {
                    self.local.drops[DropReason::NoEgressSocket as usize] += 1;
                    self.group.release(frame);
                }
                Verdict::ToHost => {
                    self.local.drops[DropReason::NoHostPath as usize] += 1;
                    self.group.release(frame);
                }
                Verdict::Drop(reason) => {
                    self.local.drops[reason as usize] += 1;
                    self.group.release(frame);
                }
            }
        }
        let mut i = 0;
        while let Some(&port) = self.active.get(i) {
            i += 1;
            let q = port.index();
            if self.txq[q].is_empty() {
                continue;
            }
            let Some(sid) = self.sockets[q] else {
                continue;
            };
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
            if !self.group.kick_tx(sid) {
                self.park(port);
                i -= 1; // `port` left `active`; the next one moved into its place.
            }
        }
    }

    fn publish(&mut self, stats: &WorkerStats) {
        for port in &self.active {
            let p = port.index();
            let (rx, tx) = (&mut self.local.rx[p], &mut self.local.tx[p]);
            if let Some(c) = stats.ports.get(p) {
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
        let e = self.pipeline.counters();
        for (slot, v) in stats.events.iter().zip(e.to_array()) {
            slot.store(v, Ordering::Relaxed);
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
        while self.live_tx_outstanding() > 0 && Instant::now() < deadline {
            for p in &self.active {
                if let Some(sid) = self.sockets[p.index()] {
                    self.group.kick_tx(sid);
                    self.group.complete(sid);
                }
            }
            std::thread::yield_now();
        }
    }
}

const _: () = assert!(MAX_PORTS <= u16::MAX as usize);
