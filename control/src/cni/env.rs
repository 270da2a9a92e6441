//! [`CniEnv`]: the `CNI_*` environment variables a runtime sets for one invocation.

use std::path::PathBuf;

use super::error::{CniError, ErrorCode};

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
        }
    }
}

/// One invocation's environment. For VERSION only `command` is meaningful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: may be absent on DEL (the sandbox is already gone).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`: the interface to create inside the container.
    pub ifname: String,
    /// `CNI_ARGS` as given, `K1=V1;K2=V2` (passed through to the IPAM delegate).
    pub args: String,
    /// `CNI_PATH`: where to look for the IPAM delegate.
    pub path: Vec<PathBuf>,
}

/// The longest interface name (IFNAMSIZ − 1).
const MAX_IFNAME: usize = 15;

impl CniEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<Self, CniError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (the process environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let missing = |name: &str| {
            CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("{name} is not set (the container runtime sets it)"),
            )
        };
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("unknown CNI_COMMAND {other:?} (expected ADD, DEL, CHECK or VERSION)"),
                ));
            }
            None => return Err(missing("CNI_COMMAND")),
        };
        if command == Command::Version {
            return Ok(CniEnv {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                args: String::new(),
                path: Vec::new(),
            });
        }
        let container_id = get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
        check_container_id(&container_id)?;
        let ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
        check_ifname(&ifname)?;
        let netns = get("CNI_NETNS").map(PathBuf::from);
        if netns.is_none() && command != Command::Del {
            return Err(missing("CNI_NETNS"));
        }
        let path: Vec<PathBuf> = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        if path.is_empty() {
            return Err(missing("CNI_PATH"));
        }
        let args = var("CNI_ARGS").unwrap_or_default();
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// The value of `key` in `CNI_ARGS` (`K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default`).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `namespace/name` of the Kubernetes pod, when the runtime passed both.
    pub fn pod(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.arg("K8S_POD_NAMESPACE")?,
            self.arg("K8S_POD_NAME")?
        ))
    }

    /// The attachment's id at the agent: unique per container and interface.
    pub fn attachment_id(&self) -> String {
        format!("{}/{}", self.container_id, self.ifname)
    }
}

/// The spec's rule for container ids: alphanumerics, then also `_`, `.` and `-`.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_CONTAINERID {id:?} is not a valid container id"),
        )
        .with_details("expected [A-Za-z0-9][A-Za-z0-9_.-]*"))
    }
}

fn check_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name.contains(['/', ':', '\0'])
        && !name.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_IFNAME {name:?} is not a valid interface name"),
        )
        .with_details("1-15 bytes, without '/', ':', NUL or whitespace, not '.' or '..'"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_vars(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123",
        ),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    #[test]
    fn add_environment_parses() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/pod1")));
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(e.pod().as_deref(), Some("default/web-0"));
        assert_eq!(e.arg("IgnoreUnknown"), Some("1"));
        assert_eq!(e.arg("NOPE"), None);
        assert_eq!(e.attachment_id(), "abc123/eth0");
    }

    #[test]
    fn missing_or_bad_variables_are_code_4() {
        let without = |skip: &str| {
            let vars: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != skip).collect();
            env(&vars).unwrap_err()
        };
        for var in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_PATH",
        ] {
            let e = without(var);
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{var}");
            assert!(e.msg.contains(var), "{e}");
        }
        let with = |key: &str, value: &str| {
            let mut vars: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != key).collect();
            vars.push((key, value));
            env(&vars)
        };
        assert_eq!(
            with("CNI_COMMAND", "GC").unwrap_err().code,
            ErrorCode::InvalidEnvironment
        );
        assert!(with("CNI_IFNAME", "a-very-long-ifname").is_err());
        assert!(with("CNI_IFNAME", "eth/0").is_err());
        assert!(with("CNI_CONTAINERID", "-abc").is_err());
        assert!(with("CNI_CONTAINERID", "abc/../x").is_err());
        assert!(with("CNI_CONTAINERID", "k8s_POD.web-0_1").is_ok());
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!((e.command, e.netns.as_deref()), (Command::Del, None));
        assert_eq!(e.pod(), None);
        let v = env(&[("CNI_COMMAND", "VERSION")]).unwrap();
        assert_eq!(v.command, Command::Version);
    }
}
