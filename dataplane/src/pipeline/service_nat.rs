//! Service load balancing: destination NAT of IPv4 TCP and UDP to a frontend (a Service's
//! ClusterIP, NodePort, LoadBalancer or external IP and port), reverse NAT of the replies, and
//! translation of the ICMP errors about translated flows. Runs after decapsulation and before
//! forwarding, so it sees packets from pods, from the host, from the uplink and from tunnels.
//!
//! For each packet bound for forwarding:
//! - **to a frontend**: `loadBalancerSourceRanges` (LoadBalancer frontends), then the flow's
//!   conntrack entry if its backend is still in the frontend's set (active or draining), else a
//!   new pick: the client's session affinity if the service has one and that backend is still
//!   active, else the frontend's Maglev array at the hash of the 5-tuple. The destination
//!   becomes the backend; both directions of the flow are recorded in the shared [`Conntrack`].
//!   A frontend without active backends rejects (TCP RST from the frontend, built here; ICMP
//!   port unreachable, built by [`icmp_error`](super::icmp_error)) or drops, as it says.
//! - **from a backend** (a reply): the source becomes the frontend again.
//! - **an ICMP error** (destination unreachable, time exceeded, parameter problem) quoting a
//!   translated flow: the quoted header and the outer address facing the translation are
//!   rewritten, both directions, so a client sees errors (PMTU above all) about the frontend it
//!   talks to, and a backend about its own address. The errors the engine builds itself about
//!   translated packets are translated the same way ([`ServiceNat::translate_built_errors`]).
//!
//! Checksums are patched incrementally (RFC 1624); a UDP checksum of 0 stays 0. Non-first
//! fragments carry no ports: they pass untouched (first fragments are translated).
//!
//! Not done here: hairpin (a backend reaching its own service needs source NAT to see the
//! replies), source NAT of external traffic with `externalTrafficPolicy: Cluster` (replies from
//! a backend on another node go straight to the client), egress masquerade, IPv6, and the
//! non-first fragments of translated datagrams. A frontend is an exact address; NodePorts are
//! listed once per node address by the control plane.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{IcmpError, Next, PacketBuf, PacketMeta, Packets, PipelineCounters, for_each};
use crate::conntrack::{AFFINITY_DEFAULT_TIMEOUT, Conntrack};
use crate::conntrack::{CtDir, CtEntry, FlowKey, FlowState, Upsert};
use crate::tables::maglev::flow_hash;
use crate::tables::{
    Backend, BackendSet, Frontend, FrontendKey, FrontendKind, L4Proto, Services, SessionAffinity,
    SourceNat, Tables,
};
use crate::verdict::{DropReason, Verdict};
use crate::wire::checksum::{udp_nonzero, update16, update32};
use crate::wire::{
    ETHERNET_HEADER_LEN, EtherType, EthernetFrame, ICMPV4_HEADER_LEN, IPV4_MIN_HEADER_LEN,
    Icmpv4Type, IpProtocol, Ipv4Packet, Ipv4Repr, L4Ports, MacAddr, TCP_MIN_HEADER_LEN, TcpFlags,
    TcpPacket, TcpRepr, UDP_HEADER_LEN, UdpPacket,
};

/// TTL of the RSTs the engine sends for a frontend.
const RST_TTL: u8 = 64;

/// The stage; per worker, around the conntrack all workers share.
#[derive(Debug)]
pub struct ServiceNat {
    ct: Arc<Conntrack>,
}

/// What the forward path decided for a packet to a frontend.
enum Decision {
    /// To this backend; the source becomes the node address and port if set.
    Nat(Backend, Option<(Ipv4Addr, u16)>),
    /// No active backend: reject or drop, as the frontend says.
    NoEndpoints {
        reject: bool,
    },
    Drop(DropReason),
}

impl ServiceNat {
    pub fn new(ct: Arc<Conntrack>) -> Self {
        ServiceNat { ct }
    }

