//! Services: the frontends the data path load-balances (ClusterIP, NodePort, LoadBalancer and
//! external IPs, each an address, protocol and port) and the backend set each one sends to.
//!
//! A frontend is found by one hash lookup of (address, protocol, port), so the per-packet cost
//! does not grow with the number of services. Each frontend names its own [`BackendSet`]: the
//! ClusterIP and the NodePort of one service may differ (`externalTrafficPolicy: Local` keeps
//! only the node's own endpoints on external frontends; the compiler decides, the data path
//! only follows). A set holds the Maglev array of its active backends, plus the draining
//! (terminating) ones, which keep the flows they have but get no new ones.
//!
//! The control plane builds a [`Services`] with [`ServicesBuilder`] and puts it in
//! [`Tables::services`](super::Tables::services). Backend sets are `Arc`s so that a compiler
//! can keep the unchanged ones (and their Maglev arrays) from one publish to the next.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::maglev;
use crate::wire::IpProtocol;

/// The L4 protocols a frontend can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl L4Proto {
    #[inline]
    pub fn from_ip(p: IpProtocol) -> Option<L4Proto> {
        match p {
            IpProtocol::TCP => Some(L4Proto::Tcp),
            IpProtocol::UDP => Some(L4Proto::Udp),
            _ => None,
        }
    }

    #[inline]
    pub fn ip_protocol(self) -> IpProtocol {
        match self {
            L4Proto::Tcp => IpProtocol::TCP,
            L4Proto::Udp => IpProtocol::UDP,
        }
    }
}

/// What a frontend matches: destination address, protocol and destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendKey {
    pub addr: Ipv4Addr,
    pub proto: L4Proto,
    pub port: u16,
}

impl FrontendKey {
    /// The key as one word: what the frontend map hashes.
    #[inline]
    fn packed(self) -> u64 {
        (u64::from(self.addr.to_bits()) << 24)
            | (u64::from(self.port) << 8)
            | u64::from(self.proto.ip_protocol().0)
    }
}

/// Which Service field a frontend comes from; decides the checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrontendKind {
    ClusterIp,
    /// A node address and the service's node port.
    NodePort,
    /// An address of `status.loadBalancer.ingress`: checked against the source ranges.
    LoadBalancer,
    /// An address of `spec.externalIPs`.
    ExternalIp,
}

/// `sessionAffinity` of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionAffinity {
    #[default]
    None,
    /// New flows of one client go to the backend its last flow went to, for `timeout_s` seconds
    /// after that flow started (kube-proxy's `recent` match; Kubernetes' default is 10800).
    ClientIp { timeout_s: u32 },
}

/// An endpoint: where a frontend's flows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// Index of a [`BackendSet`] in [`Services`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendSetId(pub u32);

/// The backends of one frontend: the active ones, in a Maglev array, and the draining ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSet {
    /// Sorted, without duplicates; what the Maglev array indexes.
    active: Box<[Backend]>,
    /// Sorted; terminating endpoints that keep their existing flows. Never also active.
    draining: Box<[Backend]>,
    /// Indices into `active`; empty when there is no active backend.
    maglev: Box<[u16]>,
}

impl BackendSet {
    /// Most active backends of a set (the Maglev array stores 16-bit indices).
    pub const MAX_ACTIVE: usize = u16::MAX as usize;

    /// A set with the Maglev array sized by [`maglev::table_size`].
    pub fn new(active: &[Backend], draining: &[Backend]) -> Result<BackendSet, ServicesError> {
        Self::build(active, draining, None)
    }

    /// A set with a Maglev array of `m` slots (rounded up to a prime).
    pub fn with_table_size(
        active: &[Backend],
        draining: &[Backend],
        m: usize,
    ) -> Result<BackendSet, ServicesError> {
        Self::build(active, draining, Some(m))
    }

