//! Connection tracking for service NAT, shared by every worker: a flow's reply may arrive on
//! another worker than its first packet, and must find the flow there.
//!
//! # Layout
//! A fixed array of buckets, each three cache lines (192 bytes): a sequence word and five
//! entries of four `u64`s. A key hashes to one bucket; nothing is ever allocated after
//! [`Conntrack::new`].
//!
//! # Concurrency
//! Every bucket is a seqlock. Readers never write: they read the sequence, the entries, and the
//! sequence again, and retry (a bounded number of times) if a writer was there. Writers take the
//! bucket with one compare-and-swap of the sequence (even → odd) and give up after a few tries
//! rather than spin: a packet whose insert fails is still translated (Maglev picks the same
//! backend for the same flow anyway), and the failure is counted. All fields are atomics read
//! and written with relaxed ordering between the sequence's acquire and release, so there is no
//! `unsafe` and no torn read is ever used.
//!
//! # Entries
//! A flow has two entries: the original direction (client → frontend, translated to the
//! backend) and the reply direction (backend → client, translated back to the frontend). Each
//! holds the address and port of the other side of the translation, so either one leads to the
//! other. Both carry the flow's state and expiry; whichever direction refreshes them writes
//! both.
//!
//! A flow with source NAT (external traffic with `externalTrafficPolicy: Cluster`, hairpin,
//! off-cluster clients of a ClusterIP, egress masquerade) also carries the other address: the
//! original entry the node address and port its source becomes, the reply entry the client's
//! address and port its destination becomes again. Its reply entry is keyed by that node port,
//! which is therefore unique per backend: [`Conntrack::insert_new`] claims it. Expiry is in seconds of a coarse clock ([`Conntrack::now`], read once per batch).
//!
//! When a bucket is full, an insert takes an expired entry, else evicts the one that expires
//! first: embryonic and closing flows (short timeouts) go before established ones.
//!
//! The same table type holds the session-affinity entries (client, frontend) → backend.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Instant;

use crate::tables::{Backend, FrontendKey, L4Proto, maglev::mix64};
use crate::wire::TcpFlags;

/// TCP flow opening: SYN seen, handshake not complete (Cilium's 60 s; the kernel's `syn_sent`
/// is 120 s). Enough for SYN retransmissions.
pub const TCP_SYN_TIMEOUT: u32 = 60;
/// TCP flow that has seen both directions (Cilium's 6 h; kube-proxy sets the kernel's to 24 h).
/// Entries of peers that vanished without a FIN are reclaimed after this.
pub const TCP_ESTABLISHED_TIMEOUT: u32 = 6 * 3600;
/// TCP flow after a FIN or RST (Cilium's 10 s): enough for the last ACKs.
pub const TCP_CLOSING_TIMEOUT: u32 = 10;
/// UDP flow with no reply yet (the kernel's `nf_conntrack_udp_timeout`).
pub const UDP_TIMEOUT: u32 = 30;
/// UDP flow that has seen replies (the kernel's `nf_conntrack_udp_timeout_stream`).
pub const UDP_STREAM_TIMEOUT: u32 = 120;
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when a service does not set it.
pub const AFFINITY_DEFAULT_TIMEOUT: u32 = 10800;

/// Flow entries of the engine's conntrack, at least (two per flow; rounded up to 1.3M
/// entries, ~655k flows, 48 MiB of 192-byte buckets).
pub const DEFAULT_FLOW_ENTRIES: usize = 1 << 20;
/// Session-affinity entries of the engine's conntrack (one per client and frontend, 3 MiB).
pub const DEFAULT_AFFINITY_ENTRIES: usize = 1 << 16;

/// Reads retried while writers keep a bucket busy, before the read counts as a miss.
const READ_TRIES: usize = 64;
/// Compare-and-swaps a writer tries before it gives up.
const LOCK_TRIES: usize = 8;
const WAYS: usize = 5;

/// A flow as one direction's packets carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: L4Proto,
}

impl FlowKey {
    /// The same flow seen from the other side.
    #[inline]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    #[inline]
    fn raw(&self) -> RawKey {
        RawKey {
            w0: (u64::from(self.src.to_bits()) << 32) | u64::from(self.dst.to_bits()),
            w1: (u64::from(self.sport) << 48)
                | (u64::from(self.dport) << 32)
                | OCCUPIED
                | if self.proto == L4Proto::Udp { UDP } else { 0 },
        }
    }

