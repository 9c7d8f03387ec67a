//! `spin-osb-catalog`: the build step. A bad catalog stops the build with exactly the
//! messages of `spin-osb catalog check`; a good one is written whole, replacing the last.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn compiler(args: &[&str], dir: &Path, out: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spin-osb-catalog"));
    cmd.args(args).arg(dir);
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    cmd.output().expect("spin-osb-catalog runs")
}

/// `spin-osb catalog check`, the host's command, built into the same target directory.
fn host_check(dir: &Path) -> Option<Output> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_spin-osb-catalog")).with_file_name("spin-osb");
    bin.is_file().then(|| {
        Command::new(bin)
            .args(["catalog", "check"])
            .arg(dir)
            .output()
            .expect("spin-osb runs")
    })
}

fn repo_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog")
}

const BAD: &str = "services:\n  - id: s1\n    name: one\n    description: d\n    bindable: true\n    plans:\n      - id: p1\n        name: p\n        description: d\n        maximum_polling_duration: 0\n        backend: {type: credentials, async: yes}\n";

#[test]
fn a_bad_catalog_fails_the_compile_with_the_checks_messages_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BAD).unwrap();
    let out_dir = dir.path().join("compiled");
    let compiled = compiler(&["compile"], dir.path(), Some(&out_dir));
    assert!(!compiled.status.success());
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    assert!(stderr.contains("a.yaml"), "{stderr}");
    assert!(stderr.contains("problem(s) found"), "{stderr}");
    assert!(!out_dir.exists(), "nothing is written for a bad catalog");
    let checked = compiler(&["check"], dir.path(), None);
    assert_eq!(checked.stderr, compiled.stderr);
    if let Some(host) = host_check(dir.path()) {
        assert!(!host.status.success());
        assert_eq!(
            String::from_utf8_lossy(&host.stderr),
            stderr,
            "`spin-osb catalog check` and the compiler say the same"
        );
    }
}

#[test]
fn a_good_catalog_is_compiled_and_a_recompile_replaces_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("compiled");
    std::fs::create_dir_all(out_dir.join("plans")).unwrap();
    std::fs::write(out_dir.join("plans/stale.json"), "{}").unwrap();
    let out = compiler(&["compile"], &repo_catalog(), Some(&out_dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out_dir.join("plans/stale.json").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let plans = std::fs::read_dir(out_dir.join("plans")).unwrap().count();
    assert_eq!(manifest["plans"].as_u64(), Some(plans as u64));
    let body = std::fs::read(out_dir.join("catalog.json")).unwrap();
    assert_eq!(manifest["catalog_bytes"].as_u64(), Some(body.len() as u64));
    assert_eq!(
        manifest["etag"].as_str(),
        Some(spin_osb_core::catalog::etag_of(&body).as_str())
    );
}
