//! The HTTP side: accept loop, routing of Kubernetes REST paths, and the list / watch / CRUD
//! handlers over the [`Store`].

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::patch::PatchKind;
use super::resources::{self, RESOURCES, ResourceId};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Filter, Scope, Store, WatchMsg, WatchStart};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// What a request asked for, as recorded in the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    List,
    Watch,
    Get,
    Create,
    Update,
    Patch,
    Delete,
    /// Anything else: discovery, health, unknown paths, unsupported methods.
    Other,
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub verb: Verb,
    /// Plural resource name (`services`), empty when the path named none.
    pub resource: String,
    pub status: u16,
}

/// State shared by the handle and every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub down: AtomicBool,
    pub log: Mutex<Vec<RequestRecord>>,
    /// Bumped to close every open connection at once.
    pub kill_connections: watch::Sender<u64>,
}

impl Shared {
    pub fn new(history_limit: usize) -> Self {
        Self {
            store: Mutex::new(Store::new(history_limit)),
            down: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            kill_connections: watch::Sender::new(0),
        }
    }

    /// The store, even if a panicking test thread poisoned the lock (the data is still whole:
    /// every store method leaves it consistent before it can panic).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn log(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) async fn accept_loop(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("fake apiserver: cannot register listener: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, shared.clone()));
            }
            Err(e) => {
                tracing::warn!("fake apiserver: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut kill = shared.kill_connections.subscribe();
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = kill.changed() => {} // dropping the connection closes the socket mid-whatever
    }
}

/// Where a path points.
struct Route {
    resource: ResourceId,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some((*name).to_owned()), false),
        [plural, name, "status"] => (*plural, Some((*name).to_owned()), true),
        _ => return None,
    };
    let resource = resources::by_path(group, version, plural)?;
    let namespaced = RESOURCES[resource].namespaced;
    if !namespaced && namespace.is_some() || namespaced && name.is_some() && namespace.is_none() {
        return None;
    }
    Some(Route {
        resource,
        namespace,
        name,
        status,
    })
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let route = route(&path);
    let resource = route
        .as_ref()
        .map(|r| RESOURCES[r.resource].plural)
        .unwrap_or_default()
        .to_owned();
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let verb = match (&method, &route) {
        (&Method::GET, Some(r)) if r.name.is_none() => {
            if matches!(param("watch"), Some("true" | "1")) {
                Verb::Watch
            } else {
                Verb::List
            }
        }
        (&Method::GET, Some(_)) => Verb::Get,
        (&Method::POST, Some(r)) if r.name.is_none() => Verb::Create,
        (&Method::PUT, Some(r)) if r.name.is_some() => Verb::Update,
        (&Method::PATCH, Some(r)) if r.name.is_some() => Verb::Patch,
        (&Method::DELETE, Some(r)) if r.name.is_some() => Verb::Delete,
        _ => Verb::Other,
    };
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };

    let response = if shared.down.load(Ordering::SeqCst) {
        error_response(&ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ))
    } else {
        match (verb, route) {
            (Verb::Other, _) | (_, None) => other(&method, &path),
            (verb, Some(route)) => {
                let request = Call {
                    shared,
                    route: &route,
                    param: &param,
                    content_type: &content_type,
                    body: &body,
                };
                request.serve(verb).unwrap_or_else(|e| error_response(&e))
            }
        }
    };
    shared.log().push(RequestRecord {
        method: method.to_string(),
        path,
        query,
        verb,
        resource,
        status: response.status().as_u16(),
    });
    response
}

/// Discovery-free extras a client might poke; everything else is a 404 Status.
fn other(method: &Method, path: &str) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/version") => json_response(
            StatusCode::OK,
            &json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-kxdp-fake", "platform": "linux/amd64" }),
        ),
        (&Method::GET, "/healthz" | "/livez" | "/readyz") => {
            let mut response = Response::new(full(Bytes::from_static(b"ok")));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        (&Method::GET | &Method::HEAD, _) => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
        _ => error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    }
}

struct Call<'a, P: Fn(&str) -> Option<&'a str>> {
    shared: &'a Shared,
    route: &'a Route,
    param: &'a P,
    content_type: &'a str,
    body: &'a Bytes,
}

