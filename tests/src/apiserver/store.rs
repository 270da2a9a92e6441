//! The object store behind the fake API server: objects as Kubernetes JSON, one global
//! resourceVersion counter, a bounded history of changes (what a watch from an old
//! resourceVersion replays), the open watches, and list snapshots for `continue` tokens.
//!
//! Every mutation, watch registration and bookmark happens under the one lock the server holds
//! around this store, so a watch sees each change exactly once and in resourceVersion order:
//! replayed from history if it happened before the watch opened, sent live otherwise.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::patch::{PatchKind, merge_patch};
use super::resources::{RESOURCES, ResourceId};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// (resource, namespace — empty for cluster-scoped objects, name): lists come out in this order.
type Key = (ResourceId, String, String);

/// What flows from the store to one watch response body.
#[derive(Debug)]
pub(crate) enum WatchMsg {
    /// One newline-terminated JSON watch event.
    Line(Bytes),
    /// End the stream; `abrupt` resets the connection instead of finishing the chunked body.
    Close { abrupt: bool },
}

/// Which objects a list or watch sees.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub resource: ResourceId,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn all(resource: ResourceId) -> Self {
        Self {
            resource,
            namespace: None,
            labels: LabelSelector::default(),
            fields: FieldSelector::default(),
        }
    }

    fn matches(&self, object: &Value) -> bool {
        let namespace_ok = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                == ns
        });
        namespace_ok && self.labels.matches(object) && self.fields.matches(object)
    }
}

/// Where a new watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchStart {
    /// `resourceVersion` unset or "0", or `sendInitialEvents=true`: synthetic ADDED events for
    /// the current state, then changes. With `initial_events_end`, a BOOKMARK annotated
    /// `k8s.io/initial-events-end` follows the synthetic events (streaming list).
    Current { initial_events_end: bool },
    /// Changes after this resourceVersion (410 Expired if no longer retained).
    After(u64),
}

/// Which part of an object an update or patch may change, as the real server's
/// main-resource / `/status` split does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource over HTTP: `status` is kept as stored.
    Main,
    /// The `/status` subresource: only `status` changes.
    Status,
    /// Test controls: the whole object.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
struct Change {
    rv: u64,
    resource: ResourceId,
    kind: ChangeKind,
    /// The object before a modification: a watch with a selector turns a change in or out of
    /// the selection into ADDED / DELETED, like the real server.
    old: Option<Arc<Value>>,
    /// The new object; for a deletion, the last state stamped with the deletion's RV.
    object: Arc<Value>,
}

#[derive(Debug)]
struct Watcher {
    filter: Filter,
    bookmarks: bool,
    tx: UnboundedSender<WatchMsg>,
}

#[derive(Debug)]
struct Snapshot {
    rv: u64,
    items: Arc<Vec<Arc<Value>>>,
}

/// One page of a list.
#[derive(Debug)]
pub(crate) struct ListPage {
    pub rv: u64,
    pub items: Vec<Arc<Value>>,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Snapshots kept for paginated lists; older ones answer 410 like an expired continue token.
const MAX_SNAPSHOTS: usize = 64;

#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<Change>,
    history_limit: usize,
    /// A watch from any RV at or above this is served from history; below it, 410 Expired.
    oldest_resumable: u64,
    watchers: Vec<Watcher>,
    snapshots: HashMap<u64, Snapshot>,
    next_snapshot: u64,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            oldest_resumable: 1,
            watchers: Vec::new(),
            snapshots: HashMap::new(),
            next_snapshot: 1,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn open_watches(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }

