//! Services + EndpointSlices → [`Services`] tables, incrementally.
//!
//! A compile walks every Service once:
//! 1. its slices are found through an index built once per compile (not
//!    [`DesiredState::slices_of`], which scans every slice);
//! 2. its fingerprint ([`fingerprint`](super::fingerprint): the view, its slices, the context)
//!    is compared with the cached one; equal → the cached frontends and `Arc<BackendSet>`s are
//!    reused as they are; different → the service is compiled again
//!    ([`frontends`](super::frontends)), reusing those of its old sets whose backends did not
//!    change (Maglev arrays are the expensive part);
//! 3. the frontend map is assembled from every service's entries, in service-key order, so set
//!    ids and the choice between two services claiming one frontend are deterministic (the
//!    first key wins; the other is reported).
//!
//! Step 2 runs on a few threads when there are many services; steps 1 and 3 are sequential.
//! So one EndpointSlice change costs: reading and hashing every service's objects, one
//! service's Maglev arrays, and the assembly (a hash map of every frontend and the prefilter).
//! At 100k services and 1M endpoints that is about 0.3 s of CPU (benches/compile.rs in
//! kxdp-bench), nearly all of it spent reading the objects (pointer chasing through the views
//! for the slice index and the fingerprints) and assembling, almost none on Maglev. Going
//! below that needs the source to say which objects changed, so unchanged services are not
//! read at all.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use kxdp_dataplane::tables::{
    BackendSetId, FrontendKey, FrontendKind, Services, ServicesBuilder, ServicesError,
};

use super::dump::key_text;
use super::fingerprint::{self, Fingerprint, FoldMap};
use super::frontends::{self, CompiledService};
use crate::objects::{DesiredState, EndpointSliceView, ObjectKey, ServiceView};

/// Facts about this node the service compiler needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceContext {
    /// This node's name: endpoints with this `nodeName` are local (eTP/iTP=Local).
    pub node_name: String,
    /// The node's addresses NodePorts answer on (the InternalIP / flannel public IP).
    pub node_ips: Vec<Ipv4Addr>,
    /// `topology.kubernetes.io/zone` of this node, for `hints.forZones`.
    pub zone: Option<String>,
}

/// What a compile produced besides the tables: what the agent must steer and serve, and what
/// was skipped. Lists are sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceReport {
    /// Frontends in the tables.
    pub frontends: usize,
    /// Backend entries: active plus draining, summed over backend sets (a backend in two sets,
    /// say the ClusterIP's and the eTP=Local NodePort's, counts twice).
    pub backends: usize,
    /// What was left out, with the reason: (`Service namespace/name`, `field: message`).
    pub skipped: Vec<(String, String)>,
    /// (IP protocol number, port) of every NodePort (steered on the node IP).
    pub node_ports: Vec<(u8, u16)>,
    /// LoadBalancer ingress IPs and externalIPs (steered to the engine on the uplink), with
    /// their (IP protocol, port) pairs.
    pub external_ips: Vec<Ipv4Addr>,
    pub external_ports: Vec<(u8, u16)>,
    /// ClusterIPs (routed from the host kernel into the engine).
    pub cluster_ips: Vec<Ipv4Addr>,
    /// eTP=Local services' health check node ports: (port, `namespace/name`, local ready
    /// endpoints) — answered 200 when that count is above zero, else 503.
    pub health_checks: Vec<(u16, String, usize)>,
    /// Services compiled this time (new or changed since the last compile).
    pub compiled_services: usize,
    /// Services whose entries of the last compile were reused unchanged.
    pub reused_services: usize,
}

/// Compiles services, keeping per-service results between compiles so that one
/// EndpointSlice change rebuilds only its service's Maglev arrays.
#[derive(Debug)]
pub struct ServiceCompiler {
    /// The last compile's services, in key order (that of [`DesiredState::services`]), so
    /// that a compile finds each service's entry by walking both lists side by side rather
    /// than by hashing its name.
    cache: Vec<Cached>,
    threads: usize,
}

/// One service's entries and the fingerprint of what they were compiled from.
#[derive(Debug)]
struct Cached {
    key: ObjectKey,
    fingerprint: Fingerprint,
    compiled: CompiledService,
}

/// Below this many services a compile stays on the calling thread.
const PARALLEL_MIN_SERVICES: usize = 2048;

/// Most threads a compile uses: the compile shares the node with the data path's workers.
const MAX_THREADS: usize = 4;

impl Default for ServiceCompiler {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        ServiceCompiler::with_threads(threads.min(MAX_THREADS))
    }
}

