//! End-to-end: `kxdp agent --source FILE` builds a node's overlay from Node objects in a file
//! and follows the file as it changes.
//!
//! ```text
//!   node a (192.168.77.1): kxdp agent on eth0, host port kxdp0 (10.244.1.1/32) ═ kxdp0e
//!   node b (192.168.77.2): flannel VXLAN node, pod pb 10.244.2.2
//! ```
//!
//! pb pings 10.244.1.1, the gateway address the agent puts on `kxdp0`: the request crosses
//! VXLAN, the engine decapsulates it and hands it to a's kernel through the host port; the
//! reply follows the agent's route `10.244.2.0/24 dev kxdp0` back into the engine, which
//! encapsulates it to b with b's VtepMAC from b's Node annotation. a's VtepMAC comes from a's
//! own Node annotation, which is how b knows it.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kxdp_tests::{
    FlannelNode, Netns, NsProcess, Underlay, binaries, node_yaml, ping, require_root, vtep_data,
    wait_for,
};
use nix::sys::signal::Signal;

/// a's VtepMAC, published in a's Node object; the agent must use it.
const A_VTEP: [u8; 6] = [0x0e, 0x6b, 0x00, 0x00, 0x00, 0x0a];
const A_POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const A_GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1));

struct Cluster {
    b: FlannelNode,
    a: kxdp_tests::Node,
    _underlay: Underlay,
    file: ObjectFile,
}

/// The object file, deleted on drop.
struct ObjectFile(PathBuf);