    pub fn conntrack(&self) -> &Arc<Conntrack> {
        &self.ct
    }

    /// Translate the batch's packets bound for forwarding. `now`: [`Conntrack::now`], read
    /// once for the batch.
    #[inline]
    pub fn run<P: Packets>(
        &self,
        tables: &Tables,
        pkts: &mut P,
        meta: &mut [PacketMeta],
        now: u32,
        c: &mut PipelineCounters,
    ) {
        let services = &*tables.services;
        if services.is_empty() {
            return;
        }
        for_each(
            pkts,
            meta,
            |n| (n == Next::Ip4Forward).then_some(()),
            |buf, m, ()| {
                if !m.local {
                    self.packet(services, buf, m, now, c);
                }
            },
        );
    }

    /// Translate the ICMP errors the engine just built (`local`, bound for forwarding) whose
    /// quoted packet belongs to a translated flow.
    #[inline]
    pub fn translate_built_errors<P: Packets>(
        &self,
        tables: &Tables,
        pkts: &mut P,
        meta: &mut [PacketMeta],
        now: u32,
        c: &mut PipelineCounters,
    ) {
        if tables.services.is_empty() {
            return;
        }
        for_each(
            pkts,
            meta,
            |n| (n == Next::Ip4Forward).then_some(()),
            |buf, m, ()| {
                if !m.local {
                    return;
                }
                if let Some(Ok(mut ip)) = buf
                    .data_mut()
                    .get_mut(usize::from(m.l3)..)
                    .map(Ipv4Packet::new_checked)
                    && ip.protocol() == IpProtocol::ICMP
                    && translate_icmp_error(&self.ct, &mut ip, now)
                {
                    c.nat_icmp += 1;
                }
            },
        );
    }

