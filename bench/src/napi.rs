//! Threaded NAPI on a veth end, with its kernel threads pinned to chosen cores.
//!
//! veth receives through NAPI only while it has an XDP program or GRO on. By default that NAPI
//! runs as a softirq on whichever CPU raised it, i.e. the *sender's* CPU: the generator's core
//! would do the node's receive work (all of the kernel's forwarding, kxdp's XDP steering and
//! copy into the UMEM) and the node's own core would sit idle. With
//! `/sys/class/net/<dev>/threaded` set, each NAPI instance (one per RX queue) gets a kernel
//! thread `napi/<dev>-<napi id>` that we can pin, so a benchmark decides which core does what.
//!
//! veth deletes and re-adds its NAPI instances on every XDP attach and detach, and with them
//! the threads: call [`ThreadedNapi::repin`] after each.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};

use crate::cpu;
use crate::netns::Netns;

/// Linux truncates thread names to 15 bytes (`TASK_COMM_LEN` - 1).
const COMM_MAX: usize = 15;

/// One interface's threaded NAPI; queue `i`'s thread pinned to `cores[i % cores.len()]`.
#[derive(Debug)]
pub struct ThreadedNapi {
    ifname: String,
    cores: Vec<usize>,
    /// Threads of the same name that existed before we turned threading on: an interface of the
    /// same name in another namespace. Never touched.
    foreign: BTreeSet<u32>,
    prefix: String,
}

impl ThreadedNapi {
    /// Turns threaded NAPI on for `ifname` in `ns` and pins its threads. The device must
    /// already have NAPI (GRO on or an XDP program), or it gets threads only later: then call
    /// [`repin`](Self::repin).
    pub fn enable(ns: &Netns, ifname: &str, cores: &[usize]) -> Result<Self> {
        ensure!(
            !cores.is_empty(),
            "no core for the NAPI threads of {ifname}"
        );
        ensure!(
            ifname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
            "interface name {ifname:?}"
        );
        let mut prefix = format!("napi/{ifname}-");
        prefix.truncate(COMM_MAX);
        let foreign = cpu::processes_named(&prefix)?;
        ns.sysfs_write(&format!("class/net/{ifname}/threaded"), "1")
            .with_context(|| format!("turning threaded NAPI on for {ifname}"))?;
        let napi = ThreadedNapi {
            ifname: ifname.to_owned(),
            cores: cores.to_vec(),
            foreign,
            prefix,
        };
        napi.repin()?;
        Ok(napi)
    }

    /// Pins the interface's current NAPI threads, in NAPI id order (veth adds one instance per
    /// RX queue, in queue order), to the cores in turn; returns their pids in that order.
    pub fn repin(&self) -> Result<Vec<u32>> {
        let mut threads: Vec<(u64, u32)> = Vec::new();
        for pid in cpu::processes_named(&self.prefix)?.difference(&self.foreign) {
            let id = cpu::comm(*pid)
                .and_then(|c| c.rsplit('-').next().and_then(|n| n.parse().ok()))
                .unwrap_or(u64::MAX);
            threads.push((id, *pid));
        }
        threads.sort_unstable();
        for (i, &(_, pid)) in threads.iter().enumerate() {
            let tid = i32::try_from(pid).context("pid out of range")?;
            let core = self.cores[i % self.cores.len()];
            cpu::pin(tid, core)
                .with_context(|| format!("pinning NAPI thread {pid} of {}", self.ifname))?;
        }
        Ok(threads.into_iter().map(|(_, pid)| pid).collect())
    }

    pub fn cores(&self) -> &[usize] {
        &self.cores
    }
}

/// Whether `ifname` in `ns` runs threaded NAPI now.
pub fn is_threaded(ns: &Netns, ifname: &str) -> Result<bool> {
    Ok(ns.sysfs_read(&format!("class/net/{ifname}/threaded"))? != "0")
}