    fn from_raw(k: RawKey) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::from_bits((k.w0 >> 32) as u32),
            dst: Ipv4Addr::from_bits(k.w0 as u32),
            sport: (k.w1 >> 48) as u16,
            dport: (k.w1 >> 32) as u16,
            proto: if k.w1 & UDP != 0 {
                L4Proto::Udp
            } else {
                L4Proto::Tcp
            },
        }
    }
}

/// Which direction of its flow an entry translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtDir {
    /// Client → frontend: the destination becomes the backend (DNAT).
    Original,
    /// Backend → client: the source becomes the frontend again (reverse NAT).
    Reply,
}

/// Where a TCP flow is, as far as timeouts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// Opening: no packet without SYN after a reply yet.
    SynSent,
    Established,
    /// A FIN or RST was seen.
    Closing,
}

/// The state both entries of a flow share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowState {
    /// A packet of the reply direction was seen.
    pub replied: bool,
    /// Meaningless for UDP.
    pub tcp: TcpState,
    /// Dead at this second of [`Conntrack::now`].
    pub expires: u32,
}

impl FlowState {
    /// The state after a packet of `dir` with `flags` (TCP; ignored for UDP). `prev`: the
    /// flow's state, `None` for its first packet.
    #[inline]
    pub fn advance(prev: Option<FlowState>, proto: L4Proto, dir: CtDir, flags: TcpFlags) -> Self {
        let mut replied = prev.is_some_and(|p| p.replied) || dir == CtDir::Reply;
        let tcp = if proto == L4Proto::Udp {
            TcpState::SynSent
        } else if flags.contains(TcpFlags::RST) || flags.contains(TcpFlags::FIN) {
            TcpState::Closing
        } else if flags.contains(TcpFlags::SYN) {
            // A new SYN from the client reopens the tuple (port reuse after a close).
            if dir == CtDir::Original && !flags.contains(TcpFlags::ACK) {
                replied = false;
            }
            TcpState::SynSent
        } else if prev.is_some_and(|p| p.tcp == TcpState::Closing) {
            TcpState::Closing
        } else if replied {
            TcpState::Established
        } else {
            TcpState::SynSent
        };
        FlowState {
            replied,
            tcp,
            expires: 0,
        }
    }

    /// Seconds an entry in this state lives without traffic.
    #[inline]
    pub fn timeout(&self, proto: L4Proto) -> u32 {
        match (proto, self.tcp) {
            (L4Proto::Udp, _) if self.replied => UDP_STREAM_TIMEOUT,
            (L4Proto::Udp, _) => UDP_TIMEOUT,
            (L4Proto::Tcp, TcpState::SynSent) => TCP_SYN_TIMEOUT,
            (L4Proto::Tcp, TcpState::Established) => TCP_ESTABLISHED_TIMEOUT,
            (L4Proto::Tcp, TcpState::Closing) => TCP_CLOSING_TIMEOUT,
        }
    }

    /// Whether `prev` (as stored) must be written again to become `self` at `now`: the state
    /// changed, or more than an eighth of the timeout went by since the last refresh. Flows
    /// refresh rarely, so the shared lines of a busy flow are written seldom.
    #[inline]
    pub fn needs_store(&self, prev: &FlowState, proto: L4Proto, now: u32) -> bool {
        if self.replied != prev.replied || self.tcp != prev.tcp {
            return true;
        }
        let t = self.timeout(proto);
        prev.expires < (now + t).saturating_sub(t / 8)
    }
}

/// One direction of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtEntry {
    pub dir: CtDir,
    /// Original: the backend the destination becomes (the destination itself for a
    /// masqueraded flow). Reply: the frontend the source becomes.
    pub nat_addr: Ipv4Addr,
    pub nat_port: u16,
    /// Source NAT. Original: the node address and port the source becomes. Reply: the
    /// client's address and port the destination becomes again.
    pub snat: Option<(Ipv4Addr, u16)>,
    pub state: FlowState,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The key was there; its value was replaced.
    Updated,
    /// Into a free or expired slot.
    Inserted,
    /// A live entry (the first to expire in the bucket) made room.
    Evicted,
    /// Other writers held the bucket; nothing was written.
    Busy,
    /// [`Conntrack::insert_new`] only: a live entry has the key; nothing was written.
    Exists,
}

