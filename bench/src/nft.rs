//! The kernel's service NAT baseline: an nftables ruleset written the way kube-proxy's
//! nftables mode writes it (`pkg/proxy/nftables/proxier.go`): a `service-ips` verdict map
//! keyed by address . protocol . port in a `services` chain jumped to from the dstnat hook,
//! one chain per service picking an endpoint with `numgen random mod N vmap`, one chain per
//! endpoint doing `dnat to`, and the masquerade mark chains with the postrouting hook. Not
//! written: the cluster-CIDR masquerade rule (kube-proxy adds it only with a configured
//! cluster CIDR; the benchmark's client is outside any) and the filter-table checks for
//! services without endpoints (every service here has endpoints).
//!
//! Applied with `nft -f -` in the node namespace; a machine without `nft` reports the NAT
//! kernel path as unavailable rather than failing the run.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// The table the ruleset lives in (in the node's own namespace, so kube-proxy's name).
pub const TABLE: &str = "kube-proxy";

/// A service as kube-proxy sees it: a frontend and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatService {
    pub vip: Ipv4Addr,
    /// `udp` or `tcp`.
    pub proto: &'static str,
    pub port: u16,
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// kube-proxy's chain name for a service port (`service-<hash>-<ns>/<name>/<proto>/<port>`),
/// with a counter for the hash.
fn service_chain(i: usize, s: &NatService) -> String {
    format!("service-{i:08X}-bench/svc{i}/{}/p{}", s.proto, s.port)
}

/// kube-proxy's chain name for one endpoint of a service.
fn endpoint_chain(i: usize, s: &NatService, ep: (Ipv4Addr, u16)) -> String {
    format!(
        "endpoint-{i:08X}-bench/svc{i}/{}/p{}__{}/{}",
        s.proto, s.port, ep.0, ep.1
    )
}

/// The whole ruleset, for `nft -f -`. It first deletes any previous table of the same name
/// (`add` then `delete` makes that succeed whether or not one existed).
pub fn ruleset(services: &[NatService]) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "add table ip {TABLE}");
    let _ = writeln!(r, "delete table ip {TABLE}");
    let _ = writeln!(r, "table ip {TABLE} {{");
    r.push_str(
        "\tchain mark-for-masquerade {\n\t\tmeta mark set meta mark or 0x4000\n\t}\n\
         \tchain masquerading {\n\t\tmeta mark & 0x4000 == 0 return\n\
         \t\tmeta mark set meta mark xor 0x4000\n\t\tmasquerade fully-random\n\t}\n",
    );
    // Endpoint chains before the service chains that jump to them, and those before the map
    // that names them: every reference points backwards.
    for (i, s) in services.iter().enumerate() {
        for &ep in &s.endpoints {
            let _ = writeln!(r, "\tchain {} {{", endpoint_chain(i, s, ep));
            let _ = writeln!(r, "\t\tip saddr {} jump mark-for-masquerade", ep.0);
            let _ = writeln!(r, "\t\tmeta l4proto {} dnat to {}:{}", s.proto, ep.0, ep.1);
            let _ = writeln!(r, "\t}}");
        }
    }
    for (i, s) in services.iter().enumerate() {
        let _ = writeln!(r, "\tchain {} {{", service_chain(i, s));
        if !s.endpoints.is_empty() {
            let arms: Vec<String> = s
                .endpoints
                .iter()
                .enumerate()
                .map(|(k, &ep)| format!("{k} : goto {}", endpoint_chain(i, s, ep)))
                .collect();
            let _ = writeln!(
                r,
                "\t\tnumgen random mod {} vmap {{ {} }}",
                s.endpoints.len(),
                arms.join(", ")
            );
        }
        let _ = writeln!(r, "\t}}");
    }
    r.push_str("\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n");
    if !services.is_empty() {
        let elements: Vec<String> = services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{} . {} . {} : goto {}",
                    s.vip,
                    s.proto,
                    s.port,
                    service_chain(i, s)
                )
            })
            .collect();
        let _ = writeln!(r, "\t\telements = {{ {} }}", elements.join(",\n\t\t\t"));
    }
    r.push_str("\t}\n");
    r.push_str(
        "\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n\
         \tchain nat-prerouting {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\
         \t\tjump services\n\t}\n\
         \tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\
         \t\tjump services\n\t}\n\
         \tchain nat-postrouting {\n\t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tjump masquerading\n\t}\n",
    );
    r.push_str("}\n");
    r
}

/// Whether the kernel NAT path can be set up, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Loaded,
    /// `nft` is not installed: the path is reported unavailable.
    Unavailable(String),
}

