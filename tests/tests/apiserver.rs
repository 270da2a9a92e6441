//! The fake API server driven through a real `kube::Client`, `watcher` and `reflector`: the
//! protocol kxdp's control plane depends on, including the failure paths (watch resets,
//! compaction → 410 → re-list, outages) a real cluster produces. No root needed.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use kxdp_tests::apiserver::fixtures::{self, Endpoint, FlannelAnnotations, Port};
use kxdp_tests::apiserver::{ApiServer, ApiServerOptions, Verb};

const WAIT: Duration = Duration::from_secs(20);

fn svc(name: &str, ip: &str) -> Value {
    fixtures::service("default", name, ip, &[Port::tcp(80, 8080).named("http")])
}

/// Poll `done` every 20 ms until it holds; panic with `what` after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Events of a watcher stream rendered as text (`Init`, `InitApply(a)`, `Apply(a)`,
/// `Delete(a)`, `InitDone`, `Error`), delivered through a channel by a background task.
struct Events(mpsc::UnboundedReceiver<String>);

impl Events {
    fn spawn<K, S>(stream: S) -> Self
    where
        K: ResourceExt,
        S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let text = match event {
                    Ok(event) => event.to_string(),
                    Err(_) => "Error".to_owned(),
                };
                if tx.send(text).is_err() {
                    return;
                }
            }
        });
        Self(rx)
    }

    async fn next(&mut self) -> String {
        tokio::time::timeout(WAIT, self.0.recv())
            .await
            .expect("watcher event in time")
            .expect("watcher running")
    }

    /// Events up to and including the first equal to `last`.
    async fn until(&mut self, last: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event == last;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Whatever arrived and was not read yet.
    fn pending(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.try_recv().ok()).collect()
    }
}

/// (namespace/name → resourceVersion) of a reflector store and of the server's objects.
fn versions(store: &Store<Service>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|o| {
            (
                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                o.resource_version().unwrap_or_default(),
            )
        })
        .collect()
}

fn server_versions(server: &ApiServer, kind: &str) -> BTreeMap<String, String> {
    server
        .objects(kind)
        .iter()
        .map(|o| {
            let ns = o
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let rv = o
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (format!("{ns}/{name}"), rv.to_owned())
        })
        .collect()
}

/// A reflector over all Services, with kube-rs's default backoff, its events reported.
fn service_reflector(server: &ApiServer, config: watcher::Config) -> (Store<Service>, Events) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<Service>::all(server.client()), config).default_backoff(),
    );
    (reader, Events::spawn(stream))
}

fn names<T: Display>(items: impl IntoIterator<Item = T>) -> Vec<String> {
    items.into_iter().map(|i| i.to_string()).collect()
}

