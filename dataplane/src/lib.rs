//! `kxdp-dataplane`: the packet engine.
//!
//! Module map:
//! - [`wire`]: zero-copy views and representations of the wire formats (Ethernet, ARP, IPv4,
//!   IPv6, UDP, TCP, ICMP, VXLAN) and the Internet checksum (RFC 1071/1624).
//! - [`tables`]: the read side of the tables (immutable snapshots swapped atomically), among
//!   them the services ([`Services`], Maglev arrays built by [`tables::maglev`]).
//! - [`conntrack`]: service NAT's flow and session-affinity table, shared by all workers
//!   (seqlocked buckets, no lock on the read path).
//! - [`pipeline`]: the stages a batch of frames goes through, in the order written there.
//! - [`verdict`]: what a stage decides for a packet; [`DropReason`], one counter each.
//! - [`stats`]: per-worker counters.
//! - `worker` (private): the poll-mode loop of one pinned thread, and the commands it takes.
//! - [`engine`]: runs the workers and attaches to interfaces as ports come and go.
//!
//! The data path never depends on tokio or kube; the control plane publishes [`Tables`].

pub mod capture;
pub mod conntrack;
pub mod engine;
pub mod pipeline;
pub mod stats;
pub mod tables;
pub mod verdict;
pub mod wire;
mod worker;

pub use conntrack::Conntrack;
pub use engine::{Engine, EngineConfig, PortConfig, PortStatus, StopReport};
pub use tables::{
    Backend, BackendSet, BackendSetId, Frontend, FrontendKey, FrontendKind, L4Proto, NextHop,
    Route, Services, ServicesBuilder, SessionAffinity, SourceNat, TableHandle, Tables,
};
pub use verdict::{DropReason, PortId, Verdict};
pub use worker::IdlePolicy;

/// Errors from starting the engine and from adding or removing ports.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine configuration is invalid.
    #[error("engine configuration: {0}")]
    Config(String),
    /// AF_XDP socket or UMEM setup failed.
    #[error(transparent)]
    Xsk(#[from] af_xdp::XskError),
    /// Loading, configuring or attaching the XDP program failed.
    #[error(transparent)]
    Bpf(#[from] af_xdp::bpf::BpfError),
    /// A system call failed; `op` names it.
    #[error("{op} failed: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A worker thread died or did not answer in time.
    #[error("worker {0} is gone or not answering")]
    WorkerGone(u32),
    /// No port has this id.
    #[error("no port with id {}", .0.0)]
    NoSuchPort(PortId),
    /// The interface is already one of the engine's ports.
    #[error("{0} is already a port of the engine")]
    PortExists(String),
}
