//! [`ApiServer`]: an in-process fake kube-apiserver for control-plane tests, speaking the real
//! list/watch protocol over plain HTTP on `127.0.0.1`, so a real `kube::Client`, `watcher` and
//! `reflector` (or a binary given [`ApiServer::kubeconfig`]) run against it unchanged.
//!
//! Module map:
//! - [`resources`]: the served types (Services, EndpointSlices, Nodes, Pods), one row each.
//! - `store`: objects as JSON, the global resourceVersion, change history, open watches,
//!   list snapshots for `continue` tokens.
//! - `http`: routing of `/api/v1/...` and `/apis/{group}/{version}/...`, list / watch / CRUD.
//! - [`selector`]: `labelSelector` and `fieldSelector`.
//! - [`patch`]: merge patch (strategic merge and apply are served as merge patches).
//! - [`status`]: [`ApiError`], the `v1 Status` the real server answers failures with.
//! - [`fixtures`]: Service / EndpointSlice / Node JSON builders.
//!
//! What a watch client sees, as from a real server:
//! - list: `XxxList` with `metadata.resourceVersion`, `limit` + `continue` pages served from one
//!   snapshot (all pages carry the first page's resourceVersion).
//! - watch from an RV: every change after it, in order, exactly once; from an RV older than the
//!   retained history (see [`ApiServer::compact`]), an `ERROR` event with a 410 `Expired` Status
//!   and the end of the stream, so kube-rs's watcher re-lists.
//! - watch without an RV (or "0"): synthetic ADDED events for the current state first; with
//!   `sendInitialEvents=true`, then a BOOKMARK annotated `k8s.io/initial-events-end` (the
//!   streaming-list protocol), so both kube-rs initial-list strategies work.
//! - BOOKMARKs every [`ApiServerOptions::bookmark_interval`] and on [`ApiServer::bookmark_now`].
//!
//! ```no_run
//! # async fn demo() {
//! use kxdp_tests::apiserver::{ApiServer, fixtures};
//! let server = ApiServer::start();
//! server.create(fixtures::service("default", "web", "10.96.0.10", &[fixtures::Port::tcp(80, 8080)])).unwrap();
//! let services: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::all(server.client());
//! assert_eq!(services.list(&Default::default()).await.unwrap().items.len(), 1);
//! # }
//! ```

pub mod fixtures;
mod http;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod status;
mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

pub use http::{RequestRecord, Verb};
pub use resources::{RESOURCES, ResourceType};
pub use status::ApiError;

use http::Shared;
use patch::PatchKind;
use store::{Filter, Scope, Store};

/// Tunables of an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// Changes kept for watches resuming from an old resourceVersion; a watch from before the
    /// oldest kept change gets 410 Expired.
    pub history_limit: usize,
    /// How often every watch that allows bookmarks gets one (`None`: only on
    /// [`ApiServer::bookmark_now`]). The real server sends one about a minute apart.
    pub bookmark_interval: Option<Duration>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Some(Duration::from_secs(2)),
        }
    }
}

/// A running fake API server; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: Handle,
    /// Present when the server runs on its own runtime ([`ApiServer::start`]).
    runtime: Option<Runtime>,
    accept: Mutex<Option<AbortHandle>>,
    bookmarks: Option<AbortHandle>,
}

impl ApiServer {
    /// Start on a runtime of its own (two worker threads), usable from sync tests and from any
    /// async runtime alike.
    pub fn start() -> Self {
        Self::start_with(ApiServerOptions::default())
    }

