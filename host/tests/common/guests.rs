//! The guest components the test apps run, built once per test binary.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub use spin_osb_test_support::paths::repo_root;
use spin_osb_test_support::paths::target_dir;

pub fn app_dir(scenario: &str) -> PathBuf {
    repo_root().join("tests/apps").join(scenario)
}

pub fn app_manifest(scenario: &str) -> PathBuf {
    app_dir(scenario).join("spin.toml")
}

pub fn host_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spin-osb"))
}

/// Path of the probe wasm as the manifests see it (`<repo>/target/...`).
pub fn probe_wasm() -> PathBuf {
    repo_root().join("target/wasm32-wasip2/release/test_probe.wasm")
}

static GUESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Build the guest components once per test binary and make sure
/// `<repo>/target/wasm32-wasip2/release/test_probe.wasm` is the fresh build.
pub fn build_guests() -> PathBuf {
    GUESTS
        .get_or_init(build_guests_inner)
        .clone()
        .unwrap_or_else(|e| panic!("building the test guests failed:\n{e}"))
}

fn build_guests_inner() -> Result<PathBuf, String> {
    let root = repo_root();
    let target = target_dir();
    // The manifests point at <repo>/target; link it to the real target dir.
    let link = root.join("target");
    if std::fs::symlink_metadata(&link).is_err() && target != link {
        std::os::unix::fs::symlink(&target, &link)
            .or_else(|e| {
                // Another test binary may have created it concurrently.
                if link.exists() {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                format!(
                    "cannot symlink {} -> {}: {e}",
                    link.display(),
                    target.display()
                )
            })?;
    }
    if std::env::var_os("SPIN_OSB_TEST_SKIP_GUEST_BUILD").is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let out = Command::new(cargo)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--release",
                "-p",
                "test-probe",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build of test-probe failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let built = target.join("wasm32-wasip2/release/test_probe.wasm");
    let seen = probe_wasm();
    if !built.exists() {
        return Err(format!(
            "{} does not exist after the build",
            built.display()
        ));
    }
    let same = match (built.canonicalize(), seen.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        // <repo>/target is a real directory distinct from the target dir:
        // copy the guest where the manifests look for it.
        std::fs::create_dir_all(seen.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(&built, &seen)
            .map_err(|e| format!("copy {} -> {}: {e}", built.display(), seen.display()))?;
    }
    Ok(seen)
}