    pub fn get(&self, resource: ResourceId, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of a resource the filter selects, in (namespace, name) order.
    pub fn select(&self, filter: &Filter) -> Vec<Arc<Value>> {
        let start = (filter.resource, String::new(), String::new());
        let end = (filter.resource + 1, String::new(), String::new());
        self.objects
            .range(start..end)
            .map(|(_, o)| o)
            .filter(|o| filter.matches(o))
            .cloned()
            .collect()
    }

    /// A list page: the first (no token) from the current state, later ones from the snapshot
    /// the first page took, so every page reports the same consistent resourceVersion.
    pub fn list(
        &mut self,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let limit = limit.filter(|&l| l > 0);
        let (id, offset, rv, items) = match continue_token {
            Some(token) => {
                let parsed = token
                    .strip_prefix("kxdp-")
                    .and_then(|t| t.split_once('-'))
                    .and_then(|(id, off)| {
                        Some((id.parse::<u64>().ok()?, off.parse::<usize>().ok()?))
                    });
                let Some((id, offset)) = parsed else {
                    return Err(ApiError::bad_request(format!(
                        "invalid continue token {token:?}"
                    )));
                };
                let snapshot = self
                    .snapshots
                    .get(&id)
                    .filter(|s| s.rv >= self.oldest_resumable);
                let Some(snapshot) = snapshot else {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list \
                         result. You can start a new list without the continue parameter.",
                    ));
                };
                (id, offset, snapshot.rv, snapshot.items.clone())
            }
            None => {
                let items = Arc::new(self.select(filter));
                if limit.is_some_and(|l| items.len() > l) {
                    let id = self.next_snapshot;
                    self.next_snapshot += 1;
                    self.snapshots.insert(
                        id,
                        Snapshot {
                            rv: self.rv,
                            items: items.clone(),
                        },
                    );
                    if self.snapshots.len() > MAX_SNAPSHOTS {
                        let oldest = self.snapshots.keys().min().copied();
                        oldest.map(|k| self.snapshots.remove(&k));
                    }
                    (id, 0, self.rv, items)
                } else {
                    (0, 0, self.rv, items)
                }
            }
        };
        let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
        let page = items.get(offset.min(end)..end).unwrap_or_default().to_vec();
        let remaining = items.len() - end;
        let continue_token = if remaining > 0 {
            Some(format!("kxdp-{id}-{end}"))
        } else {
            self.snapshots.remove(&id);
            None
        };
        Ok(ListPage {
            rv,
            items: page,
            continue_token,
            remaining: (remaining > 0).then_some(remaining),
        })
    }

    /// The namespace an object lands in: the request's, else the object's, else `default`.
    pub fn resolve_namespace(
        resource: ResourceId,
        request_namespace: Option<&str>,
        object: &Value,
    ) -> Result<String, ApiError> {
        if !RESOURCES[resource].namespaced {
            return Ok(String::new());
        }
        let in_object = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        match (request_namespace, in_object) {
            (Some(req), Some(obj)) if req != obj => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            (Some(ns), _) | (None, Some(ns)) => Ok(ns.to_owned()),
            (None, None) => Ok("default".to_owned()),
        }
    }

    pub fn create(
        &mut self,
        resource: ResourceId,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let rt = &RESOURCES[resource];
        set_type_meta(resource, &mut object)?;
        let meta = metadata_mut(&mut object)?;
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if prefix.is_empty() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), name.clone().into());
        }
        if rt.namespaced {
            meta.insert("namespace".into(), namespace.into());
        } else {
            meta.remove("namespace");
        }
        let key = (resource, namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt.plural, &name));
        }
        meta.insert("uid".into(), new_uid().into());
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
        meta.insert("generation".into(), 1.into());
        meta.remove("deletionTimestamp");
        let rv = self.next_rv();
        meta.insert("resourceVersion".into(), rv.to_string().into());
        let object = Arc::new(object);
        self.objects.insert(key, object.clone());
        self.record(Change {
            rv,
            resource,
            kind: ChangeKind::Added,
            old: None,
            object: object.clone(),
        });
        Ok((*object).clone())
    }

    /// PUT: replace an existing object. A non-empty `metadata.resourceVersion` in the body is a
    /// precondition (409 Conflict when stale), as on the real server.
    pub fn update(
        &mut self,
        resource: ResourceId,
        namespace: &str,
        name: &str,
        object: Value,
        scope: Scope,
    ) -> Result<Value, ApiError> {
        let rt = &RESOURCES[resource];
        let Some(old) = self.get(resource, namespace, name) else {
            return Err(ApiError::not_found(rt.plural, name));
        };
        check_precondition(rt.plural, name, &old, &object)?;
        self.replace(resource, old, object, scope)
    }

    /// Create, or replace whatever is stored under the object's name (no precondition).
    pub fn upsert(
        &mut self,
        resource: ResourceId,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ApiError> {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.get(resource, namespace, name) {
            Some(old) => self.replace(resource, old, object, Scope::All),
            None => self.create(resource, namespace, object),
        }
    }

    pub fn patch(
        &mut self,
        resource: ResourceId,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        scope: Scope,
    ) -> Result<Value, ApiError> {
        let rt = &RESOURCES[resource];
        let Some(old) = self.get(resource, namespace, name) else {
            if kind == PatchKind::Apply && scope != Scope::Status {
                let mut object = patch.clone();
                merge_patch(&mut object, &json!({ "metadata": { "name": name } }));
                return self.create(resource, namespace, object);
            }
            return Err(ApiError::not_found(rt.plural, name));
        };
        check_precondition(rt.plural, name, &old, patch)?;
        let mut object = (*old).clone();
        merge_patch(&mut object, patch);
        self.replace(resource, old, object, scope)
    }

    /// Delete at once (no finalizers, no grace period); returns the object as deleted.
    pub fn delete(
        &mut self,
        resource: ResourceId,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let rt = &RESOURCES[resource];
        let key = (resource, namespace.to_owned(), name.to_owned());
        let Some(old) = self.objects.remove(&key) else {
            return Err(ApiError::not_found(rt.plural, name));
        };
        let rv = self.next_rv();
        let mut object = (*old).clone();
        if let Ok(meta) = metadata_mut(&mut object) {
            meta.insert("resourceVersion".into(), rv.to_string().into());
        }
        let object = Arc::new(object);
        self.record(Change {
            rv,
            resource,
            kind: ChangeKind::Deleted,
            old: Some(old),
            object: object.clone(),
        });
        Ok((*object).clone())
    }

    /// Register a watch; what happened before it opened is queued first.
    pub fn open_watch(
        &mut self,
        filter: Filter,
        start: WatchStart,
        bookmarks: bool,
    ) -> UnboundedReceiver<WatchMsg> {
        let (tx, rx) = unbounded_channel();
        match start {
            WatchStart::Current { initial_events_end } => {
                for object in self.select(&filter) {
                    let _ = tx.send(WatchMsg::Line(event_line("ADDED", &object)));
                }
                if initial_events_end {
                    let _ = tx.send(WatchMsg::Line(self.bookmark_line(filter.resource, true)));
                }
            }
            WatchStart::After(rv) if rv < self.oldest_resumable => {
                let error = ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    self.oldest_resumable
                ));
                let line = json!({ "type": "ERROR", "object": error.to_status() });
                let _ = tx.send(WatchMsg::Line(to_line(&line)));
                let _ = tx.send(WatchMsg::Close { abrupt: false });
                return rx;
            }
            WatchStart::After(rv) => {
                for change in self.history.iter().filter(|c| c.rv > rv) {
                    if let Some(line) = watch_line(&filter, change) {
                        let _ = tx.send(WatchMsg::Line(line));
                    }
                }
            }
        }
        self.watchers.push(Watcher {
            filter,
            bookmarks,
            tx,
        });
        rx
    }

    /// Send a BOOKMARK at the current resourceVersion to every watch that asked for them.
    pub fn bookmark_all(&mut self) {
        let mut lines = HashMap::new();
        for resource in self
            .watchers
            .iter()
            .filter(|w| w.bookmarks)
            .map(|w| w.filter.resource)
        {
            lines
                .entry(resource)
                .or_insert_with(|| self.bookmark_line(resource, false));
        }
        self.watchers.retain(|w| {
            !w.bookmarks
                || lines
                    .get(&w.filter.resource)
                    .is_some_and(|line| w.tx.send(WatchMsg::Line(line.clone())).is_ok())
        });
    }

    /// End every open watch; `abrupt` resets their connections mid-stream.
    pub fn drop_watches(&mut self, abrupt: bool) {
        for watcher in self.watchers.drain(..) {
            let _ = watcher.tx.send(WatchMsg::Close { abrupt });
        }
    }

    /// Forget the history and every list snapshot, and move the resourceVersion on, so every
    /// resourceVersion handed out so far is too old: the next watch from one gets 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.snapshots.clear();
        self.rv += 1;
        self.oldest_resumable = self.rv;
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn replace(
        &mut self,
        resource: ResourceId,
        old: Arc<Value>,
        mut object: Value,
        scope: Scope,
    ) -> Result<Value, ApiError> {
        set_type_meta(resource, &mut object)?;
        match scope {
            Scope::All => {}
            Scope::Main => set_member(&mut object, "status", old.get("status").cloned()),
            Scope::Status => {
                let status = object.get("status").cloned();
                object = (*old).clone();
                set_member(&mut object, "status", status);
            }
        }
        let old_meta = old.get("metadata").cloned().unwrap_or_default();
        let name = old_meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let meta = metadata_mut(&mut object)?;
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the request"
            )));
        }
        // Server-owned fields are the stored ones whatever the client sent.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(field) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        if object == *old {
            return Ok(object); // a no-op write is not a change: no new resourceVersion, no event
        }
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec_changed = without_meta_and_status(&object) != without_meta_and_status(&old);
        let rv = self.next_rv();
        let meta = metadata_mut(&mut object)?;
        meta.insert(
            "generation".into(),
            (generation + i64::from(spec_changed)).into(),
        );
        meta.insert("resourceVersion".into(), rv.to_string().into());
        let object = Arc::new(object);
        let namespace = old_meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.objects
            .insert((resource, namespace, name), object.clone());
        self.record(Change {
            rv,
            resource,
            kind: ChangeKind::Modified,
            old: Some(old),
            object: object.clone(),
        });
        Ok((*object).clone())
    }

    fn record(&mut self, change: Change) {
        self.watchers
            .retain(|w| match watch_line(&w.filter, &change) {
                Some(line) => w.tx.send(WatchMsg::Line(line)).is_ok(),
                None => !w.tx.is_closed(),
            });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_resumable = self.oldest_resumable.max(dropped.rv);
            }
        }
    }

    fn bookmark_line(&self, resource: ResourceId, initial_events_end: bool) -> Bytes {
        let rt = &RESOURCES[resource];
        let mut metadata = json!({ "resourceVersion": self.rv.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object =
            json!({ "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata });
        event_line("BOOKMARK", &object)
    }
}

/// The event a watch with this filter sees for a change, if any. A modification that moves an
/// object into the selection reads as ADDED, out of it as DELETED.
fn watch_line(filter: &Filter, change: &Change) -> Option<Bytes> {
    if filter.resource != change.resource {
        return None;
    }
    let now = filter.matches(&change.object);
    let kind = match change.kind {
        ChangeKind::Added | ChangeKind::Deleted if !now => return None,
        ChangeKind::Added => "ADDED",
        ChangeKind::Deleted => "DELETED",
        ChangeKind::Modified => {
            let before = change.old.as_deref().is_some_and(|o| filter.matches(o));
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
    };
    Some(event_line(kind, &change.object))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    to_line(&json!({ "type": kind, "object": object }))
}

fn to_line(value: &Value) -> Bytes {
    let mut bytes = value.to_string().into_bytes();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn check_precondition(
    plural: &str,
    name: &str,
    stored: &Value,
    request: &Value,
) -> Result<(), ApiError> {
    let wanted = request
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let current = stored
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if wanted.is_empty() || wanted == current {
        Ok(())
    } else {
        Err(ApiError::conflict(plural, name))
    }
}

fn set_type_meta(resource: ResourceId, object: &mut Value) -> Result<(), ApiError> {
    let rt = &RESOURCES[resource];
    let Value::Object(members) = object else {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    };
    let expected = rt.api_version();
    for (field, want) in [("apiVersion", expected.as_str()), ("kind", rt.kind)] {
        match members.get(field).and_then(Value::as_str) {
            Some(got) if !got.is_empty() && got != want => {
                return Err(ApiError::bad_request(format!(
                    "the {field} in the data ({got}) does not match the expected {field} ({want})"
                )));
            }
            _ => {
                members.insert(field.into(), want.into());
            }
        }
    }
    Ok(())
}

fn metadata_mut(object: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    let Value::Object(members) = object else {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    };
    let meta = members.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))
}

fn set_member(object: &mut Value, key: &str, value: Option<Value>) {
    if let Value::Object(members) = object {
        match value {
            Some(v) => members.insert(key.into(), v),
            None => members.remove(key),
        };
    }
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Value::Object(members) = &mut copy {
        members.remove("metadata");
        members.remove("status");
    }
    copy
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

fn new_uid() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let pid = std::process::id();
    format!(
        "{nanos:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        pid & 0xffff,
        (n >> 12) & 0xfff,
        n & 0xfff,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = COUNTER
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> 20;
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
            n /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}

/// UTC now as RFC 3339 with second precision, the format of `creationTimestamp`.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    fn svc(name: &str, app: &str) -> Value {
        json!({ "metadata": { "name": name, "labels": { "app": app } }, "spec": { "clusterIP": "10.0.0.1" } })
    }

    fn drain(rx: &mut UnboundedReceiver<WatchMsg>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                WatchMsg::Line(b) => {
                    let v: Value = serde_json::from_slice(&b).unwrap();
                    let name = v
                        .pointer("/object/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("-");
                    out.push(format!("{} {name}", v["type"].as_str().unwrap()));
                }
                WatchMsg::Close { .. } => out.push("CLOSE".into()),
            }
        }
        out
    }

    #[test]
    fn selector_moves_read_as_added_and_deleted() {
        let mut store = Store::new(100);
        let mut filter = Filter::all(0);
        filter.labels = LabelSelector::parse("app=web").unwrap();
        let mut rx = store.open_watch(filter, WatchStart::After(1), false);
        store.create(0, "ns", svc("a", "db")).unwrap();
        store.upsert(0, "ns", svc("a", "web")).unwrap();
        store.upsert(0, "ns", svc("a", "web")).unwrap(); // no-op: no event
        store.upsert(0, "ns", svc("a", "db")).unwrap();
        store.delete(0, "ns", "a").unwrap();
        assert_eq!(drain(&mut rx), ["ADDED a", "DELETED a"]);
    }

    #[test]
    fn history_replay_and_expiry() {
        let mut store = Store::new(3);
        for name in ["a", "b", "c", "d"] {
            store.create(0, "ns", svc(name, "web")).unwrap();
        }
        // RVs 2..=5; history holds 3..=5, so a watch from 2 still sees all it missed.
        let mut rx = store.open_watch(Filter::all(0), WatchStart::After(2), false);
        assert_eq!(drain(&mut rx), ["ADDED b", "ADDED c", "ADDED d"]);
        let mut rx = store.open_watch(Filter::all(0), WatchStart::After(1), false);
        assert_eq!(drain(&mut rx), ["ERROR -", "CLOSE"]);
        store.compact();
        let mut rx = store.open_watch(Filter::all(0), WatchStart::After(5), false);
        assert_eq!(drain(&mut rx), ["ERROR -", "CLOSE"]);
    }

    #[test]
    fn pages_share_one_snapshot() {
        let mut store = Store::new(100);
        for i in 0..5 {
            store.create(0, "ns", svc(&format!("s{i}"), "web")).unwrap();
        }
        let first = store.list(&Filter::all(0), Some(2), None).unwrap();
        store.delete(0, "ns", "s4").unwrap();
        let second = store
            .list(&Filter::all(0), Some(2), first.continue_token.as_deref())
            .unwrap();
        let third = store
            .list(&Filter::all(0), Some(2), second.continue_token.as_deref())
            .unwrap();
        assert_eq!(
            (first.rv, second.rv, third.rv),
            (first.rv, first.rv, first.rv)
        );
        assert_eq!(third.items.len(), 1);
        assert!(third.continue_token.is_none());
        assert_eq!(first.remaining, Some(3));
    }
}
