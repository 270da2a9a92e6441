//! kxdp benchmarks: generator → node → sink in network namespaces, the kernel path and kxdp
//! measured in the same run on the same topology. The binary is `kxdp-bench`.
//!
//! Module map:
//! - [`scenario`]: the scenarios (`forward`, `nat`, `overlay`, `nat-overlay`, `decap`), the
//!   runner that measures both paths of one, and `scaling` over worker counts.
//! - [`topology`]: the three namespaces and two veth pairs, built through rtnetlink.
//! - [`netns`]: namespaces held by fd; running threads, commands and sysfs accesses in them.
//! - [`dpdk`]: DPDK testpmd over the net_af_xdp PMD, the optional third path of `forward`;
//!   [`xdp`]: which XDP program an interface has (rtnetlink).
//! - [`offload`], [`netlink_raw`]: what `kxdp_control::netlink` does not do: ethtool features
//!   over generic netlink, the raw request (vxlan devices and FDB entries come from
//!   `kxdp_control::netlink`).
//! - [`nft`]: the kube-proxy-style nftables ruleset of the kernel NAT baseline.
//! - [`generator`]: generator threads inside the generator namespace, live frames or the
//!   AF_XDP fallback ([`livegen`], [`xskgen`]).
//! - [`pktgen`]: `kxdp-bench pktgen`, the generator alone (UDP/TCP, IPv4/IPv6, VXLAN, flows,
//!   sizes, rate, threads) into a counting receiver; [`kpktgen`] drives the kernel's pktgen
//!   module where it exists.
//! - [`latency`]: the probe stream and its HdrHistogram.
//! - [`napi`]: threaded veth NAPI with pinned kernel threads, so each core's work is chosen.
//! - [`cpu`]: core busy time, thread run time, pinning.
//! - [`machine`]: CPU model, CPU count, kernel release.
//! - [`report`], [`plot`]: the result types, their JSON and table forms, the SVG chart.

pub mod cpu;
pub mod dpdk;
pub mod generator;
pub mod kpktgen;
pub mod latency;
pub mod livegen;
pub mod machine;
pub mod napi;
pub mod netlink_raw;
pub mod netns;
pub mod nft;
pub mod offload;
pub mod pktgen;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod topology;
pub mod xdp;
pub mod xskgen;