// Word 1 of an entry: sport (16) | dport (16) | nat port (16) | flags (16).
// Word 2: nat address (32) | expiry (32). Word 3: snat address (32) | snat port (16) | flags.
const OCCUPIED: u64 = 1;
const UDP: u64 = 1 << 1;
const REPLY: u64 = 1 << 2;
const REPLIED: u64 = 1 << 3;
const TCP_STATE_SHIFT: u32 = 4;
/// Word 3: the entry has source NAT.
const SNAT: u64 = 1;
/// The bits of word 1 that are key: ports, occupied, protocol.
const KEY_MASK: u64 = 0xffff_ffff_0000_0000 | OCCUPIED | UDP;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawKey {
    w0: u64,
    /// Key bits of word 1 only.
    w1: u64,
}

/// Word 1's value bits (nat port, flags), word 2 (nat address | expiry) and word 3 (snat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawValue {
    w1: u64,
    w2: u64,
    w3: u64,
}

impl RawValue {
    #[inline]
    fn expires(self) -> u32 {
        self.w2 as u32
    }

    fn from_entry(e: &CtEntry) -> RawValue {
        let tcp = match e.state.tcp {
            TcpState::SynSent => 0,
            TcpState::Established => 1,
            TcpState::Closing => 2,
        };
        RawValue {
            w1: (u64::from(e.nat_port) << 16)
                | if e.dir == CtDir::Reply { REPLY } else { 0 }
                | if e.state.replied { REPLIED } else { 0 }
                | (tcp << TCP_STATE_SHIFT),
            w2: (u64::from(e.nat_addr.to_bits()) << 32) | u64::from(e.state.expires),
            w3: e.snat.map_or(0, |(a, p)| {
                (u64::from(a.to_bits()) << 32) | (u64::from(p) << 16) | SNAT
            }),
        }
    }

    #[inline]
    fn entry(self) -> CtEntry {
        CtEntry {
            dir: if self.w1 & REPLY != 0 {
                CtDir::Reply
            } else {
                CtDir::Original
            },
            nat_addr: Ipv4Addr::from_bits((self.w2 >> 32) as u32),
            nat_port: (self.w1 >> 16) as u16,
            snat: (self.w3 & SNAT != 0).then(|| {
                (
                    Ipv4Addr::from_bits((self.w3 >> 32) as u32),
                    (self.w3 >> 16) as u16,
                )
            }),
            state: FlowState {
                replied: self.w1 & REPLIED != 0,
                tcp: match (self.w1 >> TCP_STATE_SHIFT) & 3 {
                    0 => TcpState::SynSent,
                    1 => TcpState::Established,
                    _ => TcpState::Closing,
                },
                expires: self.expires(),
            },
        }
    }
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    /// Even: stable. Odd: a writer is in.
    seq: AtomicU64,
    slots: [[AtomicU64; 4]; WAYS],
}

// Three cache lines per bucket: the sequence word and five four-word entries (168 bytes).
const _: () = assert!(std::mem::size_of::<Bucket>() == 192);

/// The fixed-size seqlocked hash table under both the flows and the affinity entries.
#[derive(Debug)]
struct FlowTable {
    buckets: Box<[Bucket]>,
    mask: usize,
}

impl FlowTable {
    fn new(entries: usize) -> FlowTable {
        let n = entries.div_ceil(WAYS).next_power_of_two().max(1);
        FlowTable {
            buckets: (0..n).map(|_| Bucket::default()).collect(),
            mask: n - 1,
        }
    }

    fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    #[inline]
    fn bucket(&self, k: &RawKey) -> &Bucket {
        let h = mix64(k.w0 ^ mix64(k.w1)) as usize;
        // In bounds: mask = len - 1.
        &self.buckets[h & self.mask]
    }

