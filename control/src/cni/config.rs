//! [`NetConf`]: the network configuration the runtime passes on stdin, and the configuration
//! handed on to the IPAM delegate with the node's pod CIDR filled in.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::error::{CniError, ErrorCode};
use super::result::CniResult;
use crate::overlay::Ipv4Net;

/// Where the agent listens unless the configuration says otherwise (`kxdp agent
/// --api-socket`'s default).
pub const DEFAULT_API_SOCKET: &str = "/run/kxdp/kxdp.sock";

/// The CNI versions this plugin speaks: 0.3.x and 0.4.0 results differ from 1.0.0 only in the
/// `version` field of each IP; CHECK exists since 0.4.0.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// The version this plugin answers VERSION with, and errors in when it cannot tell.
pub const CURRENT_VERSION: &str = "1.0.0";

/// The smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u64 = 68;

/// The plugin's network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// `apiSocket`: the agent's local API.
    pub api_socket: PathBuf,
    /// `mtu`: None means the agent's pod MTU.
    pub mtu: Option<u16>,
    /// `ipam.type`: the delegate plugin's name, if there is an `ipam` section.
    pub ipam_type: Option<String>,
    /// `prevResult` (DEL and CHECK).
    pub prev_result: Option<CniResult>,
    /// `logFile`: log there instead of stderr.
    pub log_file: Option<PathBuf>,
    /// The document as given, for the delegate (which reads fields we do not know).
    raw: Map<String, Value>,
}

/// A range the IPAM delegate allocates from when the configuration names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
}

impl NetConf {
    /// Parses stdin: malformed JSON is code 6, unusable fields code 7, a version we do not
    /// speak code 1.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                ErrorCode::DecodingFailure,
                "the network configuration on stdin is not valid JSON",
            )
            .with_details(e)
        })?;
        let Value::Object(raw) = value else {
            return Err(invalid("the network configuration is not a JSON object"));
        };
        let cni_version =
            string_field(&raw, "cniVersion")?.ok_or_else(|| invalid("cniVersion is missing"))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("incompatible CNI version {cni_version:?}"),
            )
            .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        let name = string_field(&raw, "name")?.ok_or_else(|| invalid("name is missing"))?;
        let plugin_type = string_field(&raw, "type")?.ok_or_else(|| invalid("type is missing"))?;
        let api_socket = string_field(&raw, "apiSocket")?
            .map_or_else(|| PathBuf::from(DEFAULT_API_SOCKET), PathBuf::from);
        let log_file = string_field(&raw, "logFile")?.map(PathBuf::from);
        let mtu = match raw.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m) if (MIN_MTU..=u64::from(u16::MAX)).contains(&m) => Some(m as u16),
                _ => return Err(invalid(format!("mtu {v} is not an MTU ({MIN_MTU}-65535)"))),
            },
        };
        let ipam_type = match raw.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ipam)) => {
                Some(string_field(ipam, "type")?.ok_or_else(|| invalid("ipam.type is missing"))?)
            }
            Some(_) => return Err(invalid("ipam is not an object")),
        };
        let prev_result = match raw.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                CniResult::from_json(v)
                    .map_err(|e| invalid("prevResult is not a CNI result").with_details(e))?,
            ),
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            api_socket,
            mtu,
            ipam_type,
            prev_result,
            log_file,
            raw,
        })
    }

    /// The `cniVersion` an error about `bytes` should carry: the configuration's, if it
    /// names one we speak.
    pub fn version_hint(bytes: &[u8]) -> &'static str {
        let version = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned));
        SUPPORTED_VERSIONS
            .iter()
            .find(|v| Some(**v) == version.as_deref())
            .copied()
            .unwrap_or(CURRENT_VERSION)
    }

    /// `logFile` of a configuration, read before anything else so that even a failure to
    /// parse the rest is logged where the operator looks.
    pub fn log_file_hint(bytes: &[u8]) -> Option<PathBuf> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        v.get("logFile")?.as_str().map(PathBuf::from)
    }

    /// `ipam.type`, which ADD, DEL and CHECK need.
    pub fn require_ipam(&self) -> Result<&str, CniError> {
        self.ipam_type
            .as_deref()
            .ok_or_else(|| invalid("ipam is missing (kxdp-cni delegates IPAM, e.g. to host-local)"))
    }

    /// True when `ipam` names its own addresses (`ranges` or `subnet`), so the node's pod
    /// CIDR is not filled in.
    pub fn ipam_has_range(&self) -> bool {
        self.raw
            .get("ipam")
            .and_then(Value::as_object)
            .is_some_and(|ipam| ipam.contains_key("ranges") || ipam.contains_key("subnet"))
    }

    /// The configuration for the IPAM delegate: ours as given, with `ipam.ranges` set to
    /// `range` unless the configuration names its own (host-local's format, which other
    /// IPAM plugins of the ranges family share).
    pub fn ipam_request(&self, range: Option<PodRange>) -> Vec<u8> {
        let mut raw = self.raw.clone();
        if let Some(range) = range
            && !self.ipam_has_range()
            && let Some(Value::Object(ipam)) = raw.get_mut("ipam")
        {
            ipam.insert(
                "ranges".to_owned(),
                json!([[{
                    "subnet": range.subnet.to_string(),
                    "gateway": range.gateway.to_string(),
                }]]),
            );
        }
        // Serialising a map of JSON values cannot fail.
        serde_json::to_vec(&Value::Object(raw)).unwrap_or_default()
    }
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidNetworkConfig, msg)
}

