//! [`CniError`]: what the plugin prints on stdout when it fails (CNI spec 1.0.0, "Error"),
//! with the spec's well-known codes.

use serde::{Deserialize, Serialize};

/// The spec's error codes (1-99 reserved by the spec, 100+ plugin-specific).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the `cniVersion` of the configuration is not one this plugin speaks.
    IncompatibleVersion,
    /// 2: a configuration field this plugin does not support.
    UnsupportedField,
    /// 3: the container (its network namespace) does not exist; the runtime need not clean
    /// up after it.
    UnknownContainer,
    /// 4: a required `CNI_*` environment variable is missing or malformed.
    InvalidEnvironment,
    /// 5: reading or writing stdin/stdout/a file failed.
    IoFailure,
    /// 6: stdin (or a delegate's answer) is not valid JSON.
    DecodingFailure,
    /// 7: the JSON is well formed but the configuration is not usable.
    InvalidNetworkConfig,
    /// 11: transient (the kxdp agent is down); the runtime should retry later.
    TryAgainLater,
    /// 100: the container already has this interface (ADD repeated without DEL).
    AlreadyExists,
    /// 101: the kernel refused to create or configure the pod's interface.
    InterfaceSetup,
    /// 102: the kxdp agent refused the request.
    AgentRefused,
    /// 103: the delegated IPAM plugin could not be run, or failed without saying why.
    Ipam,
    /// 104: CHECK found the attachment not as ADD left it.
    CheckFailed,
    /// Any other code, e.g. one passed through from the IPAM plugin.
    Other(u32),
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::IoFailure => 5,
            ErrorCode::DecodingFailure => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::AlreadyExists => 100,
            ErrorCode::InterfaceSetup => 101,
            ErrorCode::AgentRefused => 102,
            ErrorCode::Ipam => 103,
            ErrorCode::CheckFailed => 104,
            ErrorCode::Other(code) => code,
        }
    }

    pub fn from_code(code: u32) -> Self {
        match code {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::IoFailure,
            6 => ErrorCode::DecodingFailure,
            7 => ErrorCode::InvalidNetworkConfig,
            11 => ErrorCode::TryAgainLater,
            other => ErrorCode::Other(other),
        }
    }
}

/// A failed command: printed as `{"cniVersion", "code", "msg", "details"}`, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if .details.is_empty() { String::new() } else { format!(": {}", .details) })]
pub struct CniError {
    pub code: ErrorCode,
    /// One line for a human: what failed.
    pub msg: String,
    /// Why, as precisely as the cause said it (may be empty).
    pub details: String,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl ToString) -> Self {
        self.details = details.to_string();
        self
    }

    /// The error document for stdout, in the configuration's `cniVersion` (or the newest we
    /// speak when the configuration could not be read).
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::to_value(ErrorDoc {
            cni_version: cni_version.to_owned(),
            code: self.code.code(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        })
        .unwrap_or_default()
    }

    /// Parses the error document another plugin (the IPAM delegate) printed.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let doc: ErrorDoc = serde_json::from_slice(bytes).ok()?;
        Some(CniError {
            code: ErrorCode::from_code(doc.code),
            msg: doc.msg,
            details: doc.details,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ErrorDoc {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::new(ErrorCode::TryAgainLater, "kxdp agent not reachable")
            .with_details("connection refused");
        assert_eq!(
            serde_json::to_string(&e.to_json("1.0.0")).unwrap(),
            r#"{"cniVersion":"1.0.0","code":11,"msg":"kxdp agent not reachable","details":"connection refused"}"#
        );
        let bare = CniError::new(ErrorCode::InvalidEnvironment, "CNI_IFNAME is not set");
        assert_eq!(
            serde_json::to_string(&bare.to_json("0.4.0")).unwrap(),
            r#"{"cniVersion":"0.4.0","code":4,"msg":"CNI_IFNAME is not set"}"#
        );
        assert_eq!(
            e.to_string(),
            "kxdp agent not reachable: connection refused"
        );
        assert_eq!(bare.to_string(), "CNI_IFNAME is not set");
    }

    #[test]
    fn delegate_errors_parse_and_keep_their_code() {
        let e = CniError::from_json(
            br#"{"cniVersion":"1.0.0","code":999,"msg":"failed to allocate for range 0: no IP addresses available in range set: 10.244.1.1-10.244.1.2"}"#,
        )
        .unwrap();
        assert_eq!(e.code, ErrorCode::Other(999));
        assert!(e.msg.contains("no IP addresses available"));
        assert_eq!(
            CniError::from_json(br#"{"code":7,"msg":"x"}"#)
                .unwrap()
                .code,
            ErrorCode::InvalidNetworkConfig
        );
        assert!(CniError::from_json(b"not json").is_none());
    }
}