    pub fn start_with(options: ApiServerOptions) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kxdp-apiserver")
            .enable_all()
            .build()
            .expect("a tokio runtime builds unless the process is out of threads or fds");
        let handle = runtime.handle().clone();
        Self::launch(handle, Some(runtime), options)
    }

    /// Start on the caller's tokio runtime (e.g. inside `#[tokio::test]`): no extra threads, but
    /// the server only runs while that runtime is polled, so keep blocking calls off it.
    pub async fn start_local() -> Self {
        Self::start_local_with(ApiServerOptions::default()).await
    }

    pub async fn start_local_with(options: ApiServerOptions) -> Self {
        Self::launch(Handle::current(), None, options)
    }

    fn launch(handle: Handle, runtime: Option<Runtime>, options: ApiServerOptions) -> Self {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("binding 127.0.0.1:0 fails only when the machine is out of ports or fds");
        let addr = listener
            .local_addr()
            .expect("a bound socket has a local address");
        let shared = Arc::new(Shared::new(options.history_limit));
        let accept = handle
            .spawn(http::accept_loop(listener, shared.clone()))
            .abort_handle();
        let bookmarks = options.bookmark_interval.map(|interval| {
            let shared = shared.clone();
            handle
                .spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        shared.store().bookmark_all();
                    }
                })
                .abort_handle()
        });
        Self {
            shared,
            addr,
            handle,
            runtime,
            accept: Mutex::new(Some(accept)),
            bookmarks,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client configuration for this server: no TLS, no credentials, namespace `default`.
    pub fn config(&self) -> kube::Config {
        kube::Config::new(
            self.url()
                .parse()
                .expect("a socket address makes a valid URI"),
        )
    }

    /// A `kube::Client` for this server. Built on the caller's tokio runtime when there is one
    /// (its request buffer task lives there), else on the server's own.
    pub fn client(&self) -> kube::Client {
        let _guard = Handle::try_current().is_err().then(|| self.handle.enter());
        kube::Client::try_from(self.config())
            .expect("a plain-http config with no auth always makes a client")
    }

    /// Write a kubeconfig (one cluster, one context, no user credentials) pointing at this
    /// server, for binaries under test (`KUBECONFIG=path`).
    pub fn kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kxdp-test\n  cluster:\n    server: {}\n\
             contexts:\n- name: kxdp-test\n  context:\n    cluster: kxdp-test\n    user: kxdp-test\n    namespace: default\n\
             current-context: kxdp-test\npreferences: {{}}\nusers:\n- name: kxdp-test\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(path, text)
    }

    // ---- objects ----

    /// Create an object (JSON or any serializable, e.g. a k8s-openapi type); its type comes from
    /// `apiVersion` + `kind`, its namespace from `metadata.namespace` (default `default`).
    /// `status` is kept as given. 409 AlreadyExists if the name is taken.
    pub fn create(&self, object: impl Serialize) -> Result<Value, ApiError> {
        let (resource, namespace, object) = typed(object)?;
        self.shared.store().create(resource, &namespace, object)
    }

    /// Replace a stored object whole (status included). A `metadata.resourceVersion` in it is a
    /// precondition: 409 Conflict when stale.
    pub fn update(&self, object: impl Serialize) -> Result<Value, ApiError> {
        let (resource, namespace, object) = typed(object)?;
        let name = object_name(&object);
        self.shared
            .store()
            .update(resource, &namespace, &name, object, Scope::All)
    }

    /// Create, or replace whole whatever is stored under that name (no precondition).
    pub fn upsert(&self, object: impl Serialize) -> Result<Value, ApiError> {
        let (resource, namespace, object) = typed(object)?;
        self.shared.store().upsert(resource, &namespace, object)
    }

    /// Merge the object's fields into the stored one (create it if absent), as a server-side
    /// apply of those fields would.
    pub fn apply(&self, object: impl Serialize) -> Result<Value, ApiError> {
        let (resource, namespace, object) = typed(object)?;
        let name = object_name(&object);
        self.shared.store().patch(
            resource,
            &namespace,
            &name,
            PatchKind::Apply,
            &object,
            Scope::All,
        )
    }

    /// RFC 7386 merge patch of a stored object (status included).
    pub fn patch(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let resource = resource_named(kind)?;
        self.shared.store().patch(
            resource,
            scoped(resource, namespace),
            name,
            PatchKind::Merge,
            patch,
            Scope::All,
        )
    }

    /// `kind` is a kind (`Service`) or plural (`services`); `namespace` is ignored for
    /// cluster-scoped kinds. 404 NotFound if absent.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let resource = resource_named(kind)?;
        self.shared
            .store()
            .delete(resource, scoped(resource, namespace), name)
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_named(kind).ok()?;
        self.shared
            .store()
            .get(resource, scoped(resource, namespace), name)
            .map(|o| (*o).clone())
    }

    /// Every stored object of a kind, in (namespace, name) order.
    pub fn objects(&self, kind: &str) -> Vec<Value> {
        let Ok(resource) = resource_named(kind) else {
            return Vec::new();
        };
        self.shared
            .store()
            .select(&Filter::all(resource))
            .into_iter()
            .map(|o| (*o).clone())
            .collect()
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    // ---- failure injection ----

    /// Forget the change history and list snapshots and move the resourceVersion on: a watch (or
    /// continued list) from any resourceVersion handed out before gets 410 Expired. Open watches
    /// keep streaming; pair with [`drop_watches`](Self::drop_watches) to force re-lists.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Reset the connection under every open watch mid-stream, as a dying server or proxy does.
    pub fn drop_watches(&self) {
        self.shared.store().drop_watches(true);
    }

    /// End every open watch cleanly, as the server does when `timeoutSeconds` passes.
    pub fn end_watches(&self) {
        self.shared.store().drop_watches(false);
    }

    /// Send a BOOKMARK at the current resourceVersion to every watch that allows them.
    pub fn bookmark_now(&self) {
        self.shared.store().bookmark_all();
    }

    /// Outage: while down, every request gets 503 ServiceUnavailable (the listener stays up).
    /// Going down resets every open watch.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.drop_watches();
        }
    }

    /// Harder outage: close the listening socket and every connection (clients get "connection
    /// refused", which kube's client does not retry), or reopen it on the same port (as soon as
    /// the old socket is gone; this call does not wait).
    pub fn set_refusing(&self, refusing: bool) {
        let mut accept = self.accept.lock().unwrap_or_else(|p| p.into_inner());
        if refusing {
            if let Some(task) = accept.take() {
                task.abort();
            }
            self.shared.store().drop_watches(true);
            self.shared.kill_connections.send_modify(|n| *n += 1);
        } else if accept.is_none() {
            // The aborted accept task drops the old listener when its runtime next polls it,
            // which on the caller's current-thread runtime is only after we return: rebind
            // from a task, retrying until the port is free again.
            let (addr, shared) = (self.addr, self.shared.clone());
            let task = self.handle.spawn(async move {
                let listener = loop {
                    match bind(addr) {
                        Ok(listener) => break listener,
                        Err(e) => {
                            tracing::debug!("fake apiserver: rebinding {addr}: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                };
                http::accept_loop(listener, shared).await;
            });
            *accept = Some(task.abort_handle());
        }
    }

    /// Watches currently streaming.
    pub fn open_watches(&self) -> usize {
        self.shared.store().open_watches()
    }

    // ---- request log ----

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log().clone()
    }

    /// Successful list requests (each page counts) for a plural resource name (`services`).
    pub fn lists(&self, resource: &str) -> usize {
        self.count(Verb::List, resource)
    }

    /// Watch requests answered 200 for a plural resource name.
    pub fn watches(&self, resource: &str) -> usize {
        self.count(Verb::Watch, resource)
    }

    fn count(&self, verb: Verb, resource: &str) -> usize {
        self.shared
            .log()
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource && r.status == 200)
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.log().clear();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        if let Some(task) = &self.bookmarks {
            task.abort();
        }
        self.shared.store().drop_watches(true);
        self.shared.kill_connections.send_modify(|n| *n += 1);
        if let Some(runtime) = self.runtime.take() {
            // Not `drop`: that blocks, and panics when the test drops us inside its runtime.
            runtime.shutdown_background();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn typed(object: impl Serialize) -> Result<(usize, String, Value), ApiError> {
    let object = serde_json::to_value(object).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let resource = resources::by_type(api_version, kind).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("no resource served for apiVersion {api_version:?} kind {kind:?}"),
        )
    })?;
    let namespace = Store::resolve_namespace(resource, None, &object)?;
    Ok((resource, namespace, object))
}

fn object_name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn resource_named(kind: &str) -> Result<usize, ApiError> {
    resources::by_name(kind).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("the server doesn't have a resource type {kind:?}"),
        )
    })
}

fn scoped(resource: usize, namespace: &str) -> &str {
    if RESOURCES[resource].namespaced {
        namespace
    } else {
        ""
    }
}
