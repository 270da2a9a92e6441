//! A stable, human-readable text of compiled service tables and their report: what the golden
//! tests compare, one frontend per line, sorted by address, port and protocol.
//!
//! ```text
//! 10.96.0.10:53/UDP ClusterIP -> set 3 [10.244.1.5:53, 10.244.2.7:53] draining [] maglev 251 affinity none
//! 192.168.1.10:30080/TCP NodePort -> set 4 [] draining [] maglev 0 affinity none eTP=Local no-endpoints drop
//! ```
//!
//! After `affinity`, only what applies: `eTP=Local` (`external_local`), `source-ranges [..]`
//! (LoadBalancer frontends with `loadBalancerSourceRanges`), `no-endpoints reject|drop` (a set
//! without active backends, and what the data path does then).

use std::fmt::Write as _;

use kxdp_dataplane::tables::{
    Backend, FrontendKey, FrontendKind, L4Proto, Services, SessionAffinity,
};

use super::ServiceReport;

/// The tables and the report as text (see the module doc for the format).
pub fn dump(services: &Services, report: &ServiceReport) -> String {
    let mut out = String::new();
    let mut frontends: Vec<_> = services.frontends().collect();
    frontends.sort_by_key(|(k, _)| (k.addr, k.port, k.proto));
    for (key, f) in frontends {
        let kind = match f.kind {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::ExternalIp => "ExternalIP",
        };
        let _ = write!(out, "{} {kind} -> set {}", key_text(key), f.backends.0);
        match services.set(f.backends) {
            Some(set) => {
                let _ = write!(
                    out,
                    " [{}] draining [{}] maglev {}",
                    backends(set.active()),
                    backends(set.draining()),
                    set.table_size()
                );
            }
            None => out.push_str(" (missing)"),
        }
        match f.affinity {
            SessionAffinity::None => out.push_str(" affinity none"),
            SessionAffinity::ClientIp { timeout_s } => {
                let _ = write!(out, " affinity ClientIP {timeout_s}s");
            }
        }
        if f.external_local {
            out.push_str(" eTP=Local");
            if let Some(c) = f.cluster_backends {
                let _ = write!(out, " pods->set {}", c.0);
            }
        }
        if !f.source_ranges.is_empty() {
            let ranges: Vec<String> = f
                .source_ranges
                .iter()
                .map(|(net, len)| format!("{net}/{len}"))
                .collect();
            let _ = write!(out, " source-ranges [{}]", ranges.join(", "));
        }
        if !services.set(f.backends).is_some_and(|s| s.has_active()) {
            out.push_str(if f.reject_no_endpoints {
                " no-endpoints reject"
            } else {
                " no-endpoints drop"
            });
        }
        out.push('\n');
    }

    let r = report;
    let _ = writeln!(
        out,
        "report: {} frontends, {} backend entries",
        r.frontends, r.backends
    );
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(" ")
        }
    };
    let ports = |v: &[(u8, u16)]| {
        list(
            v.iter()
                .map(|(p, n)| format!("{n}/{}", proto_name(*p)))
                .collect(),
        )
    };
    let _ = writeln!(
        out,
        "cluster-ips: {}",
        list(r.cluster_ips.iter().map(ToString::to_string).collect())
    );
    let _ = writeln!(out, "node-ports: {}", ports(&r.node_ports));
    let _ = writeln!(
        out,
        "external-ips: {}",
        list(r.external_ips.iter().map(ToString::to_string).collect())
    );
    let _ = writeln!(out, "external-ports: {}", ports(&r.external_ports));
    for (port, service, ready) in &r.health_checks {
        let _ = writeln!(out, "health-check: {port} {service} local-ready {ready}");
    }
    for (subject, message) in &r.skipped {
        let _ = writeln!(out, "skipped: {subject}: {message}");
    }
    out
}

/// `10.96.0.10:53/UDP`.
pub(super) fn key_text(key: &FrontendKey) -> String {
    let proto = match key.proto {
        L4Proto::Tcp => "TCP",
        L4Proto::Udp => "UDP",
    };
    format!("{}:{}/{proto}", key.addr, key.port)
}

fn backends(b: &[Backend]) -> String {
    let v: Vec<String> = b.iter().map(|b| format!("{}:{}", b.addr, b.port)).collect();
    v.join(", ")
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        other => other.to_string(),
    }
}
