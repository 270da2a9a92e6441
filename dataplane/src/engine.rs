//! The engine: loads the steering program, starts the workers, attaches to ports as they come
//! and go, and stops cleanly. What it holds is what `kxdp agent` runs.
//!
//! Ports (the uplink, pod veths) are added and removed while the engine runs
//! ([`Engine::add_port`], [`Engine::remove_port`]); both take `&self`, so a control-plane thread
//! can share the engine behind an `Arc`. The port registry is behind a mutex only the control
//! side takes; workers learn of changes through a command channel per worker, polled once per
//! loop without a lock, and a waker that ends their epoll sleep.
//!
//! Worker `w` owns queue `w` of every port, and a port's socket for queue `q` sits in XSKMAP slot
//! `id * stride + q` (`stride`: the worker count rounded up to a power of two, at least 4), so a
//! [`PortId`] fixes its slot range and reusing an id recycles the range. A port with fewer
//! queues than there are workers gets sockets only from the workers whose queue exists
//! ([`PortStatus::queues_bound`]); traffic a worker routes to a port it has no socket on is
//! dropped (`no_route`). So kxdp-cni creates pod veths with one queue per worker
//! (`numrxqueues`/`numtxqueues` = worker count), and the uplink needs as many channels.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use af_xdp::bpf::{DstKind, SteerMode, SteeringConfig, SteeringProgram, XdpAttachment, XdpMode};
use af_xdp::{FrameCounts, Reclaimed, SocketConfig, UmemConfig};

use crate::EngineError;
use crate::conntrack::Conntrack;
use crate::stats::{MAX_PORTS, WorkerSnapshot, WorkerStats};
use crate::tables::TableHandle;
use crate::verdict::PortId;
use crate::worker::{self, Command, IdlePolicy, WAKE_TOKEN, WorkerSetup};

/// How long the control side waits for a worker to carry out a command. A worker answers within
/// one loop pass, plus a bounded wait of its own (a removed socket's last transmissions, a
/// queue the kernel has not freed yet); a worker past this is stuck or gone.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// An interface the engine takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub ifname: String,
    /// All frames to the engine (pod-facing), or only traffic to destinations it owns (uplink).
    pub steer: SteerMode,
}

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Ports to attach at start, given ids 0, 1, ... in this order. More can be added later.
    pub ports: Vec<PortConfig>,
    /// Cores to pin one worker each to; empty means one worker, not pinned.
    pub cores: Vec<usize>,
    pub xdp_mode: XdpMode,
    /// Per worker.
    pub umem: UmemConfig,
    /// Per socket.
    pub socket: SocketConfig,
    pub idle: IdlePolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ports: Vec::new(),
            cores: Vec::new(),
            xdp_mode: XdpMode::Auto,
            umem: UmemConfig::default(),
            socket: SocketConfig::default(),
            idle: IdlePolicy::default(),
        }
    }
}

/// A port as attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// What tables call the port ([`Verdict::Forward`](crate::Verdict::Forward)). The id of a
    /// removed port is given to the next port added: the control plane must have stopped
    /// routing to it by then.
    pub id: PortId,
    pub ifname: String,
    pub ifindex: u32,
    /// The interface's MAC address when it was added (the source MAC for frames sent there).
    pub mac: [u8; 6],
    pub steer: SteerMode,
    /// The XDP mode the kernel accepted (native or generic).
    pub xdp_mode: XdpMode,
    /// Workers that have a socket on the port: those whose queue (their index) exists there.
    pub queues_bound: u32,
}

/// A running engine. Dropping it stops the workers and detaches every XDP program.
#[derive(Debug)]
pub struct Engine {
    workers: Vec<WorkerHandle>,
    stats: Vec<Arc<WorkerStats>>,
    stop: Arc<AtomicBool>,
    tables: Arc<TableHandle>,
    /// Service NAT's flows, shared by every worker.
    conntrack: Arc<Conntrack>,
    // Ports are detached after the workers are gone (field order = drop order; Drop joins the
    // workers first).
    registry: Mutex<Registry>,
    steering: Arc<SteeringProgram>,
    xdp_mode: XdpMode,
    /// XSKMAP slots per port (at least the worker count).
    xsk_stride: u32,
    /// The network namespace the engine started in (device and inode of its nsfs file).
    netns: Option<(u64, u64)>,
}

/// The control side's end of one worker.
#[derive(Debug)]
struct WorkerHandle {
    thread: Option<JoinHandle<FrameCounts>>,
    commands: Sender<Command>,
    waker: mio::Waker,
}

