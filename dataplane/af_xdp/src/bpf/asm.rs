//! A tiny eBPF assembler: instruction encoding plus a label-resolving builder.
//!
//! Encoding follows `include/uapi/linux/bpf.h` (`struct bpf_insn`) and the
//! `BPF_*` instruction macros of `include/linux/filter.h`. Only what our own
//! programs need is here; [`Insn::new`] reaches any other opcode.

use std::fmt;

/// Instruction classes (`code & 0x07`).
mod class {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
}

/// Operand source (`code & 0x08`) for ALU and JMP classes.
mod source {
    /// Immediate operand (`BPF_K`).
    pub const K: u8 = 0x00;
    /// Register operand (`BPF_X`).
    pub const X: u8 = 0x08;
}

/// Addressing modes (`code & 0xe0`) for load/store classes.
mod mode {
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
}

/// `BPF_CALL` and `BPF_EXIT` opcodes of the JMP class.
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;

/// `src_reg` of the first half of a `lddw` whose immediate is a map fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;

/// The eleven eBPF registers. R0 holds return values, R1–R5 are helper
/// arguments (clobbered by calls), R6–R9 are callee-saved, R10 is the
/// read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// Memory access width (`BPF_B`/`BPF_H`/`BPF_W`/`BPF_DW`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    DW,
}

impl Size {
    const fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }
}

/// ALU operations (`code & 0xf0` of the ALU/ALU64 classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Xor,
    Mov,
    Arsh,
}

impl AluOp {
    const fn bits(self) -> u8 {
        match self {
            AluOp::Add => 0x00,
            AluOp::Sub => 0x10,
            AluOp::Mul => 0x20,
            AluOp::Div => 0x30,
            AluOp::Or => 0x40,
            AluOp::And => 0x50,
            AluOp::Lsh => 0x60,
            AluOp::Rsh => 0x70,
            AluOp::Mod => 0x90,
            AluOp::Xor => 0xa0,
            AluOp::Mov => 0xb0,
            AluOp::Arsh => 0xc0,
        }
    }
}

/// Conditional jump comparisons (64-bit, `BPF_JMP` class). `S*` are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `==`
    Eq,
    /// `>` unsigned
    Gt,
    /// `>=` unsigned
    Ge,
    /// `dst & src != 0`
    Set,
    /// `!=`
    Ne,
    /// `>` signed
    SGt,
    /// `>=` signed
    SGe,
    /// `<` unsigned
    Lt,
    /// `<=` unsigned
    Le,
    /// `<` signed
    SLt,
    /// `<=` signed
    SLe,
}

impl Cond {
    const fn bits(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::Gt => 0x20,
            Cond::Ge => 0x30,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
            Cond::SGt => 0x60,
            Cond::SGe => 0x70,
            Cond::Lt => 0xa0,
            Cond::Le => 0xb0,
            Cond::SLt => 0xc0,
            Cond::SLe => 0xd0,
        }
    }
}

/// One eBPF instruction, laid out exactly as the kernel's `struct bpf_insn`
/// (8 bytes: opcode, dst/src register nibbles, 16-bit offset, 32-bit
/// immediate), so a `&[Insn]` can be handed to `BPF_PROG_LOAD` as is.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub code: u8,
    /// `dst_reg:4, src_reg:4` bitfield, in the compiler's bitfield order.
    pub regs: u8,
    /// Signed offset (memory displacement or jump distance in instructions).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

// The kernel reads the program as an array of 8-byte `struct bpf_insn`.
const _: () = assert!(std::mem::size_of::<Insn>() == 8);

/// Packs the register bitfield. C bitfields are allocated from the least
/// significant bit on little-endian targets and from the most significant bit
/// on big-endian ones, and `struct bpf_insn` declares `dst_reg` first.
const fn pack_regs(dst: Reg, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        (dst as u8) | (src << 4)
    } else {
        ((dst as u8) << 4) | src
    }
}

