//! A traffic generator running on its own thread inside the generator namespace, transmitting
//! frame templates out of one interface as fast as it can until stopped.
//!
//! Two engines: the XDP live-frames facility ([`crate::livegen`], the default, several Mpps)
//! and, when that is unavailable, AF_XDP copy-mode transmit ([`crate::xskgen`], about 1 Mpps on
//! veth, not much above what the node under test can forward: then the generator may be the
//! bottleneck and the report says so).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use crate::netns::{Netns, NsThread};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::cpu;
use crate::livegen::LiveFrames;
use crate::xskgen::XskTx;

/// Copies per `BPF_PROG_TEST_RUN` call: about 50 ms at 5 Mpps, which bounds how long a stop
/// takes and how coarse the sent counter is.
const LIVE_REPEAT: u32 = 1 << 18;

/// Name of the generator thread (for finding its CPU time).
pub const THREAD_NAME: &str = "kxdp-gen";

/// Which generator transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorKind {
    /// `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`, the program returning `XDP_TX`.
    XdpLiveFrames,
    /// AF_XDP copy-mode transmit (the fallback).
    AfXdpTx,
}

impl fmt::Display for GeneratorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GeneratorKind::XdpLiveFrames => "XDP live frames (BPF_PROG_TEST_RUN, XDP_TX)",
            GeneratorKind::AfXdpTx => "AF_XDP TX (fallback)",
        })
    }
}

/// Which generator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorChoice {
    /// Exactly this one.
    Only(GeneratorKind),
    /// Live frames, or AF_XDP if live frames fail to start.
    Auto,
}

/// What to send and from where.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Interface to transmit on, in the generator namespace.
    pub ifname: String,
    pub ifindex: u32,
    /// Frame templates, one per flow; the generator cycles through them, one call's worth of
    /// copies of each at a time.
    pub templates: Vec<Vec<u8>>,
    /// Core to pin the generator thread to. Live frames enter the peer's RX queue
    /// `core % queues` (veth picks the queue of `ndo_xdp_xmit` by the sending CPU).
    pub core: Option<usize>,
    /// Queue the AF_XDP fallback binds to (its skbs enter the peer's RX queue of that index).
    pub queue: u32,
    /// Frames per second to offer; None: as fast as the engine goes.
    pub rate: Option<u64>,
}

/// Paces a sender to `rate` frames/s: [`wait`](Self::wait) before each chunk sleeps until the
/// frames sent so far are due. Chunks are about a millisecond's worth, so the rate is exact
/// over any window of a few milliseconds.
#[derive(Debug)]
pub struct Pacer {
    rate: u64,
    start: std::time::Instant,
}