    fn build(
        active: &[Backend],
        draining: &[Backend],
        m: Option<usize>,
    ) -> Result<BackendSet, ServicesError> {
        let mut active = active.to_vec();
        active.sort_unstable();
        active.dedup();
        if active.len() > Self::MAX_ACTIVE {
            return Err(ServicesError::TooManyBackends(active.len()));
        }
        let m = m.unwrap_or_else(|| maglev::table_size(active.len()));
        let mut draining: Vec<Backend> = draining
            .iter()
            .filter(|b| active.binary_search(b).is_err())
            .copied()
            .collect();
        draining.sort_unstable();
        draining.dedup();
        let maglev = maglev::build(&active, m)
            .into_iter()
            // Fits: at most MAX_ACTIVE backends.
            .map(|i| i as u16)
            .collect();
        Ok(BackendSet {
            active: active.into(),
            draining: draining.into(),
            maglev,
        })
    }

    /// Active backends, sorted.
    pub fn active(&self) -> &[Backend] {
        &self.active
    }

    /// Draining backends, sorted.
    pub fn draining(&self) -> &[Backend] {
        &self.draining
    }

    /// Size of the Maglev array (0 without active backends).
    pub fn table_size(&self) -> usize {
        self.maglev.len()
    }

    /// Whether new flows have somewhere to go.
    #[inline]
    pub fn has_active(&self) -> bool {
        !self.maglev.is_empty()
    }

    /// The backend for a new flow with this hash; `None` without active backends.
    #[inline]
    pub fn pick(&self, flow_hash: u64) -> Option<Backend> {
        let len = self.maglev.len() as u64;
        if len == 0 {
            return None;
        }
        let i = self.maglev.get((flow_hash % len) as usize)?;
        self.active.get(usize::from(*i)).copied()
    }

    /// Whether `b` takes new flows (session affinity may send a client back to it).
    #[inline]
    pub fn is_active(&self, b: Backend) -> bool {
        self.active.binary_search(&b).is_ok()
    }

    /// Whether an existing flow may stay on `b`: active or draining.
    #[inline]
    pub fn contains(&self, b: Backend) -> bool {
        self.is_active(b) || (!self.draining.is_empty() && self.draining.binary_search(&b).is_ok())
    }

    fn members(&self) -> impl Iterator<Item = &Backend> {
        self.active.iter().chain(self.draining.iter())
    }
}

/// One frontend: where it sends, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub kind: FrontendKind,
    pub backends: BackendSetId,
    pub affinity: SessionAffinity,
    /// No active backend: answer TCP with a RST and UDP with ICMP port unreachable (what
    /// kube-proxy's REJECT does) rather than drop silently (what it does for an external
    /// frontend with `externalTrafficPolicy: Local` and no local endpoint).
    pub reject_no_endpoints: bool,
    /// `externalTrafficPolicy: Local` on an external frontend: its set holds only this node's
    /// endpoints. Informational here (the compiler built the set); shown by inspection.
    pub external_local: bool,
    /// With `external_local`: the service's cluster-wide set, for clients inside the cluster
    /// network (kube-proxy sends pods' traffic to a service's external addresses to all its
    /// endpoints, unmasqueraded, whatever the policy).
    pub cluster_backends: Option<BackendSetId>,
    /// `loadBalancerSourceRanges`, checked on LoadBalancer frontends only; empty allows all.
    pub source_ranges: Box<[(Ipv4Addr, u8)]>,
}

impl Frontend {
    /// A frontend with no affinity, no source ranges, rejecting when it has no endpoints.
    pub fn new(kind: FrontendKind, backends: BackendSetId) -> Frontend {
        Frontend {
            kind,
            backends,
            affinity: SessionAffinity::None,
            reject_no_endpoints: true,
            external_local: false,
            cluster_backends: None,
            source_ranges: Box::new([]),
        }
    }

    /// Whether `src` may use this frontend (`loadBalancerSourceRanges`): a short linear scan,
    /// services list a few ranges.
    #[inline]
    pub fn source_allowed(&self, src: Ipv4Addr) -> bool {
        if self.kind != FrontendKind::LoadBalancer || self.source_ranges.is_empty() {
            return true;
        }
        let src = src.to_bits();
        self.source_ranges.iter().any(|&(net, len)| {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            src & mask == net.to_bits() & mask
        })
    }
}

