//! The engine: loads the steering program, attaches it to every port, starts the workers and
//! stops them cleanly. What it holds is what `kxdp agent` runs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use af_xdp::bpf::{DstKind, SteerMode, SteeringConfig, SteeringProgram, XdpAttachment, XdpMode};
use af_xdp::{FrameCounts, SocketConfig, UmemConfig};

use crate::EngineError;
use crate::stats::{MAX_PORTS, WorkerSnapshot, WorkerStats};
use crate::tables::TableHandle;
use crate::worker::{self, IdlePolicy, WorkerPort, WorkerSetup};

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
    pub ifname: String,
    pub ifindex: u32,
    /// The XDP mode the kernel accepted (native or generic).
    pub xdp_mode: XdpMode,
}

/// A running engine. Dropping it stops the workers and detaches every XDP program.
#[derive(Debug)]
pub struct Engine {
    workers: Vec<JoinHandle<FrameCounts>>,
    stats: Vec<Arc<WorkerStats>>,
    stop: Arc<AtomicBool>,
    tables: Arc<TableHandle>,
    // Detached after the workers are gone (field order = drop order).
    attachments: Vec<XdpAttachment>,
    steering: Arc<SteeringProgram>,
    ports: Vec<PortStatus>,
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
    /// Attach to the configured ports (in the calling thread's network namespace) and start
    /// the workers; returns once every worker has its sockets bound.
    pub fn start(cfg: EngineConfig, tables: Arc<TableHandle>) -> Result<Engine, EngineError> {
        if cfg.ports.is_empty() || cfg.ports.len() > MAX_PORTS {
            return Err(EngineError::Config(format!(
                "between 1 and {MAX_PORTS} ports are needed"
            )));
        }
        let n_workers = cfg.cores.len().max(1) as u32;
        // XSKMAP slots per port: one per worker (worker w owns queue w of every port).
        let max_queues = n_workers.next_power_of_two().max(4);
        let steering = Arc::new(SteeringProgram::load(&SteeringConfig {
            max_ifaces: MAX_PORTS as u32,
            max_queues,
            ..SteeringConfig::default()
        })?);
        let mut ports = Vec::new();
        let mut wports = Vec::new();
        let mut attachments = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let ifindex = af_xdp::ifindex(&p.ifname)?;
            let xsk_base = i as u32 * max_queues;
            steering.set_iface(ifindex, p.steer, xsk_base)?;
            let att = steering.attach(ifindex, cfg.xdp_mode)?;
            ports.push(PortStatus {
                ifname: p.ifname.clone(),
                ifindex,
                xdp_mode: att.mode(),
            });
            attachments.push(att);
            wports.push(WorkerPort { ifindex, xsk_base });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut engine = Engine {
            workers: Vec::new(),
            stats: Vec::new(),
            stop: Arc::clone(&stop),
            tables: Arc::clone(&tables),
            attachments,
            steering: Arc::clone(&steering),
            ports,
        };
        for w in 0..n_workers {
            let stats = Arc::new(WorkerStats::new(cfg.ports.len()));
            let setup = WorkerSetup {
                index: w,
                core: cfg.cores.get(w as usize).copied(),
                ports: wports.clone(),
                umem: cfg.umem,
                socket: cfg.socket,
                idle: cfg.idle,
                tables: Arc::clone(&tables),
                stats: Arc::clone(&stats),
                stop: Arc::clone(&stop),
                steering: Arc::clone(&steering),
            };
            let (tx, rx) = std::sync::mpsc::channel();
            let handle = std::thread::Builder::new()
                .name(format!("kxdp-w{w}"))
                .spawn(move || worker::run(setup, tx))
                .map_err(|e| EngineError::Os {
                    op: "spawn worker thread",
                    source: e,
                })?;
            engine.workers.push(handle);
            engine.stats.push(stats);
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e), // Drop stops the workers already started.
                Err(_) => return Err(EngineError::Config(format!("worker {w} died during setup"))),
            }
        }
        Ok(engine)
    }

    /// The steering program, for adding the destinations the engine owns.
    pub fn steering(&self) -> &SteeringProgram {
        &self.steering
    }

    /// Steer IPv4 traffic to a prefix to the engine (on ports in by-destination mode).
    pub fn own_prefix(&self, net: Ipv4Addr, len: u8, kind: DstKind) -> Result<(), EngineError> {
        Ok(self.steering.add_dst4(net, len, kind)?)
    }

    pub fn tables(&self) -> &Arc<TableHandle> {
        &self.tables
    }

    pub fn ports(&self) -> &[PortStatus] {
        &self.ports
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
        self.attachments.clear();
        StopReport { frames, workers }
    }

    fn join_workers(&mut self) -> Vec<FrameCounts> {
        self.stop.store(true, Ordering::Relaxed);
        self.workers
            .drain(..)
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