    /// The live value under `k`.
    #[inline]
    fn lookup(&self, k: &RawKey, now: u32) -> Option<RawValue> {
        let b = self.bucket(k);
        for _ in 0..READ_TRIES {
            let s1 = b.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let mut found = None;
                for slot in &b.slots {
                    let w0 = slot[0].load(Ordering::Relaxed);
                    let w1 = slot[1].load(Ordering::Relaxed);
                    if w0 == k.w0 && w1 & KEY_MASK == k.w1 {
                        found = Some(RawValue {
                            w1: w1 & !KEY_MASK,
                            w2: slot[2].load(Ordering::Relaxed),
                            w3: slot[3].load(Ordering::Relaxed),
                        });
                        break;
                    }
                }
                // Seqlock read side: the loads above happen before the second sequence load.
                fence(Ordering::Acquire);
                if b.seq.load(Ordering::Relaxed) == s1 {
                    return found.filter(|v| v.expires() > now);
                }
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Insert or replace the value under `k`; with `only_new`, leave a live one as it is.
    #[inline]
    fn upsert(&self, k: &RawKey, v: RawValue, now: u32, only_new: bool) -> Upsert {
        let b = self.bucket(k);
        let Some(s) = lock(b) else {
            return Upsert::Busy;
        };
        let mut target = None;
        let mut free = None;
        let mut oldest: Option<(usize, u32)> = None;
        for (i, slot) in b.slots.iter().enumerate() {
            let w0 = slot[0].load(Ordering::Relaxed);
            let w1 = slot[1].load(Ordering::Relaxed);
            let expires = slot[2].load(Ordering::Relaxed) as u32;
            if w0 == k.w0 && w1 & KEY_MASK == k.w1 {
                if only_new && expires > now {
                    b.seq.store(s, Ordering::Release);
                    return Upsert::Exists;
                }
                target = Some((i, Upsert::Updated));
                break;
            }
            if w1 & OCCUPIED == 0 || expires <= now {
                free.get_or_insert(i);
            } else if oldest.is_none_or(|(_, e)| expires < e) {
                oldest = Some((i, expires));
            }
        }
        // With no match and no free slot every slot is live, so `oldest` is set.
        let (i, outcome) = target
            .or(free.map(|i| (i, Upsert::Inserted)))
            .or(oldest.map(|(i, _)| (i, Upsert::Evicted)))
            .unwrap_or((0, Upsert::Evicted));
        // In bounds: an index of `b.slots`.
        let slot = &b.slots[i];
        slot[0].store(k.w0, Ordering::Relaxed);
        slot[1].store(k.w1 | v.w1, Ordering::Relaxed);
        slot[2].store(v.w2, Ordering::Relaxed);
        slot[3].store(v.w3, Ordering::Relaxed);
        b.seq.store(s + 2, Ordering::Release);
        outcome
    }

    /// Calls `f` on every live entry (slow path: inspection, metrics).
    fn for_each_live(&self, now: u32, mut f: impl FnMut(RawKey, RawValue)) {
        for b in self.buckets.iter() {
            let mut copy = [(0u64, 0u64, 0u64, 0u64); WAYS];
            let mut stable = false;
            for _ in 0..READ_TRIES {
                let s1 = b.seq.load(Ordering::Acquire);
                if s1 & 1 == 0 {
                    for (c, slot) in copy.iter_mut().zip(&b.slots) {
                        *c = (
                            slot[0].load(Ordering::Relaxed),
                            slot[1].load(Ordering::Relaxed),
                            slot[2].load(Ordering::Relaxed),
                            slot[3].load(Ordering::Relaxed),
                        );
                    }
                    fence(Ordering::Acquire);
                    if b.seq.load(Ordering::Relaxed) == s1 {
                        stable = true;
                        break;
                    }
                }
                std::hint::spin_loop();
            }
            if !stable {
                continue;
            }
            for (w0, w1, w2, w3) in copy {
                let v = RawValue {
                    w1: w1 & !KEY_MASK,
                    w2,
                    w3,
                };
                if w1 & OCCUPIED != 0 && v.expires() > now {
                    f(
                        RawKey {
                            w0,
                            w1: w1 & KEY_MASK,
                        },
                        v,
                    );
                }
            }
        }
    }
}

/// Takes the bucket's seqlock for writing; returns the (even) sequence it had.
#[inline]
fn lock(b: &Bucket) -> Option<u64> {
    for _ in 0..LOCK_TRIES {
        let s = b.seq.load(Ordering::Relaxed);
        if s & 1 == 0
            && b.seq
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            // Seqlock write side: the odd sequence is visible before any data store.
            fence(Ordering::Release);
            return Some(s);
        }
        std::hint::spin_loop();
    }
    None
}

/// The flows and session-affinity entries of service NAT, shared by all workers
/// (`Arc<Conntrack>`), with the clock their expiries count in.
#[derive(Debug)]
pub struct Conntrack {
    flows: FlowTable,
    affinity: FlowTable,
    epoch: Instant,
}

impl Default for Conntrack {
    /// The engine's sizes: [`DEFAULT_FLOW_ENTRIES`], [`DEFAULT_AFFINITY_ENTRIES`].
    fn default() -> Self {
        Conntrack::new(DEFAULT_FLOW_ENTRIES, DEFAULT_AFFINITY_ENTRIES)
    }
}

impl Conntrack {
    /// Room for about `flow_entries` flow entries (two per flow) and `affinity_entries`
    /// affinity entries, rounded up; allocated here, once.
    pub fn new(flow_entries: usize, affinity_entries: usize) -> Conntrack {
        Conntrack {
            flows: FlowTable::new(flow_entries),
            affinity: FlowTable::new(affinity_entries),
            epoch: Instant::now(),
        }
    }

