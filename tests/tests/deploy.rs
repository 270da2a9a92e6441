//! The deployment manifests in deploy/: valid against the Kubernetes schema (strict: no unknown
//! fields), lint clean, and consistent with the binaries — the DaemonSet's arguments are
//! options `kxdp agent` accepts, the CNI configuration names our plugin and the agent's
//! socket, RBAC grants exactly what the agent uses.
//!
//! The schema check and the lint use `kubernetes-validate` and `yamllint` (PyPI, listed in
//! .ci/pip-packages and installed by .ci/run). Without them the test skips and says why,
//! except under CI=true, where it fails.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_json::Value;

const MANIFESTS: &[&str] = &[
    "namespace.yaml",
    "rbac.yaml",
    "configmap.yaml",
    "daemonset.yaml",
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Is `tool` runnable? Under CI=true it must be.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {tool} is missing (.ci/run installs .ci/pip-packages)"
        );
        eprintln!("skipped: {tool} is not installed (pip install -r .ci/pip-packages)");
    }
    ok
}

/// Every document of a manifest, as JSON (through Python's YAML loader, which
/// kubernetes-validate brings along).
fn documents(file: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(deploy_dir().join(file))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn manifests_validate_against_the_kubernetes_schema() {
    if !have("kubernetes-validate") {
        return;
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--no-warn"])
        .args(MANIFESTS)
        .current_dir(deploy_dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    // One "passed" line per resource: nothing was skipped as unknown.
    assert_eq!(text.matches("passed").count(), 6, "{text}");
}

#[test]
fn manifests_lint_clean() {
    if !have("yamllint") {
        return;
    }
    let dir = deploy_dir();
    let out = Command::new("yamllint")
        .args(["--strict", "-c"])
        .arg(dir.join(".yamllint.yaml"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "yamllint:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[derive(Debug, Parser)]
struct Kxdp {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    Agent(kxdp_control::cli::AgentArgs),
}

#[test]
fn the_daemonset_runs_the_agent_with_options_it_accepts() {
    if !have("python3") {
        return;
    }
    let ds = &documents("daemonset.yaml")[0];
    let cm = &documents("configmap.yaml")[0]["data"];
    let agent = &ds["spec"]["template"]["spec"]["containers"][0];
    // Kubernetes expands $(VAR) in args from the container's environment (the ConfigMap).
    let args: Vec<String> = agent["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut s = a.as_str().unwrap().to_string();
            for (k, v) in cm.as_object().unwrap() {
                s = s.replace(&format!("$({k})"), v.as_str().unwrap());
            }
            s
        })
        .collect();
    assert!(
        !args.iter().any(|a| a.contains("$(")),
        "unexpanded: {args:?}"
    );
    let parsed = Kxdp::try_parse_from(std::iter::once("kxdp".to_string()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("kxdp {args:?}: {e}"));
    let Sub::Agent(a) = parsed.command;
    assert_eq!(a.source, "kube");

    // No privileged agent: capabilities only, and the ones the README explains.
    let sc = &agent["securityContext"];
    assert_ne!(sc["privileged"], Value::Bool(true));
    let caps: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(caps, ["NET_ADMIN", "BPF", "NET_RAW", "IPC_LOCK"]);
    assert_eq!(
        ds["spec"]["template"]["spec"]["hostNetwork"],
        Value::Bool(true)
    );

    // The CNI configuration names our plugin and the agent's socket.
    let conflist: Value = serde_json::from_str(cm["10-kxdp.conflist"].as_str().unwrap()).unwrap();
    let plugin = &conflist["plugins"][0];
    assert_eq!(plugin["type"], "kxdp-cni");
    assert_eq!(
        plugin["apiSocket"].as_str().unwrap(),
        a.api_socket.to_str().unwrap()
    );
    assert_eq!(plugin["ipam"]["type"], "host-local");
}

#[test]
fn rbac_grants_what_the_agent_uses_and_nothing_more() {
    if !have("python3") {
        return;
    }
    let docs = documents("rbac.yaml");
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let mut grants: Vec<String> = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for res in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    grants.push(format!(
                        "{}/{} {}",
                        group.as_str().unwrap(),
                        res.as_str().unwrap(),
                        verb.as_str().unwrap()
                    ));
                }
            }
        }
    }
    grants.sort();
    assert_eq!(
        grants,
        [
            "/nodes get",
            "/nodes list",
            "/nodes patch",
            "/nodes watch",
            "/services get",
            "/services list",
            "/services watch",
            "discovery.k8s.io/endpointslices get",
            "discovery.k8s.io/endpointslices list",
            "discovery.k8s.io/endpointslices watch",
        ]
    );
}