impl Insn {
    /// A raw instruction; `src` is a number rather than a [`Reg`] because
    /// pseudo instructions put other values there.
    pub const fn new(code: u8, dst: Reg, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: pack_regs(dst, src),
            off,
            imm,
        }
    }

    /// `dst = dst <op> imm` on 64 bits (`imm` is sign-extended).
    pub const fn alu64_imm(op: AluOp, dst: Reg, imm: i32) -> Self {
        Self::new(class::ALU64 | op.bits() | source::K, dst, 0, 0, imm)
    }

    /// `dst = dst <op> src` on 64 bits.
    pub const fn alu64_reg(op: AluOp, dst: Reg, src: Reg) -> Self {
        Self::new(class::ALU64 | op.bits() | source::X, dst, src as u8, 0, 0)
    }

    /// `dst = (u32)dst <op> imm`; the upper 32 bits of `dst` become zero.
    pub const fn alu32_imm(op: AluOp, dst: Reg, imm: i32) -> Self {
        Self::new(class::ALU | op.bits() | source::K, dst, 0, 0, imm)
    }

    /// `dst = (u32)dst <op> (u32)src`; the upper 32 bits of `dst` become zero.
    pub const fn alu32_reg(op: AluOp, dst: Reg, src: Reg) -> Self {
        Self::new(class::ALU | op.bits() | source::X, dst, src as u8, 0, 0)
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub const fn mov64_imm(dst: Reg, imm: i32) -> Self {
        Self::alu64_imm(AluOp::Mov, dst, imm)
    }

    /// `dst = src`.
    pub const fn mov64_reg(dst: Reg, src: Reg) -> Self {
        Self::alu64_reg(AluOp::Mov, dst, src)
    }

    /// `dst = *(size *)(src + off)`, zero-extended.
    pub const fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(class::LDX | size.bits() | mode::MEM, dst, src as u8, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn stx(size: Size, dst: Reg, off: i16, src: Reg) -> Self {
        Self::new(class::STX | size.bits() | mode::MEM, dst, src as u8, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Self {
        Self::new(class::ST | size.bits() | mode::MEM, dst, 0, off, imm)
    }

    /// `dst = imm64`: the two-slot `lddw` instruction.
    pub const fn ld_imm64(dst: Reg, imm: u64) -> [Self; 2] {
        Self::lddw(dst, 0, imm)
    }

    /// `dst = &map` for the map behind file descriptor `fd`: a `lddw` with
    /// `src_reg = BPF_PSEUDO_MAP_FD`, which the verifier rewrites into the
    /// map's kernel address (`BPF_LD_MAP_FD` in `filter.h`).
    pub const fn ld_map_fd(dst: Reg, fd: i32) -> [Self; 2] {
        // The fd is stored in the low half as is; `as u32` keeps its bits.
        Self::lddw(dst, BPF_PSEUDO_MAP_FD, fd as u32 as u64)
    }

    const fn lddw(dst: Reg, src: u8, imm: u64) -> [Self; 2] {
        [
            // Truncation intended: the low and high halves of imm.
            Self::new(
                class::LD | Size::DW.bits() | mode::IMM,
                dst,
                src,
                0,
                imm as u32 as i32,
            ),
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: (imm >> 32) as u32 as i32,
            },
        ]
    }

    /// Unconditional jump by `off` instructions (relative to the next one).
    pub const fn ja(off: i16) -> Self {
        Self::new(class::JMP, Reg::R0, 0, off, 0)
    }

    /// `if dst <cond> imm goto +off` (64-bit compare, `imm` sign-extended).
    pub const fn jmp_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(class::JMP | cond.bits() | source::K, dst, 0, off, imm)
    }

    /// `if dst <cond> src goto +off` (64-bit compare).
    pub const fn jmp_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(class::JMP | cond.bits() | source::X, dst, src as u8, off, 0)
    }

    /// Call helper number `helper` (see `enum bpf_func_id`); arguments in
    /// R1–R5, result in R0, R1–R5 clobbered.
    pub const fn call(helper: i32) -> Self {
        Self::new(class::JMP | OP_CALL, Reg::R0, 0, 0, helper)
    }

    /// Return R0 to the caller.
    pub const fn exit() -> Self {
        Self::new(class::JMP | OP_EXIT, Reg::R0, 0, 0, 0)
    }

    /// Whether this is a jump whose `off` is a relative instruction offset
    /// (everything in the JMP class except call and exit).
    const fn is_relative_jump(&self) -> bool {
        self.code & 0x07 == class::JMP && self.code & 0xf0 != OP_CALL && self.code & 0xf0 != OP_EXIT
    }

    /// The instruction's bytes as the kernel reads them on this machine.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = self.regs;
        out[2..4].copy_from_slice(&self.off.to_ne_bytes());
        out[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        out
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, regs: {:#04x}, off: {}, imm: {} }}",
            self.code, self.regs, self.off, self.imm
        )
    }
}

