//! Leaving nothing behind: every piece of the demo registers how to undo it as soon as it
//! exists, and [`teardown`] undoes them in reverse order — after a normal run, after an error,
//! on Ctrl-C/SIGTERM/SIGHUP, and from the panic hook (release builds abort on panic, so Drop
//! guards alone would not run).
//!
//! Signals: [`watch_signals`] handles SIGINT, SIGTERM and SIGHUP on one thread, which raises
//! [`interrupted`]. The main flow checks it between steps and inside every traffic loop
//! (each bounded by timeouts), so a Ctrl-C ends the run within a second or two and the same
//! teardown runs. Children (the agent, `kxdp-cni`) run in their own process group, so a
//! Ctrl-C in the terminal reaches the demo only, which stops them in order.
//!
//! A run killed with SIGKILL cannot undo anything: the next run's preflight sweeps what it
//! left (see `preflight.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

/// One undo step: what it removes, and how.
struct Undo {
    what: String,
    action: Box<dyn FnOnce() -> Result<String, String> + Send>,
}

/// The undo stack, in creation order.
static UNDO: Mutex<Vec<Undo>> = Mutex::new(Vec::new());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Which signal interrupted the run.
static SIGNAL: OnceLock<&'static str> = OnceLock::new();

/// Registers how to undo something that now exists. `action` returns a short note on
/// success ("SIGTERM, stopped in 0.4 s") or why it failed.
pub fn register(
    what: impl Into<String>,
    action: impl FnOnce() -> Result<String, String> + Send + 'static,
) {
    UNDO.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Undo {
            what: what.into(),
            action: Box::new(action),
        });
}

/// How one undo step went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Undone {
    pub what: String,
    pub ok: bool,
    pub note: String,
}

/// Runs every registered undo step, newest first, and returns how each went. Steps are
/// taken off the stack one at a time, so a second caller (the panic hook) never runs one
/// twice.
pub fn teardown() -> Vec<Undone> {
    let mut done = Vec::new();
    loop {
        let next = UNDO.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some(undo) = next else {
            return done;
        };
        let (ok, note) = match (undo.action)() {
            Ok(note) => (true, note),
            Err(note) => (false, note),
        };
        if !ok {
            eprintln!("kxdp demo: cleanup: {}: {note}", undo.what);
        }
        done.push(Undone {
            what: undo.what,
            ok,
            note,
        });
    }
}

/// The error a step returns when a signal stopped the run (not a failure of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// `Err(Interrupted)` once a signal arrived: the check between two steps.
pub fn checkpoint() -> Result<(), Interrupted> {
    if interrupted() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire)
}

/// The signal that interrupted the run, by name.
pub fn interrupted_by() -> Option<&'static str> {
    SIGNAL.get().copied()
}

/// Sleeps up to `d`, returning early (false) when interrupted.
pub fn sleep(d: Duration) -> bool {
    let deadline = Instant::now() + d;
    while !interrupted() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// Takes over SIGINT, SIGTERM and SIGHUP: a thread waits for them (tokio's signal handling,
/// which installs handlers; blocking the signals instead would be inherited by the agent, and
/// std does not unblock them in children) and raises [`interrupted`]. Returns once the
/// handlers are in place.
pub fn watch_signals() -> std::io::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kxdp-demo-signals".into())
        .spawn(move || {
            let registered = (|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()?;
                let streams = {
                    let _guard = rt.enter();
                    (
                        signal(SignalKind::interrupt())?,
                        signal(SignalKind::terminate())?,
                        signal(SignalKind::hangup())?,
                    )
                };
                Ok::<_, std::io::Error>((rt, streams))
            })();
            let (rt, (mut int, mut term, mut hup)) = match registered {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            rt.block_on(async {
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                        _ = hup.recv() => "SIGHUP",
                    };
                    if INTERRUPTED.swap(true, Ordering::AcqRel) {
                        eprintln!("kxdp demo: {name}: still cleaning up (each step has a timeout)");
                    } else {
                        // Set before INTERRUPTED is visible to anyone reading both in order.
                        let _ = SIGNAL.set(name);
                        eprintln!(
                            "\nkxdp demo: {name}: stopping, then removing everything it made"
                        );
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the signal thread died")))
}

/// Runs [`teardown`] when a thread panics, after the default message. In release builds
/// (panic = "abort") nothing else would.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("kxdp demo: panicked; removing everything the demo made");
        teardown();
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn teardown_undoes_in_reverse_and_reports_failures() {
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let o = std::sync::Arc::clone(&order);
            register(format!("step {i}"), move || {
                o.lock().unwrap().push(i);
                if i == 1 {
                    Err("refused".into())
                } else {
                    Ok(String::new())
                }
            });
        }
        let done = teardown();
        assert_eq!(*order.lock().unwrap(), [2, 1, 0]);
        let oks: Vec<bool> = done.iter().map(|d| d.ok).collect();
        assert_eq!(oks, [true, false, true]);
        assert!(teardown().is_empty(), "nothing runs twice");
    }
}
