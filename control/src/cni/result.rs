//! [`CniResult`]: what ADD prints on success (CNI spec 1.0.0, "Success"), what the IPAM
//! delegate answers, and the `prevResult` DEL and CHECK receive.
//!
//! The same type serves all supported versions: before 1.0.0 each IP also carried
//! `"version": "4"|"6"`, which [`CniResult::to_json`] adds and [`CniResult::from_json`]
//! ignores.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An address with its prefix length, as CNI writes them: `10.244.1.5/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address with a prefix length (a.b.c.d/len)");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix_len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An interface the plugin created (or that is in the sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The namespace path for interfaces inside the container; absent on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub dst: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// Resolver settings (passed through from IPAM; kxdp sets none itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A CNI success result, version-independent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result of any supported version (unknown fields, such as the pre-1.0
    /// per-IP `version`, are ignored).
    pub fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        CniResult::deserialize(value)
    }

    /// The result document in `cni_version` (the configuration's).
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut doc = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut doc {
            map.insert("cniVersion".to_owned(), Value::from(cni_version));
            if cni_version.starts_with("0.")
                && let Some(Value::Array(ips)) = map.get_mut("ips")
            {
                for (ip, cfg) in ips.iter_mut().zip(&self.ips) {
                    if let Value::Object(ip) = ip {
                        let v = if cfg.address.addr.is_ipv4() { "4" } else { "6" };
                        ip.insert("version".to_owned(), Value::from(v));
                    }
                }
            }
        }
        doc
    }

    /// The interface named `name` inside a sandbox, with its index.
    pub fn sandbox_interface(&self, name: &str) -> Option<(usize, &Interface)> {
        self.interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == name && i.sandbox.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    fn sample() -> CniResult {
        let gw = IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1));
        CniResult {
            interfaces: vec![
                Interface {
                    name: "kx0123456789ab".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:f4:01:05".into(),
                    sandbox: Some("/run/netns/pod1".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.244.1.5/24".parse().unwrap(),
                gateway: Some(gw),
                interface: Some(1),
            }],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some(gw),
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn result_json_is_the_spec_format() {
        assert_eq!(
            sample().to_json("1.0.0"),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "kx0123456789ab", "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/pod1"}
                ],
                "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
                "dns": {}
            })
        );
        let old = sample().to_json("0.4.0");
        assert_eq!(old["cniVersion"], "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
    }

    #[test]
    fn results_round_trip_in_every_version() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            let back = CniResult::from_json(&sample().to_json(v)).unwrap();
            assert_eq!(back, sample(), "{v}");
        }
        let r = sample();
        assert_eq!(r.sandbox_interface("eth0").map(|(i, _)| i), Some(1));
        assert_eq!(r.sandbox_interface("kx0123456789ab"), None);
    }

    #[test]
    fn host_local_answers_parse() {
        // What host-local 1.1.1 prints, in 1.0.0 and 0.3.1 form.
        let v1 = json!({"cniVersion":"1.0.0","ips":[{"address":"10.244.1.2/24","gateway":"10.244.1.1"}],"dns":{}});
        let r = CniResult::from_json(&v1).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.244.1.2/24");
        assert_eq!(r.ips[0].interface, None);
        let v03 = json!({"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.244.1.2/24","gateway":"10.244.1.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.96.0.10"]}});
        let r = CniResult::from_json(&v03).unwrap();
        assert_eq!(r.routes[0].gw, None);
        assert_eq!(r.dns.nameservers, vec!["10.96.0.10".to_string()]);
    }

    #[test]
    fn cidrs_are_checked() {
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
        assert!("10.0.0.1".parse::<Cidr>().is_err());
        assert!("fd00::1/64".parse::<Cidr>().is_ok());
        assert!(CniResult::from_json(&json!({"ips":[{"address":"10.0.0.1"}]})).is_err());
    }
}
