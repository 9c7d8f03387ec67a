//! Admission: authentication, `X-Broker-API-Version`, identity headers, routing and body
//! limits, checked before any endpoint logic runs, whether the path reaches the gateway or
//! is routed straight to its endpoint component (catalog, both last_operations).

use base64::Engine as _;
use spin_osb_e2e::{json, new_id, shared};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn requests_without_credentials_are_401_with_a_basic_challenge() {
    let b = shared();
    for path in [
        "/v2/catalog",
        "/v2/service_instances/x",
        "/v2/service_instances/x/last_operation",
        "/v2/service_instances/x/service_bindings/y/last_operation",
        "/v2/nope",
    ] {
        let resp = b.request("GET", path).no_auth().send().expect_error(401);
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.to_ascii_lowercase().starts_with("basic"),
            "{path}: WWW-Authenticate should offer Basic, got {challenge:?}"
        );
    }
}

/// The catalog and the last_operation paths skip the gateway (spin.toml routes them to
/// their components): each of those components must refuse exactly what the gateway does.
#[test]
fn paths_routed_straight_to_an_endpoint_are_admitted_like_the_rest() {
    let b = shared();
    let password = b.password.clone();
    let iid = new_id();
    let direct = [
        "/v2/catalog".to_string(),
        "/v2/catalog/".to_string(),
        format!("/v2/service_instances/{iid}/last_operation"),
        format!("/v2/service_instances/{iid}/service_bindings/b/last_operation"),
    ];
    for path in &direct {
        b.request("GET", path)
            .auth("broker", "wrong")
            .send()
            .expect_error(401);
        b.request("GET", path)
            .header(
                "Authorization",
                &format!("Basic {}", b64(&format!("broker{password}"))),
            )
            .send()
            .expect_error(401);
        b.request("GET", path)
            .version(None)
            .send()
            .expect_error(412);
        b.request("GET", path)
            .version(Some("2.12"))
            .send()
            .expect_error(412);
        b.request("GET", path)
            .header("X-Broker-API-Originating-Identity", "cloudfoundry !!!")
            .send()
            .expect_error(400);
        let resp = b.request("POST", path).body("{}").send().expect_error(405);
        assert_eq!(resp.header("allow"), Some("GET"), "{path}");
    }
    // Admitted, they reach their endpoint: the catalog, and the instance's last_operation,
    // which knows no such instance.
    b.request("GET", &direct[0]).send().expect(200);
    b.request("GET", &direct[2]).send().expect_error(404);
}

#[test]
fn wrong_passwords_users_and_schemes_are_401() {
    let b = shared();
    let password = b.password.clone();
    b.request("GET", "/v2/catalog")
        .auth("broker", "wrong")
        .send()
        .expect_error(401);
    b.request("GET", "/v2/catalog")
        .auth("admin", &password)
        .send()
        .expect_error(401);
    b.request("GET", "/v2/catalog")
        .auth("broker", &format!("{password}x"))
        .send()
        .expect_error(401);
    b.request("GET", "/v2/catalog")
        .header("Authorization", &format!("Bearer {password}"))
        .send()
        .expect_error(401);
    b.request("GET", "/v2/catalog")
        .header("Authorization", "Basic !!!not-base64!!!")
        .send()
        .expect_error(401);
}

#[test]
fn authentication_is_checked_before_the_api_version() {
    let b = shared();
    b.request("GET", "/v2/catalog")
        .no_auth()
        .version(None)
        .send()
        .expect_error(401);
    b.request("PUT", &format!("/v2/service_instances/{}", new_id()))
        .no_auth()
        .version(Some("1.0"))
        .json(&json!({}))
        .send()
        .expect_error(401);
}

#[test]
fn a_missing_api_version_is_412_naming_the_supported_range() {
    let b = shared();
    let resp = b
        .request("GET", "/v2/catalog")
        .version(None)
        .send()
        .expect_error(412);
    assert!(
        resp.description().contains("2.13 to 2.17"),
        "the description should name the supported versions: {}",
        resp.body
    );
}

#[test]
fn unsupported_api_versions_are_412_naming_the_supported_range() {
    let b = shared();
    for version in ["2.12", "2.18", "3.0", "1.17", "garbage", "2", "2.x", ""] {
        let resp = b
            .request("GET", "/v2/catalog")
            .version(Some(version))
            .send()
            .expect_error(412);
        assert!(
            resp.description().contains("2.13 to 2.17"),
            "version {version:?}: the description should name the supported versions: {}",
            resp.body
        );
    }
}

