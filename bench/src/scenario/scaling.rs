//! `kxdp-bench scaling`: one scenario at several worker counts. For `w` workers every veth has
//! `w` queues, kxdp runs `w` pinned workers, the kernel path `w` pinned NAPI threads on
//! node-gen (one per RX queue: receive-side scaling by queue, no RPS needed), and `w`
//! generator threads feed one queue each. Cores: generators on `0..w`, the node on `w..2w`, so
//! `w` needs `2w` cores; larger counts are skipped with a message.

use anyhow::{Result, ensure};

use super::runner::{self, progress};
use super::{RunOptions, Spec};
use crate::report::ScenarioReport;

/// Generator and node cores for `workers` workers: `(0..w, w..2w)`.
pub fn cores_for(workers: usize) -> (Vec<usize>, Vec<usize>) {
    ((0..workers).collect(), (workers..2 * workers).collect())
}

/// Runs `spec` once per worker count that fits in `cpus` cores.
pub fn run(
    spec: &dyn Spec,
    base: &RunOptions,
    workers: &[usize],
    cpus: usize,
) -> Result<Vec<ScenarioReport>> {
    ensure!(!workers.is_empty(), "no worker counts");
    let mut reports = Vec::new();
    for &w in workers {
        if w == 0 || 2 * w > cpus {
            progress(
                spec.name(),
                &format!(
                    "skipping {w} worker(s): needs {} cores, this machine has {cpus}",
                    2 * w
                ),
            );
            continue;
        }
        let (gen_cores, node_cores) = cores_for(w);
        progress(
            spec.name(),
            &format!("{w} worker(s): generators on {gen_cores:?}, node on {node_cores:?}"),
        );
        let o = RunOptions {
            workers: w,
            gen_cores,
            node_cores,
            ..base.clone()
        };
        reports.push(runner::run(spec, &o)?);
    }
    ensure!(
        !reports.is_empty(),
        "no worker count of {workers:?} fits in {cpus} cores (w workers need 2w)"
    );
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_split_generators_then_node() {
        assert_eq!(cores_for(1), (vec![0], vec![1]));
        assert_eq!(cores_for(4), (vec![0, 1, 2, 3], vec![4, 5, 6, 7]));
    }
}