/// The ports, by id. Only the control side (holding the mutex) reads or changes it.
#[derive(Debug, Default)]
struct Registry {
    ports: Vec<Option<Port>>,
}

#[derive(Debug)]
struct Port {
    status: PortStatus,
    /// Dropped (detached) when the port is removed.
    attachment: XdpAttachment,
}

/// What `Engine::stop` reports.
#[derive(Debug, Clone)]
pub struct StopReport {
    /// UMEM accounting of each worker after it drained its transmissions.
    pub frames: Vec<FrameCounts>,
    /// Final counters of each worker.
    pub workers: Vec<WorkerSnapshot>,
}

impl Engine {
    /// Start the workers in the calling thread's network namespace and attach to the
    /// configured ports (ids 0, 1, ... in order); returns once every worker has its sockets
    /// bound.
    pub fn start(cfg: EngineConfig, tables: Arc<TableHandle>) -> Result<Engine, EngineError> {
        if cfg.ports.len() > MAX_PORTS {
            return Err(EngineError::Config(format!(
                "at most {MAX_PORTS} ports are supported"
            )));
        }
        let n_workers = cfg.cores.len().max(1) as u32;
        // XSKMAP slots per port: one per worker (worker w owns queue w of every port).
        let xsk_stride = n_workers.next_power_of_two().max(4);
        let steering = Arc::new(SteeringProgram::load(&SteeringConfig {
            max_ifaces: MAX_PORTS as u32,
            max_queues: xsk_stride,
            ..SteeringConfig::default()
        })?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut engine = Engine {
            workers: Vec::new(),
            stats: Vec::new(),
            stop: Arc::clone(&stop),
            tables: Arc::clone(&tables),
            conntrack: Arc::new(Conntrack::default()),
            registry: Mutex::new(Registry::default()),
            steering: Arc::clone(&steering),
            xdp_mode: cfg.xdp_mode,
            xsk_stride,
            netns: current_netns(),
        };
        for w in 0..n_workers {
            let stats = Arc::new(WorkerStats::new());
            let poll = mio::Poll::new().map_err(|e| EngineError::Os {
                op: "epoll_create",
                source: e,
            })?;
            let waker =
                mio::Waker::new(poll.registry(), WAKE_TOKEN).map_err(|e| EngineError::Os {
                    op: "eventfd (worker waker)",
                    source: e,
                })?;
            let (commands, command_rx) = mpsc::channel();
            let setup = WorkerSetup {
                index: w,
                core: cfg.cores.get(w as usize).copied(),
                umem: cfg.umem,
                socket: cfg.socket,
                idle: cfg.idle,
                tables: Arc::clone(&tables),
                conntrack: Arc::clone(&engine.conntrack),
                stats: Arc::clone(&stats),
                stop: Arc::clone(&stop),
                steering: Arc::clone(&steering),
                commands: command_rx,
            };
            let (tx, rx) = mpsc::channel();
            let handle = std::thread::Builder::new()
                .name(format!("kxdp-w{w}"))
                .spawn(move || worker::run(setup, poll, tx))
                .map_err(|e| EngineError::Os {
                    op: "spawn worker thread",
                    source: e,
                })?;
            engine.workers.push(WorkerHandle {
                thread: Some(handle),
                commands,
                waker,
            });
            engine.stats.push(stats);
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e), // Drop stops the workers already started.
                Err(_) => return Err(EngineError::WorkerGone(w)),
            }
        }
        for p in &cfg.ports {
            engine.add_port(p)?;
        }
        Ok(engine)
    }

    /// Attach to an interface while the engine runs: resolve it (in the calling thread's
    /// network namespace, which must be the engine's), point the steering program at it, and
    /// have every worker bind its queue there. Returns once every worker has answered; on any
    /// failure everything done so far is undone and the first error returned.
    ///
    /// The port gets the lowest free id. Frames arriving before a worker's socket is in place
    /// pass to the kernel.
    pub fn add_port(&self, cfg: &PortConfig) -> Result<PortStatus, EngineError> {
        if let Some(ours) = self.netns
            && current_netns().is_some_and(|here| here != ours)
        {
            return Err(EngineError::Config(format!(
                "add_port({}) called from another network namespace than the engine's",
                cfg.ifname
            )));
        }
        let mut reg = self.lock_registry();
        if reg
            .ports
            .iter()
            .flatten()
            .any(|p| p.status.ifname == cfg.ifname)
        {
            return Err(EngineError::PortExists(cfg.ifname.clone()));
        }
        let index = match reg.ports.iter().position(Option::is_none) {
            Some(i) => i,
            None if reg.ports.len() < MAX_PORTS => reg.ports.len(),
            None => {
                return Err(EngineError::Config(format!(
                    "all {MAX_PORTS} ports are in use"
                )));
            }
        };
        let id = PortId(index as u16);
        let ifindex = af_xdp::ifindex(&cfg.ifname)?;
        let mac = af_xdp::hw_addr(&cfg.ifname)?;
        let xsk_base = index as u32 * self.xsk_stride;
        self.steering.set_iface(ifindex, cfg.steer, xsk_base)?;
        let attachment = match self.steering.attach(ifindex, self.xdp_mode) {
            Ok(a) => a,
            Err(e) => {
                self.unsteer(ifindex, xsk_base);
                return Err(e.into());
            }
        };
        // Each worker binds its queue in its own thread and puts the socket in the XSKMAP.
        let replies = self.broadcast(|reply| Command::AddPort {
            id,
            ifindex,
            xsk_base,
            reply,
        });
        let mut queues_bound = 0;
        let mut error = None;
        for (w, reply) in replies.into_iter().enumerate() {
            match reply.map(|rx| rx.recv_timeout(COMMAND_TIMEOUT)) {
                Some(Ok(Ok(true))) => queues_bound += 1,
                Some(Ok(Ok(false))) => {}
                Some(Ok(Err(e))) => {
                    error.get_or_insert(e);
                }
                None | Some(Err(_)) => {
                    error.get_or_insert(EngineError::WorkerGone(w as u32));
                }
            }
        }
        if error.is_none() && queues_bound == 0 {
            error = Some(EngineError::Config(format!(
                "no worker could bind a queue of {}",
                cfg.ifname
            )));
        }
        if let Some(e) = error {
            self.detach(id, ifindex, xsk_base, attachment);
            return Err(e);
        }
        let status = PortStatus {
            id,
            ifname: cfg.ifname.clone(),
            ifindex,
            mac,
            steer: cfg.steer,
            xdp_mode: attachment.mode(),
            queues_bound,
        };
        let port = Some(Port {
            status: status.clone(),
            attachment,
        });
        if index == reg.ports.len() {
            reg.ports.push(port);
        } else {
            reg.ports[index] = port;
        }
        tracing::info!(
            port = id.0,
            ifname = %status.ifname,
            ifindex,
            mode = %status.xdp_mode,
            queues_bound,
            "port added"
        );
        Ok(status)
    }

    /// Detach from a port while the engine runs: stop steering to it (steering entry, XSKMAP
    /// slots, XDP program), then have every worker close its socket there and take back the
    /// frames the kernel held for it. Returns once every worker has done so. Succeeds also when
    /// the interface has already vanished. May be called from any thread.
    pub fn remove_port(&self, id: PortId) -> Result<(), EngineError> {
        let mut reg = self.lock_registry();
        let port = reg
            .ports
            .get_mut(id.index())
            .and_then(Option::take)
            .ok_or(EngineError::NoSuchPort(id))?;
        let Port { status, attachment } = port;
        let xsk_base = id.index() as u32 * self.xsk_stride;
        let reclaimed = self.detach(id, status.ifindex, xsk_base, attachment);
        tracing::info!(
            port = id.0,
            ifname = %status.ifname,
            reclaimed_fill = reclaimed.fill,
            reclaimed_tx = reclaimed.tx,
            "port removed"
        );
        Ok(())
    }

    /// A port by interface name.
    pub fn port(&self, ifname: &str) -> Option<PortStatus> {
        self.lock_registry()
            .ports
            .iter()
            .flatten()
            .find(|p| p.status.ifname == ifname)
            .map(|p| p.status.clone())
    }

    /// The ports now, by id.
    pub fn ports(&self) -> Vec<PortStatus> {
        self.lock_registry()
            .ports
            .iter()
            .flatten()
            .map(|p| p.status.clone())
            .collect()
    }

    /// The steering program, for adding the destinations the engine owns.
    pub fn steering(&self) -> &SteeringProgram {
        &self.steering
    }

    /// Steer IPv4 traffic to a prefix to the engine (on ports in by-destination mode).
    pub fn own_prefix(&self, net: Ipv4Addr, len: u8, kind: DstKind) -> Result<(), EngineError> {
        Ok(self.steering.add_dst4(net, len, kind)?)
    }

    /// Service NAT's conntrack (for inspection and metrics: [`Conntrack::for_each`],
    /// [`Conntrack::live_entries`]).
    pub fn conntrack(&self) -> &Arc<Conntrack> {
        &self.conntrack
    }

    pub fn tables(&self) -> &Arc<TableHandle> {
        &self.tables
    }

    /// Counters of every worker, now.
    pub fn stats(&self) -> Vec<WorkerSnapshot> {
        self.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// Stop the workers (each drains its transmissions), detach the XDP programs, and report
    /// the final frame accounting.
    pub fn stop(mut self) -> StopReport {
        let frames = self.join_workers();
        let workers = self.stats();
        self.lock_registry().ports.clear();
        StopReport { frames, workers }
    }

    fn lock_registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The registry is consistent between statements; a panic elsewhere leaves it usable.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a command to every worker and wakes it; one reply channel per worker, `None` for a
    /// worker that is gone.
    /// Starts a capture on every worker: copies of the frames they handle (coming in on or
    /// going out of `filter`, or all), after the pipeline, with their verdicts. It runs until
    /// the stream is dropped (each worker lets go at its next captured frame); a new capture
    /// replaces a running one.
    pub fn capture(&self, filter: Option<PortId>) -> crate::capture::CaptureStream {
        let n = u32::try_from(self.workers.len()).unwrap_or(u32::MAX);
        let (stream, sinks) = crate::capture::new(n, filter);
        for (w, sink) in self.workers.iter().zip(sinks) {
            if w.commands.send(Command::Capture(sink)).is_ok()
                && let Err(e) = w.waker.wake()
            {
                tracing::warn!(error = %e, "waking a worker failed; it sees the capture within its sleep bound");
            }
        }
        stream
    }

    fn broadcast<T>(
        &self,
        mut command: impl FnMut(Sender<T>) -> Command,
    ) -> Vec<Option<Receiver<T>>> {
        self.workers
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::channel();
                w.commands.send(command(tx)).ok()?;
                if let Err(e) = w.waker.wake() {
                    tracing::warn!(error = %e, "waking a worker failed; it sees the command within its sleep bound");
                }
                Some(rx)
            })
            .collect()
    }

    /// Stops steering to a port: its steering entry and every XSKMAP slot of its range. Errors
    /// are logged, not returned: the entries are keyed by numbers, so they can be removed even
    /// after the interface vanished, and a failure here must not stop the frames coming back.
    fn unsteer(&self, ifindex: u32, xsk_base: u32) {
        if let Err(e) = self.steering.remove_iface(ifindex) {
            tracing::warn!(ifindex, error = %e, "removing the steering entry failed");
        }
        for q in 0..self.xsk_stride {
            if let Err(e) = self.steering.clear_socket(xsk_base + q) {
                tracing::warn!(slot = xsk_base + q, error = %e, "clearing an XSKMAP slot failed");
            }
        }
    }

    /// Undoes `add_port`: unsteer, detach XDP, then every worker closes its socket and takes
    /// back its frames. Returns what the workers took back.
    fn detach(
        &self,
        id: PortId,
        ifindex: u32,
        xsk_base: u32,
        attachment: XdpAttachment,
    ) -> Reclaimed {
        self.unsteer(ifindex, xsk_base);
        drop(attachment);
        let mut total = Reclaimed::default();
        for (w, reply) in self
            .broadcast(|reply| Command::RemovePort { id, reply })
            .into_iter()
            .enumerate()
        {
            match reply.map(|rx| rx.recv_timeout(COMMAND_TIMEOUT)) {
                Some(Ok(r)) => {
                    total.fill += r.fill;
                    total.tx += r.tx;
                }
                // A gone worker's sockets closed with it.
                None | Some(Err(RecvTimeoutError::Disconnected)) => {}
                Some(Err(RecvTimeoutError::Timeout)) => tracing::warn!(
                    worker = w,
                    port = id.0,
                    "worker did not confirm closing its socket in time; it will when it gets there"
                ),
            }
        }
        total
    }

    fn join_workers(&mut self) -> Vec<FrameCounts> {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            let _ = w.waker.wake();
        }
        self.workers
            .iter_mut()
            .filter_map(|w| w.thread.take())
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    tracing::error!("a worker panicked");
                    FrameCounts::default()
                })
            })
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.join_workers();
    }
}

/// The calling thread's network namespace, as the (device, inode) of its nsfs file; `None`
/// where /proc is not mounted.
fn current_netns() -> Option<(u64, u64)> {
    let m = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some((m.dev(), m.ino()))
}
