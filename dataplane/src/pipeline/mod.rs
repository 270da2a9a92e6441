//! The packet pipeline: a batch of frames goes through stages, each a function over the whole
//! batch (VPP's vector model). A stage handles the packets addressed to it and gives each a
//! next step: another stage, or a final [`Verdict`]. The order of stages is written once, in
//! [`Pipeline::run_on_at`], where a reader sees the whole path.
//!
//! Stages reach packet bytes through [`PacketBuf`] (a UMEM frame in the engine, a plain buffer
//! in tests), so the same code runs under `cargo test` without AF_XDP sockets.

pub mod arp_responder;
pub mod icmp_error;
pub mod ingress;
pub mod ip4_forward;
pub mod service_nat;
pub mod vxlan_decap;
pub mod vxlan_encap;

/// Test doubles (buffers, a node's tables, packet builders): for the unit tests and, with the
/// `bench` feature, the micro-benchmarks. Not an API.
#[cfg(any(test, feature = "bench"))]
#[doc(hidden)]
pub mod test_support;

use std::sync::Arc;

use af_xdp::{Frame, FrameMut, Umem};

use crate::conntrack::Conntrack;

use crate::tables::{Tables, TunnelId};
use crate::verdict::{DropReason, PortId, Verdict};

/// Frames per RX burst and per pipeline run.
pub const BATCH_SIZE: usize = 64;

/// Where a packet goes next inside the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// ARP on a pod or host port: answered by proxy, or dropped.
    Arp,
    /// VXLAN to our VTEP: strip the outer headers, then IPv4 forwarding.
    VxlanDecap,
    /// IPv4 routing and forwarding.
    Ip4Forward,
    /// Routed into a tunnel; TTL already decremented, MTU already checked.
    VxlanEncap(TunnelId),
    /// Not forwardable; the source gets this ICMP error if the rules allow one.
    IcmpError(IcmpError),
    /// Finished, with this verdict.
    Done(Verdict),
}

/// The ICMP errors the engine sends (RFC 1812 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Time exceeded in transit (type 11, code 0).
    TimeExceeded,
    /// Destination unreachable, fragmentation needed and DF set (type 3, code 4), with the
    /// next-hop MTU of RFC 1191.
    FragNeeded { mtu: u16 },
    /// Destination unreachable, port unreachable (type 3, code 3): UDP to a service frontend
    /// without endpoints that rejects.
    PortUnreachable,
}

impl IcmpError {
    /// What the packet is counted as when no error is sent for it.
    #[inline]
    pub fn drop_reason(self) -> DropReason {
        match self {
            IcmpError::TimeExceeded => DropReason::TtlExceeded,
            IcmpError::FragNeeded { .. } => DropReason::TooBig,
            IcmpError::PortUnreachable => DropReason::ServiceNoEndpoints,
        }
    }
}

/// Per-packet state carried between stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub next: Next,
    /// Offset of the L3 header in the frame's data.
    pub l3: u16,
    /// Built by the engine (an ICMP error): routed without a TTL decrement, and never the
    /// subject of an ICMP error itself.
    pub local: bool,
}

impl Default for PacketMeta {
    fn default() -> Self {
        PacketMeta {
            next: Next::Done(Verdict::ToHost),
            l3: 0,
            local: false,
        }
    }
}

impl PacketMeta {
    /// A packet finished with a drop.
    #[inline]
    pub fn dropped(reason: DropReason) -> Self {
        PacketMeta {
            next: Next::Done(Verdict::Drop(reason)),
            ..PacketMeta::default()
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

/// One packet's bytes and the data range inside its buffer, as the stages need them.
pub trait PacketBuf {
    /// The packet data.
    fn data(&self) -> &[u8];
    /// The packet data, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow the data by `n` bytes at the front; false, changing nothing, without the headroom.
    fn push_head(&mut self, n: usize) -> bool;
    /// Drop `n` bytes from the front; false, changing nothing, if there are fewer.
    fn pull_head(&mut self, n: usize) -> bool;
    /// Trim, or extend into the tailroom; false, changing nothing, if it does not fit.
    fn set_len(&mut self, len: usize) -> bool;
}

impl PacketBuf for FrameMut<'_> {
    #[inline]
    fn data(&self) -> &[u8] {
        FrameMut::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        FrameMut::data_mut(self)
    }
    #[inline]
    fn push_head(&mut self, n: usize) -> bool {
        FrameMut::push_head(self, n)
    }
    #[inline]
    fn pull_head(&mut self, n: usize) -> bool {
        FrameMut::pull_head(self, n)
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        FrameMut::set_len(self, len)
    }
}

/// The packets of a batch, by index: UMEM frames in the engine, byte buffers in tests.
pub trait Packets {
    type Buf<'a>: PacketBuf
    where
        Self: 'a;
    /// Number of packets.
    fn count(&self) -> usize;
    /// Packet `i`; `None` past the end.
    fn get(&mut self, i: usize) -> Option<Self::Buf<'_>>;
}

/// The frames of a [`Batch`] seen through their UMEM.
#[derive(Debug)]
pub struct UmemFrames<'a> {
    pub umem: &'a Umem,
    pub frames: &'a mut [Frame],
}

impl Packets for UmemFrames<'_> {
    type Buf<'b>
        = FrameMut<'b>
    where
        Self: 'b;