impl<'a, P: Fn(&str) -> Option<&'a str>> Call<'a, P> {
    fn serve(&self, verb: Verb) -> Result<Response<Body>, ApiError> {
        let rt = &RESOURCES[self.route.resource];
        let namespace = self.route.namespace.clone().unwrap_or_default();
        let name = self.route.name.clone().unwrap_or_default();
        let scope = if self.route.status {
            Scope::Status
        } else {
            Scope::Main
        };
        let ok = |code: StatusCode, object: Value| Ok(json_response(code, &object));
        match verb {
            Verb::List => self.list(),
            Verb::Watch => self.watch(),
            Verb::Get => match self
                .shared
                .store()
                .get(self.route.resource, &namespace, &name)
            {
                Some(object) => ok(StatusCode::OK, (*object).clone()),
                None => Err(ApiError::not_found(rt.plural, &name)),
            },
            Verb::Create => {
                let object = self.json_body()?;
                let namespace = Store::resolve_namespace(
                    self.route.resource,
                    self.route.namespace.as_deref(),
                    &object,
                )?;
                let created =
                    self.shared
                        .store()
                        .create(self.route.resource, &namespace, object)?;
                ok(StatusCode::CREATED, created)
            }
            Verb::Update => {
                let object = self.json_body()?;
                Store::resolve_namespace(
                    self.route.resource,
                    self.route.namespace.as_deref(),
                    &object,
                )?;
                ok(
                    StatusCode::OK,
                    self.shared.store().update(
                        self.route.resource,
                        &namespace,
                        &name,
                        object,
                        scope,
                    )?,
                )
            }
            Verb::Patch => {
                let kind = PatchKind::from_content_type(self.content_type)?;
                let patch = self.json_body()?;
                let mut store = self.shared.store();
                let existed = store.get(self.route.resource, &namespace, &name).is_some();
                let object =
                    store.patch(self.route.resource, &namespace, &name, kind, &patch, scope)?;
                ok(
                    if existed {
                        StatusCode::OK
                    } else {
                        StatusCode::CREATED
                    },
                    object,
                )
            }
            Verb::Delete => ok(
                StatusCode::OK,
                self.shared
                    .store()
                    .delete(self.route.resource, &namespace, &name)?,
            ),
            Verb::Other => Err(ApiError::new(405, "MethodNotAllowed", "method not allowed")),
        }
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        // Server-side apply bodies are YAML; kube-rs (like kubectl) sends JSON, YAML's subset.
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }

    fn filter(&self) -> Result<Filter, ApiError> {
        let parse_err = |e: super::selector::SelectorError| ApiError::bad_request(e.to_string());
        Ok(Filter {
            resource: self.route.resource,
            namespace: self.route.namespace.clone(),
            labels: LabelSelector::parse((self.param)("labelSelector").unwrap_or_default())
                .map_err(parse_err)?,
            fields: FieldSelector::parse((self.param)("fieldSelector").unwrap_or_default())
                .map_err(parse_err)?,
        })
    }

    fn list(&self) -> Result<Response<Body>, ApiError> {
        let filter = self.filter()?;
        let limit = match (self.param)("limit") {
            Some(text) => Some(
                text.parse::<usize>()
                    .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}")))?,
            ),
            None => None,
        };
        let continue_token = (self.param)("continue").filter(|t| !t.is_empty());
        let mut store = self.shared.store();
        if let (Some(rv), Some("Exact"), None) = (
            (self.param)("resourceVersion").filter(|v| !v.is_empty() && *v != "0"),
            (self.param)("resourceVersionMatch"),
            continue_token,
        ) && rv != store.resource_version().to_string()
        {
            // Only the current state is kept, so an exact read of the past is a compacted one.
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                store.resource_version()
            )));
        }
        let page = store.list(&filter, limit, continue_token)?;
        drop(store);
        let rt = &RESOURCES[self.route.resource];
        let mut metadata = json!({ "resourceVersion": page.rv.to_string() });
        if let Some(token) = page.continue_token {
            metadata["continue"] = token.into();
        }
        if let Some(remaining) = page.remaining {
            metadata["remainingItemCount"] = remaining.into();
        }
        let items: Vec<&Value> = page.items.iter().map(|o| o.as_ref()).collect();
        let list = json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        });
        Ok(json_response(StatusCode::OK, &list))
    }

    fn watch(&self) -> Result<Response<Body>, ApiError> {
        let filter = self.filter()?;
        let send_initial = (self.param)("sendInitialEvents") == Some("true");
        let bookmarks = (self.param)("allowWatchBookmarks") == Some("true");
        let rv = (self.param)("resourceVersion").filter(|v| !v.is_empty() && *v != "0");
        let start = match (send_initial, rv) {
            (true, _) => WatchStart::Current {
                initial_events_end: bookmarks,
            },
            (false, None) => WatchStart::Current {
                initial_events_end: false,
            },
            (false, Some(text)) => WatchStart::After(text.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version {text:?}"))
            })?),
        };
        if send_initial && !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "sendInitialEvents requires allowWatchBookmarks=true",
            ));
        }
        let timeout =
            match (self.param)("timeoutSeconds") {
                Some(text) => Duration::from_secs(text.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid timeoutSeconds {text:?}"))
                })?),
                None => Duration::from_secs(1800),
            };
        let rx = self.shared.store().open_watch(filter, start, bookmarks);
        let mut response = Response::new(watch_body(rx, timeout));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }
}

/// The chunked body of a watch: one JSON event per line until the store closes the watch, the
/// timeout passes, or the store asks for an abrupt end (an I/O error, so hyper drops the
/// connection without the final chunk — what a client sees when a server dies mid-watch).
fn watch_body(rx: mpsc::UnboundedReceiver<WatchMsg>, timeout: Duration) -> Body {
    let deadline = tokio::time::Instant::now() + timeout;
    let frames = stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        tokio::select! {
            message = rx.recv() => match message {
                Some(WatchMsg::Line(line)) => Some((Ok(Frame::data(line)), Some(rx))),
                Some(WatchMsg::Close { abrupt: true }) => Some((
                    Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "watch dropped by the test")),
                    None,
                )),
                Some(WatchMsg::Close { abrupt: false }) | None => None,
            },
            () = tokio::time::sleep_until(deadline) => None,
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(frames))
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = route("/api/v1/namespaces/ns/services/a").unwrap();
        assert_eq!(
            (
                r.resource,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.status
            ),
            (0, Some("ns"), Some("a"), false)
        );
        let r = route("/apis/discovery.k8s.io/v1/endpointslices").unwrap();
        assert_eq!((r.resource, r.namespace, r.name), (1, None, None));
        let r = route("/api/v1/nodes/n1/status").unwrap();
        assert_eq!(
            (r.resource, r.name.as_deref(), r.status),
            (2, Some("n1"), true)
        );
        assert!(route("/api/v1/namespaces/ns/nodes").is_none());
        assert!(route("/api/v1/services/a").is_none());
        assert!(route("/api/v1/namespaces/ns").is_none());
        assert!(route("/api/v2/services").is_none());
    }
}
