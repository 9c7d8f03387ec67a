//! `files` mounts (glob patterns and `{ source, destination }`), their
//! read-only-ness, and component `environment`.

mod common;

use common::*;
use std::sync::Arc;

fn files_app() -> Arc<Host> {
    shared("files", || {
        Up::app("files")
            .env("SPIN_OSB_TEST_HOST_ONLY", "leak")
            .start()
    })
}

#[track_caller]
fn read(host: &Host, component: &str, path: &str) -> Resp {
    host.get(&format!(
        "/{component}/x?{}",
        query(&[("op", "file"), ("path", path)])
    ))
}

#[test]
fn a_glob_mounts_matching_files_at_their_relative_paths() {
    let host = &files_app();
    let r = read(host, "files", "/static/a.txt");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["content"], "alpha file\n");
    assert_eq!(
        read(host, "files", "/static/b.txt").json["content"],
        "bravo file\n"
    );
    let v = host.probe("/files/x", &[("op", "ls"), ("path", "/static")]);
    assert_eq!(v["entries"], json!(["a.txt", "b.txt"]));
}

#[test]
fn files_not_matching_the_glob_are_not_mounted() {
    let host = &files_app();
    let r = read(host, "files", "/static/c.md");
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json["error"], "not-found", "{}", r.body);
    // Nor is the manifest itself.
    assert_eq!(read(host, "files", "/spin.toml").json["error"], "not-found");
}

#[test]
fn a_source_directory_is_mounted_at_its_destination() {
    let host = &files_app();
    assert_eq!(
        read(host, "files", "/data/nested/x.json").json["content"],
        "{\"nested\": true}\n"
    );
    assert_eq!(
        read(host, "files", "/data/top.txt").json["content"],
        "top of assets\n"
    );
    let v = host.probe("/files/x", &[("op", "ls"), ("path", "/data")]);
    assert_eq!(v["entries"], json!(["nested", "top.txt"]));
    // Relative paths resolve against the guest root too.
    assert_eq!(
        read(host, "files", "data/top.txt").json["content"],
        "top of assets\n"
    );
}

#[test]
fn mounted_files_are_read_only() {
    let host = &files_app();
    let original = std::fs::read_to_string(app_dir("files").join("static/a.txt")).unwrap();
    for path in [
        "/static/a.txt",
        "/static/new.txt",
        "/data/top.txt",
        "/data/new.txt",
        "/new.txt",
    ] {
        let r = host.post(
            &format!(
                "/files/x?{}",
                query(&[("op", "file-write"), ("path", path)])
            ),
            "overwritten!",
        );
        assert_eq!(r.status, 500, "write to {path} must fail: {}", r.body);
        assert!(r.json["error"].is_string(), "{}", r.body);
    }
    assert_eq!(
        read(host, "files", "/static/a.txt").json["content"],
        original
    );
    assert!(!app_dir("files").join("static/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(app_dir("files").join("static/a.txt")).unwrap(),
        original
    );
}

#[test]
fn a_component_without_files_sees_none() {
    let host = &files_app();
    let r = read(host, "nofiles", "/static/a.txt");
    assert_eq!(r.status, 500, "{}", r.body);
    let r = read(host, "nofiles", "/etc/passwd");
    assert_eq!(r.status, 500, "host files must not be visible: {}", r.body);
    let r = read(host, "files", "/etc/passwd");
    assert_eq!(r.status, 500, "host files must not be visible: {}", r.body);
}

#[test]
fn a_component_sees_its_environment_and_nothing_from_the_host() {
    let host = &files_app();
    let env = |component: &str, name: &str| -> Value {
        host.probe(&format!("/{component}/x"), &[("op", "env"), ("name", name)])["value"].clone()
    };
    assert_eq!(env("files", "GREETING"), "hello from the manifest");
    assert_eq!(env("files", "EMPTY"), "");
    assert_eq!(env("files", "PROBE_NAME"), "files");
    assert_eq!(env("nofiles", "GREETING"), Value::Null);
    assert_eq!(env("nofiles", "PROBE_NAME"), "nofiles");
    for component in ["files", "nofiles"] {
        assert_eq!(env(component, "SPIN_OSB_TEST_HOST_ONLY"), Value::Null);
        assert_eq!(env(component, "PATH"), Value::Null, "host PATH leaked");
    }
}
