//! Where the broker's manifest, the `spin-osb` binary and the real Spin CLI are, and
//! whether the components are built.

use std::path::PathBuf;
use std::sync::OnceLock;

pub use spin_osb_test_support::paths::repo_root;
use spin_osb_test_support::paths::target_dirs;

/// The broker's manifest.
pub fn manifest() -> PathBuf {
    repo_root().join("spin.toml")
}
/// The real Spin CLI: `$SPIN_OSB_REAL_SPIN`, else where `scripts/test.sh` installs it
/// (`~/.cache/spin-osb/spin/spin`, from the Spin build the project's CI provides).
pub fn real_spin_bin() -> Result<PathBuf, String> {
    let path = match std::env::var_os("SPIN_OSB_REAL_SPIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/spin-osb/spin/spin"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the real Spin CLI is not at {} (scripts/test.sh installs it when the Spin build is \
             available; set SPIN_OSB_REAL_SPIN to use another)",
            path.display()
        ))
    }
}

/// The `spin-osb` host binary; panics with build instructions when it is missing.
pub fn host_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let candidates: Vec<PathBuf> = target_dirs()
            .into_iter()
            .map(|d| d.join("release/spin-osb"))
            .collect();
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the spin-osb host binary was not found (looked at {}).\n\
                     Build it and the broker's components first (scripts/test.sh does both):\n  \
                     cargo build --release -p spin-osb-host && target/release/spin-osb build -f spin.toml",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Panics with build instructions unless every `source` wasm of spin.toml exists.
pub fn check_components_built() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let root = repo_root();
            let text = std::fs::read_to_string(manifest())
                .map_err(|e| format!("cannot read {}: {e}", manifest().display()))?;
            let missing: Vec<String> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("source"))
                .filter_map(|l| l.trim().strip_prefix('='))
                .map(|l| l.trim().trim_matches('"').to_string())
                .filter(|p| p.ends_with(".wasm") && !root.join(p).is_file())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the broker's components are not built (missing: {}).\n\
                     Build them first (scripts/test.sh does it): target/release/spin-osb build -f spin.toml",
                    missing.join(", ")
                ))
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}