    #[inline]
    fn packet<B: PacketBuf>(
        &self,
        services: &Services,
        buf: &mut B,
        m: &mut PacketMeta,
        now: u32,
        c: &mut PipelineCounters,
    ) {
        let l3 = usize::from(m.l3);
        let Some(Ok(mut ip)) = buf.data_mut().get_mut(l3..).map(Ipv4Packet::new_checked) else {
            return;
        };
        if ip.frag_offset() != 0 {
            return;
        }
        let proto = match ip.protocol() {
            IpProtocol::TCP => L4Proto::Tcp,
            IpProtocol::UDP => L4Proto::Udp,
            IpProtocol::ICMP => {
                if translate_icmp_error(&self.ct, &mut ip, now) {
                    c.nat_icmp += 1;
                }
                return;
            }
            _ => return,
        };
        let l4 = ip.payload();
        let min_len = match proto {
            L4Proto::Tcp => TCP_MIN_HEADER_LEN,
            L4Proto::Udp => UDP_HEADER_LEN,
        };
        let Some(ports) = L4Ports::read(l4, 0).filter(|_| l4.len() >= min_len) else {
            return;
        };
        let flags = match proto {
            L4Proto::Tcp => TcpPacket::new_unchecked(l4).flags(),
            L4Proto::Udp => TcpFlags(0),
        };
        let key = FlowKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            sport: ports.src,
            dport: ports.dst,
            proto,
        };
        let fe_key = FrontendKey {
            addr: key.dst,
            proto,
            port: key.dport,
        };
        if services.may_be_frontend(key.dst)
            && let Some(fe) = services.frontend(fe_key)
        {
            match self.forward(services, fe, fe_key, &key, flags, now, c) {
                Decision::Nat(b, snat) => {
                    rewrite(&mut ip, proto, Side::Dst, b.addr, b.port);
                    if let Some((addr, port)) = snat {
                        rewrite(&mut ip, proto, Side::Src, addr, port);
                        c.nat_snat += 1;
                    }
                    c.nat_forward += 1;
                }
                Decision::Drop(r) => m.next = Next::Done(Verdict::Drop(r)),
                Decision::NoEndpoints { reject: false } => {
                    m.next = Next::Done(Verdict::Drop(DropReason::ServiceNoEndpoints));
                }
                Decision::NoEndpoints { reject: true } => match proto {
                    L4Proto::Udp => m.next = Next::IcmpError(IcmpError::PortUnreachable),
                    L4Proto::Tcp => match build_rst(buf, m) {
                        Ok(()) => c.service_rejects += 1,
                        Err(r) => m.next = Next::Done(Verdict::Drop(r)),
                    },
                },
            }
            return;
        }
        let snat = services.source_nat();
        // A reply to a source-translated flow comes to one of the node's ports; a reply to a
        // flow translated only on its destination comes from a backend.
        let to_node_port = snat.is_some_and(|s| key.dst == s.addr && s.has_port(key.dport));
        if (to_node_port || services.may_be_backend(key.src, key.sport))
            && let Some(e) = self.ct.lookup(&key, now)
            && e.dir == CtDir::Reply
        {
            if (e.nat_addr, e.nat_port) != (key.src, key.sport) {
                rewrite(&mut ip, proto, Side::Src, e.nat_addr, e.nat_port);
            }
            if let Some((addr, port)) = e.snat {
                rewrite(&mut ip, proto, Side::Dst, addr, port);
            }
            c.nat_reverse += 1;
            self.refresh_from_reply(&key, &e, flags, now, c);
            return;
        }
        if let Some(s) = snat
            && s.masquerade
            && !to_node_port
            && key.dst != s.addr
            && s.in_cluster(key.src)
            && !s.in_cluster(key.dst)
        {
            match self.masquerade(s, &key, flags, now, c) {
                Some((addr, port)) => {
                    rewrite(&mut ip, proto, Side::Src, addr, port);
                    c.nat_snat += 1;
                    c.nat_masquerade += 1;
                }
                None => m.next = Next::Done(Verdict::Drop(DropReason::SnatPortsExhausted)),
            }
        }
    }

    /// The backend for a packet to `fe`, and the node address and port its source becomes if
    /// the flow is source-translated; records the flow.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        services: &Services,
        fe: &Frontend,
        fe_key: FrontendKey,
        key: &FlowKey,
        flags: TcpFlags,
        now: u32,
        c: &mut PipelineCounters,
    ) -> Decision {
        if !fe.source_allowed(key.src) {
            return Decision::Drop(DropReason::SourceRangeDenied);
        }
        let no_endpoints = Decision::NoEndpoints {
            reject: fe.reject_no_endpoints,
        };
        // Pods reach an eTP=Local external frontend's cluster-wide set, as with kube-proxy.
        let set_id = match (fe.cluster_backends, services.source_nat()) {
            (Some(cluster), Some(s)) if s.in_cluster(key.src) => cluster,
            _ => fe.backends,
        };
        // A frontend naming a missing set is a compiler bug; it has no endpoints.
        let Some(set) = services.set(set_id) else {
            return no_endpoints;
        };
        let existing = self
            .ct
            .lookup(key, now)
            .filter(|e| e.dir == CtDir::Original);
        if let Some(e) = existing
            && set.contains(backend_of(&e))
        {
            self.refresh_original(key, &e, flags, now, c);
            return Decision::Nat(backend_of(&e), e.snat);
        }
        if existing.is_some() {
            // Its backend left the set: the flow moves now, not when the entry expires.
            c.nat_backend_moved += 1;
        }
        let Some(backend) = self.pick(set, fe, fe_key, key, now, c) else {
            return no_endpoints;
        };
        let state = new_flow_state(key.proto, flags, now);
        let snat = match services.source_nat() {
            Some(s) if needs_snat(s, fe, key, backend) => {
                match self.claim_port(s, key, backend, state, now, c) {
                    Some(port) => Some((s.addr, port)),
                    None => return Decision::Drop(DropReason::SnatPortsExhausted),
                }
            }
            _ => None,
        };
        self.store_pair(key, backend, snat, state, now, c);
        Decision::Nat(backend, snat)
    }

    /// The node address and port a pod's packet to `key.dst`, outside the cluster network,
    /// leaves with: its flow's, or a new one.
    #[inline]
    fn masquerade(
        &self,
        s: &SourceNat,
        key: &FlowKey,
        flags: TcpFlags,
        now: u32,
        c: &mut PipelineCounters,
    ) -> Option<(Ipv4Addr, u16)> {
        // No destination translation: the "backend" is the destination itself.
        let dst = Backend {
            addr: key.dst,
            port: key.dport,
        };
        let existing = self
            .ct
            .lookup(key, now)
            .filter(|e| e.dir == CtDir::Original && backend_of(e) == dst);
        if let Some(e) = existing
            && let Some(snat) = e.snat
        {
            self.refresh_original(key, &e, flags, now, c);
            return Some(snat);
        }
        let state = new_flow_state(key.proto, flags, now);
        let port = self.claim_port(s, key, dst, state, now, c)?;
        self.store_pair(key, dst, Some((s.addr, port)), state, now, c);
        Some((s.addr, port))
    }

    /// After a packet of the existing flow `key` whose original entry is `e`: advance the
    /// flow's state and write both entries if it changed or is due for a refresh.
    #[inline]
    fn refresh_original(
        &self,
        key: &FlowKey,
        e: &CtEntry,
        flags: TcpFlags,
        now: u32,
        c: &mut PipelineCounters,
    ) {
        let mut state = FlowState::advance(Some(e.state), key.proto, CtDir::Original, flags);
        if state.needs_store(&e.state, key.proto, now) {
            state.expires = now.saturating_add(state.timeout(key.proto));
            self.store_pair(key, backend_of(e), e.snat, state, now, c);
        }
    }

    /// Claims a node port for the new flow `key` (client → frontend) going to `backend`: the
    /// first of a few ports, starting at the flow's hash, whose reply entry (backend → node
    /// port) no live flow holds. Writes that reply entry; `None` if every port tried was taken.
    #[inline]
    fn claim_port(
        &self,
        s: &SourceNat,
        key: &FlowKey,
        backend: Backend,
        state: FlowState,
        now: u32,
        c: &mut PipelineCounters,
    ) -> Option<u16> {
        let span = s.port_count();
        if span == 0 {
            return None;
        }
        let hash = key_hash(key);
        // An odd stride visits many distinct ports of any range in SNAT_TRIES steps.
        let start = (hash % u64::from(span)) as u32;
        let stride = ((hash >> 32) as u32 | 1) % span.max(1);
        for i in 0..SNAT_TRIES {
            let offset = (start + i * stride.max(1)) % span;
            // Fits: offset < span ≤ 65536 - first.
            let port = s.ports.0.wrapping_add(offset as u16);
            let (_, reply_key, reply) = flow_entries(key, backend, Some((s.addr, port)), state);
            match self.ct.insert_new(&reply_key, &reply, now) {
                Upsert::Exists | Upsert::Busy => continue,
                outcome => {
                    count(outcome, c);
                    return Some(port);
                }
            }
        }
        None
    }

    /// A backend for a new flow: the client's affinity, else Maglev.
    #[inline]
    fn pick(
        &self,
        set: &BackendSet,
        fe: &Frontend,
        fe_key: FrontendKey,
        key: &FlowKey,
        now: u32,
        c: &mut PipelineCounters,
    ) -> Option<Backend> {
        let hash = key_hash(key);
        let SessionAffinity::ClientIp { timeout_s } = fe.affinity else {
            return set.pick(hash);
        };
        let b = self
            .ct
            .affinity(key.src, fe_key, now)
            .filter(|b| set.is_active(*b))
            .or_else(|| set.pick(hash))?;
        let timeout = if timeout_s == 0 {
            AFFINITY_DEFAULT_TIMEOUT
        } else {
            timeout_s
        };
        // Every new flow renews the affinity, as kube-proxy's `recent --set` does.
        count(self.ct.set_affinity(key.src, fe_key, b, timeout, now), c);
        Some(b)
    }

    /// Write both entries of the flow `key` (client → frontend) going to `backend`, with
    /// `snat` the node address and port its source becomes.
    #[inline]
    fn store_pair(
        &self,
        key: &FlowKey,
        backend: Backend,
        snat: Option<(Ipv4Addr, u16)>,
        state: FlowState,
        now: u32,
        c: &mut PipelineCounters,
    ) {
        let (original, reply_key, reply) = flow_entries(key, backend, snat, state);
        count(self.ct.upsert(key, &original, now), c);
        count(self.ct.upsert(&reply_key, &reply, now), c);
    }

    /// After a reply: advance the flow's state, and write it to both entries if it changed or
    /// is due for a refresh. The original entry is rewritten only while it still points to
    /// this backend (the flow may have moved, and this is a late reply of the old one).
    #[inline]
    fn refresh_from_reply(
        &self,
        key: &FlowKey,
        e: &CtEntry,
        flags: TcpFlags,
        now: u32,
        c: &mut PipelineCounters,
    ) {
        let mut state = FlowState::advance(Some(e.state), key.proto, CtDir::Reply, flags);
        if !state.needs_store(&e.state, key.proto, now) {
            return;
        }
        state.expires = now.saturating_add(state.timeout(key.proto));
        let (client, client_port) = e.snat.unwrap_or((key.dst, key.dport));
        let original_key = FlowKey {
            src: client,
            dst: e.nat_addr,
            sport: client_port,
            dport: e.nat_port,
            proto: key.proto,
        };
        let backend = Backend {
            addr: key.src,
            port: key.sport,
        };
        let snat = e.snat.map(|_| (key.dst, key.dport));
        let current = self.ct.lookup(&original_key, now);
        if current
            .is_none_or(|o| o.dir == CtDir::Original && backend_of(&o) == backend && o.snat == snat)
        {
            self.store_pair(&original_key, backend, snat, state, now, c);
        } else {
            count(self.ct.upsert(key, &CtEntry { state, ..*e }, now), c);
        }
    }
}

