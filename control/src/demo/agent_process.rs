//! The real agent, `kxdp agent`, as a child process inside kxdp-a's namespace: started from a
//! thread inside it (so the process is born there), in its own process group (a Ctrl-C in
//! the terminal reaches the demo only, which stops the agent in order), with its output in a
//! log file that the demo quotes when the agent fails.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cleanup;
use super::netns::Netns;
use crate::api::{ApiClient, NodeInfo, Request};

/// How long the agent may take to serve its API socket (it attaches XDP programs first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed agent may take to detach and remove what it made.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where the agent's things are.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub exe: PathBuf,
    pub node_name: String,
    pub objects: PathBuf,
    pub api_socket: PathBuf,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
}

/// A running agent. Its stop is registered with [`cleanup`] when it starts.
#[derive(Debug)]
pub struct AgentProcess {
    child: Arc<Mutex<Child>>,
    pub pid: u32,
    pub opts: AgentOptions,
}

impl AgentProcess {
    /// Starts `kxdp agent` in `ns`.
    pub fn start(ns: &Netns, opts: &AgentOptions) -> anyhow::Result<AgentProcess> {
        let log = File::create(&opts.log)
            .with_context(|| format!("creating the agent's log {}", opts.log.display()))?;
        let mut cmd = Command::new(&opts.exe);
        cmd.arg("agent")
            .arg("--source")
            .arg(&opts.objects)
            .args(["--node-name", &opts.node_name, "--uplink", "eth0"])
            .arg("--api-socket")
            .arg(&opts.api_socket)
            .arg("--metrics-addr")
            .arg(opts.metrics_addr.to_string())
            .env(
                "KXDP_LOG",
                std::env::var("KXDP_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Plain text in the log file (tracing-subscriber honours NO_COLOR).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = ns
            .run(move || cmd.spawn())?
            .with_context(|| format!("starting {} agent", opts.exe.display()))?;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let for_cleanup = Arc::clone(&child);
        cleanup::register(format!("agent (pid {pid})"), move || {
            stop(&for_cleanup, STOP_GRACE)
        });
        Ok(AgentProcess {
            child,
            pid,
            opts: opts.clone(),
        })
    }

    /// The agent's local API.
    pub fn api(&self) -> ApiClient {
        ApiClient::new(&self.opts.api_socket).with_timeout(Duration::from_secs(5))
    }

    /// Waits until the agent answers on its API socket. Fails early, quoting its log, when
    /// it exits; when it runs but never serves the socket, says so.
    pub fn wait_ready(&self) -> anyhow::Result<NodeInfo> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let api = self.api();
        loop {
            if let Some(status) = self
                .child
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait()?
            {
                bail!(
                    "the agent exited ({status}) before serving its API socket; its log ({}):\n{}",
                    self.opts.log.display(),
                    self.log_tail(15)
                );
            }
            match api.call_as::<NodeInfo>(&Request::NodeInfo) {
                Ok(info) => return Ok(info),
                Err(e) if Instant::now() >= deadline => bail!(
                    "the agent runs but did not serve its API socket {} within {} s ({e}); \
                     this demo needs an agent that serves --api-socket with --source FILE. \
                     Its log ({}):\n{}",
                    self.opts.api_socket.display(),
                    READY_TIMEOUT.as_secs(),
                    self.opts.log.display(),
                    self.log_tail(15)
                ),
                Err(_) => {}
            }
            if !cleanup::sleep(Duration::from_millis(100)) {
                return Err(cleanup::Interrupted.into());
            }
        }
    }

    /// Whether the agent is still running.
    pub fn running(&self) -> bool {
        matches!(
            self.child
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait(),
            Ok(None)
        )
    }

    /// The last `n` lines of the agent's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.opts.log, n)
    }
}

/// The last `n` lines of a file, indented.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// SIGTERM (the agent detaches its XDP programs and removes its host port), then SIGKILL
/// after `grace`. Returns how it ended.
fn stop(child: &Mutex<Child>, grace: Duration) -> Result<String, String> {
    let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!("had already exited ({status})"));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let started = Instant::now();
    let _ = kill(pid, Signal::SIGTERM);
    while started.elapsed() < grace {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                return Ok(format!(
                    "stopped by SIGTERM in {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
            Ok(Some(status)) => return Err(format!("stopped by SIGTERM but {status}")),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "did not stop within {} s of SIGTERM: killed",
        grace.as_secs()
    ))
}
