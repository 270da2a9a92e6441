//! Paths to the project's binaries for tests that run them as a user would.
//!
//! Integration tests of this crate cannot use `CARGO_BIN_EXE_*` for binaries of another
//! package, so the binary is built on first use with the same cargo and profile that built the
//! tests (`cargo build` is a no-op when it is up to date).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The `kxdp` binary (package `kxdp-control`), built if needed.
pub fn kxdp() -> Result<PathBuf> {
    static PATH: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| build("kxdp-control", "kxdp").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The `kxdp-cni` plugin binary (package `kxdp-control`), built if needed.
pub fn kxdp_cni() -> Result<PathBuf> {
    static PATH: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| build("kxdp-control", "kxdp-cni").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build(package: &str, bin: &str) -> Result<PathBuf> {
    // The test executable lives in target/<profile>/deps/; binaries in target/<profile>/.
    let exe = std::env::current_exe().context("current_exe")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable is not under target/<profile>/deps")?
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target_dir = profile_dir.parent().context("no target dir")?.to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    // `cargo test` runs us with the test package's facts in the environment
    // (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...); some build scripts (ring's) track those, so
    // passing them on would make this build and the next one from a shell rebuild the TLS
    // stack each time.
    for (var, _) in std::env::vars_os() {
        let Some(name) = var.to_str() else { continue };
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name)
        {
            cmd.env_remove(name);
        }
    }
    cmd.args([
        "build",
        "--quiet",
        "-p",
        package,
        "--bin",
        bin,
        "--target-dir",
    ])
    .arg(&target_dir);
    // The `dev` profile's directory is `debug`; others are named after the profile.
    let profile_arg = if profile == "debug" {
        "dev"
    } else {
        profile.as_str()
    };
    cmd.args(["--profile", profile_arg]);
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    let path = profile_dir.join(bin);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}