#[tokio::test]
async fn list_get_create_with_real_status_errors() {
    let server = ApiServer::start_local().await;
    server.create(svc("web", "10.96.0.10")).unwrap();
    server.create(svc("db", "10.96.0.11")).unwrap();
    let mut other = svc("cache", "10.96.0.12");
    other["metadata"]["namespace"] = "kube-system".into();
    other["metadata"]["labels"]["tier"] = "back".into();
    server.create(other).unwrap();

    let all: Api<Service> = Api::all(server.client());
    let list = all.list(&ListParams::default()).await.unwrap();
    // (namespace, name) order, as etcd's key order gives on the real server.
    assert_eq!(
        names(list.iter().map(|s| s.name_any())),
        ["db", "web", "cache"]
    );
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );

    for (selector, expected) in [
        ("app=web", vec!["web"]),
        ("app in (db,cache)", vec!["db", "cache"]),
        ("app!=web", vec!["db", "cache"]),
        ("tier", vec!["cache"]),
        ("!tier,app notin (db)", vec!["web"]),
    ] {
        let mut got = names(
            all.list(&ListParams::default().labels(selector))
                .await
                .unwrap()
                .iter()
                .map(|s| s.name_any()),
        );
        got.sort();
        let mut expected = names(expected);
        expected.sort();
        assert_eq!(got, expected, "{selector}");
    }
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=db"))
        .await
        .unwrap();
    assert_eq!(names(by_name.iter().map(|s| s.name_any())), ["db"]);

    let default_ns: Api<Service> = Api::namespaced(server.client(), "default");
    assert_eq!(
        default_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let web = default_ns.get("web").await.unwrap();
    assert_eq!(web.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    assert!(web.metadata.uid.is_some() && web.metadata.creation_timestamp.is_some());

    match default_ns.get("missing").await {
        Err(kube::Error::Api(status)) => assert!(
            status.code == 404 && status.reason == "NotFound",
            "{status:?}"
        ),
        other => panic!("expected 404, got {other:?}"),
    }
    let duplicate: Service = serde_json::from_value(svc("web", "10.96.0.99")).unwrap();
    match default_ns.create(&PostParams::default(), &duplicate).await {
        Err(kube::Error::Api(status)) => assert!(
            status.code == 409 && status.reason == "AlreadyExists",
            "{status:?}"
        ),
        other => panic!("expected 409, got {other:?}"),
    }
    // A stale resourceVersion on replace is a 409 Conflict.
    let mut stale = default_ns.get("db").await.unwrap();
    server
        .patch(
            "Service",
            "default",
            "db",
            &json!({ "metadata": { "labels": { "x": "1" } } }),
        )
        .unwrap();
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("y".into(), "2".into());
    match default_ns
        .replace("db", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(status)) => assert!(
            status.code == 409 && status.reason == "Conflict",
            "{status:?}"
        ),
        other => panic!("expected 409, got {other:?}"),
    }
    let created = default_ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc("new", "10.96.0.13")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        server.get("Service", "default", "new").unwrap()["metadata"]["uid"],
        json!(created.metadata.uid)
    );

    // Refusing connections on the test's own runtime, then back on the same port.
    server.set_refusing(true);
    tokio::task::yield_now().await;
    assert!(default_ns.get("web").await.is_err());
    server.set_refusing(false);
    assert_eq!(default_ns.get("web").await.unwrap().name_any(), "web");
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted_in_order() {
    let server = ApiServer::start();
    server.create(svc("a", "10.96.0.1")).unwrap();
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let mut events = Events::spawn(watcher(api.clone(), watcher::Config::default()));
    assert_eq!(
        events.until("InitDone").await,
        ["Init", "InitApply(a)", "InitDone"]
    );

    let b: Service = serde_json::from_value(svc("b", "10.96.0.2")).unwrap();
    api.create(&PostParams::default(), &b).await.unwrap();
    let patch = json!({ "spec": { "sessionAffinity": "ClientIP" } });
    api.patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    server.delete("Service", "default", "b").unwrap();
    server.create(svc("c", "10.96.0.3")).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(events.next().await);
    }
    assert_eq!(seen, ["Apply(b)", "Apply(a)", "Delete(b)", "Apply(c)"]);
    assert_eq!(
        api.get("a").await.unwrap().metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
}

#[tokio::test]
async fn dropped_watches_resume_from_their_resource_version() {
    let server = ApiServer::start();
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        server
            .create(svc(name, &format!("10.96.0.{}", i + 1)))
            .unwrap();
    }
    let (store, mut events) = service_reflector(&server, watcher::Config::default());
    events.until("InitDone").await;
    wait_until("one open watch", || server.open_watches() == 1).await;
    let (lists, watches) = (server.lists("services"), server.watches("services"));

    for round in 0..3 {
        server.drop_watches();
        // Changes land while the watcher reconnects: some are replayed from history, some live.
        server
            .patch(
                "Service",
                "default",
                "a",
                &json!({ "metadata": { "labels": { "round": round.to_string() } } }),
            )
            .unwrap();
        server
            .delete("Service", "default", if round == 0 { "b" } else { "c" })
            .ok();
        server
            .create(svc(&format!("new{round}"), "10.96.1.1"))
            .unwrap();
        wait_until("reflector caught up", || {
            versions(&store) == server_versions(&server, "Service")
        })
        .await;
    }
    wait_until("re-watched", || server.open_watches() == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen: Vec<String> = events
        .pending()
        .into_iter()
        .filter(|e| e != "Error")
        .collect();
    assert_eq!(
        seen,
        [
            "Apply(a)",
            "Delete(b)",
            "Apply(new0)", //
            "Apply(a)",
            "Delete(c)",
            "Apply(new1)", //
            "Apply(a)",
            "Apply(new2)",
        ]
    );
    assert_eq!(
        server.lists("services"),
        lists,
        "a dropped watch resumes without a re-list"
    );
    assert!(server.watches("services") >= watches + 3);
}

