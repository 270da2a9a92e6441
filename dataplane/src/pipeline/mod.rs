//! The packet pipeline: a batch of frames goes through stages, each a function over the whole
//! batch (VPP's vector model). A stage handles the packets addressed to it and gives each a
//! next step: another stage, or a final [`Verdict`]. The order of stages is written once, in
//! [`Pipeline::run`], where a reader sees the whole path.

pub mod ingress;
pub mod ip4_forward;

use af_xdp::{Frame, Umem};

use crate::tables::Tables;
use crate::verdict::{PortId, Verdict};

/// Frames per RX burst and per pipeline run.
pub const BATCH_SIZE: usize = 64;

/// Where a packet goes next inside the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// IPv4 routing and forwarding.
    Ip4Forward,
    /// Finished, with this verdict.
    Done(Verdict),
}

/// Per-packet state carried between stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub next: Next,
    /// Offset of the L3 header in the frame's data.
    pub l3: u16,
}

impl Default for PacketMeta {
    fn default() -> Self {
        PacketMeta {
            next: Next::Done(Verdict::ToHost),
            l3: 0,
        }
    }
}

/// A burst of frames received on one port, with their per-packet state. Allocated once per
/// worker; `frames` never grows past [`BATCH_SIZE`].
#[derive(Debug)]
pub struct Batch {
    pub frames: Vec<Frame>,
    pub meta: [PacketMeta; BATCH_SIZE],
    pub in_port: PortId,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            frames: Vec::with_capacity(BATCH_SIZE),
            meta: [PacketMeta::default(); BATCH_SIZE],
            in_port: PortId(0),
        }
    }
}

impl Batch {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// The verdict of a packet that went through every stage.
#[inline]
pub fn final_verdict(meta: PacketMeta) -> Verdict {
    match meta.next {
        Next::Done(v) => v,
        // A stage left a packet without a verdict: a bug, counted rather than panicking.
        Next::Ip4Forward => Verdict::Drop(crate::verdict::DropReason::NoRoute),
    }
}

/// The stages of the engine, with their per-worker state.
#[derive(Debug, Default)]
pub struct Pipeline {
    forward: ip4_forward::Ip4Forward,
}

impl Pipeline {
    /// Run every stage over the batch. On return every packet has a final verdict.
    #[inline]
    pub fn run(&mut self, tables: &Tables, umem: &Umem, batch: &mut Batch) {
        ingress::run(umem, batch);
        self.forward.run(tables, umem, batch);
    }
}