    #[inline]
    fn count(&self) -> usize {
        self.frames.len()
    }

    #[inline]
    fn get(&mut self, i: usize) -> Option<FrameMut<'_>> {
        let umem = self.umem;
        self.frames.get_mut(i).map(|f| umem.view(f))
    }
}

/// Calls `f` on every packet whose next step `select` accepts, with its buffer and state.
/// The loop every stage shares: `meta` has an entry per packet (at most [`BATCH_SIZE`]).
#[inline]
pub(crate) fn for_each<P: Packets, T>(
    pkts: &mut P,
    meta: &mut [PacketMeta],
    select: impl Fn(Next) -> Option<T>,
    mut f: impl FnMut(&mut P::Buf<'_>, &mut PacketMeta, T),
) {
    let n = pkts.count().min(meta.len());
    for (i, m) in meta.iter_mut().enumerate().take(n) {
        let Some(arg) = select(m.next) else {
            continue;
        };
        let Some(mut buf) = pkts.get(i) else {
            continue;
        };
        f(&mut buf, m, arg);
    }
}

/// The verdict of a packet that went through every stage.
#[inline]
pub fn final_verdict(meta: PacketMeta) -> Verdict {
    match meta.next {
        Next::Done(v) => v,
        // An error that could not be sent back is counted as what caused it.
        Next::IcmpError(e) => Verdict::Drop(e.drop_reason()),
        // A stage left a packet without a verdict: a bug, counted rather than panicking.
        Next::Arp | Next::VxlanDecap | Next::Ip4Forward | Next::VxlanEncap(_) => {
            Verdict::Drop(DropReason::NoRoute)
        }
    }
}

/// Events that are not drops, counted per worker: packets the engine answered, built or
/// translated, and conntrack writes. (Drops are counted by the worker from the verdicts.)
/// The worker publishes them in field order ([`to_array`](Self::to_array)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    /// ARP replies sent (proxy ARP on pod and host ports).
    pub arp_replies: u64,
    /// VXLAN packets decapsulated.
    pub vxlan_decap: u64,
    /// Packets encapsulated into a tunnel.
    pub vxlan_encap: u64,
    /// ICMP time exceeded sent.
    pub icmp_time_exceeded: u64,
    /// ICMP fragmentation needed sent.
    pub icmp_frag_needed: u64,
    /// Packets to a service frontend translated to a backend (DNAT).
    pub nat_forward: u64,
    /// Replies from a backend translated back to the frontend.
    pub nat_reverse: u64,
    /// ICMP errors about a translated flow translated.
    pub nat_icmp: u64,
    /// Flows moved to another backend because theirs left the service.
    pub nat_backend_moved: u64,
    /// Packets whose source was translated to the node (service source NAT and masquerade).
    pub nat_snat: u64,
    /// Of those, packets of pods leaving the cluster network (egress masquerade).
    pub nat_masquerade: u64,
    /// Packets to a frontend without endpoints answered with a TCP RST or an ICMP port
    /// unreachable.
    pub service_rejects: u64,
    /// Conntrack and affinity entries written into a free slot or over an evicted one.
    pub ct_inserts: u64,
    /// Live entries evicted to make room (bucket full).
    pub ct_evictions: u64,
    /// Writes given up because other workers held the bucket (the packet was still
    /// translated).
    pub ct_insert_failures: u64,
}

impl PipelineCounters {
    /// Number of counters.
    pub const COUNT: usize = 15;

    /// The counters in field order.
    pub fn to_array(&self) -> [u64; Self::COUNT] {
        [
            self.arp_replies,
            self.vxlan_decap,
            self.vxlan_encap,
            self.icmp_time_exceeded,
            self.icmp_frag_needed,
            self.nat_forward,
            self.nat_reverse,
            self.nat_icmp,
            self.nat_backend_moved,
            self.nat_snat,
            self.nat_masquerade,
            self.service_rejects,
            self.ct_inserts,
            self.ct_evictions,
            self.ct_insert_failures,
        ]
    }

