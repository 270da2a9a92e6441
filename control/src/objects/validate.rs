//! Field checks shared by the views: addresses, prefixes, ports, MACs, object names. Each
//! returns an [`ObjectError`] naming the object and the field it was given.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::error::ObjectError;
use crate::overlay::Ipv4Net;

/// The object being validated, for error messages (`Service default/web`).
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub name: String,
    pub namespace: String,
    what: String,
}

impl Subject {
    /// A cluster-scoped object (`Node b`).
    pub fn cluster(kind: &str, meta: &ObjectMeta) -> Result<Subject, ObjectError> {
        let name = required_name(kind, meta)?;
        Ok(Subject {
            what: format!("{kind} {name}"),
            name,
            namespace: String::new(),
        })
    }

    /// A namespaced object (`Service default/web`); no namespace means `default`, as for
    /// `kubectl apply` without `-n`.
    pub fn namespaced(kind: &str, meta: &ObjectMeta) -> Result<Subject, ObjectError> {
        let name = required_name(kind, meta)?;
        let namespace = match meta.namespace.as_deref() {
            None | Some("") => "default".to_owned(),
            Some(ns) => ns.to_owned(),
        };
        Ok(Subject {
            what: format!("{kind} {namespace}/{name}"),
            name,
            namespace,
        })
    }

    pub fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ObjectError {
        ObjectError::new(self.what.clone(), field, message)
    }

    pub fn ip(&self, field: &str, s: &str) -> Result<IpAddr, ObjectError> {
        s.parse()
            .map_err(|_| self.err(field, format!("{s:?} is not an IP address")))
    }

    pub fn ipv4(&self, field: &str, s: &str) -> Result<Ipv4Addr, ObjectError> {
        match self.ip(field, s)? {
            IpAddr::V4(ip) => Ok(ip),
            IpAddr::V6(_) => Err(self.err(field, format!("{s:?} is not an IPv4 address"))),
        }
    }

    /// An IPv4 prefix; `None` for a valid IPv6 one (the data path is IPv4 only for now, and a
    /// dual-stack object lists both).
    pub fn cidr4(&self, field: &str, s: &str) -> Result<Option<Ipv4Net>, ObjectError> {
        let bad = || self.err(field, format!("{s:?} is not a valid CIDR"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => Ipv4Net::new(a, len).map(Some).map_err(|_| bad()),
            IpAddr::V6(_) if len <= 128 => Ok(None),
            IpAddr::V6(_) => Err(bad()),
        }
    }

    /// A port that must be set: 1..=65535.
    pub fn port(&self, field: &str, p: i32) -> Result<u16, ObjectError> {
        match u16::try_from(p) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(self.err(field, format!("{p} is not a valid port"))),
        }
    }

    /// An optional port: absent or 0 means unset (the API's zero value).
    pub fn optional_port(&self, field: &str, p: Option<i32>) -> Result<Option<u16>, ObjectError> {
        match p {
            None | Some(0) => Ok(None),
            Some(p) => self.port(field, p).map(Some),
        }
    }
}

fn required_name(kind: &str, meta: &ObjectMeta) -> Result<String, ObjectError> {
    match meta.name.as_deref() {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(ObjectError::new(
            format!("{kind} (unnamed)"),
            "metadata.name",
            "missing",
        )),
    }
}

/// `aa:bb:cc:dd:ee:ff` (either case) → bytes.
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let mac = parse_mac("0E:6b:00:Aa:ff:01");
        assert_eq!(mac, Some([0x0e, 0x6b, 0, 0xaa, 0xff, 1]));
        assert_eq!(
            format_mac([0x0e, 0x6b, 0, 0xaa, 0xff, 1]),
            "0e:6b:00:aa:ff:01"
        );
        for bad in [
            "",
            "0e:6b:00:aa:ff",
            "0e:6b:00:aa:ff:01:02",
            "0e-6b-00-aa-ff-01",
            "e:6b:00:aa:ff:001",
            "zz:6b:00:aa:ff:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