/// Loads `ruleset` in `ns` with `nft -f -`.
pub fn apply(ns: &Netns, ruleset: &str) -> Result<Applied> {
    let out = match ns.output(&["nft", "-f", "-"], Some(ruleset.as_bytes())) {
        Ok(out) => out,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == ErrorKind::NotFound)
            }) =>
        {
            return Ok(Applied::Unavailable("nft not installed".into()));
        }
        Err(e) => return Err(e),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first: String = err.lines().take(6).collect::<Vec<_>>().join("\n");
        bail!("nft -f - failed ({}): {first}", out.status);
    }
    Ok(Applied::Loaded)
}

/// Removes the table (nothing to do if nft is missing or the table is gone).
pub fn remove(ns: &Netns) -> Result<()> {
    let script = format!("add table ip {TABLE}\ndelete table ip {TABLE}\n");
    match ns.output(&["nft", "-f", "-"], Some(script.as_bytes())) {
        Ok(out) if !out.status.success() => {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e).context("removing the nft table"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn svc(vip: [u8; 4], eps: &[[u8; 4]]) -> NatService {
        NatService {
            vip: vip.into(),
            proto: "udp",
            port: 80,
            endpoints: eps.iter().map(|&e| (e.into(), 8080)).collect(),
        }
    }

    #[test]
    fn one_service_one_endpoint_looks_like_kube_proxy() {
        let r = ruleset(&[svc([10, 96, 0, 10], &[[10, 200, 2, 100]])]);
        let svc = "service-00000000-bench/svc0/udp/p80";
        let ep = "endpoint-00000000-bench/svc0/udp/p80__10.200.2.100/8080";
        for want in [
            "table ip kube-proxy {".to_owned(),
            "type ipv4_addr . inet_proto . inet_service : verdict".to_owned(),
            format!("elements = {{ 10.96.0.10 . udp . 80 : goto {svc} }}"),
            "ip daddr . meta l4proto . th dport vmap @service-ips".to_owned(),
            "type nat hook prerouting priority -100; policy accept;".to_owned(),
            format!("numgen random mod 1 vmap {{ 0 : goto {ep} }}"),
            "ip saddr 10.200.2.100 jump mark-for-masquerade".to_owned(),
            "meta l4proto udp dnat to 10.200.2.100:8080".to_owned(),
            "masquerade fully-random".to_owned(),
        ] {
            assert!(r.contains(&want), "missing {want:?} in\n{r}");
        }
        // Every chain is declared before anything refers to it.
        let decl = r.find(&format!("chain {ep}")).unwrap();
        let use_ = r.find(&format!("goto {ep}")).unwrap();
        assert!(decl < use_);
        assert!(r.find(&format!("chain {svc}")).unwrap() < r.find("map service-ips").unwrap());
    }

    #[test]
    fn many_services_many_endpoints() {
        let services: Vec<NatService> = (0..3u8)
            .map(|i| {
                svc(
                    [10, 97, 0, i],
                    &(0..10u8).map(|j| [10, 128, i, j]).collect::<Vec<_>>(),
                )
            })
            .collect();
        let r = ruleset(&services);
        assert_eq!(r.matches("numgen random mod 10 vmap").count(), 3);
        assert_eq!(r.matches(" dnat to ").count(), 30);
        assert_eq!(r.matches(": goto service-").count(), 3);
        assert!(r.contains("9 : goto endpoint-00000002-bench/svc2/udp/p80__10.128.2.9/8080"));
    }

    #[test]
    fn no_services_is_still_a_valid_shape() {
        let r = ruleset(&[]);
        assert!(!r.contains("elements"));
        assert!(r.contains("map service-ips"));
    }

    /// The generated ruleset loads into a real kernel (needs root and nft).
    #[test]
    fn nft_accepts_the_ruleset() {
        if !kxdp_tests::require_root("nft::nft_accepts_the_ruleset") {
            return;
        }
        let ns = Netns::new("nft").unwrap();
        let services = vec![
            svc([10, 96, 0, 10], &[[10, 200, 2, 100]]),
            svc([10, 97, 0, 1], &[[10, 128, 0, 1], [10, 128, 0, 2]]),
        ];
        match apply(&ns, &ruleset(&services)).unwrap() {
            Applied::Unavailable(why) => eprintln!("skipped: {why}"),
            Applied::Loaded => {
                let listed = ns
                    .exec(&["nft", "list", "table", "ip", TABLE], None)
                    .unwrap();
                assert!(listed.contains("dnat to 10.128.0.2:8080"), "{listed}");
                // Loading twice replaces, and removing leaves nothing.
                assert_eq!(apply(&ns, &ruleset(&services)).unwrap(), Applied::Loaded);
                remove(&ns).unwrap();
                let all = ns.exec(&["nft", "list", "ruleset"], None).unwrap();
                assert!(!all.contains(TABLE), "{all}");
            }
        }
    }
}
