//! Application variables (`[variables]`, `SPIN_VARIABLE_*` overrides,
//! required/secret) and component variables (`[component.x.variables]`
//! templates) read through `spin_sdk::variables::get`.

mod common;

use common::*;

const SECRET: &str = "s3cr3t-Value-7f1d9c";

/// The `variables` app with its required variables set.
fn up() -> Up {
    Up::app("variables")
        .var("required_one", "needed value")
        .var("api_key", SECRET)
}

#[track_caller]
fn var(host: &Host, name: &str) -> Value {
    host.probe("/vars/x", &[("op", "var"), ("name", name)])["value"].clone()
}

#[test]
fn a_default_value_is_used_when_nothing_overrides_it() {
    let host = up().start();
    assert_eq!(var(&host, "greeting"), "hello");
    assert_eq!(var(&host, "override_me"), "original");
}

#[test]
fn an_environment_variable_overrides_the_default() {
    let host = up().var("override_me", "from the environment").start();
    assert_eq!(var(&host, "override_me"), "from the environment");
    assert_eq!(var(&host, "greeting"), "hello");
}

#[test]
fn component_templates_combine_application_variables_and_literals() {
    let host = up().var("override_me", "changed").start();
    assert_eq!(var(&host, "combined"), "pre-hello-changed-post");
    assert_eq!(var(&host, "literal"), "just text");
    assert_eq!(var(&host, "needed"), "needed value");
}

#[test]
fn a_component_sees_only_its_own_variables() {
    let host = up().start();
    let r = host.get(&format!(
        "/plain/x?{}",
        query(&[("op", "var"), ("name", "greeting")])
    ));
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json["error"], "undefined", "{}", r.body);
    // An application variable not exposed as a component variable is not visible.
    let r = host.get(&format!(
        "/vars/x?{}",
        query(&[("op", "var"), ("name", "required_one")])
    ));
    assert_eq!(r.json["error"], "undefined", "{}", r.body);
}

#[test]
fn an_invalid_variable_name_is_an_error_for_the_guest() {
    let host = up().start();
    let r = host.get(&format!(
        "/vars/x?{}",
        query(&[("op", "var"), ("name", "Not-Valid")])
    ));
    assert_eq!(r.status, 500, "{}", r.body);
    let kind = r.json["error"].as_str().unwrap_or("");
    assert!(kind == "invalid-name" || kind == "undefined", "{}", r.body);
}

#[test]
fn a_missing_required_variable_fails_start_up_naming_it() {
    let f = Up::app("variables")
        .var("api_key", SECRET)
        .start_expect_failure();
    assert!(f.status.map(|s| !s.success()).unwrap_or(false), "{f:?}");
    assert!(
        f.stderr.contains("required_one"),
        "stderr must name the variable:\n{}",
        f.text()
    );
    assert!(!f.text().contains(SECRET), "secret leaked:\n{}", f.text());
}

#[test]
fn a_missing_required_secret_fails_start_up_naming_it() {
    let f = Up::app("variables")
        .var("required_one", "x")
        .start_expect_failure();
    assert!(
        f.stderr.contains("api_key"),
        "stderr must name the variable:\n{}",
        f.text()
    );
}

#[test]
fn a_secret_value_is_never_printed_by_the_host() {
    let mut host = up()
        .env(
            "RUST_LOG",
            "debug,cranelift_codegen=warn,wasmtime_cranelift=warn,wasmtime=info,regalloc2=warn",
        )
        .start();
    assert_eq!(var(&host, "api_key"), SECRET);
    // Also through a failing and a logging request.
    host.get("/vars/x?op=var&name=nope");
    host.get("/vars/x?op=log&msg=hello");
    host.terminate(std::time::Duration::from_secs(20));
    let out = host.output.all();
    assert!(
        !out.contains(SECRET),
        "the secret appears in the host output:\n{out}"
    );
}

#[test]
fn an_empty_environment_value_overrides_a_default() {
    let host = up().var("greeting", "").start();
    assert_eq!(var(&host, "greeting"), "");
}
