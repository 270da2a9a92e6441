//! `--source kube`: Services, EndpointSlices (`discovery.k8s.io/v1`) and Nodes from the API
//! server, as [`SourceEvent`]s.
//!
//! One kube-rs [`watcher`] per kind, each with kube's default backoff (0.8 s doubling to 30 s,
//! reset after two quiet minutes), merged into one task that forwards their events:
//! - a watch event becomes [`SourceEvent::Changed`];
//! - a (re)list — the first one, or one after a watch could not resume (410 Gone after a
//!   compaction) — is buffered from `Init` to `InitDone` and handed over whole as
//!   [`SourceEvent::Listed`], so the controller never sees half a re-list, and objects deleted
//!   while the watch was down disappear;
//! - once every kind has been listed, [`SourceEvent::Synced`]: the view is complete.
//!
//! Bookmarks and watch restarts from the last resourceVersion happen inside the watcher and
//! produce nothing here. A watcher error (connection refused, watch reset, 410) is reported as
//! [`SourceEvent::Problem`]; the kind is healthy again at its next event, or when a one-item
//! list of it succeeds (probed every second while it is failing: a watch that resumes quietly
//! emits nothing). The client does not retry 503s itself (`default_retry` off): the watchers
//! back off on their own, and an outage must show as one.
//!
//! Nodes go through a [`reflector`], whose store the agent reads for its own Node's raw
//! annotations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::SourceEvent;
use crate::objects::{Kind, Object, ObjectEvent, identity};

/// How often a failing kind is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Events in flight between the watchers and the controller.
const CHANNEL: usize = 256;
/// The kinds watched.
pub const KINDS: [Kind; 3] = [Kind::Node, Kind::Service, Kind::EndpointSlice];

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Neither in-cluster configuration nor a kubeconfig (`KUBECONFIG`, `~/.kube/config`).
    #[error("no API server configuration (in-cluster or KUBECONFIG): {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The configuration did not make a client (bad TLS material, ...).
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from the in-cluster configuration or `KUBECONFIG`, without kube's own retries.
pub async fn client() -> Result<kube::Client, KubeError> {
    let mut config = kube::Config::infer().await?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// Running watchers. Dropping it stops them.
#[derive(Debug)]
pub struct KubeSource {
    /// Everything the watchers report, in order.
    pub events: mpsc::Receiver<SourceEvent>,
    /// Every Node, as the API server last sent it.
    pub nodes: Store<Node>,
    task: JoinHandle<()>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Item = (Kind, Result<Event<Object>, String>);

/// Start the watchers on the current tokio runtime.
pub fn start(client: kube::Client) -> KubeSource {
    let (nodes, writer) = reflector::store::<Node>();
    let config = watcher::Config::default();
    let mut streams: SelectAll<BoxStream<'static, Item>> = SelectAll::new();
    streams.push(tagged(
        Kind::Node,
        reflect(
            writer,
            watcher::watcher(Api::<Node>::all(client.clone()), config.clone()).modify(slim_node),
        )
        .default_backoff(),
        |n| Object::Node(Box::new(n)),
    ));
    streams.push(tagged(
        Kind::Service,
        watcher::watcher(Api::<Service>::all(client.clone()), config.clone())
            .modify(|s: &mut Service| s.metadata.managed_fields = None)
            .default_backoff(),
        |s| Object::Service(Box::new(s)),
    ));
    streams.push(tagged(
        Kind::EndpointSlice,
        watcher::watcher(Api::<EndpointSlice>::all(client.clone()), config)
            .modify(|s: &mut EndpointSlice| s.metadata.managed_fields = None)
            .default_backoff(),
        |s| Object::EndpointSlice(Box::new(s)),
    ));
    let (tx, events) = mpsc::channel(CHANNEL);
    let task = tokio::spawn(pump(streams, tx, client));
    KubeSource {
        events,
        nodes,
        task,
    }
}

/// Drop what kxdp never reads and what makes Nodes big (the image list alone is often tens of
/// kilobytes per node), before the reflector stores them.
fn slim_node(n: &mut Node) {
    n.metadata.managed_fields = None;
    if let Some(st) = n.status.as_mut() {
        st.images = None;
        st.volumes_attached = None;
        st.volumes_in_use = None;
    }
}

fn tagged<K, S>(kind: Kind, stream: S, wrap: fn(K) -> Object) -> BoxStream<'static, Item>
where
    S: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    K: Send + 'static,
{
    stream
        .map(move |r| {
            let r = r
                .map(|e| match e {
                    Event::Apply(k) => Event::Apply(wrap(k)),
                    Event::Delete(k) => Event::Delete(wrap(k)),
                    Event::Init => Event::Init,
                    Event::InitApply(k) => Event::InitApply(wrap(k)),
                    Event::InitDone => Event::InitDone,
                })
                .map_err(|e| e.to_string());
            (kind, r)
        })
        .boxed()
}

async fn pump(
    mut streams: SelectAll<BoxStream<'static, Item>>,
    tx: mpsc::Sender<SourceEvent>,
    client: kube::Client,
) {
    let mut tracker = Tracker::default();
    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let out = tokio::select! {
            item = streams.next() => match item {
                Some((kind, item)) => tracker.handle(kind, item),
                None => return, // the watchers never end on their own
            },
            _ = probe.tick(), if tracker.is_failing() => {
                let mut out = Vec::new();
                for kind in tracker.failing_kinds() {
                    if probe_kind(&client, kind).await {
                        out.extend(tracker.recovered(kind));
                    }
                }
                out
            }
        };
        for event in out {
            if tx.send(event).await.is_err() {
                return; // the agent is stopping
            }
        }
    }
}

/// Whether a one-item list of `kind` succeeds now.
async fn probe_kind(client: &kube::Client, kind: Kind) -> bool {
    let params = ListParams::default().limit(1);
    let c = client.clone();
    let list = async move {
        match kind {
            Kind::Node => Api::<Node>::all(c).list(&params).await.map(drop),
            Kind::Service => Api::<Service>::all(c).list(&params).await.map(drop),
            Kind::EndpointSlice => Api::<EndpointSlice>::all(c).list(&params).await.map(drop),
            Kind::Pod => Ok(()),
        }
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, list).await, Ok(Ok(())))
}