impl Pacer {
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            start: std::time::Instant::now(),
        }
    }

    /// Frames per chunk: a millisecond's worth, at least 1, at most `max`.
    pub fn chunk(&self, max: u32) -> u32 {
        u32::try_from((self.rate / 1000).clamp(1, u64::from(max))).unwrap_or(max)
    }

    /// Sleeps until `sent` frames are due.
    pub fn wait(&self, sent: u64) {
        let due = std::time::Duration::from_secs_f64(sent as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// A running generator; stop it with [`stop`](Self::stop) (dropping it leaves the thread
/// running until the namespace's interface disappears).
#[derive(Debug)]
pub struct Generator {
    kind: GeneratorKind,
    /// Why live frames were not used, when the fallback runs under [`GeneratorChoice::Auto`].
    fallback_reason: Option<String>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: NsThread<Result<()>>,
}

impl Generator {
    /// Starts the generator thread in `ns`; returns once it has sent its first frames.
    pub fn start(ns: &Netns, cfg: &GeneratorConfig, choice: GeneratorChoice) -> Result<Self> {
        if cfg.templates.is_empty() {
            bail!("no frame templates");
        }
        match choice {
            GeneratorChoice::Only(kind) => Self::start_kind(ns, cfg, kind),
            GeneratorChoice::Auto => {
                match Self::start_kind(ns, cfg, GeneratorKind::XdpLiveFrames) {
                    Ok(g) => Ok(g),
                    Err(e) => {
                        let mut g = Self::start_kind(ns, cfg, GeneratorKind::AfXdpTx)
                            .context("AF_XDP fallback generator")?;
                        g.fallback_reason = Some(format!("{e:#}"));
                        Ok(g)
                    }
                }
            }
        }
    }

    fn start_kind(ns: &Netns, cfg: &GeneratorConfig, kind: GeneratorKind) -> Result<Self> {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let thread = {
            let (cfg, sent, stop) = (cfg.clone(), Arc::clone(&sent), Arc::clone(&stop));
            ns.spawn_thread(THREAD_NAME, move || {
                if let Some(core) = cfg.core {
                    cpu::pin(0, core).context("pinning the generator thread")?;
                }
                match kind {
                    GeneratorKind::XdpLiveFrames => live_loop(&cfg, &sent, &stop, ready_tx),
                    GeneratorKind::AfXdpTx => xsk_loop(&cfg, &sent, &stop, ready_tx),
                }
            })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Generator {
                kind,
                fallback_reason: None,
                sent,
                stop,
                thread,
            }),
            Ok(Err(why)) => {
                let _ = thread.join();
                Err(anyhow!(why)).context(format!("starting the {kind} generator"))
            }
            Err(_) => match thread.join() {
                Ok(Ok(())) => bail!("{kind} generator ended before it started"),
                Ok(Err(e)) | Err(e) => Err(e.context(format!("starting the {kind} generator"))),
            },
        }
    }

    pub fn kind(&self) -> GeneratorKind {
        self.kind
    }

    /// Why the live-frames generator could not be used, if the fallback is running.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Frames handed to the kernel so far (offered load: the peer may have dropped some).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the thread (within one call's worth of frames) and returns the total sent.
    pub fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join()??;
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

fn live_loop(
    cfg: &GeneratorConfig,
    sent: &AtomicU64,
    stop: &AtomicBool,
    ready: mpsc::SyncSender<Result<(), String>>,
) -> Result<()> {
    let start = || -> Result<Vec<LiveFrames>> {
        let gens = cfg
            .templates
            .iter()
            .map(|t| LiveFrames::new(t, cfg.ifindex, 0))
            .collect::<Result<Vec<_>, _>>()?;
        // One short call proves the kernel accepts the context and the interface.
        for g in &gens {
            g.send(64)?;
        }
        Ok(gens)
    };
    let gens = match start() {
        Ok(g) => g,
        Err(e) => {
            // BpfError's message already ends in the errno's text.
            let _ = ready.send(Err(e.to_string()));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let pacer = cfg.rate.map(Pacer::new);
    let repeat = pacer.as_ref().map_or(LIVE_REPEAT, |p| p.chunk(LIVE_REPEAT));
    let mut mine = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for g in &gens {
            if let Some(p) = &pacer {
                p.wait(mine);
            }
            match g.send(repeat) {
                Ok(()) => {}
                // A signal cut the call short; how far it got is unknown, so count nothing.
                Err(e) if e.errno() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e).context("BPF_PROG_TEST_RUN (live frames)"),
            }
            mine += u64::from(repeat);
            sent.fetch_add(u64::from(repeat), Ordering::Relaxed);
        }
    }
    Ok(())
}

fn xsk_loop(
    cfg: &GeneratorConfig,
    sent: &AtomicU64,
    stop: &AtomicBool,
    ready: mpsc::SyncSender<Result<(), String>>,
) -> Result<()> {
    let mut tx = match XskTx::new(&cfg.ifname, cfg.queue, &cfg.templates) {
        Ok(tx) => tx,
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}")));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let pacer = cfg.rate.map(Pacer::new);
    let mut mine = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = &pacer {
            p.wait(mine);
        }
        let done = tx.step()?;
        mine += done;
        sent.fetch_add(done, Ordering::Relaxed);
    }
    Ok(())
}