#[tokio::test]
async fn compaction_forces_a_relist() {
    let server = ApiServer::start();
    for name in ["a", "b", "c"] {
        server.create(svc(name, "10.96.0.1")).unwrap();
    }
    let (store, mut events) = service_reflector(&server, watcher::Config::default());
    assert_eq!(
        events.until("InitDone").await,
        [
            "Init",
            "InitApply(a)",
            "InitApply(b)",
            "InitApply(c)",
            "InitDone"
        ]
    );
    wait_until("watching", || server.open_watches() == 1).await;
    let lists = server.lists("services");

    server.delete("Service", "default", "a").unwrap();
    assert_eq!(events.next().await, "Delete(a)");
    server.compact();
    server.drop_watches();
    server.create(svc("d", "10.96.0.4")).unwrap();
    server
        .patch(
            "Service",
            "default",
            "b",
            &json!({ "spec": { "sessionAffinity": "ClientIP" } }),
        )
        .unwrap();

    // The resumed watch gets ERROR 410 Expired, and the watcher starts over with a list.
    let after: Vec<String> = events
        .until("InitDone")
        .await
        .into_iter()
        .filter(|e| e != "Error")
        .collect();
    assert_eq!(
        after,
        [
            "Init",
            "InitApply(b)",
            "InitApply(c)",
            "InitApply(d)",
            "InitDone"
        ]
    );
    assert_eq!(server.lists("services"), lists + 1);
    wait_until("store equals server", || {
        versions(&store) == server_versions(&server, "Service")
    })
    .await;
    assert_eq!(store.state().len(), 3);
}

#[tokio::test]
async fn outage_then_recovery_resyncs() {
    let server = ApiServer::start();
    server.create(svc("a", "10.96.0.1")).unwrap();
    let (store, mut events) = service_reflector(&server, watcher::Config::default());
    events.until("InitDone").await;
    wait_until("watching", || server.open_watches() == 1).await;

    server.set_down(true);
    server.create(svc("b", "10.96.0.2")).unwrap();
    server.delete("Service", "default", "a").unwrap();
    // kube 5's client retries 503 itself (Config::default_retry: up to 15 times, backoff from
    // 5 ms doubling), so the watcher sees no error yet: its re-watch just waits.
    wait_until("re-watch refused with 503", || {
        server.requests().iter().filter(|r| r.status == 503).count() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(versions(&store).len(), 1, "nothing new while down");
    server.set_down(false);
    wait_until("store equals server after the outage", || {
        versions(&store) == server_versions(&server, "Service")
    })
    .await;
    assert_eq!(names(store.state().iter().map(|s| s.name_any())), ["b"]);

    // Connection refused (listener closed), and changes forgotten meanwhile: re-list on return.
    events.pending();
    let lists = server.lists("services");
    server.set_refusing(true);
    server.create(svc("c", "10.96.0.3")).unwrap();
    server.compact();
    // Connection errors are not retried by the client: the watcher reports them and backs off.
    assert_eq!(events.next().await, "Error");
    server.set_refusing(false);
    wait_until("store equals server after refusing", || {
        versions(&store) == server_versions(&server, "Service")
    })
    .await;
    assert_eq!(store.state().len(), 2);
    assert_eq!(
        server.lists("services"),
        lists + 1,
        "the compacted history forced a re-list"
    );
}

#[tokio::test]
async fn bookmarks_arrive() {
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: None,
        ..Default::default()
    });
    server.create(svc("a", "10.96.0.1")).unwrap();
    let api: Api<Service> = Api::all(server.client());
    let rv = server.resource_version().to_string();
    let stream = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap();
    let mut stream = std::pin::pin!(stream);
    server.create(svc("b", "10.96.0.2")).unwrap();
    server.bookmark_now();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(s)) => assert_eq!(s.name_any(), "b"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(bookmark)) => {
            assert_eq!(
                bookmark.metadata.resource_version,
                server.resource_version().to_string()
            );
            assert_eq!(bookmark.types.kind, "Service");
        }
        other => panic!("expected BOOKMARK, got {other:?}"),
    }

    // Periodic bookmarks, and a watcher following them (its RV moves without object changes).
    let server = ApiServer::start_with(ApiServerOptions {
        bookmark_interval: Some(Duration::from_millis(100)),
        ..Default::default()
    });
    let api: Api<Service> = Api::all(server.client());
    let stream = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap();
    let mut stream = std::pin::pin!(stream);
    let first = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(WatchEvent::Bookmark(_))), "{first:?}");
}

