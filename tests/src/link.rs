//! One interface inside a namespace: configuration through `ip -n`, state and counters
//! through `ip -j` (JSON).
//!
//! Every `ip` call names the interface after an explicit `dev`/`name` keyword: iproute2
//! matches keyword abbreviations, so a bare `ip link set a up` reads `a` as `address`.

use std::net::IpAddr;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use crate::netns::{ip_in, run_checked};

/// Handle on interface `name` in namespace `netns`. It holds names only: it may outlive the
/// namespace, after which every call fails cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    netns: String,
    name: String,
}

/// State of an interface at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub name: String,
    pub mtu: u32,
    /// All zeros for interfaces without a hardware address.
    pub mac: [u8; 6],
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    pub tx_queues: u32,
    pub rx_queues: u32,
    pub stats: LinkStats,
}

/// Interface counters (the kernel's 64-bit `rtnl_link_stats64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
}

impl LinkStats {
    /// Counters accumulated since `earlier` (saturating, so a reset reads as zero).
    pub fn since(&self, earlier: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            rx_errors: self.rx_errors.saturating_sub(earlier.rx_errors),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
            tx_errors: self.tx_errors.saturating_sub(earlier.tx_errors),
        }
    }
}

impl Link {
    pub(crate) fn new(netns: &str, name: &str) -> Link {
        Link {
            netns: netns.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of the namespace the interface lives in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `ip -n <netns> args...` (for anything this handle does not wrap).
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ip_in(&self.netns, args)
    }

    /// Sets the interface administratively up.
    pub fn up(&self) -> Result<()> {
        self.set(&["up"])
    }

    /// Sets the interface administratively down.
    pub fn down(&self) -> Result<()> {
        self.set(&["down"])
    }

    /// Sets the hardware address.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<()> {
        self.set(&["address", &format_mac(mac)])
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.set(&["mtu", &mtu.to_string()])
    }

    /// Adds `addr/prefix_len`. IPv6 addresses skip duplicate address detection (`nodad`),
    /// which would otherwise keep them tentative, unusable as a source, for about a second.
    pub fn addr_add(&self, addr: IpAddr, prefix_len: u8) -> Result<()> {
        let cidr = format!("{addr}/{prefix_len}");
        let mut args = vec!["addr", "add", &cidr, "dev", &self.name];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// Installs (or overwrites) a permanent neighbour entry: `ip` resolves to `mac` on this
    /// link without ARP/ND, which a userspace dataplane on the other end may not answer.
    pub fn neigh_replace(&self, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        let ip = ip.to_string();
        let mac = format_mac(mac);
        self.ip(&[
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            &self.name,
            "nud",
            "permanent",
        ])
        .map(drop)
    }

    /// Enslaves the interface to bridge `bridge` (same namespace).
    pub fn set_master(&self, bridge: &str) -> Result<()> {
        self.set(&["master", bridge])
    }

    /// `ethtool -K <if> tx off`. A local sender's packets then leave with complete checksums:
    /// with TX checksum offload on, veth hands its peer `CHECKSUM_PARTIAL` packets whose
    /// checksum field holds only the pseudo-header sum, which an XDP program or AF_XDP socket
    /// on the peer sees as they are (the kernel would fix them up later; userspace cannot).
    /// Turning it off also turns off TSO, so a TCP sender emits MTU-sized frames.
    pub fn tx_checksum_off(&self) -> Result<()> {
        run_checked(Command::new("ip").args([
            "netns",
            "exec",
            &self.netns,
            "ethtool",
            "-K",
            &self.name,
            "tx",
            "off",
        ]))
        .map(drop)
    }

    /// Index, MAC, MTU, queue counts and counters.
    pub fn info(&self) -> Result<LinkInfo> {
        let json = self.ip(&["-j", "-d", "-s", "link", "show", "dev", &self.name])?;
        parse_link_json(&json).with_context(|| format!("{} in {}", self.name, self.netns))
    }

    /// Counters only.
    pub fn stats(&self) -> Result<LinkStats> {
        Ok(self.info()?.stats)
    }

    /// Interface index (namespace-local).
    pub fn ifindex(&self) -> Result<u32> {
        Ok(self.info()?.ifindex)
    }

    /// Hardware address.
    pub fn mac(&self) -> Result<[u8; 6]> {
        Ok(self.info()?.mac)
    }

    fn set(&self, what: &[&str]) -> Result<()> {
        let mut args = vec!["link", "set", "dev", &self.name];
        args.extend_from_slice(what);
        self.ip(&args).map(drop)
    }
}

/// Refuses names the kernel would (IFNAMSIZ is 16 including the NUL).
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 15
            && name != "."
            && name != ".."
            && !name
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace()),
        "interface name {name:?}: 1-15 bytes, no '/', ':' or spaces"
    );
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("MAC {text:?} too short"))?;
        ensure!(part.len() == 2, "MAC {text:?}: bad octet {part:?}");
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("MAC {text:?}"))?;
    }
    ensure!(parts.next().is_none(), "MAC {text:?} too long");
    Ok(mac)
}

