//! Golden tests of the service compiler: every `tests/golden/<case>.yaml` (Kubernetes objects)
//! is compiled and its [`dump`] compared with `tests/golden/<case>.txt`.
//! `UPDATE_GOLDEN=1 cargo test -p kxdp-control --test golden` rewrites the `.txt` files; review
//! the diff before committing it.
//!
//! The node context: the Node named `node-a` in the case's objects — its name, its InternalIP
//! plus its flannel public IP when that differs (the addresses NodePorts answer on), and its
//! `topology.kubernetes.io/zone` label. A case without `node-a` compiles as node `node-a` with
//! no addresses and no zone.
//!
//! Each case is compiled twice with the same compiler: the second compile reuses every
//! service's cached entries and must give the same text.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::fs;
use std::path::{Path, PathBuf};

use kxdp_control::compile::{ServiceCompiler, ServiceContext, dump};
use kxdp_control::objects::{DesiredState, Object, parse_documents};

const NODE: &str = "node-a";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn context(text: &str, state: &DesiredState) -> ServiceContext {
    let mut ctx = ServiceContext {
        node_name: NODE.to_owned(),
        ..ServiceContext::default()
    };
    if let Some(node) = state.nodes.get(NODE) {
        ctx.node_ips.extend(node.internal_ip);
        if let Some(public) = node.public_ip
            && !ctx.node_ips.contains(&public)
        {
            ctx.node_ips.push(public);
        }
    }
    // NodeView keeps no labels; read the zone from the object itself.
    let docs = parse_documents(text).unwrap();
    ctx.zone = docs.objects.iter().find_map(|p| match &p.object {
        Object::Node(n) if n.metadata.name.as_deref() == Some(NODE) => {
            n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned()
        }
        _ => None,
    });
    ctx
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

fn render(yaml: &Path) -> String {
    let text = fs::read_to_string(yaml).unwrap();
    let (state, load) = DesiredState::parse(&text).unwrap();
    assert!(
        load.errors.is_empty(),
        "{}: objects refused: {:?}",
        yaml.display(),
        load.errors
    );
    let ctx = context(&text, &state);
    let mut compiler = ServiceCompiler::new();
    let (services, report) = compiler.compile(&state, &ctx);
    let first = dump(&services, &report);
    let (services, report) = compiler.compile(&state, &ctx);
    assert_eq!(report.compiled_services, 0, "{}", yaml.display());
    assert_eq!(
        first,
        dump(&services, &report),
        "{}: recompile differs",
        yaml.display()
    );
    format!(
        "# node {} ips {:?} zone {}\n{first}",
        ctx.node_name,
        ctx.node_ips,
        ctx.zone.as_deref().unwrap_or("-")
    )
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failed = Vec::new();
    for yaml in cases() {
        let got = render(&yaml);
        let txt = yaml.with_extension("txt");
        if update {
            fs::write(&txt, &got).unwrap();
            continue;
        }
        let want = fs::read_to_string(&txt).unwrap_or_default();
        if got != want {
            eprintln!("--- {} (expected)\n{want}+++ (got)\n{got}", txt.display());
            failed.push(txt.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 rewrites them): {failed:?}"
    );
}
