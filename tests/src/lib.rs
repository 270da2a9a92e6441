//! Test harness for kxdp: throwaway network namespaces joined by veth pairs, used by every
//! end-to-end test and by the benchmarks.
//!
//! Module map:
//! - [`privilege`]: [`require_root`], the one gate every privileged test calls first.
//! - [`netns`]: [`Netns`] (a uniquely named namespace deleted on drop), commands and threads
//!   inside it ([`NsProcess`], [`NsThread`]), sysctls, and [`sweep_stale`] for namespaces left
//!   by killed runs.
//! - [`link`]: [`Link`], a handle on one interface in a namespace (up, MAC, MTU, addresses,
//!   static neighbours) and its counters ([`LinkInfo`], [`LinkStats`]).
//! - [`veth`]: [`Veth::create`], a veth pair whose ends live in two namespaces.
//! - [`topology`]: [`Topology::chain3`], generator ─veth─ node ─veth─ sink, addressed and routed.
//! - [`traffic`]: UDP send/receive (with the received TTL) inside a namespace.
//! - [`ping`](mod@ping): ICMP echo over a raw socket, so tests do not depend on iputils-ping.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! if !kxdp_tests::require_root("forward") {
//!     return Ok(());
//! }
//! let topo = kxdp_tests::Topology::chain3("forward")?;
//! topo.enable_kernel_forwarding()?;
//! assert!(kxdp_tests::ping(&topo.generator, topo.sink_if.ipv4.into(), 1));
//! # Ok(())
//! # }
//! ```
//!
//! Cleanup: every namespace is deleted when its [`Netns`] drops, including during a panic.
//! A run killed by a signal (Ctrl-C) cannot drop anything; the next run's first [`Netns::new`]
//! sweeps namespaces whose creating process is gone (names carry the creator's pid).

pub mod binaries;
pub mod link;
pub mod netns;
pub mod ping;
pub mod privilege;
pub mod topology;
pub mod traffic;
pub mod veth;
pub mod xsk_sender;

pub use link::{Link, LinkInfo, LinkStats, format_mac, parse_mac};
pub use netns::{Netns, NsProcess, NsThread, sweep_stale};
pub use ping::{ping, ping_replies};
pub use privilege::require_root;
pub use topology::{Iface, Topology, TopologyOptions};
pub use traffic::{Datagram, UdpReceiver, udp_recv_in, udp_send_from};
pub use veth::{Veth, VethOptions};