#[tokio::test]
async fn pagination_serves_more_than_one_page() {
    let server = ApiServer::start();
    let ports = [Port::tcp(80, 8080)];
    for i in 0..1200 {
        let ip = format!("10.244.{}.{}", i / 250, i % 250 + 1);
        let slice = fixtures::endpoint_slice(
            "default",
            &format!("web-{i:04}"),
            "web",
            &[Endpoint::ready(&ip)],
            &ports,
        );
        server.create(slice).unwrap();
    }
    let api: Api<EndpointSlice> = Api::all(server.client());
    let mut params = ListParams::default().limit(500);
    let (mut total, mut pages, mut rvs) = (0, 0, Vec::new());
    loop {
        let page = api.list(&params).await.unwrap();
        total += page.items.len();
        pages += 1;
        rvs.push(page.metadata.resource_version.clone().unwrap());
        server
            .create(fixtures::endpoint_slice(
                "other",
                &format!("late-{pages}"),
                "x",
                &[],
                &ports,
            ))
            .unwrap();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(
        (total, pages),
        (1200, 3),
        "a paginated list is one snapshot: later creations are not in it"
    );
    assert!(rvs.iter().all(|rv| *rv == rvs[0]));

    // A reflector with the default 500 page size.
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(
            api,
            watcher::Config::default().labels("kubernetes.io/service-name=web"),
        ),
    );
    let mut events = Events::spawn(stream);
    events.until("InitDone").await;
    assert_eq!(reader.state().len(), 1200);
    let slice_lists = server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::List && r.resource == "endpointslices")
        .count();
    assert_eq!(slice_lists, 6, "three pages by hand, three by the watcher");

    // A continue token from before a compaction has expired, as on the real server.
    let api: Api<EndpointSlice> = Api::all(server.client());
    let first = api.list(&ListParams::default().limit(500)).await.unwrap();
    server.compact();
    let token = first.metadata.continue_.unwrap();
    match api
        .list(&ListParams::default().limit(500).continue_token(&token))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {:?}", other.map(|l| l.items.len())),
    }
}

