//! `BPF_PROG_TEST_RUN` for XDP programs: run a program over a frame without
//! a NIC (unit tests), or, with [`BPF_F_TEST_XDP_LIVE_FRAMES`], have the kernel
//! run it `repeat` times and actually transmit/redirect the results (the
//! packet generator of `xdp-trafficgen`).

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use super::BpfError;
use super::sys::{Program, bpf, cmd};

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: really perform XDP_TX/XDP_REDIRECT for each
/// run instead of reporting the action (needs `ctx_in`, forbids `data_out`).
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct xdp_md` as passed in `ctx_in`. For test runs the kernel requires
/// `data == 0`, `data_meta == 0`, `data_end == frame length` and
/// `egress_ifindex == 0`; `ingress_ifindex`/`rx_queue_index` must name a
/// registered RX queue of an interface in the caller's network namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpMd {
    /// Offset of the frame start (0).
    pub data: u32,
    /// Offset of the frame end (the frame length).
    pub data_end: u32,
    /// Offset of the metadata start (0).
    pub data_meta: u32,
    /// Interface the frame "arrived" on (0: none).
    pub ingress_ifindex: u32,
    /// RX queue it "arrived" on.
    pub rx_queue_index: u32,
    /// Must be 0.
    pub egress_ifindex: u32,
}

impl XdpMd {
    /// The context for a `len`-byte frame arriving on `ifindex`, `rx_queue`.
    pub fn for_frame(len: usize, ingress_ifindex: u32, rx_queue_index: u32) -> Self {
        XdpMd {
            // Frames longer than u32 are refused by the kernel anyway.
            data_end: u32::try_from(len).unwrap_or(u32::MAX),
            ingress_ifindex,
            rx_queue_index,
            ..Default::default()
        }
    }
}

/// One `BPF_PROG_TEST_RUN` invocation.
#[derive(Debug, Default)]
pub struct TestRun<'a> {
    /// The frame (14 bytes up to a page minus XDP head- and tailroom).
    pub data_in: &'a [u8],
    /// Where to copy the frame after the run (ENOSPC if too small).
    pub data_out: Option<&'a mut [u8]>,
    /// The `xdp_md` context; `None` runs without an ingress interface.
    pub ctx_in: Option<XdpMd>,
    /// Runs to perform (0 means 1); the reported duration is the mean.
    pub repeat: u32,
    /// `BPF_F_TEST_*` flags, e.g. [`BPF_F_TEST_XDP_LIVE_FRAMES`].
    pub flags: u32,
    /// Live-frames mode: frames per batch (0: kernel default, 64).
    pub batch_size: u32,
}

/// What a test run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (an XDP action).
    pub retval: u32,
    /// Mean nanoseconds per run.
    pub duration_ns: u32,
    /// Length of the frame after the run (copied into `data_out` if given).
    pub data_size_out: u32,
}

/// `union bpf_attr` member for `BPF_PROG_TEST_RUN`, up to `batch_size`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const _: () = assert!(size_of::<TestRunAttr>() == 80);
const _: () = assert!(size_of::<XdpMd>() == 24);

impl Program {
    /// Runs this (XDP) program with `BPF_PROG_TEST_RUN`.
    pub fn test_run(&self, run: TestRun<'_>) -> Result<TestRunOutput, BpfError> {
        let too_long = |what: &'static str, len: usize| BpfError::InvalidArgument {
            what,
            why: format!("{len} bytes does not fit the kernel's u32 length"),
        };
        let ctx = run.ctx_in;
        let (data_out, data_size_out) = match run.data_out {
            Some(buf) => (
                buf.as_mut_ptr() as u64,
                u32::try_from(buf.len()).map_err(|_| too_long("data_out", buf.len()))?,
            ),
            None => (0, 0),
        };
        let mut attr = TestRunAttr {
            prog_fd: self.as_fd().as_raw_fd() as u32,
            data_size_in: u32::try_from(run.data_in.len())
                .map_err(|_| too_long("data_in", run.data_in.len()))?,
            data_size_out,
            data_in: run.data_in.as_ptr() as u64,
            data_out,
            repeat: run.repeat,
            ctx_size_in: if ctx.is_some() {
                size_of::<XdpMd>() as u32
            } else {
                0
            },
            ctx_in: ctx.as_ref().map_or(0, |c| c as *const XdpMd as u64),
            flags: run.flags,
            batch_size: run.batch_size,
            ..Default::default()
        };
        // SAFETY: TestRunAttr is the BPF_PROG_TEST_RUN member with its padding
        // field zeroed. `data_in` is a live slice of `data_size_in` bytes;
        // `data_out` is 0 or an exclusively borrowed slice of `data_size_out`
        // bytes, the most the kernel writes; `ctx_in` is 0 (size 0) or points
        // to the local `ctx`, a live `xdp_md` of `ctx_size_in` bytes; ctx_out
        // is 0. All outlive the call.
        unsafe { bpf(cmd::PROG_TEST_RUN, &mut attr) }
            .map_err(|source| BpfError::TestRun { source })?;
        Ok(TestRunOutput {
            retval: attr.retval,
            duration_ns: attr.duration,
            data_size_out: attr.data_size_out,
        })
    }
}
