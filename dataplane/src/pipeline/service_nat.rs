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
    Backend, BackendSet, Frontend, FrontendKey, L4Proto, Services, SessionAffinity, Tables,
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
    Nat(Backend),
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
                Decision::Nat(b) => {
                    rewrite(&mut ip, proto, Side::Dst, b.addr, b.port);
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
        if services.may_be_backend(key.src, key.sport)
            && let Some(e) = self.ct.lookup(&key, now)
            && e.dir == CtDir::Reply
        {
            rewrite(&mut ip, proto, Side::Src, e.nat_addr, e.nat_port);
            c.nat_reverse += 1;
            self.refresh_from_reply(&key, &e, flags, now, c);
        }
    }

    /// The backend for a packet to `fe`, recording the flow.
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
        // A frontend naming a missing set is a compiler bug; it has no endpoints.
        let Some(set) = services.set(fe.backends) else {
            return no_endpoints;
        };
        let existing = self
            .ct
            .lookup(key, now)
            .filter(|e| e.dir == CtDir::Original);
        let (backend, prev) = match existing {
            Some(e) if set.contains(backend_of(&e)) => (backend_of(&e), Some(e.state)),
            other => {
                if other.is_some() {
                    // Its backend left the set: the flow moves now, not when the entry expires.
                    c.nat_backend_moved += 1;
                }
                match self.pick(set, fe, fe_key, key, now, c) {
                    Some(b) => (b, None),
                    None => return no_endpoints,
                }
            }
        };
        let mut state = FlowState::advance(prev, key.proto, CtDir::Original, flags);
        if prev.is_none_or(|p| state.needs_store(&p, key.proto, now)) {
            state.expires = now.saturating_add(state.timeout(key.proto));
            self.store_pair(key, backend, state, now, c);
        }
        Decision::Nat(backend)
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
        let hash = flow_hash(
            key.src,
            key.dst,
            key.sport,
            key.dport,
            key.proto.ip_protocol().0,
        );
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

    /// Write both entries of the flow `key` (client → frontend) going to `backend`.
    #[inline]
    fn store_pair(
        &self,
        key: &FlowKey,
        backend: Backend,
        state: FlowState,
        now: u32,
        c: &mut PipelineCounters,
    ) {
        let original = CtEntry {
            dir: CtDir::Original,
            nat_addr: backend.addr,
            nat_port: backend.port,
            state,
        };
        let reply_key = FlowKey {
            src: backend.addr,
            dst: key.src,
            sport: backend.port,
            dport: key.sport,
            proto: key.proto,
        };
        let reply = CtEntry {
            dir: CtDir::Reply,
            nat_addr: key.dst,
            nat_port: key.dport,
            state,
        };
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
        let original_key = FlowKey {
            src: key.dst,
            dst: e.nat_addr,
            sport: key.dport,
            dport: e.nat_port,
            proto: key.proto,
        };
        let backend = Backend {
            addr: key.src,
            port: key.sport,
        };
        let current = self.ct.lookup(&original_key, now);
        if current.is_none_or(|o| o.dir == CtDir::Original && backend_of(&o) == backend) {
            self.store_pair(&original_key, backend, state, now, c);
        } else {
            count(self.ct.upsert(key, &CtEntry { state, ..*e }, now), c);
        }
    }
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
        Upsert::Updated => {}
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
/// what Linux's `nf_nat_icmp_reply_translation` does):
///
/// - the quoted packet went client → backend (we translated it): the quoted destination
///   becomes the frontend again, and so does the outer source if the backend itself sent the
///   error;
/// - the quoted packet went frontend → client (a reply we translated back): the quoted source
///   becomes the backend, and so does the outer destination (the error was sent to the
///   frontend).
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
    let (proto, qkey, l4) = {
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
    // The entry that a reply to the quoted packet would hit says what was done to it.
    let Some(e) = ct.lookup(&qkey.reversed(), now) else {
        return false;
    };
    let (addr_at, port_at, old_addr) = match e.dir {
        CtDir::Reply => (q + 16, l4 + 2, qkey.dst),
        CtDir::Original => (q + 12, l4, qkey.src),
    };
    let (old_a, new_a) = (old_addr.to_bits(), e.nat_addr.to_bits());
    let (Some(mut csum), Some(old_qcsum), Some(old_port), Some(_)) = (
        get16(icmp, 2),
        get16(icmp, q + 10),
        get16(icmp, port_at),
        get32(icmp, addr_at),
    ) else {
        return false;
    };
    let new_port = e.nat_port;
    // The quoted IPv4 header: address and header checksum.
    let new_qcsum = update32(old_qcsum, old_a, new_a);
    put32(icmp, addr_at, new_a);
    put16(icmp, q + 10, new_qcsum);
    csum = update16(update32(csum, old_a, new_a), old_qcsum, new_qcsum);
    // The quoted port, and the quoted L4 checksum when the quote reaches it.
    put16(icmp, port_at, new_port);
    csum = update16(csum, old_port, new_port);
    let l4_csum_at = l4
        + match proto {
            L4Proto::Tcp => 16,
            L4Proto::Udp => 6,
        };
    if let Some(old_l4) = get16(icmp, l4_csum_at)
        && !(proto == L4Proto::Udp && old_l4 == 0)
    {
        let mut new_l4 = update16(update32(old_l4, old_a, new_a), old_port, new_port);
        if proto == L4Proto::Udp {
            new_l4 = udp_nonzero(new_l4);
        }
        put16(icmp, l4_csum_at, new_l4);
        csum = update16(csum, old_l4, new_l4);
    }
    put16(icmp, 2, csum);
    match e.dir {
        CtDir::Reply if outer_src == old_addr => {
            ip.rewrite_src_addr(e.nat_addr);
        }
        CtDir::Original if outer_dst == old_addr => {
            ip.rewrite_dst_addr(e.nat_addr);
        }
        _ => {}
    }
    true
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