#[test]
fn api_versions_2_13_to_2_17_are_all_accepted() {
    let b = shared();
    for minor in 13..=17 {
        let version = format!("2.{minor}");
        let resp = b
            .request("GET", "/v2/catalog")
            .version(Some(&version))
            .send()
            .expect(200);
        assert!(resp.json["services"].is_array(), "{version}: {}", resp.body);
    }
}

#[test]
fn the_request_identity_is_echoed_on_successes_and_errors() {
    let b = shared();
    let cases: Vec<(&str, String, u16)> = vec![
        ("GET", "/v2/catalog".into(), 200),
        // Answered by an endpoint component.
        ("GET", format!("/v2/service_instances/{}", new_id()), 404),
        // Answered by the gateway itself.
        ("GET", "/v2/no-such-endpoint".into(), 404),
        ("POST", "/v2/catalog".into(), 405),
    ];
    for (method, path, status) in cases {
        let id = new_id();
        let resp = b
            .request(method, &path)
            .header("X-Broker-API-Request-Identity", &id)
            .send()
            .expect(status);
        assert_eq!(
            resp.header("x-broker-api-request-identity"),
            Some(id.as_str()),
            "{method} {path}: the request identity should be echoed; headers {:?}",
            resp.headers
        );
    }
    // Rejected by the version check.
    let id = new_id();
    let resp = b
        .request("GET", "/v2/catalog")
        .version(Some("2.18"))
        .header("X-Broker-API-Request-Identity", &id)
        .send()
        .expect_error(412);
    assert_eq!(
        resp.header("x-broker-api-request-identity"),
        Some(id.as_str())
    );
}