    /// The inverse of [`to_array`](Self::to_array).
    pub fn from_array(a: [u64; Self::COUNT]) -> Self {
        let [
            arp_replies,
            vxlan_decap,
            vxlan_encap,
            icmp_time_exceeded,
            icmp_frag_needed,
            nat_forward,
            nat_reverse,
            nat_icmp,
            nat_backend_moved,
            nat_snat,
            nat_masquerade,
            service_rejects,
            ct_inserts,
            ct_evictions,
            ct_insert_failures,
        ] = a;
        PipelineCounters {
            arp_replies,
            vxlan_decap,
            vxlan_encap,
            icmp_time_exceeded,
            icmp_frag_needed,
            nat_forward,
            nat_reverse,
            nat_icmp,
            nat_backend_moved,
            nat_snat,
            nat_masquerade,
            service_rejects,
            ct_inserts,
            ct_evictions,
            ct_insert_failures,
        }
    }
}

/// Flow entries of the conntrack a [`Pipeline::default`] makes for itself.
const PRIVATE_FLOW_ENTRIES: usize = 1 << 12;
/// Affinity entries of that conntrack.
const PRIVATE_AFFINITY_ENTRIES: usize = 1 << 10;

/// The stages of the engine, with their per-worker state.
#[derive(Debug)]
pub struct Pipeline {
    forward: ip4_forward::Ip4Forward,
    services: service_nat::ServiceNat,
    counters: PipelineCounters,
}

impl Default for Pipeline {
    /// A pipeline with a small conntrack of its own: for tests and tools with one pipeline.
    /// Workers of one engine share one conntrack: use [`Pipeline::new`].
    fn default() -> Self {
        Pipeline::new(Arc::new(Conntrack::new(
            PRIVATE_FLOW_ENTRIES,
            PRIVATE_AFFINITY_ENTRIES,
        )))
    }
}

impl Pipeline {
    /// A pipeline using `conntrack` for service NAT; give every worker's pipeline the same one
    /// (a flow's reply may arrive on another worker).
    pub fn new(conntrack: Arc<Conntrack>) -> Self {
        Pipeline {
            forward: ip4_forward::Ip4Forward::default(),
            services: service_nat::ServiceNat::new(conntrack),
            counters: PipelineCounters::default(),
        }
    }

    /// The conntrack of service NAT.
    pub fn conntrack(&self) -> &Arc<Conntrack> {
        self.services.conntrack()
    }

    /// Run every stage over the batch. On return every packet has a final verdict.
    #[inline]
    pub fn run(&mut self, tables: &Tables, umem: &Umem, batch: &mut Batch) {
        let Batch {
            frames,
            meta,
            in_port,
        } = batch;
        let mut pkts = UmemFrames { umem, frames };
        self.run_on(tables, *in_port, &mut pkts, meta);
    }

    /// The stage order, over any packet source, reading the conntrack's clock once.
    #[inline]
    pub fn run_on<P: Packets>(
        &mut self,
        tables: &Tables,
        in_port: PortId,
        pkts: &mut P,
        meta: &mut [PacketMeta],
    ) {
        let now = if tables.services.is_empty() {
            0
        } else {
            self.conntrack().now()
        };
        self.run_on_at(tables, in_port, pkts, meta, now);
    }

    /// The stage order, at `now` seconds of the conntrack's clock ([`Conntrack::now`]).
    #[inline]
    pub fn run_on_at<P: Packets>(
        &mut self,
        tables: &Tables,
        in_port: PortId,
        pkts: &mut P,
        meta: &mut [PacketMeta],
        now: u32,
    ) {
        let c = &mut self.counters;
        ingress::run(tables, in_port, pkts, meta);
        arp_responder::run(tables, in_port, pkts, meta, c);
        vxlan_decap::run(tables, pkts, meta, c);
        // After decap: translated traffic from remote pods too. Builds RSTs (forwarded below,
        // local) and leaves port unreachables to the ICMP error stage.
        self.services.run(tables, pkts, meta, now, c);
        self.forward.run(tables, in_port, pkts, meta);
        vxlan_encap::run(tables, pkts, meta, c);
        // The ICMP errors built here are routed once more (to a pod, the host, or a tunnel);
        // they are marked local, so this stage never sees them again. Those about translated
        // packets are translated first, so the client sees its frontend quoted.
        if icmp_error::run(tables, pkts, meta, c) > 0 {
            self.services
                .translate_built_errors(tables, pkts, meta, now, c);
            self.forward.run(tables, in_port, pkts, meta);
            vxlan_encap::run(tables, pkts, meta, c);
        }
    }

    /// Counters of answered and built packets since the worker started.
    pub fn counters(&self) -> &PipelineCounters {
        &self.counters
    }
}