/// Source NAT attempts for a new flow before it is dropped as `snat_ports_exhausted`.
const SNAT_TRIES: u32 = 16;

/// Whether a new flow from `key.src` through `fe` to `backend` gets its source translated
/// (kube-proxy's masquerade marks, see [`SourceNat`]; and, with masquerade on, a pod's flow
/// whose backend is outside the cluster network but not this node, as flannel's masquerade
/// rule does after kube-proxy's DNAT: a selector-less service pointing outside, a
/// host-network endpoint on another node).
#[inline]
fn needs_snat(s: &SourceNat, fe: &Frontend, key: &FlowKey, backend: Backend) -> bool {
    if key.src == backend.addr {
        return true;
    }
    if s.masquerade
        && backend.addr != s.addr
        && s.in_cluster(key.src)
        && !s.in_cluster(backend.addr)
    {
        return true;
    }
    match fe.kind {
        FrontendKind::ClusterIp => !s.in_cluster(key.src),
        FrontendKind::NodePort | FrontendKind::LoadBalancer | FrontendKind::ExternalIp => {
            !fe.external_local
        }
    }
}

/// The two entries of the flow `key` (client → frontend) going to `backend`, with `snat` the
/// node address and port its source becomes: (original entry, reply key, reply entry).
#[inline]
fn flow_entries(
    key: &FlowKey,
    backend: Backend,
    snat: Option<(Ipv4Addr, u16)>,
    state: FlowState,
) -> (CtEntry, FlowKey, CtEntry) {
    let original = CtEntry {
        dir: CtDir::Original,
        nat_addr: backend.addr,
        nat_port: backend.port,
        snat,
        state,
    };
    let (to, to_port) = snat.unwrap_or((key.src, key.sport));
    let reply_key = FlowKey {
        src: backend.addr,
        dst: to,
        sport: backend.port,
        dport: to_port,
        proto: key.proto,
    };
    let reply = CtEntry {
        dir: CtDir::Reply,
        nat_addr: key.dst,
        nat_port: key.dport,
        snat: snat.map(|_| (key.src, key.sport)),
        state,
    };
    (original, reply_key, reply)
}

