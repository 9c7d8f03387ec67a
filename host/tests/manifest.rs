//! Manifest loading and the CLI: invalid manifests fail start-up with a
//! message naming the problem (and nothing listens), defaults of `up`, and
//! `spin-osb build`.

mod common;

use common::*;
use std::path::Path;

/// A throw-away app dir whose `spin.toml` is `body` with `{SOURCE}` replaced
/// by the absolute path of the probe wasm.
fn app_with(body: &str) -> tempfile::TempDir {
    let wasm = build_guests();
    let dir = tempdir();
    let text = body.replace("{SOURCE}", &toml_str(&wasm.to_string_lossy()));
    write_file(dir.path(), "spin.toml", &text);
    dir
}

const HEADER: &str = "spin_manifest_version = 2\n\n[application]\nname = \"bad\"\n";

fn valid_component(id: &str) -> String {
    format!("\n[component.{id}]\nsource = {{SOURCE}}\n")
}

/// Start on a fixed free port, expect failure, and check nothing listens.
fn expect_start_failure(dir: &Path) -> StartFailure {
    let port = free_port();
    let f = Up::manifest(dir.join("spin.toml"))
        .listen(format!("127.0.0.1:{port}"))
        .start_expect_failure();
    let status = f.status.unwrap_or_else(|| panic!("did not exit: {f:?}"));
    assert!(
        !status.success(),
        "exit status must be non-zero: {status:?}"
    );
    assert!(
        !is_listening(format!("127.0.0.1:{port}").parse().unwrap()),
        "something listens on {port}"
    );
    assert!(!f.stderr.trim().is_empty(), "no error message on stderr");
    f
}

#[track_caller]
fn assert_mentions(f: &StartFailure, needles: &[&str]) {
    for needle in needles {
        assert!(
            f.stderr.contains(needle),
            "stderr should mention {needle:?}:\n{}",
            f.stderr
        );
    }
}

#[test]
fn an_unknown_component_field_is_rejected_naming_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = {{SOURCE}}\nallowed_outbound_hostz = []\n"
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["allowed_outbound_hostz"]);
}

#[test]
fn an_unknown_top_level_table_is_rejected_naming_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n{}\n[aplication_extra]\nx = 1\n",
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["aplication_extra"]);
}

#[test]
fn a_component_without_source_is_rejected() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nfiles = []\n"
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["source"]);
}

#[test]
fn a_wildcard_in_the_middle_of_a_route_is_rejected() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/a/.../b\"\ncomponent = \"a\"\n{}",
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["/a/.../b"]);
}

#[test]
fn a_route_of_the_wrong_type_is_rejected() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = 42\ncomponent = \"a\"\n{}",
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["route"]);
}

#[test]
fn a_duplicate_component_is_rejected() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n{}{}",
        valid_component("a"),
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert!(
        f.stderr.contains("duplicate") || f.stderr.contains("component.a"),
        "stderr should name the duplicate:\n{}",
        f.stderr
    );
}

#[test]
fn a_trigger_for_an_unknown_component_is_rejected_naming_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"ghost-component\"\n{}",
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["ghost-component"]);
}

#[test]
fn an_unsupported_manifest_version_is_rejected() {
    let dir = app_with(&format!(
        "spin_manifest_version = 3\n\n[application]\nname = \"bad\"\n\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n{}",
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["spin_manifest_version"]);
}

#[test]
fn an_invalid_component_id_is_rejected_naming_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"Bad_Id\"\n{}",
        valid_component("Bad_Id")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["Bad_Id"]);
}

#[test]
fn a_template_naming_an_undefined_variable_is_rejected_naming_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n{}\n[component.a.variables]\nx = \"{{{{ not_declared }}}}\"\n",
        valid_component("a")
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["not_declared"]);
}

#[test]
fn a_missing_source_file_is_rejected_naming_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"no/such/file.wasm\"\n"
    ));
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["no/such/file.wasm"]);
}