/// Why a [`Services`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServicesError {
    /// Two frontends with the same address, protocol and port.
    #[error("duplicate frontend {0:?}")]
    DuplicateFrontend(FrontendKey),
    /// A frontend names a backend set that was not added.
    #[error("frontend {0:?} names an unknown backend set")]
    UnknownBackendSet(FrontendKey),
    /// A backend set with more active backends than a Maglev array indexes.
    #[error("{0} active backends in one set; at most 65535")]
    TooManyBackends(usize),
}

/// A bitmap that says "maybe" or "certainly not" for the addresses the service stage cares
/// about: frontend addresses (destinations) and backend address:port pairs (sources of
/// replies). Packets of neither kind, most of a node's traffic, then cost one bit test instead
/// of a hash-map probe and a conntrack probe. 16 bits per member: ~6% false positives.
#[derive(Debug, Clone, Default)]
struct Prefilter {
    bits: Box<[u64]>,
    /// Number of bits - 1 (a power of two less one); meaningless when `bits` is empty.
    mask: u64,
}

const TAG_FRONTEND: u64 = 1 << 60;
const TAG_BACKEND: u64 = 2 << 60;

impl Prefilter {
    fn new(members: usize) -> Prefilter {
        let n = members.saturating_mul(16).next_power_of_two().max(4096);
        Prefilter {
            bits: vec![0; n / 64].into(),
            mask: n as u64 - 1,
        }
    }

    #[inline]
    fn index(&self, x: u64) -> (usize, u64) {
        let h = maglev::mix64(x) & self.mask;
        ((h >> 6) as usize, 1 << (h & 63))
    }

    fn insert(&mut self, x: u64) {
        let (w, bit) = self.index(x);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= bit;
        }
    }

    #[inline]
    fn may_contain(&self, x: u64) -> bool {
        if self.bits.is_empty() {
            return false;
        }
        let (w, bit) = self.index(x);
        self.bits.get(w).is_some_and(|word| word & bit != 0)
    }
}

#[inline]
fn frontend_tag(addr: Ipv4Addr) -> u64 {
    TAG_FRONTEND | u64::from(addr.to_bits())
}

#[inline]
fn backend_tag(addr: Ipv4Addr, port: u16) -> u64 {
    TAG_BACKEND | (u64::from(addr.to_bits()) << 16) | u64::from(port)
}

/// The node's source NAT: which flows get their source translated to the node, and to what.
///
/// The service stage translates the source of a new flow (kube-proxy's `KUBE-MARK-MASQ`
/// cases) when it goes
/// - to an external frontend (NodePort, LoadBalancer, external IP) with
///   `externalTrafficPolicy: Cluster`, so that the backend, wherever it is, replies through
///   this node;
/// - to a ClusterIP from outside the cluster network (the host, a router);
/// - to a backend that is its own client (hairpin), which would otherwise answer itself;
/// - with [`masquerade`](Self::masquerade), from the cluster network to outside it (egress),
///   also when a service sent it there (a backend outside the cluster network, other than
///   this node).
///
/// The node port is claimed per (backend, protocol) in the conntrack, from `ports`; the
/// uplink must steer those ports on `addr` to the engine, and the node's own sockets must not
/// use them (Linux's default `ip_local_port_range` is 32768–60999).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceNat {
    /// The address sources become: the node's InternalIP.
    pub addr: Ipv4Addr,
    /// First and last port of the range translated sources use.
    pub ports: (u16, u16),
    /// The cluster's pod network, as (network, prefix length) pairs (usually one).
    pub cluster: Box<[(Ipv4Addr, u8)]>,
    /// Translate pod traffic leaving the cluster network (TCP and UDP).
    pub masquerade: bool,
}

impl SourceNat {
    /// Whether `addr` is in the cluster's pod network: a short linear scan (clusters list one
    /// or a few prefixes), done for new flows and for masquerade candidates only.
    #[inline]
    pub fn in_cluster(&self, addr: Ipv4Addr) -> bool {
        let a = addr.to_bits();
        self.cluster.iter().any(|&(net, len)| {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            a & mask == net.to_bits() & mask
        })
    }

    /// Whether `port` is one of the translated sources' ports.
    #[inline]
    pub fn has_port(&self, port: u16) -> bool {
        (self.ports.0..=self.ports.1).contains(&port)
    }

