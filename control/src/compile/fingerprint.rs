//! Fingerprints: a 128-bit hash of everything one service's compiled entries depend on (its
//! [`ServiceView`], its slices' [`EndpointSliceView`]s, the [`ServiceContext`]). Equal
//! fingerprints → the cached entries are reused without looking at the objects again.
//!
//! Every compile fingerprints every service (the compiler is handed a whole state, not a list of
//! changes), so this hash is on the path of each incremental compile and must be cheap per
//! endpoint: [`FoldHasher`] costs one 64×64→128-bit multiply per word and lane. It is not
//! SipHash (about ten times slower per small write here) and not Fx (its multiply-add chain lets
//! structured edits cancel out): two lanes of folded multiplies with different constants, so an
//! accidental collision, which would silently keep a stale service, needs both 64-bit lanes to
//! collide. The views do not implement `Hash`, so each is destructured here field by field: a
//! field added to a view breaks this build until it is hashed too.
//!
//! [`ServiceContext`]: super::ServiceContext

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::mem::discriminant;

use crate::objects::{
    EndpointPortView, EndpointSliceView, EndpointView, ServicePortView, ServiceView,
    SessionAffinity, TargetPort,
};

use super::ServiceContext;

/// A fingerprint: both lanes of a [`FoldHasher`].
pub(super) type Fingerprint = u128;

/// A hash map keyed with [`FoldHasher`] (the compiler's maps are keyed by object names, which
/// SipHash makes a visible share of a compile).
pub(super) type FoldMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The high and low halves of the 128-bit product, xored: every input bit reaches the result
/// (foldhash's and wyhash's mixing step).
#[inline]
fn fold(x: u64, k: u64) -> u64 {
    let p = u128::from(x) * u128::from(k);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A fast, fixed-seed, two-lane streaming hash. Each `write*` call is one or more whole words;
/// the std `Hash` impls already delimit variable-length data (lengths, `0xff` after strings).
#[derive(Debug, Clone, Copy)]
pub(super) struct FoldHasher {
    a: u64,
    b: u64,
}

impl Default for FoldHasher {
    fn default() -> Self {
        FoldHasher {
            a: 0x243f_6a88_85a3_08d3,
            b: 0x1319_8a2e_0370_7344,
        }
    }
}

impl FoldHasher {
    #[inline]
    fn word(&mut self, w: u64) {
        self.a = fold(self.a ^ w, K1);
        self.b = fold(self.b ^ w.rotate_left(23), K2);
    }

    /// Both lanes, finalised.
    pub(super) fn finish128(&self) -> Fingerprint {
        let a = fold(self.a ^ K2, K1);
        let b = fold(self.b ^ K1, K2);
        (u128::from(a) << 64) | u128::from(b)
    }
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(<[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Byte by byte: a variable-length copy would call memcpy for a few bytes. The tail's
            // length goes in the spare top byte, so "a" and "a\0" differ.
            let mut w = (rest.len() as u64) << 56;
            for (i, &b) in rest.iter().enumerate() {
                w |= u64::from(b) << (8 * i);
            }
            self.word(w);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.a ^ K2, K1)
    }
}

/// The context's share of every fingerprint (a changed node name, address or zone recompiles
/// every service).
pub(super) fn context(ctx: &ServiceContext) -> Fingerprint {
    let ServiceContext {
        node_name,
        node_ips,
        zone,
    } = ctx;
    let mut h = FoldHasher::default();
    node_name.hash(&mut h);
    node_ips.hash(&mut h);
    zone.hash(&mut h);
    h.finish128()
}

/// One service's fingerprint. `slices` in the order compilation reads them.
pub(super) fn service(
    svc: &ServiceView,
    slices: &[&EndpointSliceView],
    context: Fingerprint,
) -> Fingerprint {
    let mut h = FoldHasher::default();
    context.hash(&mut h);
    service_view(svc, &mut h);
    h.write_usize(slices.len());
    for s in slices {
        slice_view(s, &mut h);
    }
    h.finish128()
}

fn service_view(svc: &ServiceView, h: &mut FoldHasher) {
    let ServiceView {
        namespace,
        name,
        service_type,
        cluster_ips,
        headless,
        external_name,
        ports,
        external_ips,
        load_balancer_ingress_ips,
        session_affinity,
        external_traffic_policy,
        internal_traffic_policy,
        load_balancer_source_ranges,
        health_check_node_port,
        publish_not_ready_addresses,
    } = svc;
    namespace.hash(h);
    name.hash(h);
    discriminant(service_type).hash(h);
    cluster_ips.hash(h);
    headless.hash(h);
    external_name.hash(h);
    h.write_usize(ports.len());
    for p in ports {
        service_port(p, h);
    }
    external_ips.hash(h);
    load_balancer_ingress_ips.hash(h);
    match session_affinity {
        SessionAffinity::None => h.write_u8(0),
        SessionAffinity::ClientIp { timeout_seconds } => {
            h.write_u8(1);
            timeout_seconds.hash(h);
        }
    }
    discriminant(external_traffic_policy).hash(h);
    discriminant(internal_traffic_policy).hash(h);
    load_balancer_source_ranges.hash(h);
    health_check_node_port.hash(h);
    publish_not_ready_addresses.hash(h);
}

fn service_port(p: &ServicePortView, h: &mut FoldHasher) {
    let ServicePortView {
        name,
        protocol,
        port,
        target_port,
        node_port,
    } = p;
    name.hash(h);
    protocol.hash(h);
    port.hash(h);
    match target_port {
        TargetPort::Number(n) => {
            h.write_u8(0);
            n.hash(h);
        }
        TargetPort::Name(n) => {
            h.write_u8(1);
            n.hash(h);
        }
    }
    node_port.hash(h);
}

fn slice_view(s: &EndpointSliceView, h: &mut FoldHasher) {
    let EndpointSliceView {
        namespace,
        name,
        service,
        address_type,
        ports,
        endpoints,
    } = s;
    namespace.hash(h);
    name.hash(h);
    service.hash(h);
    discriminant(address_type).hash(h);
    h.write_usize(ports.len());
    for p in ports {
        let EndpointPortView {
            name,
            protocol,
            port,
        } = p;
        name.hash(h);
        protocol.hash(h);
        port.hash(h);
    }
    h.write_usize(endpoints.len());
    for e in endpoints {
        endpoint(e, h);
    }
}

fn endpoint(e: &EndpointView, h: &mut FoldHasher) {
    let EndpointView {
        addresses,
        ready,
        serving,
        terminating,
        node_name,
        zone,
        for_zones,
    } = e;
    addresses.hash(h);
    // Three flags in one write.
    h.write_u8(u8::from(*ready) | u8::from(*serving) << 1 | u8::from(*terminating) << 2);
    node_name.hash(h);
    zone.hash(h);
    for_zones.hash(h);
}