    /// Seconds since this table was made: the clock of every expiry. Read it once per batch.
    #[inline]
    pub fn now(&self) -> u32 {
        // Wraps after 136 years.
        self.epoch.elapsed().as_secs() as u32
    }

    /// Flow entries the table holds at most.
    pub fn capacity(&self) -> usize {
        self.flows.capacity()
    }

    /// The live entry for packets carrying `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, now: u32) -> Option<CtEntry> {
        self.flows.lookup(&key.raw(), now).map(RawValue::entry)
    }

    /// Insert or replace the entry for `key`.
    #[inline]
    pub fn upsert(&self, key: &FlowKey, entry: &CtEntry, now: u32) -> Upsert {
        self.flows
            .upsert(&key.raw(), RawValue::from_entry(entry), now, false)
    }

    /// Insert the entry for `key` unless a live one is there ([`Upsert::Exists`]): how a
    /// source NAT port is claimed, atomically among workers.
    #[inline]
    pub fn insert_new(&self, key: &FlowKey, entry: &CtEntry, now: u32) -> Upsert {
        self.flows
            .upsert(&key.raw(), RawValue::from_entry(entry), now, true)
    }

    /// The backend `client`'s flows to `frontend` went to, while the affinity lasts.
    #[inline]
    pub fn affinity(&self, client: Ipv4Addr, frontend: FrontendKey, now: u32) -> Option<Backend> {
        self.affinity
            .lookup(&affinity_key(client, frontend), now)
            .map(|v| {
                let e = v.entry();
                Backend {
                    addr: e.nat_addr,
                    port: e.nat_port,
                }
            })
    }

    /// Record (or refresh) `client`'s affinity to `backend` for `timeout_s` seconds.
    #[inline]
    pub fn set_affinity(
        &self,
        client: Ipv4Addr,
        frontend: FrontendKey,
        backend: Backend,
        timeout_s: u32,
        now: u32,
    ) -> Upsert {
        let entry = CtEntry {
            dir: CtDir::Original,
            nat_addr: backend.addr,
            nat_port: backend.port,
            snat: None,
            state: FlowState {
                replied: false,
                tcp: TcpState::SynSent,
                expires: now.saturating_add(timeout_s),
            },
        };
        self.affinity.upsert(
            &affinity_key(client, frontend),
            RawValue::from_entry(&entry),
            now,
            false,
        )
    }

    /// Calls `f` on every live flow entry (slow path: a full scan).
    pub fn for_each(&self, now: u32, mut f: impl FnMut(FlowKey, CtEntry)) {
        self.flows
            .for_each_live(now, |k, v| f(FlowKey::from_raw(k), v.entry()));
    }

    /// Live flow entries (two per flow; a full scan, for metrics and inspection).
    pub fn live_entries(&self, now: u32) -> usize {
        let mut n = 0;
        self.flows.for_each_live(now, |_, _| n += 1);
        n
    }
}