    /// Number of ports in the range (0 if it is inverted).
    #[inline]
    pub fn port_count(&self) -> u32 {
        (u32::from(self.ports.1) + 1).saturating_sub(u32::from(self.ports.0))
    }
}

/// Every frontend of the node and the backend sets they use: one immutable version.
#[derive(Debug, Clone, Default)]
pub struct Services {
    frontends: FxHashMap<u64, (FrontendKey, Frontend)>,
    sets: Vec<Arc<BackendSet>>,
    filter: Prefilter,
    snat: Option<SourceNat>,
}

impl Services {
    pub fn builder() -> ServicesBuilder {
        ServicesBuilder::default()
    }

    /// No frontend and no source NAT: the service stage has nothing to do.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty() && self.snat.is_none()
    }

    /// The node's source NAT; `None`: sources are never translated.
    #[inline]
    pub fn source_nat(&self) -> Option<&SourceNat> {
        self.snat.as_ref()
    }

    /// Set the node's source NAT (before the tables are published).
    pub fn set_source_nat(&mut self, snat: Option<SourceNat>) {
        self.snat = snat;
    }

    /// Number of frontends.
    pub fn len(&self) -> usize {
        self.frontends.len()
    }

    /// The frontend for a destination, if any.
    #[inline]
    pub fn frontend(&self, key: FrontendKey) -> Option<&Frontend> {
        self.frontends.get(&key.packed()).map(|(_, f)| f)
    }

    #[inline]
    pub fn set(&self, id: BackendSetId) -> Option<&BackendSet> {
        self.sets.get(id.0 as usize).map(|s| &**s)
    }

    /// False when no frontend has this address (true may be a false positive).
    #[inline]
    pub fn may_be_frontend(&self, addr: Ipv4Addr) -> bool {
        self.filter.may_contain(frontend_tag(addr))
    }

    /// False when no set has this backend, active or draining (true may be a false positive).
    #[inline]
    pub fn may_be_backend(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.filter.may_contain(backend_tag(addr, port))
    }

    /// Every frontend (for inspection), in no particular order.
    pub fn frontends(&self) -> impl Iterator<Item = (&FrontendKey, &Frontend)> {
        self.frontends.values().map(|(k, f)| (k, f))
    }

    /// Every backend set, indexed by [`BackendSetId`].
    pub fn sets(&self) -> &[Arc<BackendSet>] {
        &self.sets
    }
}

/// Collects backend sets and frontends, then builds a [`Services`].
#[derive(Debug, Default)]
pub struct ServicesBuilder {
    frontends: FxHashMap<u64, (FrontendKey, Frontend)>,
    sets: Vec<Arc<BackendSet>>,
}

impl ServicesBuilder {
    /// Add a backend set (several frontends may share one); returns its id.
    pub fn add_set(&mut self, set: Arc<BackendSet>) -> BackendSetId {
        // A table holds far fewer than 2^32 sets.
        let id = BackendSetId(self.sets.len() as u32);
        self.sets.push(set);
        id
    }

    /// Add a frontend whose set was added before.
    pub fn add_frontend(
        &mut self,
        key: FrontendKey,
        frontend: Frontend,
    ) -> Result<(), ServicesError> {
        let known = |id: BackendSetId| self.sets.get(id.0 as usize).is_some();
        if !known(frontend.backends) || frontend.cluster_backends.is_some_and(|id| !known(id)) {
            return Err(ServicesError::UnknownBackendSet(key));
        }
        if self.frontends.contains_key(&key.packed()) {
            return Err(ServicesError::DuplicateFrontend(key));
        }
        self.frontends.insert(key.packed(), (key, frontend));
        Ok(())
    }

