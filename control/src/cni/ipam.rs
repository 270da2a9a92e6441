//! The delegated IPAM plugin (`ipam.type`, found on `CNI_PATH`): run with our environment,
//! the command of our choosing, and the configuration on stdin, as libcni runs a plugin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use super::env::{CniEnv, Command};
use super::error::{CniError, ErrorCode};
use super::result::CniResult;

/// Runs `plugin_type`'s `command` with `config` on stdin. ADD returns the plugin's result;
/// DEL and CHECK return None (their stdout is empty on success).
pub fn exec(
    env: &CniEnv,
    command: Command,
    plugin_type: &str,
    config: &[u8],
) -> Result<Option<CniResult>, CniError> {
    let plugin = find_plugin(plugin_type, &env.path)?;
    let what = format!("IPAM plugin {plugin_type} ({})", command.as_str());
    let mut process = Process::new(&plugin);
    process
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", join_path(&env.path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The delegate's own logging goes where ours would without a logFile.
        .stderr(Stdio::inherit());
    match &env.netns {
        Some(netns) => process.env("CNI_NETNS", netns),
        None => process.env_remove("CNI_NETNS"),
    };
    let mut child = process.spawn().map_err(|e| {
        CniError::new(ErrorCode::Ipam, format!("cannot run {}", plugin.display())).with_details(e)
    })?;
    let write_result = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(config))
        .transpose();
    // The configuration fits in the pipe's buffer (a few hundred bytes against 64 KiB), so
    // writing it all before reading the answer cannot deadlock; stdin closes here.
    let output = child.wait_with_output().map_err(|e| {
        CniError::new(ErrorCode::Ipam, format!("{what}: waiting for it")).with_details(e)
    })?;
    if !output.status.success() {
        return Err(match CniError::from_json(&output.stdout) {
            Some(e) => CniError {
                msg: format!("{what}: {}", e.msg),
                ..e
            },
            None => CniError::new(ErrorCode::Ipam, format!("{what} failed: {}", output.status))
                .with_details(String::from_utf8_lossy(&output.stdout).trim()),
        });
    }
    if let Err(e) = write_result {
        return Err(
            CniError::new(ErrorCode::Ipam, format!("{what}: writing its stdin")).with_details(e),
        );
    }
    if command != Command::Add {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        CniError::new(
            ErrorCode::DecodingFailure,
            format!("{what}: its answer is not JSON"),
        )
        .with_details(e)
    })?;
    CniResult::from_json(&value).map(Some).map_err(|e| {
        CniError::new(
            ErrorCode::DecodingFailure,
            format!("{what}: its answer is not a CNI result"),
        )
        .with_details(e)
    })
}

/// The first executable `name` in the `CNI_PATH` directories.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CniError::new(
            ErrorCode::InvalidNetworkConfig,
            format!("ipam.type {name:?} is not a plugin name"),
        ));
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                format!("IPAM plugin {name:?} not found in CNI_PATH"),
            )
            .with_details(join_path(path))
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn join_path(path: &[PathBuf]) -> String {
    path.iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn plugins_are_found_on_the_path_in_order() {
        let base = std::env::temp_dir().join(format!("kxdp-cni-ipam-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let script = |dir: &Path, mode: u32| {
            let p = dir.join("fake-ipam");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        script(&a, 0o644); // not executable: skipped
        let in_b = script(&b, 0o755);
        let path = vec![base.join("missing"), a.clone(), b.clone()];
        assert_eq!(find_plugin("fake-ipam", &path).unwrap(), in_b);
        let e = find_plugin("nope", &path).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidNetworkConfig);
        assert!(find_plugin("../b/fake-ipam", &path).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
