//! `af_xdp`: kxdp's own safe binding to Linux AF_XDP sockets and XDP programs.
//!
//! This crate is the one place in kxdp where `unsafe` code lives: every block carries a
//! `// SAFETY:` comment naming the invariants it relies on, and the public API is safe.
//!
//! Module map:
//! - [`umem`]: the UMEM area and [`Frame`], the move-only token that owns one frame while it is
//!   in userspace. The type system enforces fill → RX → process → TX → completion → fill.
//! - `ring` (private): single-producer/single-consumer views over the four mmap'ed rings.
//! - [`socket`]: one XSK socket bound to an (interface, queue), its rings and its wakeups.
//! - [`group`]: [`XskGroup`], the sockets of one worker sharing one UMEM (`XDP_SHARED_UMEM`), so
//!   forwarding between interfaces moves a descriptor, never a payload; it keeps the frame
//!   accounting ([`FrameCounts`]) and, when a socket is removed, takes back every frame the
//!   kernel still held for it.
//! - [`bpf`]: a BPF assembler, bpf() syscall wrappers and the steering XDP program that decides
//!   which frames reach our sockets (everything else goes to the kernel).
//! - `mmap`, `sys` (private): the narrow OS boundary (mmap, setsockopt, getsockopt, the
//!   `SIOCGIFHWADDR` ioctl behind [`hw_addr`], and the `SIOCETHTOOL` ioctl behind
//!   [`set_tx_checksum_offload`]).
#![allow(unsafe_code)]

pub mod bpf;
pub mod group;
mod mmap;
mod ring;
pub mod socket;
mod sys;
pub mod umem;

pub use group::{FrameCounts, Reclaimed, SocketId, XskGroup};
pub use socket::{BindMode, SocketConfig, SocketStats, XskSocket};
pub use umem::{Frame, FrameMut, Umem, UmemConfig};

/// Errors from setting up UMEM areas and sockets. Each message names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The UMEM configuration is not usable.
    #[error("invalid UMEM config: {0}")]
    InvalidConfig(&'static str),
    /// A system call failed; `op` names it.
    #[error("{op} failed: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The interface name is unknown in this network namespace.
    #[error("no such interface {0:?}")]
    NoSuchInterface(String),
    /// Zero-copy was required but the driver does not support it.
    #[error("zero-copy bind to {ifname} queue {queue} refused: {source}")]
    ZeroCopyUnsupported {
        ifname: String,
        queue: u32,
        #[source]
        source: std::io::Error,
    },
    /// Every socket of a group must be on a distinct (interface, queue).
    #[error("interface index {ifindex} queue {queue} already has a socket in this group")]
    DuplicateQueue { ifindex: u32, queue: u32 },
    /// The kernel refused to bind to a queue other than 0 with EINVAL: the interface has fewer
    /// queues (`real_num_rx_queues`/`real_num_tx_queues`) than that. Queue 0 always exists, so
    /// EINVAL there stays an [`XskError::Os`].
    #[error("{ifname} has no queue {queue}: {source}")]
    QueueUnavailable {
        ifname: String,
        queue: u32,
        #[source]
        source: std::io::Error,
    },
}

impl XskError {
    /// The errno behind a failed system call, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XskError::Os { source, .. }
            | XskError::ZeroCopyUnsupported { source, .. }
            | XskError::QueueUnavailable { source, .. } => source.raw_os_error(),
            XskError::InvalidConfig(_)
            | XskError::NoSuchInterface(_)
            | XskError::DuplicateQueue { .. } => None,
        }
    }

    pub(crate) fn last_os(op: &'static str) -> Self {
        XskError::Os {
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}

/// The hardware (MAC) address of an interface in the calling thread's network namespace.
pub fn hw_addr(name: &str) -> Result<[u8; 6], XskError> {
    sys::if_hwaddr(name)
}

/// Resolve an interface name to its index in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, XskError> {
    sys::if_nametoindex(name).ok_or_else(|| XskError::NoSuchInterface(name.to_owned()))
}

/// Turns TX checksum offload of `ifname` on or off in the calling thread's network namespace
/// (`ethtool -K <ifname> tx on|off`, through the legacy `ETHTOOL_STXCSUM` ioctl).
///
/// Why kxdp needs it: a veth "offloads" checksums by passing `CHECKSUM_PARTIAL` skbs along
/// unfinished. A frame that leaves through XDP/AF_XDP instead of the stack is never finished
/// by anyone, so pods' TCP/UDP would arrive with bad checksums. With the offload off on both
/// ends of a pod veth, the sender's stack writes the checksum itself. Needs CAP_NET_ADMIN.
pub fn set_tx_checksum_offload(ifname: &str, on: bool) -> Result<(), XskError> {
    sys::set_tx_checksum_offload(ifname, on)
}

/// Whether TX checksum offload of `ifname` is on, in the calling thread's network namespace.
pub fn tx_checksum_offload(ifname: &str) -> Result<bool, XskError> {
    sys::tx_checksum_offload(ifname)
}
