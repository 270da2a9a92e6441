//! Attaching pods to kxdp-a exactly as a container runtime does: `kxdp-cni` run inside the
//! node's namespace with the `CNI_*` environment and the network configuration on stdin,
//! IPAM delegated to the standard `host-local` plugin with the demo's own data directory.
//!
//! Each pod's configuration names a one-address range (`rangeStart` = `rangeEnd` = the pod's
//! address), so host-local hands out exactly the address its EndpointSlice lists; the rest
//! of the configuration is what a node's `/etc/cni/net.d` would hold.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::cleanup;
use super::netns::Netns;
use crate::overlay::Ipv4Net;

/// The network name (host-local keeps its reservations under `<dataDir>/<name>`).
const NETWORK: &str = "kxdp-demo";

/// How the demo calls the plugin.
#[derive(Debug, Clone)]
pub struct CniRuntime {
    pub plugin: PathBuf,
    /// `CNI_PATH`: the directory of host-local, then kxdp-cni's.
    pub cni_path: String,
    pub api_socket: PathBuf,
    pub data_dir: PathBuf,
}

/// A pod attached by ADD (the DEL, with the ADD result as `prevResult` as a runtime keeps
/// it, is registered with [`cleanup`]).
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The host end of the pod's veth, in the node namespace.
    pub host_if: String,
    /// The pod's MAC, as the result reports it.
    pub mac: String,
}

/// What one plugin run returned.
struct Answer {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl CniRuntime {
    pub fn new(plugin: &Path, plugin_dir: &Path, api_socket: &Path, data_dir: &Path) -> Self {
        let own_dir = plugin.parent().unwrap_or(Path::new("/"));
        CniRuntime {
            plugin: plugin.to_path_buf(),
            cni_path: format!("{}:{}", plugin_dir.display(), own_dir.display()),
            api_socket: api_socket.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The network configuration for a pod at `ip` in `cidr`.
    pub fn conf(&self, ip: Ipv4Addr, cidr: Ipv4Net) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "kxdp-cni",
            "apiSocket": self.api_socket,
            "ipam": {
                "type": "host-local",
                "dataDir": self.data_dir,
                "ranges": [[{
                    "subnet": cidr.to_string(),
                    "rangeStart": ip.to_string(),
                    "rangeEnd": ip.to_string(),
                    "gateway": cidr.nth(1).to_string(),
                }]],
            },
        })
    }

    /// CNI ADD of pod `pod_name` (namespace `pod`) on the node `node`; registers the DEL.
    pub fn add(
        &self,
        node: &Netns,
        pod: &Netns,
        pod_name: &str,
        ip: Ipv4Addr,
        cidr: Ipv4Net,
    ) -> anyhow::Result<Attachment> {
        let container = format!("kxdp-demo-{pod_name}");
        let conf = self.conf(ip, cidr);
        let answer = self.call(node, "ADD", &container, pod_name, pod.path(), &conf)?;
        // Registered even after a failed ADD: DEL is idempotent and releases whatever a
        // half-done ADD left.
        {
            let runtime = self.clone();
            let node_ns = node.name().to_owned();
            let (container, pod_name, pod_path) = (
                container.clone(),
                pod_name.to_owned(),
                pod.path().to_path_buf(),
            );
            let mut conf = conf.clone();
            if let Ok(prev) = serde_json::from_str::<Value>(&answer.stdout) {
                conf["prevResult"] = prev;
            }
            cleanup::register(format!("pod {pod_name} (CNI DEL)"), move || {
                let node = Netns::open(&node_ns).map_err(|e| e.to_string())?;
                let del = runtime
                    .call(&node, "DEL", &container, &pod_name, &pod_path, &conf)
                    .map_err(|e| format!("{e:#}"))?;
                if del.ok {
                    Ok("kxdp-cni DEL".into())
                } else {
                    Err(format!(
                        "kxdp-cni DEL failed: {} {}",
                        del.stdout.trim(),
                        del.stderr.trim()
                    ))
                }
            });
        }
        if !answer.ok {
            bail!(
                "kxdp-cni ADD {pod_name} failed: {}\n{}",
                answer.stdout.trim(),
                indent(&answer.stderr)
            );
        }
        let result: Value = serde_json::from_str(&answer.stdout)
            .with_context(|| format!("kxdp-cni ADD {pod_name}: the result is not JSON"))?;
        let address = result["ips"][0]["address"].as_str().unwrap_or_default();
        let got: Ipv4Addr = address
            .split_once('/')
            .and_then(|(a, _)| a.parse().ok())
            .with_context(|| format!("kxdp-cni ADD {pod_name}: no IPv4 address in {result}"))?;
        if got != ip {
            bail!("kxdp-cni ADD {pod_name}: host-local gave {got}, the demo asked for {ip}");
        }
        Ok(Attachment {
            host_if: result["interfaces"][0]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            mac: result["interfaces"][1]["mac"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// Runs the plugin once, in `node`'s namespace.
    fn call(
        &self,
        node: &Netns,
        command: &str,
        container: &str,
        pod_name: &str,
        pod_netns: &Path,
        conf: &Value,
    ) -> anyhow::Result<Answer> {
        let mut cmd = Command::new(&self.plugin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", pod_netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod_name}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = node
            .run(move || cmd.spawn())?
            .with_context(|| format!("running {}", self.plugin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A few hundred bytes: fits the pipe, so writing before reading cannot block.
            stdin.write_all(conf.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok(Answer {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
