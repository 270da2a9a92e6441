//! CPU time, as cheaply as /proc gives it (no hardware counters on this VM), and pinning.
//!
//! - A core's busy time from `/proc/stat` (USER_HZ ticks, 10 ms): user + nice + system + irq +
//!   softirq. Idle and iowait are not ours; steal (the hypervisor running someone else) is
//!   reported apart, as a noise indicator.
//! - A thread's run time from `/proc/<pid>/task/<tid>/schedstat`: nanoseconds on CPU, user and
//!   kernel together, including softirqs that ran in its context.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// `/proc/stat` counts in USER_HZ, which the proc ABI fixes at 100 on every Linux architecture
/// we build for (`getconf CLK_TCK`).
const NS_PER_TICK: u64 = 10_000_000;

/// Pins thread `tid` (0: the calling thread) to `core`.
pub fn pin(tid: i32, core: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(core)
        .with_context(|| format!("core {core} is beyond the CPU set"))?;
    sched_setaffinity(Pid::from_raw(tid), &set)
        .with_context(|| format!("sched_setaffinity({tid}, core {core})"))
}

/// Time one core spent since boot, nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreTimes {
    /// Running our work: user, nice, system, irq, softirq.
    pub busy: u64,
    /// Runnable but not running because the hypervisor ran someone else: noise from outside.
    pub steal: u64,
}

/// [`CoreTimes`] of one core.
pub fn core_times(core: usize) -> Result<CoreTimes> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_core_times(&stat, core).with_context(|| format!("no cpu{core} line in /proc/stat"))
}

fn parse_core_times(stat: &str, core: usize) -> Option<CoreTimes> {
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // inside user.
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    Some(CoreTimes {
        busy: busy * NS_PER_TICK,
        steal: f.get(7)? * NS_PER_TICK,
    })
}

/// Nanoseconds thread `tid` of process `pid` has run (`schedstat`'s first field).
pub fn thread_runtime_ns(pid: u32, tid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{path}: {text:?}"))
}

/// Thread ids of this process whose name (`comm`) is `name`.
pub fn own_threads(name: &str) -> Result<Vec<u32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if read_comm(&entry.path()).as_deref() == Some(name) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Thread ids of this process whose name starts with `prefix`.
pub fn own_threads_prefixed(prefix: &str) -> Result<Vec<u32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if read_comm(&entry.path()).is_some_and(|c| c.starts_with(prefix)) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Pids of processes (kernel threads included) whose name starts with `prefix`.
pub fn processes_named(prefix: &str) -> Result<BTreeSet<u32>> {
    let mut pids = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read; it is then not ours anyway.
        if read_comm(&entry.path()).is_some_and(|c| c.starts_with(prefix)) {
            pids.insert(pid);
        }
    }
    Ok(pids)
}

/// The name (`comm`) of process or thread `pid`, if it still exists.
pub fn comm(pid: u32) -> Option<String> {
    read_comm(Path::new(&format!("/proc/{pid}")))
}

fn read_comm(dir: &Path) -> Option<String> {
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

/// The number of CPUs this process may run on.
pub fn online_cpus() -> Result<usize> {
    let n = std::thread::available_parallelism()
        .context("available_parallelism")?
        .get();
    if n == 0 {
        bail!("no CPUs");
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn busy_time_sums_the_right_columns() {
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\n\
                    cpu0 1 2 3 1000 7 4 5 6 0 0\n\
                    cpu1 10 0 20 500 0 0 30 0 0 0\n\
                    intr 1 2 3\n";
        let t = |busy, steal| {
            Some(CoreTimes {
                busy: busy * NS_PER_TICK,
                steal: steal * NS_PER_TICK,
            })
        };
        assert_eq!(parse_core_times(stat, 0), t(1 + 2 + 3 + 4 + 5, 6));
        assert_eq!(parse_core_times(stat, 1), t(60, 0));
        assert_eq!(parse_core_times(stat, 2), None);
    }

    #[test]
    fn this_thread_is_found_by_name_and_runs() {
        let me = std::thread::Builder::new()
            .name("kxdp-cpu-probe".into())
            .spawn(|| {
                // A thread's own run time is brought up to date at scheduler ticks; spin
                // through a few.
                let t0 = std::time::Instant::now();
                while t0.elapsed() < std::time::Duration::from_millis(30) {
                    std::hint::spin_loop();
                }
                let tids = own_threads("kxdp-cpu-probe").unwrap();
                assert_eq!(tids.len(), 1);
                thread_runtime_ns(std::process::id(), tids[0]).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(me > 0);
        assert!(core_times(0).unwrap().busy > 0);
    }
}