#[test]
fn a_source_that_is_not_a_component_is_rejected() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"junk.wasm\"\n"
    ));
    write_file(dir.path(), "junk.wasm", "this is not wasm");
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["junk.wasm"]);
}

#[test]
fn a_missing_manifest_file_is_reported() {
    let dir = tempdir();
    let f = expect_start_failure(dir.path());
    assert_mentions(&f, &["spin.toml"]);
}

#[test]
fn a_busy_listen_address_fails_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let f = Up::app("basic")
        .listen(addr.to_string())
        .start_expect_failure();
    assert!(f.status.map(|s| !s.success()).unwrap_or(false), "{f:?}");
    assert!(f.stderr.contains(&addr.port().to_string()), "{}", f.text());
}

#[test]
fn a_valid_app_starts_on_a_free_port_and_prints_its_address() {
    let host = Up::app("basic").start();
    assert!(host.base.starts_with("http://127.0.0.1:"));
    assert_ne!(host.addr.port(), 0);
    assert!(host
        .output
        .stdout()
        .contains(&format!("Serving {}", host.base)));
    assert_eq!(host.get("/hello").json["name"], "basic");
}

#[test]
fn up_defaults_to_spin_toml_and_a_dot_spin_state_dir_beside_it() {
    let dir = app_with(&format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"a\"\n\n[component.a]\nsource = {{SOURCE}}\nkey_value_stores = [\"default\"]\n"
    ));
    let host = Up::defaults_in(dir.path()).start();
    host.probe("/", &[("op", "kv-set"), ("key", "k"), ("value", "v")]);
    let db = dir.path().join(".spin/sqlite_key_value.db");
    assert!(db.exists(), "{} missing", db.display());
}

#[test]
fn up_accepts_a_directory_for_the_manifest() {
    let host = Up::manifest(app_dir("basic")).start();
    assert_eq!(host.get("/").json["name"], "basic");
}

// ---------------------------------------------------------------------------
// spin-osb build
// ---------------------------------------------------------------------------

#[test]
fn build_runs_each_component_command_in_its_workdir() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("sub/dir")).unwrap();
    write_file(
        dir.path(),
        "spin.toml",
        &format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/a\"\ncomponent = \"a\"\n\n[[trigger.http]]\nroute = \"/b\"\ncomponent = \"b\"\n\n\
             [component.a]\nsource = \"a.wasm\"\n[component.a.build]\ncommand = \"echo built-a > out-a.txt\"\nworkdir = \"sub/dir\"\n\n\
             [component.b]\nsource = \"b.wasm\"\n[component.b.build]\ncommand = \"echo built-b > out-b.txt && pwd > where-b.txt\"\n"
        ),
    );
    let out = run_host(
        &[
            "build",
            "-f",
            &dir.path().join("spin.toml").to_string_lossy(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "build failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let a = std::fs::read_to_string(dir.path().join("sub/dir/out-a.txt"))
        .expect("a built in its workdir");
    assert_eq!(a.trim(), "built-a");
    let b =
        std::fs::read_to_string(dir.path().join("out-b.txt")).expect("b built in the manifest dir");
    assert_eq!(b.trim(), "built-b");
    let where_b = std::fs::read_to_string(dir.path().join("where-b.txt")).unwrap();
    assert_eq!(
        Path::new(where_b.trim()).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
}

#[test]
fn a_failing_build_command_fails_the_build_naming_the_component() {
    let dir = tempdir();
    write_file(
        dir.path(),
        "spin.toml",
        &format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/a\"\ncomponent = \"broken-one\"\n\n\
             [component.broken-one]\nsource = \"a.wasm\"\n[component.broken-one.build]\ncommand = \"exit 3\"\n"
        ),
    );
    let out = run_host(
        &[
            "build",
            "-f",
            &dir.path().join("spin.toml").to_string_lossy(),
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken-one"), "{stderr}");
}

#[test]
fn build_of_a_test_app_builds_the_probe() {
    let out = run_host(
        &["build", "-f", &app_manifest("basic").to_string_lossy()],
        None,
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(probe_wasm().exists());
}
