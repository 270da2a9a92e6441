//! `kxdp-cni`: the CNI plugin (specification 1.0.0; also speaks 0.3.0, 0.3.1 and 0.4.0) that
//! gives a pod a veth pair, an address from the delegated IPAM plugin, and a port on the
//! engine through the agent's local API.
//!
//! Module map:
//! - [`env`]: the `CNI_*` environment ([`CniEnv`], [`Command`]).
//! - [`config`]: the network configuration on stdin ([`NetConf`]) and the IPAM delegate's,
//!   with the node's pod CIDR filled in.
//! - [`result`]: the success result ([`CniResult`]) in every supported version.
//! - [`error`]: the error document and the spec's codes ([`CniError`], [`ErrorCode`]).
//! - [`ipam`]: running the IPAM delegate found on `CNI_PATH`.
//! - [`pod_link`]: the pod's veth pair, host end named from the container id.
//! - `plugin`: ADD, DEL, CHECK, each a sequence of those, with ADD undone on failure.
//!
//! The binary (`src/bin/kxdp-cni.rs`) only reads stdin and the environment, calls [`run`],
//! and prints what it returns; logs go to stderr or `logFile`, never stdout.
//!
//! Installed as `/opt/cni/bin/kxdp-cni` (next to `host-local`), with a configuration list
//! such as `/etc/cni/net.d/10-kxdp.conflist`:
//!
//! ```json
//! { "cniVersion": "1.0.0", "name": "kxdp",
//!   "plugins": [ { "type": "kxdp-cni", "apiSocket": "/run/kxdp/kxdp.sock",
//!                  "ipam": { "type": "host-local" } } ] }
//! ```
//!
//! `mtu` (default: the agent's pod MTU) and `logFile` are optional; `ipam.ranges` or
//! `ipam.subnet` override the node's pod CIDR, which is filled in otherwise.
//!
//! ```text
//! ADD:   agent NodeInfo ─► IPAM ADD ─► veth (pod end in CNI_NETNS: addr, up, lo, route;
//!        offload off) ─► agent AttachPod ─► result      (failure: undo in reverse)
//! DEL:   agent DetachPod ─► delete host veth ─► IPAM DEL  (what is gone is skipped)
//! CHECK: host veth, pod interface + address, agent attachment, IPAM CHECK
//! ```

pub mod config;
pub mod env;
pub mod error;
pub mod ipam;
mod plugin;
pub mod pod_link;
pub mod result;

use serde_json::{Value, json};

pub use config::{CURRENT_VERSION, DEFAULT_API_SOCKET, NetConf, SUPPORTED_VERSIONS};
pub use env::{CniEnv, Command};
pub use error::{CniError, ErrorCode};
pub use result::CniResult;

/// What the binary prints on stdout and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A JSON document (result, version or error), or empty for DEL and CHECK success.
    pub stdout: String,
    /// 0 on success, 1 on error (the spec's "non-zero").
    pub exit_code: i32,
}

/// Runs one invocation: `env` as read from the environment (or why it could not be),
/// `stdin` the network configuration.
pub fn run(env: Result<CniEnv, CniError>, stdin: &[u8]) -> Outcome {
    let version = NetConf::version_hint(stdin);
    let answer = env.and_then(|env| dispatch(&env, stdin));
    match answer {
        Ok(Some(doc)) => Outcome {
            stdout: doc.to_string(),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(e) => {
            tracing::error!(code = e.code.code(), "{e}");
            Outcome {
                stdout: e.to_json(version).to_string(),
                exit_code: 1,
            }
        }
    }
}

fn dispatch(env: &CniEnv, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_info()));
    }
    let conf = NetConf::parse(stdin)?;
    tracing::debug!(
        command = env.command.as_str(),
        container = %env.container_id,
        ifname = %env.ifname,
        "invoked"
    );
    match env.command {
        Command::Add => plugin::add(env, &conf).map(|r| Some(r.to_json(&conf.cni_version))),
        Command::Del => plugin::del(env, &conf).map(|()| None),
        Command::Check => plugin::check(env, &conf).map(|()| None),
        Command::Version => Ok(Some(version_info())),
    }
}

/// The VERSION answer.
pub fn version_info() -> Value {
    json!({"cniVersion": CURRENT_VERSION, "supportedVersions": SUPPORTED_VERSIONS})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_without_a_configuration() {
        let env = CniEnv::from_vars(|k| (k == "CNI_COMMAND").then(|| "VERSION".to_owned()));
        let out = run(env, b"");
        assert_eq!(out.exit_code, 0);
        assert_eq!(
            out.stdout,
            r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}"#
        );
    }

    #[test]
    fn failures_print_an_error_document_in_the_configured_version() {
        let out = run(
            CniEnv::from_vars(|_| None),
            br#"{"cniVersion":"0.4.0","name":"n","type":"kxdp-cni"}"#,
        );
        assert_eq!(out.exit_code, 1);
        let doc: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(doc["cniVersion"], "0.4.0");
        assert_eq!(doc["code"], 4);

        let env = CniEnv::from_vars(|k| {
            Some(
                match k {
                    "CNI_COMMAND" => "ADD",
                    "CNI_CONTAINERID" => "c1",
                    "CNI_NETNS" => "/run/netns/x",
                    "CNI_IFNAME" => "eth0",
                    "CNI_PATH" => "/usr/lib/cni",
                    _ => return None,
                }
                .to_owned(),
            )
        });
        let out = run(env.clone(), b"{");
        assert_eq!(out.exit_code, 1);
        let doc: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            (doc["cniVersion"].as_str(), doc["code"].as_u64()),
            (Some("1.0.0"), Some(6))
        );
        // ADD without an ipam section fails before touching anything.
        let out = run(
            env,
            br#"{"cniVersion":"1.0.0","name":"n","type":"kxdp-cni"}"#,
        );
        let doc: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(doc["code"], 7);
    }
}