/// A string field; present with another type is an error.
fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!("{key} must be a string, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"{ "cniVersion": "1.0.0", "name": "kxdp", "type": "kxdp-cni",
        "apiSocket": "/tmp/k.sock", "mtu": 1450,
        "ipam": { "type": "host-local", "dataDir": "/tmp/ipam" } }"#;

    #[test]
    fn the_documented_configuration_parses() {
        let c = NetConf::parse(CONF.as_bytes()).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.name, "kxdp");
        assert_eq!(c.plugin_type, "kxdp-cni");
        assert_eq!(c.api_socket, PathBuf::from("/tmp/k.sock"));
        assert_eq!(c.mtu, Some(1450));
        assert_eq!(c.require_ipam().unwrap(), "host-local");
        assert_eq!(c.prev_result, None);
        assert!(!c.ipam_has_range());
    }

    #[test]
    fn defaults_apply() {
        let c = NetConf::parse(br#"{"cniVersion":"0.4.0","name":"n","type":"kxdp-cni"}"#).unwrap();
        assert_eq!(c.api_socket, PathBuf::from(DEFAULT_API_SOCKET));
        assert_eq!((c.mtu, c.log_file.as_deref()), (None, None));
        assert_eq!(
            c.require_ipam().unwrap_err().code,
            ErrorCode::InvalidNetworkConfig
        );
    }

    #[test]
    fn bad_configurations_get_the_spec_codes() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::DecodingFailure);
        assert_eq!(code("[1]"), ErrorCode::InvalidNetworkConfig);
        assert_eq!(
            code(r#"{"name":"n","type":"t"}"#),
            ErrorCode::InvalidNetworkConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#),
            ErrorCode::IncompatibleVersion
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":20}"#),
            ErrorCode::InvalidNetworkConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":"1450"}"#),
            ErrorCode::InvalidNetworkConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{}}"#),
            ErrorCode::InvalidNetworkConfig
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":{"ips":[{"address":"bad"}]}}"#
            ),
            ErrorCode::InvalidNetworkConfig
        );
    }

    #[test]
    fn hints_read_broken_configurations() {
        assert_eq!(NetConf::version_hint(br#"{"cniVersion":"0.3.1"}"#), "0.3.1");
        assert_eq!(NetConf::version_hint(br#"{"cniVersion":"9.9"}"#), "1.0.0");
        assert_eq!(NetConf::version_hint(b"garbage"), "1.0.0");
        assert_eq!(
            NetConf::log_file_hint(br#"{"logFile":"/var/log/kxdp-cni.log","mtu":"x"}"#),
            Some(PathBuf::from("/var/log/kxdp-cni.log"))
        );
    }

    #[test]
    fn ipam_gets_the_node_range_unless_it_names_one() {
        let range = PodRange {
            subnet: "10.244.1.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 244, 1, 1),
        };
        let c = NetConf::parse(CONF.as_bytes()).unwrap();
        let req: Value = serde_json::from_slice(&c.ipam_request(Some(range))).unwrap();
        assert_eq!(
            req["ipam"],
            json!({"type": "host-local", "dataDir": "/tmp/ipam",
                   "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]]})
        );
        // Everything else is passed through unchanged.
        assert_eq!(req["name"], "kxdp");
        assert_eq!(req["apiSocket"], "/tmp/k.sock");

        for own in [
            r#"{"type":"host-local","subnet":"10.9.0.0/16"}"#,
            r#"{"type":"host-local","ranges":[[{"subnet":"10.9.0.0/16"}]]}"#,
        ] {
            let s = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{own}}}"#);
            let c = NetConf::parse(s.as_bytes()).unwrap();
            assert!(c.ipam_has_range());
            let req: Value = serde_json::from_slice(&c.ipam_request(Some(range))).unwrap();
            assert_eq!(req["ipam"], serde_json::from_str::<Value>(own).unwrap());
        }
        let req: Value = serde_json::from_slice(&c.ipam_request(None)).unwrap();
        assert_eq!(req["ipam"].get("ranges"), None);
    }
}
