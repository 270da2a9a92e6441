//! `kxdp-cni`: the CNI plugin binary. Everything but I/O lives in `kxdp_control::cni`.
//!
//! stdout carries only the CNI answer; logs go to stderr, or to the configuration's
//! `logFile` (appended), filtered by `KXDP_LOG` (default `info`).

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Mutex;

use kxdp_control::cni::{self, CniEnv, CniError, Command, ErrorCode, NetConf};

fn main() {
    let env = CniEnv::from_process();
    // Read stdin as libcni's plugins do, whatever the command (the runtime writes the
    // configuration even for VERSION); only VERSION typed at a terminal does without.
    let mut stdin = Vec::new();
    let interactive_version =
        matches!(&env, Ok(e) if e.command == Command::Version) && std::io::stdin().is_terminal();
    let read = if interactive_version {
        Ok(())
    } else {
        std::io::stdin().read_to_end(&mut stdin).map(drop)
    };
    init_logging(NetConf::log_file_hint(&stdin).as_deref());
    let env = match read {
        Ok(()) => env,
        Err(e) => Err(CniError::new(ErrorCode::IoFailure, "reading stdin").with_details(e)),
    };
    let outcome = cni::run(env, &stdin);
    let mut out = std::io::stdout().lock();
    if !outcome.stdout.is_empty() {
        // Nothing else can be said if stdout is gone: the exit status still tells.
        let _ = writeln!(out, "{}", outcome.stdout);
    }
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}

fn init_logging(log_file: Option<&Path>) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KXDP_LOG").unwrap_or_else(|_| "info".into());
    // The runtime files stderr into its own log: no colour codes there either.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let file = log_file.and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .inspect_err(|e| {
                eprintln!(
                    "kxdp-cni: logFile {}: {e}; logging to stderr",
                    path.display()
                )
            })
            .ok()
    });
    match file {
        Some(file) => builder.with_writer(Mutex::new(file)).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