/// The state of a flow at its first packet, with its expiry.
#[inline]
fn new_flow_state(proto: L4Proto, flags: TcpFlags, now: u32) -> FlowState {
    let mut state = FlowState::advance(None, proto, CtDir::Original, flags);
    state.expires = now.saturating_add(state.timeout(proto));
    state
}

/// The flow hash Maglev and the node-port choice start from.
#[inline]
fn key_hash(key: &FlowKey) -> u64 {
    flow_hash(
        key.src,
        key.dst,
        key.sport,
        key.dport,
        key.proto.ip_protocol().0,
    )
}

#[inline]
fn backend_of(e: &CtEntry) -> Backend {
    Backend {
        addr: e.nat_addr,
        port: e.nat_port,
    }
}

#[inline]
fn count(outcome: Upsert, c: &mut PipelineCounters) {
    match outcome {
        Upsert::Updated | Upsert::Exists => {}
        Upsert::Inserted => c.ct_inserts += 1,
        Upsert::Evicted => {
            c.ct_inserts += 1;
            c.ct_evictions += 1;
        }
        Upsert::Busy => c.ct_insert_failures += 1,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// Rewrite one side's address and port, patching the IPv4 and L4 checksums incrementally.
/// The caller checked that the L4 header is there whole.
#[inline]
fn rewrite(ip: &mut Ipv4Packet<&mut [u8]>, proto: L4Proto, side: Side, addr: Ipv4Addr, port: u16) {
    let old = match side {
        Side::Src => ip.rewrite_src_addr(addr),
        Side::Dst => ip.rewrite_dst_addr(addr),
    };
    let (old, new) = (old.octets(), addr.octets());
    let l4 = ip.payload_mut();
    match proto {
        L4Proto::Tcp => {
            let mut tcp = TcpPacket::new_unchecked(l4);
            match side {
                Side::Src => tcp.rewrite_src_port(port),
                Side::Dst => tcp.rewrite_dst_port(port),
            };
            tcp.update_checksum_for_addr(&old, &new);
        }
        L4Proto::Udp => {
            let mut udp = UdpPacket::new_unchecked(l4);
            match side {
                Side::Src => udp.rewrite_src_port(port),
                Side::Dst => udp.rewrite_dst_port(port),
            };
            udp.update_checksum_for_addr(&old, &new);
        }
    }
}

#[inline]
fn get16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[inline]
fn get32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(d) = b.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline]
fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// If `ip` is an ICMP error quoting a packet of a translated flow, translate it (RFC 5508 §5,
/// what Linux's `nf_nat_icmp_reply_translation` does): the quoted packet is what the engine
/// sent after translating some packet P; it becomes P again (both addresses and ports, as
/// far as the flow translated them), the outer destination (P's translated source, which the
/// error was sent to) becomes P's source, and an outer source equal to P's translated
/// destination (the error came from the peer itself) becomes P's destination.
///
/// Examples: a backend's port unreachable about a client's translated packet reaches the
/// client from the frontend, quoting client → frontend; a router's frag-needed about a
/// reply we sent to a client (frontend → client) reaches the backend, quoting backend →
/// client (or backend → node port when the flow was source-translated).
///
/// Returns whether it translated. The ICMP checksum, the quoted IPv4 checksum and the quoted L4
/// checksum (if quoted) are patched incrementally; every field changed sits at an even offset
/// of the ICMP message.
pub fn translate_icmp_error(ct: &Conntrack, ip: &mut Ipv4Packet<&mut [u8]>, now: u32) -> bool {
    if ip.frag_offset() != 0 || ip.more_frags() {
        return false;
    }
    let (outer_src, outer_dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = ip.payload_mut();
    let is_error = icmp.first().is_some_and(|&t| {
        matches!(
            Icmpv4Type(t),
            Icmpv4Type::DST_UNREACHABLE | Icmpv4Type::TIME_EXCEEDED | Icmpv4Type::PARAM_PROBLEM
        )
    });
    if !is_error {
        return false;
    }
    let q = ICMPV4_HEADER_LEN;
    let (proto, sent, l4) = {
        let Some(Ok(quoted)) = icmp.get(q..).map(Ipv4Packet::new_checked_truncated) else {
            return false;
        };
        let Some(proto) = L4Proto::from_ip(quoted.protocol()) else {
            return false;
        };
        if quoted.frag_offset() != 0 {
            return false;
        }
        let l4 = q + quoted.header_len();
        // RFC 792: at least 8 bytes of the L4 header are quoted; the ports are all we need.
        let Some(ports) = L4Ports::read(icmp, l4) else {
            return false;
        };
        let key = FlowKey {
            src: quoted.src_addr(),
            dst: quoted.dst_addr(),
            sport: ports.src,
            dport: ports.dst,
            proto,
        };
        (proto, key, l4)
    };
    // The entry that an answer to the quoted packet would hit says what was done to P: its
    // translation of that answer, reversed, is P.
    let answer = sent.reversed();
    let Some(e) = ct.lookup(&answer, now) else {
        return false;
    };
    let original = apply(&e, &answer).reversed();
    if original == sent {
        return false;
    }
    let l4_csum_at = l4
        + match proto {
            L4Proto::Tcp => 16,
            L4Proto::Udp => 6,
        };
    let (Some(mut csum), Some(old_qcsum)) = (get16(icmp, 2), get16(icmp, q + 10)) else {
        return false;
    };
    // The quoted L4 checksum, when the quote reaches it (a UDP checksum of 0 stays 0).
    let old_l4 = get16(icmp, l4_csum_at).filter(|&v| !(proto == L4Proto::Udp && v == 0));
    let (mut qcsum, mut l4csum) = (old_qcsum, old_l4);
    for (addr_at, port_at, old, new) in [
        (
            q + 12,
            l4,
            (sent.src, sent.sport),
            (original.src, original.sport),
        ),
        (
            q + 16,
            l4 + 2,
            (sent.dst, sent.dport),
            (original.dst, original.dport),
        ),
    ] {
        if old == new {
            continue;
        }
        let (old_a, new_a) = (old.0.to_bits(), new.0.to_bits());
        if get32(icmp, addr_at).is_none() || get16(icmp, port_at).is_none() {
            return false;
        }
        put32(icmp, addr_at, new_a);
        put16(icmp, port_at, new.1);
        csum = update16(update32(csum, old_a, new_a), old.1, new.1);
        qcsum = update32(qcsum, old_a, new_a);
        l4csum = l4csum.map(|v| update16(update32(v, old_a, new_a), old.1, new.1));
    }
    put16(icmp, q + 10, qcsum);
    csum = update16(csum, old_qcsum, qcsum);
    if let (Some(old), Some(mut new)) = (old_l4, l4csum) {
        if proto == L4Proto::Udp {
            new = udp_nonzero(new);
        }
        put16(icmp, l4_csum_at, new);
        csum = update16(csum, old, new);
    }
    put16(icmp, 2, csum);
    if outer_dst == sent.src && original.src != sent.src {
        ip.rewrite_dst_addr(original.src);
    }
    if outer_src == sent.dst && original.dst != sent.dst {
        ip.rewrite_src_addr(original.dst);
    }
    true
}

/// What the flow entry `e` does to a packet with tuple `key` (the entry's own key).
#[inline]
fn apply(e: &CtEntry, key: &FlowKey) -> FlowKey {
    let mut out = *key;
    match e.dir {
        CtDir::Original => {
            (out.dst, out.dport) = (e.nat_addr, e.nat_port);
            if let Some((a, p)) = e.snat {
                (out.src, out.sport) = (a, p);
            }
        }
        CtDir::Reply => {
            (out.src, out.sport) = (e.nat_addr, e.nat_port);
            if let Some((a, p)) = e.snat {
                (out.dst, out.dport) = (a, p);
            }
        }
    }
    out
}

/// Turns a TCP segment to a frontend without endpoints into the RST that refuses it
/// (RFC 9293 §3.10.7.1, a segment to a CLOSED port): from the frontend to the client, routed
/// like the engine's ICMP errors (`local`). No RST answers a RST.
fn build_rst<B: PacketBuf>(buf: &mut B, m: &mut PacketMeta) -> Result<(), DropReason> {
    let refuse = DropReason::ServiceNoEndpoints;
    let l3 = usize::from(m.l3);
    // The Ethernet header is rewritten below; other L2 framings do not reach this stage.
    if l3 != ETHERNET_HEADER_LEN {
        return Err(refuse);
    }
    let (client, frontend, seq, ack, flags, seg_len) = {
        let Some(Ok(ip)) = buf.data().get(l3..).map(Ipv4Packet::new_checked) else {
            return Err(refuse);
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return Err(refuse);
        };
        let client = (ip.src_addr(), tcp.src_port());
        let frontend = (ip.dst_addr(), tcp.dst_port());
        // Fits: a segment is shorter than 2^16.
        let seg_len = tcp.payload().len() as u32;
        (
            client,
            frontend,
            tcp.seq_number(),
            tcp.ack_number(),
            tcp.flags(),
            seg_len,
        )
    };
    if flags.contains(TcpFlags::RST) {
        return Err(refuse);
    }
    // If the segment has an ACK: <SEQ=SEG.ACK><CTL=RST>. Otherwise:
    // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where SYN and FIN count in SEG.LEN.
    let (seq_out, ack_out, flags_out) = if flags.contains(TcpFlags::ACK) {
        (ack, 0, TcpFlags::RST)
    } else {
        let len = seg_len
            + u32::from(flags.contains(TcpFlags::SYN))
            + u32::from(flags.contains(TcpFlags::FIN));
        (0, seq.wrapping_add(len), TcpFlags::RST | TcpFlags::ACK)
    };
    // Only shortens: the segment had at least these headers.
    if !buf.set_len(l3 + IPV4_MIN_HEADER_LEN + TCP_MIN_HEADER_LEN) {
        return Err(refuse);
    }
    let Some((l2, rest)) = buf.data_mut().split_at_mut_checked(l3) else {
        return Err(refuse);
    };
    // Forwarding writes both MACs.
    let mut eth = EthernetFrame::new_unchecked(l2);
    eth.set_dst_addr(MacAddr::ZERO);
    eth.set_src_addr(MacAddr::ZERO);
    eth.set_ethertype(EtherType::IPV4);
    let Some((ip_hdr, tcp)) = rest.split_at_mut_checked(IPV4_MIN_HEADER_LEN) else {
        return Err(refuse);
    };
    Ipv4Repr {
        src_addr: frontend.0,
        dst_addr: client.0,
        protocol: IpProtocol::TCP,
        payload_len: TCP_MIN_HEADER_LEN,
        ttl: RST_TTL,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(ip_hdr));
    let mut tcp = TcpPacket::new_unchecked(tcp);
    TcpRepr {
        src_port: frontend.1,
        dst_port: client.1,
        seq_number: seq_out,
        ack_number: ack_out,
        flags: flags_out,
        window_len: 0,
        urgent_pointer: 0,
        options: &[],
        payload_len: 0,
    }
    .emit(&mut tcp);
    tcp.fill_checksum_v4(frontend.0, client.0);
    m.next = Next::Ip4Forward;
    m.local = true;
    Ok(())
}

#[cfg(test)]
mod tests;