/// A jump target inside one [`Asm`]; create with [`Asm::label`], place with
/// [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Why [`Asm::finish`] could not produce a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A jump targets a label that was never bound (or belongs to another `Asm`).
    #[error("label {0} is used by a jump but never bound")]
    UnboundLabel(usize),
    /// `bind` was called twice for the same label.
    #[error("label {0} is bound twice")]
    LabelBoundTwice(usize),
    /// A label is bound after the last instruction, so a jump to it would
    /// leave the program.
    #[error("label {0} is bound past the last instruction")]
    LabelPastEnd(usize),
    /// The distance from a jump to its target does not fit the 16-bit offset.
    #[error("jump at instruction {at} to instruction {target} does not fit a 16-bit offset")]
    JumpOutOfRange {
        /// Index of the jump instruction.
        at: usize,
        /// Index of the target instruction.
        target: usize,
    },
}

/// Program builder: emit instructions in order, jump to labels, and let
/// [`finish`](Asm::finish) compute the offsets.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Instruction index each label is bound to, by label number.
    labels: Vec<Option<usize>>,
    /// (jump instruction index, target label) pairs to patch in `finish`.
    fixups: Vec<(usize, Label)>,
    /// First misuse seen while building, reported by `finish` so that the
    /// builder methods can chain without returning `Result`.
    deferred: Option<AsmError>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction emitted.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        match self.labels.get_mut(label.0) {
            Some(slot @ None) => *slot = Some(self.insns.len()),
            Some(Some(_)) => self.defer(AsmError::LabelBoundTwice(label.0)),
            None => self.defer(AsmError::UnboundLabel(label.0)),
        }
        self
    }

    /// Appends one instruction.
    pub fn emit(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }

    /// Appends several instructions (e.g. the two halves of a `lddw`).
    pub fn emit_all(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Self {
        self.insns.extend(insns);
        self
    }

    /// `goto label`.
    pub fn ja_to(&mut self, label: Label) -> &mut Self {
        self.jump(Insn::ja(0), label)
    }

    /// `if dst <cond> imm goto label`.
    pub fn jmp_imm_to(&mut self, cond: Cond, dst: Reg, imm: i32, label: Label) -> &mut Self {
        self.jump(Insn::jmp_imm(cond, dst, imm, 0), label)
    }

    /// `if dst <cond> src goto label`.
    pub fn jmp_reg_to(&mut self, cond: Cond, dst: Reg, src: Reg, label: Label) -> &mut Self {
        self.jump(Insn::jmp_reg(cond, dst, src, 0), label)
    }

    /// Instructions emitted so far (a `lddw` counts as two).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether nothing has been emitted.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Resolves every label reference and returns the program.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        if let Some(err) = self.deferred {
            return Err(err);
        }
        for (at, label) in &self.fixups {
            let target = self
                .labels
                .get(label.0)
                .copied()
                .flatten()
                .ok_or(AsmError::UnboundLabel(label.0))?;
            if target >= self.insns.len() {
                return Err(AsmError::LabelPastEnd(label.0));
            }
            // Jump offsets count from the instruction after the jump.
            let off = i16::try_from(target as i64 - (*at as i64 + 1))
                .map_err(|_| AsmError::JumpOutOfRange { at: *at, target })?;
            debug_assert!(self.insns[*at].is_relative_jump());
            self.insns[*at].off = off;
        }
        Ok(self.insns)
    }

    fn jump(&mut self, insn: Insn, label: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.emit(insn)
    }

    fn defer(&mut self, err: AsmError) {
        self.deferred.get_or_insert(err);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn bytes(insns: &[Insn]) -> Vec<u8> {
        insns.iter().flat_map(|i| i.to_bytes()).collect()
    }

    /// Encodings as printed by `llvm-objdump -d` for clang-compiled XDP
    /// programs (little-endian), e.g. `b7 00 00 00 02 00 00 00  r0 = 2`.
    #[test]
    #[cfg(target_endian = "little")]
    fn encodings_match_llvm_objdump() {
        let cases: &[(Insn, [u8; 8], &str)] = &[
            (
                Insn::mov64_imm(Reg::R0, 2),
                [0xb7, 0x00, 0, 0, 2, 0, 0, 0],
                "r0 = 2",
            ),
            (
                Insn::mov64_reg(Reg::R6, Reg::R1),
                [0xbf, 0x16, 0, 0, 0, 0, 0, 0],
                "r6 = r1",
            ),
            (Insn::exit(), [0x95, 0, 0, 0, 0, 0, 0, 0], "exit"),
            (Insn::call(1), [0x85, 0, 0, 0, 1, 0, 0, 0], "call 1"),
            (Insn::call(51), [0x85, 0, 0, 0, 0x33, 0, 0, 0], "call 51"),
            (
                Insn::ldx(Size::W, Reg::R2, Reg::R6, 12),
                [0x61, 0x62, 0x0c, 0, 0, 0, 0, 0],
                "r2 = *(u32 *)(r6 + 12)",
            ),
            (
                Insn::ldx(Size::H, Reg::R1, Reg::R7, 12),
                [0x69, 0x71, 0x0c, 0, 0, 0, 0, 0],
                "r1 = *(u16 *)(r7 + 12)",
            ),
            (
                Insn::ldx(Size::B, Reg::R1, Reg::R7, 23),
                [0x71, 0x71, 0x17, 0, 0, 0, 0, 0],
                "r1 = *(u8 *)(r7 + 23)",
            ),
            (
                Insn::ldx(Size::DW, Reg::R1, Reg::R10, -8),
                [0x79, 0xa1, 0xf8, 0xff, 0, 0, 0, 0],
                "r1 = *(u64 *)(r10 - 8)",
            ),
            (
                Insn::stx(Size::W, Reg::R10, -4, Reg::R2),
                [0x63, 0x2a, 0xfc, 0xff, 0, 0, 0, 0],
                "*(u32 *)(r10 - 4) = r2",
            ),
            (
                Insn::stx(Size::H, Reg::R10, -18, Reg::R2),
                [0x6b, 0x2a, 0xee, 0xff, 0, 0, 0, 0],
                "*(u16 *)(r10 - 18) = r2",
            ),
            (
                Insn::stx(Size::B, Reg::R10, -20, Reg::R1),
                [0x73, 0x1a, 0xec, 0xff, 0, 0, 0, 0],
                "*(u8 *)(r10 - 20) = r1",
            ),
            (
                Insn::stx(Size::DW, Reg::R10, -8, Reg::R1),
                [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0],
                "*(u64 *)(r10 - 8) = r1",
            ),
            (
                Insn::st(Size::W, Reg::R10, -16, 32),
                [0x62, 0x0a, 0xf0, 0xff, 0x20, 0, 0, 0],
                "*(u32 *)(r10 - 16) = 32",
            ),
            (
                Insn::st(Size::B, Reg::R10, -19, 0),
                [0x72, 0x0a, 0xed, 0xff, 0, 0, 0, 0],
                "*(u8 *)(r10 - 19) = 0",
            ),
            (
                Insn::alu64_imm(AluOp::Add, Reg::R2, -4),
                [0x07, 0x02, 0, 0, 0xfc, 0xff, 0xff, 0xff],
                "r2 += -4",
            ),
            (
                Insn::alu64_reg(AluOp::Add, Reg::R1, Reg::R2),
                [0x0f, 0x21, 0, 0, 0, 0, 0, 0],
                "r1 += r2",
            ),
            (
                Insn::alu64_imm(AluOp::And, Reg::R1, 0xff3f),
                [0x57, 0x01, 0, 0, 0x3f, 0xff, 0, 0],
                "r1 &= 65343",
            ),
            (
                Insn::alu64_imm(AluOp::Or, Reg::R1, 1),
                [0x47, 0x01, 0, 0, 1, 0, 0, 0],
                "r1 |= 1",
            ),
            (
                Insn::alu64_imm(AluOp::Lsh, Reg::R1, 32),
                [0x67, 0x01, 0, 0, 0x20, 0, 0, 0],
                "r1 <<= 32",
            ),
            (
                Insn::alu64_imm(AluOp::Rsh, Reg::R1, 32),
                [0x77, 0x01, 0, 0, 0x20, 0, 0, 0],
                "r1 >>= 32",
            ),
            (
                Insn::alu64_reg(AluOp::Rsh, Reg::R1, Reg::R3),
                [0x7f, 0x31, 0, 0, 0, 0, 0, 0],
                "r1 >>= r3",
            ),
            (
                Insn::alu32_reg(AluOp::Add, Reg::R2, Reg::R1),
                [0x0c, 0x12, 0, 0, 0, 0, 0, 0],
                "w2 += w1",
            ),
            (
                Insn::alu32_imm(AluOp::Mov, Reg::R0, 2),
                [0xb4, 0x00, 0, 0, 2, 0, 0, 0],
                "w0 = 2",
            ),
            (Insn::ja(3), [0x05, 0, 3, 0, 0, 0, 0, 0], "goto +3"),
            (
                Insn::jmp_imm(Cond::Eq, Reg::R0, 0, 21),
                [0x15, 0x00, 0x15, 0, 0, 0, 0, 0],
                "if r0 == 0 goto +21",
            ),
            (
                Insn::jmp_imm(Cond::Ne, Reg::R1, 8, 5),
                [0x55, 0x01, 5, 0, 8, 0, 0, 0],
                "if r1 != 8 goto +5",
            ),
            (
                Insn::jmp_reg(Cond::Gt, Reg::R1, Reg::R8, 7),
                [0x2d, 0x81, 7, 0, 0, 0, 0, 0],
                "if r1 > r8 goto +7",
            ),
            (
                Insn::jmp_imm(Cond::Gt, Reg::R1, 3, -2),
                [0x25, 0x01, 0xfe, 0xff, 3, 0, 0, 0],
                "if r1 > 3 goto -2",
            ),
            (
                Insn::jmp_imm(Cond::Ge, Reg::R1, 3, 1),
                [0x35, 0x01, 1, 0, 3, 0, 0, 0],
                "if r1 >= 3 goto +1",
            ),
            (
                Insn::jmp_imm(Cond::Lt, Reg::R1, 3, 1),
                [0xa5, 0x01, 1, 0, 3, 0, 0, 0],
                "if r1 < 3 goto +1",
            ),
            (
                Insn::jmp_reg(Cond::Le, Reg::R1, Reg::R2, 1),
                [0xbd, 0x21, 1, 0, 0, 0, 0, 0],
                "if r1 <= r2 goto +1",
            ),
            (
                Insn::jmp_reg(Cond::Ge, Reg::R1, Reg::R2, 1),
                [0x3d, 0x21, 1, 0, 0, 0, 0, 0],
                "if r1 >= r2 goto +1",
            ),
            (
                Insn::jmp_reg(Cond::Lt, Reg::R1, Reg::R2, 1),
                [0xad, 0x21, 1, 0, 0, 0, 0, 0],
                "if r1 < r2 goto +1",
            ),
            (
                Insn::jmp_reg(Cond::Eq, Reg::R1, Reg::R2, 1),
                [0x1d, 0x21, 1, 0, 0, 0, 0, 0],
                "if r1 == r2 goto +1",
            ),
            (
                Insn::jmp_reg(Cond::Ne, Reg::R1, Reg::R2, 1),
                [0x5d, 0x21, 1, 0, 0, 0, 0, 0],
                "if r1 != r2 goto +1",
            ),
            (
                Insn::jmp_imm(Cond::Le, Reg::R1, 3, 1),
                [0xb5, 0x01, 1, 0, 3, 0, 0, 0],
                "if r1 <= 3 goto +1",
            ),
            (
                Insn::jmp_imm(Cond::Set, Reg::R1, 0x20, 1),
                [0x45, 0x01, 1, 0, 0x20, 0, 0, 0],
                "if r1 & 32 goto +1",
            ),
        ];
        for (insn, want, text) in cases {
            assert_eq!(insn.to_bytes(), *want, "{text}");
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn lddw_encodings() {
        // `r1 = map_fd 5` (libbpf relocation) and `r1 = 0x1122334455667788 ll`.
        assert_eq!(
            bytes(&Insn::ld_map_fd(Reg::R1, 5)),
            [0x18, 0x11, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(&Insn::ld_imm64(Reg::R1, 0x1122_3344_5566_7788)),
            [
                0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11
            ]
        );
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let top = a.label();
        let out = a.label();
        a.bind(top)
            .emit(Insn::mov64_imm(Reg::R0, 0)) // 0
            .jmp_imm_to(Cond::Eq, Reg::R0, 1, out) // 1 -> 4: off +2
            .emit_all(Insn::ld_imm64(Reg::R1, 7)) // 2, 3
            .bind(out)
            .emit(Insn::exit()) // 4
            .jmp_imm_to(Cond::Ne, Reg::R0, 0, top) // 5 -> 0: off -6
            .ja_to(out); // 6 -> 4: off -3
        let prog = a.finish().unwrap();
        assert_eq!(prog.len(), 7);
        assert_eq!(prog[1].off, 2);
        assert_eq!(prog[5].off, -6);
        assert_eq!(prog[6].off, -3);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja_to(l).emit(Insn::exit());
        assert_eq!(a.finish(), Err(AsmError::UnboundLabel(0)));
    }

    #[test]
    fn label_bound_twice_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.bind(l).emit(Insn::exit()).bind(l).emit(Insn::exit());
        assert_eq!(a.finish(), Err(AsmError::LabelBoundTwice(0)));
    }

    #[test]
    fn label_past_end_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja_to(l).bind(l);
        assert_eq!(a.finish(), Err(AsmError::LabelPastEnd(0)));
    }

    #[test]
    fn out_of_range_jump_is_an_error() {
        let mut a = Asm::new();
        let far = a.label();
        a.ja_to(far);
        for _ in 0..40_000 {
            a.emit(Insn::mov64_imm(Reg::R0, 0));
        }
        a.bind(far).emit(Insn::exit());
        assert_eq!(
            a.finish(),
            Err(AsmError::JumpOutOfRange {
                at: 0,
                target: 40_001
            })
        );

        // The largest forward distance that fits still assembles.
        let mut a = Asm::new();
        let far = a.label();
        a.ja_to(far);
        for _ in 0..i16::MAX {
            a.emit(Insn::mov64_imm(Reg::R0, 0));
        }
        a.bind(far).emit(Insn::exit());
        assert_eq!(a.finish().unwrap()[0].off, i16::MAX);
    }
}