impl ObjectFile {
    fn new(tag: &str) -> ObjectFile {
        ObjectFile(std::env::temp_dir().join(format!(
            "kxdp-agent-overlay-{tag}-{}.yaml",
            std::process::id()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The agent's API socket, beside the file (tests run in parallel: one socket each).
    fn socket(&self) -> PathBuf {
        self.0.with_extension("sock")
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    /// As editors and `kubectl ... > tmp && mv` do: a new file renamed over the old one.
    fn replace(&self, text: &str) {
        let tmp = self.0.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for ObjectFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Cluster {
    fn new(tag: &str) -> Cluster {
        let underlay = Underlay::new(tag).unwrap();
        let a = underlay.add_node("a", underlay.node_ip(1)).unwrap();
        let b = FlannelNode::new(
            &underlay,
            "b",
            underlay.node_ip(2),
            Ipv4Addr::new(10, 244, 2, 0),
        )
        .unwrap();
        // What flanneld on b does when it sees a's Node object.
        b.add_remote(a.ip, A_VTEP, A_POD_NET).unwrap();
        let file = ObjectFile::new(tag);
        Cluster {
            b,
            a,
            _underlay: underlay,
            file,
        }
    }

    fn node_a(&self) -> String {
        node_yaml("a", self.a.ip, "10.244.1.0/24", &vtep_data(A_VTEP))
    }

    fn node_b(&self) -> String {
        node_yaml(
            "b",
            self.b.node_ip(),
            &self.b.pod_cidr(),
            &vtep_data(self.b.vtep_mac),
        )
    }

    fn start_agent(&self) -> NsProcess {
        let kxdp = binaries::kxdp().unwrap();
        let path = self.file.path().to_str().unwrap();
        let agent = self
            .a
            .netns
            .spawn(&[
                "env",
                "NO_COLOR=1",
                kxdp.to_str().unwrap(),
                "agent",
                "--source",
                path,
                "--node-name",
                "a",
                "--uplink",
                "eth0",
                "--xdp-mode",
                "native",
                "--api-socket",
                self.file.socket().to_str().unwrap(),
            ])
            .unwrap();
        wait_for(
            "the agent to attach XDP and route b's pods",
            Duration::from_secs(20),
            || xdp_attached(&self.a.netns) && routes(&self.a.netns).contains("10.244.2.0/24"),
        );
        agent
    }
}

fn xdp_attached(ns: &Netns) -> bool {
    ns.ip(&["-d", "link", "show", "dev", "eth0"])
        .unwrap()
        .contains("prog/xdp")
}

/// `ip -4 route show` in the node (every route, so leftovers via any device show).
fn routes(ns: &Netns) -> String {
    ns.ip(&["-4", "route", "show"]).unwrap_or_default()
}

fn link_exists(ns: &Netns, name: &str) -> bool {
    ns.ip(&["link", "show", "dev", name]).is_ok()
}

#[test]
fn agent_builds_the_overlay_from_a_file_and_follows_it() {
    if !require_root("agent_overlay::agent_builds_the_overlay_from_a_file_and_follows_it") {
        return;
    }
    let c = Cluster::new("agov1");
    let pb = c.b.add_pod("pb").unwrap();
    c.file.write(&format!("{}{}", c.node_a(), c.node_b()));
    let agent = c.start_agent();

    // b's pod reaches a's kernel through VXLAN, the engine and the host port, and back.
    assert!(
        ping(&pb.netns, A_GATEWAY, 5),
        "pb -> 10.244.1.1 (kxdp0 on a) with the agent running"
    );

    // The local API answers: the nodes as the engine has them, the file as the source.
    let inspect = |what: &str| -> serde_json::Value {
        let out = std::process::Command::new(binaries::kxdp().unwrap())
            .args(["inspect", what, "--json", "--api-socket"])
            .arg(c.file.socket())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let nodes = inspect("nodes");
    assert_eq!(nodes[1]["name"], "b", "{nodes:#}");
    let services = inspect("services");
    assert_eq!(services["source"], c.file.path().display().to_string());

    // Node b leaves the file (replaced by rename): its route goes, and with it the way back.
    c.file.replace(&c.node_a());
    wait_for("b's route to go", Duration::from_secs(10), || {
        !routes(&c.a.netns).contains("10.244.2.0/24")
    });
    assert!(!ping(&pb.netns, A_GATEWAY, 2), "b is gone from a's view");

    // It comes back (written in place).
    c.file.write(&format!("{}{}", c.node_a(), c.node_b()));
    wait_for("b's route to return", Duration::from_secs(10), || {
        routes(&c.a.netns).contains("10.244.2.0/24")
    });
    assert!(ping(&pb.netns, A_GATEWAY, 5), "b is back");

    // One malformed Node: reported and skipped; the rest (b, and the new d) applies.
    c.file.write(&format!(
        "{}{}{}{}",
        c.node_a(),
        c.node_b(),
        node_yaml(
            "c",
            Ipv4Addr::new(192, 168, 77, 3),
            "10.244.3.0/24",
            r#"{"VNI":1,"#
        ),
        node_yaml(
            "d",
            Ipv4Addr::new(192, 168, 77, 4),
            "10.244.4.0/24",
            &vtep_data([0x0e, 0x46, 0, 0, 0, 4])
        ),
    ));
    wait_for("d's route", Duration::from_secs(10), || {
        routes(&c.a.netns).contains("10.244.4.0/24")
    });
    assert!(
        !routes(&c.a.netns).contains("10.244.3.0/24"),
        "c was skipped"
    );
    assert!(
        ping(&pb.netns, A_GATEWAY, 5),
        "b still works beside a bad Node"
    );

    // A file that is not YAML as a whole (its second document): the last good state stays.
    c.file.write(&format!(
        "{}---\napiVersion: v1\nkind: [unclosed\n",
        c.node_a()
    ));
    std::thread::sleep(Duration::from_millis(1500));
    let r = routes(&c.a.netns);
    assert!(
        r.contains("10.244.2.0/24") && r.contains("10.244.4.0/24"),
        "{r}"
    );
    assert!(
        ping(&pb.netns, A_GATEWAY, 5),
        "b still works after a bad file"
    );

    let out = agent.stop().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent exits 0 on SIGTERM: {stderr}");
    for want in [
        "VtepMAC 0e:6b:00:00:00:0a (from the Node's flannel backend-data)",
        "Node c: metadata.annotations[flannel.alpha.coreos.com/backend-data]: invalid JSON",
        "reload failed, keeping the last good state",
        "agent-overlay-agov1-",
        ".yaml: document 2: ",
        "XDP programs detached",
    ] {
        assert!(
            stderr.contains(want),
            "agent stderr lacks {want:?}:\n{stderr}"
        );
    }
    assert!(!link_exists(&c.a.netns, "kxdp0"), "kxdp0 removed");
    assert!(!link_exists(&c.a.netns, "kxdp0e"), "kxdp0e removed");
    assert!(!xdp_attached(&c.a.netns), "no XDP program left on eth0");
    let r = routes(&c.a.netns);
    assert!(!r.contains("10.244."), "pod routes removed: {r}");
    assert!(!c.file.socket().exists(), "API socket removed");
}

#[test]
fn a_restart_after_sigkill_replaces_the_leftover_host_port() {
    if !require_root("agent_overlay::a_restart_after_sigkill_replaces_the_leftover_host_port") {
        return;
    }
    let c = Cluster::new("agov2");
    let pb = c.b.add_pod("pb").unwrap();
    c.file.write(&format!("{}{}", c.node_a(), c.node_b()));
    let mut agent = c.start_agent();
    agent.signal(Signal::SIGKILL).unwrap();
    assert!(
        agent
            .wait_timeout(Duration::from_secs(5))
            .unwrap()
            .is_some()
    );
    wait_for(
        "XDP to detach after SIGKILL",
        Duration::from_secs(5),
        || !xdp_attached(&c.a.netns),
    );
    // Documented: a killed agent leaves its veth pair (and the routes through it).
    assert!(link_exists(&c.a.netns, "kxdp0"), "SIGKILL leaves kxdp0");

    let agent = c.start_agent();
    assert!(ping(&pb.netns, A_GATEWAY, 5), "works after the restart");
    let out = agent.stop().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("kxdp0 exists"),
        "the leftover was noticed: {stderr}"
    );
    assert!(!link_exists(&c.a.netns, "kxdp0"));
}