    pub fn build(self) -> Services {
        let members: usize = self
            .sets
            .iter()
            .map(|s| s.active.len() + s.draining.len())
            .sum();
        let mut filter = Prefilter::new(self.frontends.len() + members);
        for (key, _) in self.frontends.values() {
            filter.insert(frontend_tag(key.addr));
        }
        for set in &self.sets {
            for b in set.members() {
                filter.insert(backend_tag(b.addr, b.port));
            }
        }
        Services {
            frontends: self.frontends,
            sets: self.sets,
            filter,
            snat: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn be(last: u8, port: u16) -> Backend {
        Backend {
            addr: Ipv4Addr::new(10, 244, 1, last),
            port,
        }
    }

    #[test]
    fn sets_sort_dedup_and_keep_draining_apart() {
        let s =
            BackendSet::new(&[be(3, 80), be(2, 80), be(3, 80)], &[be(2, 80), be(9, 80)]).unwrap();
        assert_eq!(s.active(), &[be(2, 80), be(3, 80)]);
        assert_eq!(s.draining(), &[be(9, 80)]);
        assert_eq!(s.table_size(), 251);
        assert!(s.contains(be(9, 80)) && !s.is_active(be(9, 80)));
        assert!(!s.contains(be(4, 80)));
        assert!(!s.contains(be(2, 81)));
        for h in 0..1000u64 {
            assert!(s.is_active(s.pick(h).unwrap()));
        }
        // The listing order does not change the array.
        let t = BackendSet::new(&[be(2, 80), be(3, 80)], &[be(9, 80)]).unwrap();
        assert_eq!(s, t);
        let empty = BackendSet::new(&[], &[be(9, 80)]).unwrap();
        assert!(!empty.has_active());
        assert_eq!(empty.pick(7), None);
        assert!(empty.contains(be(9, 80)));
    }

    #[test]
    fn lookup_filter_and_errors() {
        let mut b = Services::builder();
        let set = b.add_set(Arc::new(BackendSet::new(&[be(2, 8080)], &[]).unwrap()));
        let vip = Ipv4Addr::new(10, 96, 0, 10);
        let key = FrontendKey {
            addr: vip,
            proto: L4Proto::Tcp,
            port: 80,
        };
        b.add_frontend(key, Frontend::new(FrontendKind::ClusterIp, set))
            .unwrap();
        assert_eq!(
            b.add_frontend(key, Frontend::new(FrontendKind::ClusterIp, set)),
            Err(ServicesError::DuplicateFrontend(key))
        );
        let other = FrontendKey { port: 81, ..key };
        assert_eq!(
            b.add_frontend(
                other,
                Frontend::new(FrontendKind::ClusterIp, BackendSetId(5))
            ),
            Err(ServicesError::UnknownBackendSet(other))
        );
        let s = b.build();
        assert_eq!(s.len(), 1);
        assert!(s.frontend(key).is_some());
        assert!(s.frontend(other).is_none());
        assert!(
            s.frontend(FrontendKey {
                proto: L4Proto::Udp,
                ..key
            })
            .is_none()
        );
        assert!(s.may_be_frontend(vip));
        assert!(s.may_be_backend(be(2, 8080).addr, 8080));
        // No false negatives; few false positives.
        let fp = (0..10_000u32)
            .filter(|i| s.may_be_frontend(Ipv4Addr::from_bits(0x0a00_0000 + i)))
            .count();
        assert!(fp < 100, "{fp}");
        assert!(!Services::default().may_be_frontend(vip));
    }

    #[test]
    fn source_ranges_apply_to_load_balancers_only() {
        let mut f = Frontend::new(FrontendKind::LoadBalancer, BackendSetId(0));
        assert!(f.source_allowed(Ipv4Addr::new(1, 2, 3, 4)));
        f.source_ranges = vec![
            (Ipv4Addr::new(192, 0, 2, 0), 24),
            (Ipv4Addr::new(198, 51, 100, 7), 32),
        ]
        .into();
        assert!(f.source_allowed(Ipv4Addr::new(192, 0, 2, 200)));
        assert!(f.source_allowed(Ipv4Addr::new(198, 51, 100, 7)));
        assert!(!f.source_allowed(Ipv4Addr::new(198, 51, 100, 8)));
        assert!(!f.source_allowed(Ipv4Addr::new(1, 2, 3, 4)));
        f.source_ranges = vec![(Ipv4Addr::UNSPECIFIED, 0)].into();
        assert!(f.source_allowed(Ipv4Addr::new(1, 2, 3, 4)));
        let mut n = f.clone();
        n.kind = FrontendKind::NodePort;
        n.source_ranges = vec![(Ipv4Addr::new(192, 0, 2, 0), 24)].into();
        assert!(n.source_allowed(Ipv4Addr::new(1, 2, 3, 4)));
    }
}