#[tokio::test]
async fn node_annotations_merge_patch() {
    let server = ApiServer::start();
    let flannel = FlannelAnnotations::vxlan("aa:bb:cc:00:00:01", None);
    server
        .create(fixtures::node(
            "n1",
            "192.0.2.11",
            "10.244.1.0/24",
            Some(&flannel),
        ))
        .unwrap();
    server
        .create(fixtures::node("n2", "192.0.2.12", "10.244.2.0/24", None))
        .unwrap();
    let nodes: Api<Node> = Api::all(server.client());
    let mut events = Events::spawn(watcher(nodes.clone(), watcher::Config::default()));
    events.until("InitDone").await;

    let annotations = json!({ "metadata": { "annotations": {
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/backend-data": r#"{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:02"}"#,
        "flannel.alpha.coreos.com/public-ip": "192.0.2.12",
    } } });
    let patched = nodes
        .patch("n2", &PatchParams::default(), &Patch::Merge(&annotations))
        .await
        .unwrap();
    assert_eq!(
        patched.annotations()["flannel.alpha.coreos.com/public-ip"],
        "192.0.2.12"
    );
    assert_eq!(events.next().await, "Apply(n2)");
    // Same patch again: a no-op write, no new resourceVersion and no event.
    let again = nodes
        .patch("n2", &PatchParams::default(), &Patch::Merge(&annotations))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), patched.resource_version());

    // Strategic merge (served as a merge patch): remove one annotation, keep the others.
    let remove =
        json!({ "metadata": { "annotations": { "flannel.alpha.coreos.com/public-ip": null } } });
    let patched = nodes
        .patch("n2", &PatchParams::default(), &Patch::Strategic(&remove))
        .await
        .unwrap();
    assert!(
        !patched
            .annotations()
            .contains_key("flannel.alpha.coreos.com/public-ip")
    );
    assert_eq!(
        patched.annotations()["flannel.alpha.coreos.com/backend-type"],
        "vxlan"
    );
    assert_eq!(events.next().await, "Apply(n2)");

    // The main resource does not change status; the /status subresource does.
    let status_patch =
        json!({ "status": { "addresses": [{ "type": "InternalIP", "address": "192.0.2.99" }] } });
    let main = nodes
        .patch("n2", &PatchParams::default(), &Patch::Merge(&status_patch))
        .await
        .unwrap();
    assert_eq!(
        main.status.unwrap().addresses.unwrap()[0].address,
        "192.0.2.12"
    );
    let status = nodes
        .patch_status("n2", &PatchParams::default(), &Patch::Merge(&status_patch))
        .await
        .unwrap();
    assert_eq!(
        status.status.unwrap().addresses.unwrap()[0].address,
        "192.0.2.99"
    );
    assert_eq!(events.next().await, "Apply(n2)");

    match nodes
        .patch(
            "missing",
            &PatchParams::default(),
            &Patch::Merge(&annotations),
        )
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
    // Server-side apply creates.
    let applied = fixtures::node("n3", "192.0.2.13", "10.244.3.0/24", None);
    let n3 = nodes
        .patch(
            "n3",
            &PatchParams::apply("kxdp-test"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(n3.spec.unwrap().pod_cidr.as_deref(), Some("10.244.3.0/24"));
    assert_eq!(events.next().await, "Apply(n3)");
}

#[tokio::test]
async fn streaming_list_initial_events() {
    let server = ApiServer::start();
    server.create(svc("a", "10.96.0.1")).unwrap();
    server.create(svc("b", "10.96.0.2")).unwrap();
    let (store, mut events) =
        service_reflector(&server, watcher::Config::default().streaming_lists());
    assert_eq!(
        events.until("InitDone").await,
        ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
    );
    server.create(svc("c", "10.96.0.3")).unwrap();
    assert_eq!(events.next().await, "Apply(c)");
    assert_eq!(
        server.lists("services"),
        0,
        "streaming lists never call list"
    );
    let initial = server
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Watch)
        .unwrap();
    assert!(
        initial.query.contains("sendInitialEvents=true"),
        "{}",
        initial.query
    );
    wait_until("store equals server", || {
        versions(&store) == server_versions(&server, "Service")
    })
    .await;
}

#[test]
fn kubeconfig_and_sync_use() {
    // Started from a plain test, no runtime around: the server brings its own.
    let server = ApiServer::start();
    server
        .create(fixtures::node("n1", "192.0.2.11", "10.244.1.0/24", None))
        .unwrap();
    let path =
        std::env::temp_dir().join(format!("kxdp-apiserver-{}.kubeconfig", std::process::id()));
    server.kubeconfig(&path).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names = runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        assert_eq!(
            config.cluster_url.to_string().trim_end_matches('/'),
            server.url()
        );
        let client = kube::Client::try_from(config).unwrap();
        let nodes: Api<Node> = Api::all(client);
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .iter()
            .map(|n| n.name_any())
            .collect::<Vec<_>>()
    });
    std::fs::remove_file(&path).ok();
    assert_eq!(names, ["n1"]);
}