/// The parts of `ip -j -d -s link show` we use.
#[derive(Deserialize)]
struct IpLink {
    ifindex: u32,
    ifname: String,
    mtu: u32,
    #[serde(default)]
    flags: Vec<String>,
    address: Option<String>,
    #[serde(default)]
    num_tx_queues: u32,
    #[serde(default)]
    num_rx_queues: u32,
    stats64: Option<IpStats64>,
}

#[derive(Deserialize)]
struct IpStats64 {
    rx: IpCounters,
    tx: IpCounters,
}

#[derive(Deserialize)]
struct IpCounters {
    bytes: u64,
    packets: u64,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    dropped: u64,
}

fn parse_link_json(json: &str) -> Result<LinkInfo> {
    let links: Vec<IpLink> = serde_json::from_str(json).context("parsing `ip -j link show`")?;
    let [link] = <[IpLink; 1]>::try_from(links)
        .map_err(|links| anyhow::anyhow!("expected one interface, `ip` listed {}", links.len()))?;
    let mac = match link.address.as_deref() {
        // Non-Ethernet devices (tun, ipip) print other formats; report them as no address.
        Some(text) if text.len() == 17 => parse_mac(text)?,
        _ => [0; 6],
    };
    let Some(stats) = link.stats64 else {
        bail!("`ip -s` printed no stats64 for {}", link.ifname);
    };
    Ok(LinkInfo {
        ifindex: link.ifindex,
        up: link.flags.iter().any(|f| f == "UP"),
        name: link.ifname,
        mtu: link.mtu,
        mac,
        tx_queues: link.num_tx_queues,
        rx_queues: link.num_rx_queues,
        stats: LinkStats {
            rx_packets: stats.rx.packets,
            rx_bytes: stats.rx.bytes,
            rx_dropped: stats.rx.dropped,
            rx_errors: stats.rx.errors,
            tx_packets: stats.tx.packets,
            tx_bytes: stats.tx.bytes,
            tx_dropped: stats.tx.dropped,
            tx_errors: stats.tx.errors,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Captured from iproute2 6.1 on kernel 6.18 (`ip -j -d -s link show dev va`), trimmed.
    const SAMPLE: &str = r#"[{"ifindex":2,"link_index":2,"ifname":"va","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","link_type":"ether","address":"b6:f6:29:b6:bc:ff","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":0,"linkinfo":{"info_kind":"veth"},"num_tx_queues":2,"num_rx_queues":2,"stats64":{"rx":{"bytes":10,"packets":1,"errors":0,"dropped":3,"over_errors":0,"multicast":0},"tx":{"bytes":90,"packets":1,"errors":0,"dropped":0,"carrier_errors":0,"collisions":0}}}]"#;

    #[test]
    fn parses_ip_json() {
        let info = parse_link_json(SAMPLE).unwrap();
        assert_eq!(info.ifindex, 2);
        assert_eq!(info.name, "va");
        assert_eq!(info.mtu, 1500);
        assert_eq!(info.mac, [0xb6, 0xf6, 0x29, 0xb6, 0xbc, 0xff]);
        assert!(info.up);
        assert_eq!((info.tx_queues, info.rx_queues), (2, 2));
        assert_eq!(info.stats.rx_packets, 1);
        assert_eq!(info.stats.rx_bytes, 10);
        assert_eq!(info.stats.rx_dropped, 3);
        assert_eq!(info.stats.tx_bytes, 90);
    }

    #[test]
    fn rejects_empty_or_multiple() {
        assert!(parse_link_json("[]").is_err());
        let two = format!(
            "[{},{}]",
            &SAMPLE[1..SAMPLE.len() - 1],
            &SAMPLE[1..SAMPLE.len() - 1]
        );
        assert!(parse_link_json(&two).is_err());
    }

    #[test]
    fn mac_round_trip() {
        let mac = [0x02, 0, 0, 0xab, 0x01, 0xff];
        assert_eq!(format_mac(mac), "02:00:00:ab:01:ff");
        assert_eq!(parse_mac("02:00:00:AB:01:ff").unwrap(), mac);
        assert!(parse_mac("02:00:00:ab:01").is_err());
        assert!(parse_mac("02:00:00:ab:01:ff:00").is_err());
        assert!(parse_mac("2:00:00:ab:01:ff").is_err());
    }

    #[test]
    fn ifname_limits() {
        assert!(check_ifname("veth-gen").is_ok());
        assert!(check_ifname("fifteen-chars-x").is_ok());
        assert!(check_ifname("sixteen-chars-xx").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn stats_since() {
        let a = LinkStats {
            rx_packets: 10,
            tx_bytes: 5,
            ..LinkStats::default()
        };
        let b = LinkStats {
            rx_packets: 25,
            tx_bytes: 3,
            ..LinkStats::default()
        };
        let d = b.since(&a);
        assert_eq!(d.rx_packets, 15);
        assert_eq!(d.tx_bytes, 0);
    }
}
