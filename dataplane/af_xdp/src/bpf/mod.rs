//! XDP programs without a BPF toolchain: we assemble eBPF in Rust and load it
//! with the bpf(2) syscall directly (no clang, no libbpf).
//!
//! - [`asm`]: instruction encoding and a label-resolving assembler.
//! - [`sys`]: bpf(2) wrappers: maps ([`Map`]), program load ([`Program`]).
//! - [`link`]: attaching an XDP program to an interface through a bpf_link
//!   ([`XdpAttachment`]); the kernel detaches it when the link's last fd closes,
//!   so a crashed process leaves no program behind.
//! - [`test_run`]: `BPF_PROG_TEST_RUN`, for tests and for the "live frames"
//!   packet generator.
//! - [`steer`]: the steering program that sends the frames the dataplane owns
//!   to its AF_XDP sockets and passes everything else to the kernel.

pub mod asm;
pub mod link;
pub mod steer;
pub mod sys;
pub mod test_run;

#[cfg(test)]
pub(crate) mod test_support;

use std::io;

pub use asm::AsmError;
pub use link::{XdpAttachment, XdpMode};
pub use steer::{DstKind, SteerMode, SteeringConfig, SteeringProgram};
pub use sys::{Map, MapSpec, MapType, ProgInfo, Program, UpdateFlags};
pub use test_run::{TestRun, TestRunOutput, XdpMd};

/// XDP action: error in the program; the frame is dropped and a tracepoint fires.
pub const XDP_ABORTED: u32 = 0;
/// XDP action: drop the frame.
pub const XDP_DROP: u32 = 1;
/// XDP action: hand the frame to the kernel network stack.
pub const XDP_PASS: u32 = 2;
/// XDP action: transmit the frame back out of the interface it arrived on.
pub const XDP_TX: u32 = 3;
/// XDP action: redirect (here: to an AF_XDP socket through an XSKMAP).
pub const XDP_REDIRECT: u32 = 4;

/// Errors from assembling, loading, attaching and driving BPF programs and maps.
/// Kernel failures carry the `io::Error` built from errno, so the message ends
/// in "(os error N)".
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// `BPF_MAP_CREATE` failed (EPERM: not root / no CAP_BPF; EINVAL: bad sizes
    /// or flags for the map type).
    #[error("bpf(BPF_MAP_CREATE) for map `{name}` failed: {source}")]
    MapCreate {
        /// The map's name.
        name: String,
        /// The errno.
        source: io::Error,
    },
    /// A map element command (`BPF_MAP_UPDATE_ELEM`, `..._LOOKUP_ELEM`,
    /// `..._DELETE_ELEM`) failed.
    #[error("bpf({op}) on map `{map}` failed: {source}")]
    MapElem {
        /// The command.
        op: &'static str,
        /// The map's name.
        map: String,
        /// The errno (E2BIG: map full or index out of range).
        source: io::Error,
    },
    /// A key or value buffer does not have the map's key or value size.
    #[error("map `{map}`: {what} is {got} bytes but the map's {what} size is {expected}")]
    BadSize {
        /// The map's name.
        map: String,
        /// `"key"` or `"value"`.
        what: &'static str,
        /// Length of the buffer passed in.
        got: usize,
        /// Size the map was created with.
        expected: u32,
    },
    /// `BPF_PROG_LOAD` failed; for a verifier rejection (EACCES/EINVAL) `log`
    /// holds the verifier's explanation, ending at the offending instruction.
    #[error(
        "bpf(BPF_PROG_LOAD) for program `{name}` failed: {source}\n--- verifier log ---\n{log}"
    )]
    ProgLoad {
        /// The program's name.
        name: String,
        /// The errno of the first load attempt.
        source: io::Error,
        /// Verifier log (level 1) from a second attempt; empty if none came back.
        log: String,
    },
    /// `BPF_LINK_CREATE` of an XDP program failed (EOPNOTSUPP: no native XDP in
    /// the driver; EBUSY/EEXIST: another XDP program is attached; EINVAL: no
    /// such ifindex in the calling thread's network namespace).
    #[error("attaching XDP program to ifindex {ifindex} in {mode} mode failed: {source}")]
    Attach {
        /// The interface.
        ifindex: u32,
        /// The mode tried.
        mode: XdpMode,
        /// The errno.
        source: io::Error,
    },
    /// [`XdpMode::Auto`] failed in both modes.
    #[error(
        "attaching XDP program to ifindex {ifindex} failed in native mode ({native}) \
         and in generic mode ({generic})"
    )]
    AttachAuto {
        /// The interface.
        ifindex: u32,
        /// The errno of the native attempt.
        native: io::Error,
        /// The errno of the generic attempt.
        generic: io::Error,
    },
    /// `BPF_PROG_TEST_RUN` failed (EINVAL: frame shorter than 14 bytes or
    /// longer than a page minus head/tailroom, or an inconsistent `xdp_md`;
    /// ENODEV: no such ingress ifindex).
    #[error("bpf(BPF_PROG_TEST_RUN) failed: {source}")]
    TestRun {
        /// The errno.
        source: io::Error,
    },
    /// `BPF_OBJ_GET_INFO_BY_FD` failed.
    #[error("bpf(BPF_OBJ_GET_INFO_BY_FD) failed: {source}")]
    ObjInfo {
        /// The errno.
        source: io::Error,
    },
    /// The program could not be assembled (a bug in the program's generator).
    #[error("assembling BPF program failed: {0}")]
    Asm(#[from] AsmError),
    /// An argument was rejected before reaching the kernel.
    #[error("invalid {what}: {why}")]
    InvalidArgument {
        /// What was invalid.
        what: &'static str,
        /// Why.
        why: String,
    },
}

impl BpfError {
    /// The errno behind a kernel failure (for [`BpfError::AttachAuto`], the
    /// native attempt's), or `None` for errors raised in userspace.
    pub fn errno(&self) -> Option<i32> {
        match self {
            BpfError::MapCreate { source, .. }
            | BpfError::MapElem { source, .. }
            | BpfError::ProgLoad { source, .. }
            | BpfError::Attach { source, .. }
            | BpfError::TestRun { source }
            | BpfError::ObjInfo { source } => source.raw_os_error(),
            BpfError::AttachAuto { native, .. } => native.raw_os_error(),
            BpfError::BadSize { .. } | BpfError::Asm(_) | BpfError::InvalidArgument { .. } => None,
        }
    }
}
