//! `spin-osb catalog check`: the catalog author's view of the broker's load-time validation.

use std::process::Command;

fn check(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spin-osb"))
        .args(["catalog", "check"])
        .arg(dir)
        .output()
        .expect("spin-osb runs")
}

#[test]
fn the_shipped_catalog_is_valid() {
    let dir = spin_osb_test_support::paths::repo_root().join("catalog");
    let out = check(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn every_problem_is_reported_with_file_line_and_field_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "services:\n  - id: s1\n    name: one\n    description: d\n    bindable: true\n    bogus: 1\n    plans: []\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "services:\n  - id: s1\n    name: one\n    description: d\n    bindable: true\n    plans:\n      - id: p1\n        name: p\n        description: d\n        backend: {type: nosuch}\n",
    )
    .unwrap();
    let out = check(dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a.yaml:6:5: services[0].bogus: unknown field `bogus`"),
        "{stderr}"
    );
    assert!(stderr.contains("b.yaml"), "{stderr}");
    assert!(stderr.contains("nosuch"), "{stderr}");
}
