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
//! - [`tcp_transfer`](mod@tcp_transfer): bulk TCP between namespaces, checked byte for byte.
//! - [`udp_echo`](mod@udp_echo): a UDP echo server and a client counting answers.
//!
//! Virtual cluster (overlay end-to-end tests; the engine is started by the test, not here):
//! - [`underlay`]: [`Underlay`], an L2 segment (a bridge in its own namespace), and the
//!   [`Node`]s plugged into it, each with uplink `eth0`.
//! - [`pod`]: [`Pod`], a namespace with `eth0` veth-paired to a host end in a node, routed or
//!   on a bridge.
//! - [`kxdp_node`]: [`KxdpNodeLinks`], the `kxdp0`/`kxdp0e` host-port pair and the kernel
//!   routes that send the node's own traffic for pods through the engine.
//! - [`flannel`]: [`FlannelNode`], a node wired as flannel's VXLAN backend wires one
//!   (`flannel.1`, `cni0`, per-remote FDB/neighbour/route): kxdp's interop reference.
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
//! Control plane (no root needed):
//! - [`apiserver`]: [`ApiServer`], an in-process fake kube-apiserver speaking the real
//!   list/watch protocol over plain HTTP, with failure injection (watch resets, compaction,
//!   outages) and fixture builders for Services, EndpointSlices and Nodes.
//!
//! Cleanup: every namespace is deleted when its [`Netns`] drops, including during a panic.
//! A run killed by a signal (Ctrl-C) cannot drop anything; the next run's first [`Netns::new`]
//! sweeps namespaces whose creating process is gone (names carry the creator's pid).

pub mod apiserver;
pub mod binaries;
pub mod flannel;
pub mod kxdp_node;
pub mod link;
pub mod netns;
pub mod objects;
pub mod ping;
pub mod pod;
pub mod privilege;
pub mod tcp_transfer;
pub mod topology;
pub mod traffic;
pub mod udp_echo;
pub mod underlay;
pub mod veth;
pub mod xsk_sender;

pub use apiserver::ApiServer;
pub use flannel::{FlannelNode, FlannelOptions};
pub use kxdp_node::{KxdpNodeLinks, KxdpNodeLinksOptions};
pub use link::{Link, LinkInfo, LinkStats, format_mac, parse_mac};
pub use netns::{Netns, NsProcess, NsThread, sweep_stale};
pub use objects::{node_yaml, vtep_data, wait_for};
pub use ping::{ping, ping_replies};
pub use pod::{Pod, PodAttach, PodOptions};
pub use privilege::require_root;
pub use tcp_transfer::{
    Direction, TransferOptions, TransferReport, fill_pattern, tcp_transfer, tcp_transfer_with,
};
pub use topology::{Iface, Topology, TopologyOptions};
pub use traffic::{Datagram, UdpReceiver, udp_recv_in, udp_send_from};
pub use udp_echo::{UdpEchoServer, udp_echo};
pub use underlay::{Node, NodeOptions, Underlay, UnderlayOptions};
pub use veth::{Veth, VethOptions};
