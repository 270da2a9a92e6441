//! The XDP "live frames" packet generator (what `xdp-trafficgen` does, without libbpf).
//!
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` runs an XDP program `repeat` times
//! over a frame and really performs the returned action; with `XDP_TX` each run transmits the
//! frame out of the `ingress_ifindex` interface through its `ndo_xdp_xmit`. On veth that hands
//! an `xdp_frame` straight to the peer's NAPI ring: no skb, no socket, about 5.8 Mpps from one
//! core here, so the generator outruns any node under test.
//!
//! The kernel copies the template into each page of its page pool once, when the page is first
//! allocated, and recycles pages without copying again (Documentation/bpf/bpf_prog_run.rst,
//! "live frames"). A receiver that rewrites the frame in place (the kernel's IP forwarding
//! decrements the TTL and rewrites both MACs in the skb that wraps the page) would hand the
//! rewritten bytes back to the generator, so the program writes the whole template into the
//! frame on every run: a few dozen stores, negligible next to the transmit.
//!
//! A veth peer accepts `ndo_xdp_xmit` frames only while its NAPI is enabled, i.e. while it has
//! an XDP program attached or GRO turned on; otherwise every frame is dropped.

use af_xdp::bpf::asm::{AluOp, Asm, Cond, Insn, Reg, Size};
use af_xdp::bpf::test_run::BPF_F_TEST_XDP_LIVE_FRAMES;
use af_xdp::bpf::{BpfError, Program, TestRun, XDP_DROP, XDP_TX, XdpMd};

/// The longest template: the stores use 16-bit offsets and the kernel takes frames up to a page
/// minus head- and tailroom; a standard MTU frame is all a benchmark needs.
pub const MAX_FRAME: usize = 1514;

/// Errors from preparing a live-frames generator.
#[derive(Debug, thiserror::Error)]
pub enum LiveGenError {
    /// The template is shorter than an Ethernet header or longer than [`MAX_FRAME`].
    #[error("frame template of {0} bytes: need 14..={MAX_FRAME}")]
    BadTemplate(usize),
    /// Assembling, loading or test-running the program failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// One frame template with its loaded program, ready to transmit copies of the template out of
/// one interface (in the network namespace of the thread that calls [`send`](Self::send)).
#[derive(Debug)]
pub struct LiveFrames {
    program: Program,
    frame: Vec<u8>,
    ctx: XdpMd,
}

impl LiveFrames {
    /// Loads the program for `frame`, to be sent out of `ifindex` as if it had arrived on
    /// `rx_queue` (any registered RX queue of the interface; 0 always is).
    pub fn new(frame: &[u8], ifindex: u32, rx_queue: u32) -> Result<Self, LiveGenError> {
        let insns = program(frame)?;
        let program = Program::load_xdp("kxdp_livegen", &insns, 0)?;
        Ok(LiveFrames {
            program,
            frame: frame.to_vec(),
            ctx: XdpMd::for_frame(frame.len(), ifindex, rx_queue),
        })
    }

    /// Transmits `repeat` copies; returns when the kernel has run them all (or a signal
    /// interrupted it: EINTR). Copies the peer could not take are dropped by the kernel and
    /// still count as sent: this is offered load.
    pub fn send(&self, repeat: u32) -> Result<(), BpfError> {
        self.program.test_run(TestRun {
            data_in: &self.frame,
            ctx_in: Some(self.ctx),
            repeat,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            ..TestRun::default()
        })?;
        Ok(())
    }
}

/// The generator program: if the frame is `frame.len()` bytes long, overwrite it with `frame`
/// and return `XDP_TX`; otherwise `XDP_DROP` (the bounds check is also what lets the verifier
/// accept the stores).
pub fn program(frame: &[u8]) -> Result<Vec<Insn>, LiveGenError> {
    if !(14..=MAX_FRAME).contains(&frame.len()) {
        return Err(LiveGenError::BadTemplate(frame.len()));
    }
    let mut a = Asm::new();
    let drop = a.label();
    // R1 = struct xdp_md *: data at offset 0, data_end at 4.
    a.emit(Insn::ldx(Size::W, Reg::R2, Reg::R1, 0))
        .emit(Insn::ldx(Size::W, Reg::R3, Reg::R1, 4))
        .emit(Insn::mov64_reg(Reg::R4, Reg::R2))
        .emit(Insn::alu64_imm(AluOp::Add, Reg::R4, len_i32(frame.len())))
        .jmp_reg_to(Cond::Gt, Reg::R4, Reg::R3, drop);
    // `st` stores its immediate in native byte order, so the bytes land as in `frame`.
    let mut off = 0usize;
    for chunk in frame.chunks(4) {
        let at = off_i16(off);
        match *chunk {
            [a0, a1, a2, a3] => {
                a.emit(Insn::st(
                    Size::W,
                    Reg::R2,
                    at,
                    i32::from_ne_bytes([a0, a1, a2, a3]),
                ));
            }
            [a0, a1, a2] => {
                a.emit(Insn::st(
                    Size::H,
                    Reg::R2,
                    at,
                    i32::from(u16::from_ne_bytes([a0, a1])),
                ))
                .emit(Insn::st(Size::B, Reg::R2, at + 2, i32::from(a2)));
            }
            [a0, a1] => {
                a.emit(Insn::st(
                    Size::H,
                    Reg::R2,
                    at,
                    i32::from(u16::from_ne_bytes([a0, a1])),
                ));
            }
            [a0] => {
                a.emit(Insn::st(Size::B, Reg::R2, at, i32::from(a0)));
            }
            _ => unreachable!("chunks(4) yields 1 to 4 bytes"),
        }
        off += chunk.len();
    }
    a.emit(Insn::mov64_imm(Reg::R0, XDP_TX as i32))
        .emit(Insn::exit())
        .bind(drop)
        .emit(Insn::mov64_imm(Reg::R0, XDP_DROP as i32))
        .emit(Insn::exit());
    Ok(a.finish().map_err(BpfError::from)?)
}

/// Frame lengths are at most [`MAX_FRAME`], checked by the caller.
fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// Offsets are below [`MAX_FRAME`], checked by the caller.
fn off_i16(off: usize) -> i16 {
    i16::try_from(off).unwrap_or(i16::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn templates_out_of_range_are_refused() {
        assert!(matches!(
            program(&[0; 13]),
            Err(LiveGenError::BadTemplate(13))
        ));
        assert!(matches!(
            program(&[0; MAX_FRAME + 1]),
            Err(LiveGenError::BadTemplate(_))
        ));
    }

    #[test]
    fn one_store_per_word_plus_the_tail() {
        // 5 (bounds check) + 15 words + 2 (tx) + 2 (drop).
        assert_eq!(program(&frame(60)).unwrap().len(), 24);
        // 61 bytes: 15 words and one byte store.
        assert_eq!(program(&frame(61)).unwrap().len(), 25);
        // 63 bytes: 15 words, a half-word and a byte.
        assert_eq!(program(&frame(63)).unwrap().len(), 26);
    }

    /// Loads the program and runs it (not live) over a frame of the right length but other
    /// contents: the output is the template. Needs root (BPF_PROG_LOAD).
    #[test]
    fn the_program_rewrites_the_whole_frame() {
        if !kxdp_tests::require_root("livegen::the_program_rewrites_the_whole_frame") {
            return;
        }
        for len in [15, 60, 61, 62, 63, 1514] {
            let template = frame(len);
            let insns = program(&template).unwrap();
            let prog = Program::load_xdp("kxdp_livegen_t", &insns, 0).unwrap();
            let mut out = vec![0u8; len];
            let res = prog
                .test_run(TestRun {
                    data_in: &vec![0xaa; len],
                    data_out: Some(&mut out),
                    ..TestRun::default()
                })
                .unwrap();
            assert_eq!(res.retval, XDP_TX, "len {len}");
            assert_eq!(out, template, "len {len}");
            // Too short a frame is dropped, untouched.
            let res = prog
                .test_run(TestRun {
                    data_in: &vec![0xaa; len - 1],
                    ..TestRun::default()
                })
                .unwrap();
            assert_eq!(res.retval, XDP_DROP, "len {len}");
        }
    }

    /// Live frames out of one end of a veth arrive at the other (GRO on there, so it has the
    /// NAPI that takes `ndo_xdp_xmit` frames). Needs root.
    #[test]
    fn live_frames_arrive_at_the_veth_peer() {
        if !kxdp_tests::require_root("livegen::live_frames_arrive_at_the_veth_peer") {
            return;
        }
        let a = kxdp_tests::Netns::new("livegen-a").unwrap();
        let b = kxdp_tests::Netns::new("livegen-b").unwrap();
        kxdp_tests::Veth::create(&a, "lg-a", &b, "lg-b").unwrap();
        b.exec(&["ethtool", "-K", "lg-b", "gro", "on"]).unwrap();
        let ifindex = a.ifindex("lg-a").unwrap();
        let before = b.link_stats("lg-b").unwrap().rx_packets;
        let mut template = frame(60);
        template[..6].copy_from_slice(&b.mac("lg-b").unwrap());
        let sent = a
            .run(|| {
                let g = LiveFrames::new(&template, ifindex, 0).unwrap();
                g.send(10_000)
            })
            .unwrap();
        if let Err(e) = &sent
            && e.errno() == Some(libc::EPERM)
        {
            // Some kernels (this VM's, at times) refuse live frames outright, even to root.
            eprintln!("skipped: this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES: {e}");
            return;
        }
        sent.unwrap();
        let got = b.link_stats("lg-b").unwrap().rx_packets - before;
        // The peer's ring can overflow in a burst; most must arrive.
        assert!(got >= 5_000, "{got} of 10000 arrived");
    }
}