/// Watcher events → source events: re-lists buffered per kind, health per kind.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Kinds between `Init` and `InitDone`, with what they listed so far.
    listing: BTreeMap<Kind, Vec<Object>>,
    /// Kinds listed at least once.
    listed: BTreeSet<Kind>,
    /// Failing kinds and their last error.
    failing: BTreeMap<Kind, String>,
    /// `Synced` was sent for the first complete view.
    complete: bool,
}

impl Tracker {
    pub fn handle(&mut self, kind: Kind, item: Result<Event<Object>, String>) -> Vec<SourceEvent> {
        let event = match item {
            Ok(e) => e,
            Err(why) => {
                tracing::debug!(?kind, "watcher: {why}");
                let first = !self.failing.contains_key(&kind);
                self.failing.insert(kind, why);
                if first {
                    tracing::warn!("{}", self.problem());
                }
                return vec![SourceEvent::Problem(self.problem())];
            }
        };
        let mut out = match event {
            Event::Apply(o) => vec![SourceEvent::Changed(vec![ObjectEvent::Applied(o)])],
            Event::Delete(o) => {
                let (k, key) = identity(&o);
                vec![SourceEvent::Changed(vec![ObjectEvent::Deleted(k, key)])]
            }
            Event::Init => {
                self.listing.insert(kind, Vec::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                self.listing.entry(kind).or_default().push(o);
                Vec::new()
            }
            Event::InitDone => {
                let objects = self.listing.remove(&kind).unwrap_or_default();
                tracing::info!(?kind, objects = objects.len(), "listed");
                self.listed.insert(kind);
                let mut out = vec![SourceEvent::Listed { kind, objects }];
                if !self.complete && KINDS.iter().all(|k| self.listed.contains(k)) {
                    self.complete = true;
                    out.push(SourceEvent::Synced);
                }
                out
            }
        };
        out.extend(self.recovered(kind));
        out
    }

    /// `kind` works again: `Synced` if nothing else is failing.
    pub fn recovered(&mut self, kind: Kind) -> Vec<SourceEvent> {
        if self.failing.remove(&kind).is_none() {
            return Vec::new();
        }
        if !self.failing.is_empty() {
            return vec![SourceEvent::Problem(self.problem())];
        }
        tracing::info!("API server reachable again; watches resumed");
        if self.complete {
            vec![SourceEvent::Synced]
        } else {
            Vec::new()
        }
    }

    pub fn is_failing(&self) -> bool {
        !self.failing.is_empty()
    }

    pub fn failing_kinds(&self) -> Vec<Kind> {
        self.failing.keys().copied().collect()
    }

    fn problem(&self) -> String {
        let parts: Vec<String> = self
            .failing
            .iter()
            .map(|(k, why)| format!("{k:?} watch: {why}"))
            .collect();
        parts.join("; ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::objects::parse_documents;

    fn svc(name: &str) -> Object {
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{clusterIP: 10.96.0.1, ports: [{{port: 80}}]}}\n"
        );
        parse_documents(&yaml).unwrap().objects.remove(0).object
    }

    fn list(t: &mut Tracker, kind: Kind, objects: Vec<Object>) -> Vec<SourceEvent> {
        let mut out = t.handle(kind, Ok(Event::Init));
        for o in objects {
            out.extend(t.handle(kind, Ok(Event::InitApply(o))));
        }
        out.extend(t.handle(kind, Ok(Event::InitDone)));
        out
    }

    #[test]
    fn synced_only_after_every_kind_listed() {
        let mut t = Tracker::default();
        assert!(t.handle(Kind::Service, Ok(Event::Init)).is_empty());
        assert!(
            t.handle(Kind::Service, Ok(Event::InitApply(svc("a"))))
                .is_empty(),
            "buffered until InitDone"
        );
        let out = t.handle(Kind::Service, Ok(Event::InitDone));
        assert_eq!(
            out,
            [SourceEvent::Listed {
                kind: Kind::Service,
                objects: vec![svc("a")]
            }]
        );
        assert!(!list(&mut t, Kind::Node, vec![]).contains(&SourceEvent::Synced));
        let out = list(&mut t, Kind::EndpointSlice, vec![]);
        assert_eq!(out.last(), Some(&SourceEvent::Synced));
        // A later re-list is a Listed, not a second first sync.
        let out = list(&mut t, Kind::Service, vec![svc("b")]);
        assert_eq!(out.len(), 1);
        // Watch events pass through.
        let out = t.handle(Kind::Service, Ok(Event::Delete(svc("b"))));
        assert!(
            matches!(&out[..], [SourceEvent::Changed(e)] if matches!(e[0], ObjectEvent::Deleted(Kind::Service, _)))
        );
    }

    #[test]
    fn errors_are_problems_until_the_kind_works_again() {
        let mut t = Tracker::default();
        for k in KINDS {
            list(&mut t, k, vec![]);
        }
        let out = t.handle(Kind::Service, Err("connection refused".into()));
        assert_eq!(
            out,
            [SourceEvent::Problem(
                "Service watch: connection refused".into()
            )]
        );
        t.handle(Kind::Node, Err("connection refused".into()));
        assert_eq!(t.failing_kinds(), [Kind::Node, Kind::Service]);
        // Services resume (an event): Nodes still fail.
        let out = t.handle(Kind::Service, Ok(Event::Apply(svc("a"))));
        assert!(matches!(&out[1], SourceEvent::Problem(p) if p.starts_with("Node watch")));
        // Nodes resume quietly: the probe says so.
        assert_eq!(t.recovered(Kind::Node), [SourceEvent::Synced]);
        assert!(!t.is_failing());
        assert!(t.recovered(Kind::Node).is_empty());
    }
}
