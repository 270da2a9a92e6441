//! Threaded NAPI on a veth end, with its kernel thread pinned to a chosen core.
//!
//! veth receives through NAPI only while it has an XDP program or GRO on. By default that NAPI
//! runs as a softirq on whichever CPU raised it, i.e. the *sender's* CPU: the generator's core
//! would do the node's receive work (all of the kernel's forwarding, kxdp's XDP steering and
//! copy into the UMEM) and the node's own core would sit idle. With
//! `/sys/class/net/<dev>/threaded` set, each NAPI instance gets a kernel thread
//! (`napi/<dev>-<napi id>`) that we can pin, so a benchmark decides which core does what.
//!
//! veth deletes and re-adds its NAPI instances on every XDP attach and detach, and with them
//! the threads: call [`ThreadedNapi::repin`] after each.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use kxdp_tests::Netns;

use crate::cpu;

/// Linux truncates thread names to 15 bytes (`TASK_COMM_LEN` - 1).
const COMM_MAX: usize = 15;

/// One interface's threaded NAPI, pinned to `core`.
#[derive(Debug)]
pub struct ThreadedNapi {
    ifname: String,
    core: usize,
    /// Threads of the same name that existed before we turned threading on: an interface of the
    /// same name in another namespace (other tests on this machine). Never touched.
    foreign: BTreeSet<u32>,
    prefix: String,
}

impl ThreadedNapi {
    /// Turns threaded NAPI on for `ifname` in `ns` and pins its threads to `core`. The device
    /// must already have NAPI (GRO on or an XDP program), or it gets threads only later, when
    /// it does: then call [`repin`](Self::repin).
    pub fn enable(ns: &Netns, ifname: &str, core: usize) -> Result<Self> {
        let mut prefix = format!("napi/{ifname}");
        prefix.truncate(COMM_MAX);
        let foreign = cpu::processes_named(&prefix)?;
        // sysfs shows the namespace that mounted it; `ip netns exec` mounts the namespace's own.
        ensure!(
            ifname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "interface name {ifname:?}"
        );
        ns.exec(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{ifname}/threaded"),
        ])
        .with_context(|| format!("turning threaded NAPI on for {ifname}"))?;
        let napi = ThreadedNapi {
            ifname: ifname.to_owned(),
            core,
            foreign,
            prefix,
        };
        napi.repin()?;
        Ok(napi)
    }

    /// Pins the interface's current NAPI threads to the core; returns their pids.
    pub fn repin(&self) -> Result<Vec<u32>> {
        let pids: Vec<u32> = cpu::processes_named(&self.prefix)?
            .difference(&self.foreign)
            .copied()
            .collect();
        for &pid in &pids {
            let tid = i32::try_from(pid).context("pid out of range")?;
            cpu::pin(tid, self.core)
                .with_context(|| format!("pinning NAPI thread {pid} of {}", self.ifname))?;
        }
        Ok(pids)
    }

    pub fn core(&self) -> usize {
        self.core
    }
}

/// Whether `ifname` in `ns` runs threaded NAPI now (`/sys/class/net/<dev>/threaded`).
pub fn is_threaded(ns: &Netns, ifname: &str) -> Result<bool> {
    let out = ns.exec_stdout(&["cat", &format!("/sys/class/net/{ifname}/threaded")])?;
    Ok(out.trim() != "0")
}