#[test]
fn a_well_formed_originating_identity_is_accepted() {
    let b = shared();
    let cf = format!(
        "cloudfoundry {}",
        b64(r#"{"user_id":"683ea748-3092-4ff4-b656-39cacc4d5360"}"#)
    );
    b.request("GET", "/v2/catalog")
        .header("X-Broker-API-Originating-Identity", &cf)
        .send()
        .expect(200);
    let k8s = format!(
        "kubernetes {}",
        b64(
            r#"{"username":"duke","uid":"c2dde242-5ce4-11e7-988c-000c2946f14f","groups":["admin","dev"]}"#
        )
    );
    b.request("GET", "/v2/catalog")
        .header("X-Broker-API-Originating-Identity", &k8s)
        .send()
        .expect(200);
}

#[test]
fn a_malformed_originating_identity_is_400() {
    let b = shared();
    let cases = [
        "cloudfoundry".to_string(),
        "cloudfoundry !!!not-base64!!!".to_string(),
        format!("cloudfoundry {}", b64("not json")),
        format!("cloudfoundry {}", b64(r#"["an","array"]"#)),
        format!("cloudfoundry {}", b64("42")),
        format!(" {}", b64(r#"{"user_id":"x"}"#)),
    ];
    for header in cases {
        let resp = b
            .request("GET", "/v2/catalog")
            .header("X-Broker-API-Originating-Identity", &header)
            .send();
        assert_eq!(
            resp.status, 400,
            "originating identity {header:?}: expected 400, got {}: {}",
            resp.status, resp.body
        );
        resp.assert_osb_error_body();
    }
}

#[test]
fn unknown_paths_under_v2_are_404_with_an_osb_body() {
    let b = shared();
    for path in [
        "/v2/nope",
        "/v2",
        "/v2/",
        "/v2/catalog/extra",
        "/v2/service_instances",
        "/v2/service_instances/i1/unknown",
        "/v2/service_instances/i1/service_bindings",
        "/v2/service_instances/i1/service_bindings/b1/unknown",
        "/v2/service_instances/i1/service_bindings/b1/last_operation/x",
    ] {
        b.get(path).expect_error(404);
    }
}

#[test]
fn paths_outside_v2_are_404() {
    let b = shared();
    for path in ["/", "/v3/catalog", "/catalog", "/health"] {
        let resp = b.get(path);
        assert_eq!(resp.status, 404, "GET {path}: {}", resp.body);
    }
}

#[test]
fn known_paths_with_the_wrong_method_are_405() {
    let b = shared();
    let iid = new_id();
    let cases = [
        ("POST", "/v2/catalog".to_string()),
        ("PUT", "/v2/catalog".to_string()),
        ("DELETE", "/v2/catalog".to_string()),
        ("POST", format!("/v2/service_instances/{iid}")),
        ("PUT", format!("/v2/service_instances/{iid}/last_operation")),
        (
            "DELETE",
            format!("/v2/service_instances/{iid}/last_operation"),
        ),
        (
            "PATCH",
            format!("/v2/service_instances/{iid}/service_bindings/b1"),
        ),
        (
            "POST",
            format!("/v2/service_instances/{iid}/service_bindings/b1"),
        ),
        (
            "PUT",
            format!("/v2/service_instances/{iid}/service_bindings/b1/last_operation"),
        ),
    ];
    for (method, path) in cases {
        b.request(method, &path).body("{}").send().expect_error(405);
    }
    assert!(
        b.store_keys_mentioning(&iid).is_empty(),
        "a 405 must not touch the store: {:?}",
        b.store_keys_mentioning(&iid)
    );
}

#[test]
fn a_405_names_the_allowed_methods_in_an_allow_header() {
    let b = shared();
    let resp = b.request("POST", "/v2/catalog").send().expect_error(405);
    let allow = resp.header("allow").unwrap_or_default().to_string();
    assert!(
        allow.contains("GET"),
        "RFC 9110 §15.5.6: a 405 MUST carry an Allow header listing GET; headers {:?}",
        resp.headers
    );
}

#[test]
fn bodies_over_256_kib_are_413_with_an_osb_body() {
    let b = shared();
    let iid = new_id();
    let mut body = br#"{"service_id":"s","plan_id":"p","parameters":{"pad":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 256 * 1024));
    body.extend_from_slice(br#""}}"#);
    let resp = b
        .request("PUT", &format!("/v2/service_instances/{iid}"))
        .body(body)
        .send()
        .expect_error(413);
    assert!(!resp.description().is_empty());
    assert!(b.store_keys_mentioning(&iid).is_empty());
}

#[test]
fn a_body_of_exactly_256_kib_is_not_refused_for_its_size() {
    let b = shared();
    let iid = new_id();
    // Broken JSON of exactly the limit: whatever the answer, it must not be 413.
    let body = vec![b' '; 256 * 1024];
    let resp = b
        .request("PUT", &format!("/v2/service_instances/{iid}"))
        .body(body)
        .send();
    assert_eq!(
        resp.status, 400,
        "a 256 KiB body of blanks should reach the provision endpoint and be 400 (empty), got {}: {}",
        resp.status, resp.body
    );
    resp.assert_osb_error_body();
}

#[test]
fn bodies_over_the_hosts_own_limit_are_413() {
    let b = shared();
    let iid = new_id();
    let body = vec![b' '; 2 * 1024 * 1024];
    // The host may answer before reading the whole body and close the connection; a
    // reset instead of an answer is acceptable, anything but 413 is not.
    match b
        .request("PUT", &format!("/v2/service_instances/{iid}"))
        .body(body)
        .try_send()
    {
        Ok(resp) => assert_eq!(resp.status, 413, "{}", resp.body),
        Err(e) => eprintln!("no answer to a 2 MiB body (connection closed early): {e}"),
    }
    assert!(b.store_keys_mentioning(&iid).is_empty());
    // The broker is still serving.
    b.get("/v2/catalog").expect(200);
}

#[test]
fn error_answers_of_every_endpoint_are_json_with_a_description() {
    let b = shared();
    let iid = new_id();
    let bid = new_id();
    let i = format!("/v2/service_instances/{iid}");
    let bp = format!("{i}/service_bindings/{bid}");
    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("PUT", i.clone(), Some("{"), 400),
        ("PATCH", i.clone(), Some("{"), 400),
        ("DELETE", i.clone(), None, 400),
        ("DELETE", format!("{i}?service_id=s&plan_id=p"), None, 410),
        ("GET", i.clone(), None, 404),
        ("GET", format!("{i}/last_operation"), None, 404),
        ("PUT", bp.clone(), Some("{"), 400),
        ("DELETE", bp.clone(), None, 400),
        ("DELETE", format!("{bp}?service_id=s&plan_id=p"), None, 410),
        ("GET", bp.clone(), None, 404),
        ("GET", format!("{bp}/last_operation"), None, 404),
    ];
    for (method, path, body, status) in cases {
        let mut req = b.request(method, &path);
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send().expect_error(status);
    }
}

/// `spin-osb up` refuses to serve with an empty or very short `broker_password` (an empty
/// one would let `curl -u broker: ...` in), saying which variable to set.
#[test]
fn an_empty_or_short_broker_password_stops_start_up() {
    for password in ["", "1234567"] {
        let state = tempfile::tempdir().expect("tmp");
        let mut child = std::process::Command::new(spin_osb_e2e::host_bin())
            .arg("up")
            .arg("-f")
            .arg(spin_osb_e2e::manifest())
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.path())
            .env("SPIN_VARIABLE_BROKER_PASSWORD", password)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run spin-osb");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{password:?}: spin-osb started anyway (still running after 120 s)");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).ok();
        assert!(!status.success(), "{password:?}: exited successfully");
        assert!(
            stderr.contains("SPIN_VARIABLE_BROKER_PASSWORD") && stderr.contains("shorter than"),
            "{password:?}: {stderr}"
        );
    }
}
