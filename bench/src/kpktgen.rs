//! The Linux kernel's packet generator (`/proc/net/pktgen`, the `pktgen` module), driven the
//! way engineers drive it by hand (Documentation/networking/pktgen.rst): one device on one
//! `kpktgend_<cpu>` thread, UDP over IPv4, `count 0` (until stopped), source ports varied over
//! the flows, `delay` for a fixed rate.
//!
//! The module is optional: where `/proc/net/pktgen/pgctrl` does not exist (no module, or a
//! kernel without loadable modules, like the 2-vCPU VM of ../shared/ENVIRONMENT.md), the
//! engine reports itself unavailable and the other generators run instead.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// Where the module's control files live (per network namespace).
pub const PROC_DIR: &str = "/proc/net/pktgen";

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPktgen {
    pub ifname: String,
    /// The kernel thread (`kpktgend_<cpu>`) that sends.
    pub cpu: usize,
    /// Frame length without FCS (pktgen's `pkt_size`).
    pub frame_bytes: usize,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dst_mac: [u8; 6],
    /// Flows: UDP source ports `first_src_port .. first_src_port + flows`.
    pub flows: u16,
    pub first_src_port: u16,
    pub dst_port: u16,
    /// Frames per second; None: as fast as it goes.
    pub rate: Option<u64>,
}

impl KernelPktgen {
    /// The commands for the thread file and the device file, in order.
    pub fn commands(&self) -> (Vec<String>, Vec<String>) {
        let thread = vec![
            "rem_device_all".to_owned(),
            format!("add_device {}", self.ifname),
        ];
        let m = self.dst_mac;
        let mut device = vec![
            "count 0".to_owned(),
            // veth does not share skbs (no IFF_TX_SKB_SHARING): one skb per frame.
            "clone_skb 0".to_owned(),
            format!("pkt_size {}", self.frame_bytes),
            format!("src_min {}", self.src),
            format!("src_max {}", self.src),
            format!("dst {}", self.dst),
            format!(
                "dst_mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            format!("udp_src_min {}", self.first_src_port),
            format!(
                "udp_src_max {}",
                self.first_src_port
                    .saturating_add(self.flows.max(1).saturating_sub(1))
            ),
            format!("udp_dst_min {}", self.dst_port),
            format!("udp_dst_max {}", self.dst_port),
        ];
        device.push(match self.rate {
            // Nanoseconds between frames.
            Some(r) => format!("delay {}", 1_000_000_000 / r.max(1)),
            None => "delay 0".to_owned(),
        });
        (thread, device)
    }
}

/// Why the kernel generator cannot run in `ns`, or `None` when it can.
pub fn unavailable(ns: &Netns) -> Result<Option<String>> {
    let pgctrl = Path::new(PROC_DIR).join("pgctrl");
    let exists = ns.run(move || pgctrl.exists())?;
    Ok((!exists).then(|| {
        format!(
            "kernel pktgen unavailable: no {PROC_DIR}/pgctrl (the pktgen module is not loaded; \
             `modprobe pktgen` where the kernel has modules)"
        )
    }))
}

fn write(ns: &Netns, file: PathBuf, line: String) -> Result<()> {
    let shown = format!("{line:?} > {}", file.display());
    ns.run(move || std::fs::write(&file, format!("{line}\n")))?
        .with_context(|| shown)
}

/// Runs the kernel generator for `duration` in `ns`; returns the frames it sent.
pub fn run(ns: &Netns, g: &KernelPktgen, duration: Duration) -> Result<u64> {
    if let Some(why) = unavailable(ns)? {
        bail!(why);
    }
    let dir = PathBuf::from(PROC_DIR);
    let (thread_cmds, device_cmds) = g.commands();
    let thread_file = dir.join(format!("kpktgend_{}", g.cpu));
    for c in thread_cmds {
        write(ns, thread_file.clone(), c)?;
    }
    let device_file = dir.join(&g.ifname);
    for c in device_cmds {
        write(ns, device_file.clone(), c)?;
    }
    // `start` blocks until the run ends: from its own thread; `stop` from this one.
    let pgctrl = dir.join("pgctrl");
    let start = {
        let pgctrl = pgctrl.clone();
        ns.spawn_thread("kpktgen-start", move || std::fs::write(&pgctrl, "start\n"))?
    };
    std::thread::sleep(duration);
    write(ns, pgctrl, "stop".to_owned())?;
    start.join()?.context("pktgen start")?;
    let status = ns
        .run(move || std::fs::read_to_string(&device_file))?
        .context("reading pktgen's result")?;
    sofar(&status).context("no pkts-sofar in pktgen's device file")
}

/// `pkts-sofar: N` from a pktgen device file.
pub fn sofar(status: &str) -> Option<u64> {
    status
        .split_whitespace()
        .skip_while(|w| *w != "pkts-sofar:")
        .nth(1)
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_follow_the_pktgen_documentation() {
        let g = KernelPktgen {
            ifname: "kb-gen".into(),
            cpu: 0,
            frame_bytes: 60,
            src: Ipv4Addr::new(10, 200, 1, 2),
            dst: Ipv4Addr::new(10, 200, 2, 100),
            dst_mac: [2, 0, 0, 0, 1, 1],
            flows: 16,
            first_src_port: 10_000,
            dst_port: 9,
            rate: Some(1_000_000),
        };
        let (thread, device) = g.commands();
        assert_eq!(thread, ["rem_device_all", "add_device kb-gen"]);
        assert!(device.contains(&"pkt_size 60".to_owned()));
        assert!(device.contains(&"dst_mac 02:00:00:00:01:01".to_owned()));
        assert!(device.contains(&"udp_src_max 10015".to_owned()));
        assert!(device.contains(&"delay 1000".to_owned()));
        assert_eq!(device.first().map(String::as_str), Some("count 0"));
    }

    #[test]
    fn reads_the_frames_sent() {
        let status =
            "Params: count 0  min_pkt_size: 60\nCurrent:\n     pkts-sofar: 123456  errors: 0\n";
        assert_eq!(sofar(status), Some(123_456));
        assert_eq!(sofar("nothing"), None);
    }
}
