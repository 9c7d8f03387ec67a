//! Where the repository and the cargo target directory are, seen from a test binary: the
//! suites run `target/release/spin-osb` and the wasm components under `target/`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root: the nearest directory holding `spin.toml` and `tests/support`
/// above the package cargo runs the tests of (`CARGO_MANIFEST_DIR` at run time), else
/// above the current directory, else where this crate was compiled. Not only the compiled-in
/// path: CI clones afresh beside a shared target directory, and a test binary cargo reuses
/// from another checkout must still look at the checkout it runs in.
pub fn repo_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let starts = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain(std::env::current_dir().ok())
            .chain([compiled.clone()]);
        for start in starts {
            if let Some(root) = start
                .ancestors()
                .find(|dir| dir.join("spin.toml").is_file() && dir.join("tests/support").is_dir())
            {
                return root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
            }
        }
        compiled.canonicalize().unwrap_or(compiled)
    })
    .clone()
}

/// `$CARGO_TARGET_DIR` made absolute against the repository, when set.
fn env_target_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CARGO_TARGET_DIR")?);
    Some(if dir.is_absolute() {
        dir
    } else {
        repo_root().join(dir)
    })
}

/// The target directory that holds the running test binary
/// (`<target>/<profile>/deps/<test>-<hash>`).
fn exe_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// The places a target directory may be, most likely first: `$CARGO_TARGET_DIR`, the one
/// holding this test binary, `<repo>/target`.
pub fn target_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(env_target_dir());
    dirs.extend(exe_target_dir());
    dirs.push(repo_root().join("target"));
    dirs
}

/// The cargo target directory this test binary was built into: `$CARGO_TARGET_DIR`, else
/// the one holding the binary when it looks like a target directory, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = env_target_dir() {
        return dir;
    }
    if let Some(target) = exe_target_dir() {
        if target.join("CACHEDIR.TAG").exists() || target.join("release").is_dir() {
            return target;
        }
    }
    repo_root().join("target")
}