/// A service to compile, with its slices and the index of its entry in the cache.
struct Item<'s> {
    key: &'s ObjectKey,
    svc: &'s ServiceView,
    slices: Vec<&'s EndpointSliceView>,
    cached: Option<usize>,
}

/// A service's entries for this compile: the cached ones, or new ones to cache (boxed: most
/// outcomes of an incremental compile are reuses, and this keeps them small).
enum Outcome<'c> {
    Reused(&'c CompiledService),
    Compiled(Box<(Fingerprint, CompiledService)>),
}

impl Outcome<'_> {
    fn entries(&self) -> &CompiledService {
        match self {
            Outcome::Reused(c) => c,
            Outcome::Compiled(new) => &new.1,
        }
    }
}

impl ServiceCompiler {
    pub fn new() -> Self {
        ServiceCompiler::default()
    }

    /// A compiler that uses up to `threads` threads (at least one: the caller's).
    pub fn with_threads(threads: usize) -> Self {
        ServiceCompiler {
            cache: Vec::new(),
            threads: threads.max(1),
        }
    }

    /// Services whose compiled entries are kept for the next compile.
    pub fn cached_services(&self) -> usize {
        self.cache.len()
    }

    /// Compile the whole desired state (reusing unchanged services' results).
    pub fn compile(
        &mut self,
        state: &DesiredState,
        ctx: &ServiceContext,
    ) -> (Services, ServiceReport) {
        let items = items(state, &self.cache);
        let context = fingerprint::context(ctx);
        let outcomes = self.outcomes(&items, ctx, context);
        let (services, mut report) = assemble(&items, &outcomes);

        let mut fresh = Vec::new();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Outcome::Reused(_) => report.reused_services += 1,
                Outcome::Compiled(new) => fresh.push((i, new)),
            }
        }
        report.compiled_services = fresh.len();
        self.update_cache(&items, fresh);
        (services, report)
    }

    /// Store this compile's entries, in item order. When the services are those of the last
    /// compile (the usual case: endpoints changed, services did not), in place.
    fn update_cache(
        &mut self,
        items: &[Item<'_>],
        fresh: Vec<(usize, Box<(Fingerprint, CompiledService)>)>,
    ) {
        let same_services = items.len() == self.cache.len()
            && items.iter().enumerate().all(|(i, it)| it.cached == Some(i));
        if same_services {
            for (i, new) in fresh {
                if let Some(entry) = self.cache.get_mut(i) {
                    (entry.fingerprint, entry.compiled) = *new;
                }
            }
            return;
        }
        let mut old: Vec<Option<Cached>> = std::mem::take(&mut self.cache)
            .into_iter()
            .map(Some)
            .collect();
        let mut fresh = fresh.into_iter().peekable();
        self.cache = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match fresh.next_if(|(f, _)| *f == i) {
                Some((_, new)) => {
                    let (fingerprint, compiled) = *new;
                    Some(Cached {
                        key: item.key.clone(),
                        fingerprint,
                        compiled,
                    })
                }
                None => item.cached.and_then(|c| old.get_mut(c)?.take()),
            })
            .collect();
    }

    /// Fingerprint every item and compile those that changed, on up to `self.threads` threads.
    fn outcomes<'c>(
        &'c self,
        items: &[Item<'_>],
        ctx: &ServiceContext,
        context: Fingerprint,
    ) -> Vec<Outcome<'c>> {
        let run = |chunk: &[Item<'_>]| -> Vec<Outcome<'c>> {
            chunk
                .iter()
                .map(|item| {
                    let fp = fingerprint::service(item.svc, &item.slices, context);
                    let cached = item.cached.and_then(|i| self.cache.get(i));
                    match cached {
                        Some(c) if c.fingerprint == fp => Outcome::Reused(&c.compiled),
                        _ => {
                            let previous = cached.map(|c| &c.compiled);
                            let new = frontends::compile(item.svc, &item.slices, ctx, previous);
                            Outcome::Compiled(Box::new((fp, new)))
                        }
                    }
                })
                .collect()
        };
        if self.threads == 1 || items.len() < PARALLEL_MIN_SERVICES {
            return run(items);
        }
        let chunk = items.len().div_ceil(self.threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .map(|c| s.spawn(move || run(c)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(v) => v,
                    // A panic in a compile thread is a bug; pass it on as it is.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }
}

/// The services that get data-path entries, in key order, each with its slices (in name
/// order: one pass over the slices instead of one per service) and its cache entry (found by
/// walking the cache, which is in key order too).
fn items<'s>(state: &'s DesiredState, cache: &[Cached]) -> Vec<Item<'s>> {
    let mut by_service: FoldMap<(&str, &str), Vec<&EndpointSliceView>> = FoldMap::default();
    for slice in state.endpoint_slices.values() {
        by_service
            .entry((&slice.namespace, &slice.service))
            .or_default()
            .push(slice);
    }
    let mut c = 0;
    state
        .services
        .iter()
        .filter(|(_, svc)| frontends::is_compiled(svc))
        .map(|(key, svc)| {
            while cache.get(c).is_some_and(|e| e.key < *key) {
                c += 1;
            }
            Item {
                key,
                svc,
                slices: by_service
                    .remove(&(key.namespace.as_str(), key.name.as_str()))
                    .unwrap_or_default(),
                cached: cache.get(c).filter(|e| e.key == *key).map(|_| c),
            }
        })
        .collect()
}

/// Build the tables from every service's entries, in item order.
fn assemble(items: &[Item<'_>], outcomes: &[Outcome<'_>]) -> (Services, ServiceReport) {
    let mut b = Services::builder();
    let mut report = ServiceReport::default();
    // Who holds each frontend: built on the first conflict only (conflicts are rare).
    let mut owners: Option<HashMap<FrontendKey, usize>> = None;
    let mut ids: Vec<BackendSetId> = Vec::new();
    for (index, (item, outcome)) in items.iter().zip(outcomes).enumerate() {
        let entries = outcome.entries();
        let subject = || format!("Service {}", item.key);
        ids.clear();
        for set in &entries.sets {
            report.backends += set.active().len() + set.draining().len();
            ids.push(b.add_set(Arc::clone(set)));
        }
        for f in &entries.frontends {
            let mut frontend = f.frontend.clone();
            let Some(&id) = ids.get(frontend.backends.0 as usize) else {
                // frontends::compile names only sets it made; a miss is a bug, not a panic.
                report
                    .skipped
                    .push((subject(), format!("{}: no backend set", f.field())));
                continue;
            };
            frontend.backends = id;
            // Fits the same numbering as `backends` (the service's own sets).
            frontend.cluster_backends = frontend
                .cluster_backends
                .and_then(|c| ids.get(c.0 as usize).copied());
            match add(&mut b, f.key, frontend, &mut report) {
                Ok(()) => {}
                Err(ServicesError::DuplicateFrontend(key)) => {
                    let owners = owners.get_or_insert_with(|| owner_map(outcomes));
                    let owner = owners
                        .get(&key)
                        .filter(|&&o| o != index)
                        .and_then(|&o| items.get(o))
                        .map_or_else(
                            || "this service".to_owned(),
                            |o| format!("Service {}", o.key),
                        );
                    report.skipped.push((
                        subject(),
                        format!(
                            "{}: {} is already a frontend of {owner}",
                            f.field(),
                            key_text(&key)
                        ),
                    ));
                }
                Err(e) => report
                    .skipped
                    .push((subject(), format!("{}: {e}", f.field()))),
            }
        }
        for (field, message) in &entries.skipped {
            report
                .skipped
                .push((subject(), format!("{field}: {message}")));
        }
        if let Some((port, ready)) = entries.health_check {
            report
                .health_checks
                .push((port, item.key.to_string(), ready));
        }
    }
    let services = b.build();
    report.frontends = services.len();
    for v in [&mut report.node_ports, &mut report.external_ports] {
        v.sort_unstable();
        v.dedup();
    }
    for v in [&mut report.cluster_ips, &mut report.external_ips] {
        v.sort_unstable();
        v.dedup();
    }
    report.health_checks.sort();
    (services, report)
}

/// Add a frontend and note what the agent must steer for it.
fn add(
    b: &mut ServicesBuilder,
    key: FrontendKey,
    frontend: kxdp_dataplane::tables::Frontend,
    report: &mut ServiceReport,
) -> Result<(), ServicesError> {
    let kind = frontend.kind;
    b.add_frontend(key, frontend)?;
    let proto = key.proto.ip_protocol().0;
    match kind {
        FrontendKind::ClusterIp => report.cluster_ips.push(key.addr),
        FrontendKind::NodePort => report.node_ports.push((proto, key.port)),
        FrontendKind::LoadBalancer | FrontendKind::ExternalIp => {
            report.external_ips.push(key.addr);
            report.external_ports.push((proto, key.port));
        }
    }
    Ok(())
}

/// The first service (item index) listing each frontend: the one whose frontend was added.
fn owner_map(outcomes: &[Outcome<'_>]) -> HashMap<FrontendKey, usize> {
    let mut owners = HashMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        for f in &o.entries().frontends {
            owners.entry(f.key).or_insert(i);
        }
    }
    owners
}