/// Affinity entries reuse the flow layout: (client, frontend address, 0, frontend port).
#[inline]
fn affinity_key(client: Ipv4Addr, fe: FrontendKey) -> RawKey {
    FlowKey {
        src: client,
        dst: fe.addr,
        sport: 0,
        dport: fe.port,
        proto: fe.proto,
    }
    .raw()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::from_bits(0x0a00_0000 + i),
            dst: Ipv4Addr::new(10, 96, 0, 1),
            sport: (i % 60000) as u16 + 1024,
            dport: 80,
            proto: L4Proto::Tcp,
        }
    }

    fn entry(expires: u32) -> CtEntry {
        CtEntry {
            dir: CtDir::Original,
            nat_addr: Ipv4Addr::new(10, 244, 1, 2),
            nat_port: 8080,
            snat: None,
            state: FlowState {
                replied: true,
                tcp: TcpState::Established,
                expires,
            },
        }
    }

    #[test]
    fn entries_round_trip_through_words() {
        let e = CtEntry {
            dir: CtDir::Reply,
            nat_addr: Ipv4Addr::new(1, 2, 3, 4),
            nat_port: 65535,
            snat: Some((Ipv4Addr::new(192, 168, 0, 1), 65535)),
            state: FlowState {
                replied: true,
                tcp: TcpState::Closing,
                expires: u32::MAX,
            },
        };
        assert_eq!(RawValue::from_entry(&e).entry(), e);
        let plain = CtEntry { snat: None, ..e };
        assert_eq!(RawValue::from_entry(&plain).entry(), plain);
        let zero = CtEntry {
            snat: Some((Ipv4Addr::UNSPECIFIED, 0)),
            ..e
        };
        assert_eq!(RawValue::from_entry(&zero).entry(), zero);
        let k = FlowKey {
            proto: L4Proto::Udp,
            ..key(7)
        };
        assert_eq!(FlowKey::from_raw(k.raw()), k);
        assert_ne!(k.raw(), key(7).raw(), "the protocol is key");
    }

    #[test]
    fn insert_lookup_update_expire() {
        let ct = Conntrack::new(100, 10);
        let k = key(1);
        assert_eq!(ct.lookup(&k, 0), None);
        assert_eq!(ct.upsert(&k, &entry(10), 0), Upsert::Inserted);
        assert_eq!(ct.lookup(&k, 9), Some(entry(10)));
        assert_eq!(ct.lookup(&k.reversed(), 9), None);
        assert_eq!(ct.upsert(&k, &entry(20), 5), Upsert::Updated);
        assert_eq!(ct.lookup(&k, 19).unwrap().state.expires, 20);
        // Expired: gone for lookups, and its slot is free again.
        assert_eq!(ct.lookup(&k, 20), None);
        assert_eq!(ct.live_entries(20), 0);
        assert_eq!(ct.live_entries(19), 1);
        assert_eq!(ct.upsert(&key(2), &entry(30), 20), Upsert::Inserted);
    }

    #[test]
    fn insert_new_claims_a_key_once() {
        let ct = Conntrack::new(100, 10);
        let k = key(3);
        assert_eq!(ct.insert_new(&k, &entry(10), 0), Upsert::Inserted);
        assert_eq!(ct.insert_new(&k, &entry(50), 5), Upsert::Exists);
        assert_eq!(ct.lookup(&k, 5), Some(entry(10)), "left as it was");
        // Expired: free to claim again.
        assert_eq!(ct.insert_new(&k, &entry(50), 10), Upsert::Updated);
        assert_eq!(ct.lookup(&k, 11), Some(entry(50)));
    }

    #[test]
    fn full_buckets_evict_the_first_to_expire() {
        // One bucket: five ways.
        let ct = Conntrack::new(1, 1);
        assert_eq!(ct.capacity(), WAYS);
        for i in 0..WAYS as u32 {
            assert_eq!(ct.upsert(&key(i), &entry(100 + i), 0), Upsert::Inserted);
        }
        assert_eq!(ct.upsert(&key(99), &entry(500), 0), Upsert::Evicted);
        assert_eq!(ct.lookup(&key(0), 0), None, "the soonest to expire went");
        for i in 1..WAYS as u32 {
            assert!(ct.lookup(&key(i), 0).is_some());
        }
        assert!(ct.lookup(&key(99), 0).is_some());
        assert_eq!(ct.live_entries(0), WAYS);
        // Once some expire, inserts reuse them instead of evicting.
        assert_eq!(ct.upsert(&key(98), &entry(500), 102), Upsert::Inserted);
    }

    #[test]
    fn tcp_and_udp_timeouts_follow_the_flow() {
        let syn = TcpFlags::SYN;
        let synack = TcpFlags::SYN | TcpFlags::ACK;
        let ack = TcpFlags::ACK;
        let t = L4Proto::Tcp;
        let s = FlowState::advance(None, t, CtDir::Original, syn);
        assert_eq!((s.tcp, s.timeout(t)), (TcpState::SynSent, TCP_SYN_TIMEOUT));
        let s = FlowState::advance(Some(s), t, CtDir::Reply, synack);
        assert_eq!((s.tcp, s.replied), (TcpState::SynSent, true));
        let s = FlowState::advance(Some(s), t, CtDir::Original, ack);
        assert_eq!(
            (s.tcp, s.timeout(t)),
            (TcpState::Established, TCP_ESTABLISHED_TIMEOUT)
        );
        let s = FlowState::advance(Some(s), t, CtDir::Reply, TcpFlags::FIN | ack);
        assert_eq!(
            (s.tcp, s.timeout(t)),
            (TcpState::Closing, TCP_CLOSING_TIMEOUT)
        );
        let s = FlowState::advance(Some(s), t, CtDir::Original, ack);
        assert_eq!(s.tcp, TcpState::Closing, "the last ACK stays closing");
        let s = FlowState::advance(Some(s), t, CtDir::Original, syn);
        assert_eq!((s.tcp, s.replied), (TcpState::SynSent, false), "reopened");
        let u = L4Proto::Udp;
        let s = FlowState::advance(None, u, CtDir::Original, TcpFlags(0));
        assert_eq!(s.timeout(u), UDP_TIMEOUT);
        let s = FlowState::advance(Some(s), u, CtDir::Reply, TcpFlags(0));
        assert_eq!(s.timeout(u), UDP_STREAM_TIMEOUT);
        // Refreshes: only after an eighth of the timeout, or on a state change.
        let stored = FlowState {
            expires: 100 + UDP_STREAM_TIMEOUT,
            ..s
        };
        assert!(!s.needs_store(&stored, u, 100 + UDP_STREAM_TIMEOUT / 8));
        assert!(s.needs_store(&stored, u, 101 + UDP_STREAM_TIMEOUT / 8));
        let closing = FlowState {
            tcp: TcpState::Closing,
            ..stored
        };
        assert!(closing.needs_store(&stored, t, 100));
    }

    #[test]
    fn affinity_entries() {
        let ct = Conntrack::new(10, 10);
        let fe = FrontendKey {
            addr: Ipv4Addr::new(10, 96, 0, 1),
            proto: L4Proto::Tcp,
            port: 80,
        };
        let client = Ipv4Addr::new(10, 244, 2, 9);
        let b = Backend {
            addr: Ipv4Addr::new(10, 244, 1, 5),
            port: 8080,
        };
        assert_eq!(ct.affinity(client, fe, 0), None);
        ct.set_affinity(client, fe, b, 100, 0);
        assert_eq!(ct.affinity(client, fe, 99), Some(b));
        assert_eq!(ct.affinity(client, fe, 100), None);
        assert_eq!(ct.affinity(client, FrontendKey { port: 81, ..fe }, 1), None);
        assert_eq!(ct.live_entries(0), 0, "affinity is a table of its own");
    }

    /// Writers on several threads, readers on others: a reader sees either nothing or an entry
    /// one writer wrote whole (the entry's words agree with each other).
    #[test]
    fn concurrent_writers_and_readers_never_see_torn_entries() {
        let ct = Arc::new(Conntrack::new(64, 1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2u16)
            .map(|w| {
                let ct = Arc::clone(&ct);
                std::thread::spawn(move || {
                    let mut busy = 0;
                    for i in 0..200_000u32 {
                        let k = key(i % 40);
                        // nat_port and the address encode the same number.
                        let n = (i % 1000) as u16 + w * 1000;
                        let e = CtEntry {
                            nat_addr: Ipv4Addr::from_bits(u32::from(n)),
                            nat_port: n,
                            ..entry(u32::MAX)
                        };
                        if ct.upsert(&k, &e, 0) == Upsert::Busy {
                            busy += 1;
                        }
                    }
                    busy
                })
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (ct, stop) = (Arc::clone(&ct), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..40 {
                            if let Some(e) = ct.lookup(&key(i), 0) {
                                assert_eq!(e.nat_addr.to_bits(), u32::from(e.nat_port));
                                seen += 1;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        for w in writers {
            let busy = w.join().unwrap();
            assert!(busy < 200_000);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}
