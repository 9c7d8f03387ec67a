//! Bind.

use super::*;

#[test]
fn a_sync_bind_answers_201_with_rendered_credentials() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"username_prefix": "app", "size": 2}));
    let mut b = bind_body(SYNC);
    b["parameters"] = json!({"role": "read-only"});
    let r = expect(w.put_binding("i1", "binding-123456789", b, false), 201);
    let creds = &body(&r)["credentials"];
    assert_eq!(creds["username"], "app-binding-");
    assert_eq!(creds["role"], "read-only");
    assert_eq!(creds["size"], "2");
    assert_eq!(creds["instance_id"], "i1");
    let password = creds["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    assert!(body(&r).get("operation").is_none());
    // Secrets differ per binding.
    let r2 = expect(w.bind("i1", "other-binding", SYNC), 201);
    assert_ne!(body(&r2)["credentials"]["password"], password);
    assert_eq!(body(&r2)["credentials"]["role"], "read-write");
    let record = w.binding("i1", "binding-123456789");
    assert_eq!(record["status"], "ready");
    assert_eq!(record["bind_resource"], json!({"app_guid": "app-1"}));
}

#[test]
fn an_identical_bind_answers_200_and_a_different_one_409() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let first = expect(w.bind("i1", "b1", SYNC), 201);
    let again = expect(w.bind("i1", "b1", SYNC), 200);
    assert_eq!(body(&again)["credentials"], body(&first)["credentials"]);
    assert_eq!(body(&again)["metadata"], body(&first)["metadata"]);
    let before = w.snapshot();
    let mut different = bind_body(SYNC);
    different["parameters"] = json!({"role": "read-only"});
    expect(w.put_binding("i1", "b1", different, false), 409);
    let mut other_app = bind_body(SYNC);
    other_app["bind_resource"] = json!({"app_guid": "app-2"});
    expect(w.put_binding("i1", "b1", other_app, false), 409);
    assert_eq!(w.snapshot(), before);
}

#[test]
fn bind_requests_that_are_malformed_or_name_unknown_things_are_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_instance("nb", NOBIND);
    let before = w.snapshot();
    let cases = [
        ("i1", json!({"plan_id": SYNC})),
        ("i1", json!({"service_id": SVC})),
        ("i1", json!({"service_id": SVC, "plan_id": ""})),
        ("i1", json!({"service_id": SVC, "plan_id": SYNC_B})),
        ("i1", json!({"service_id": PLAIN_SVC, "plan_id": PLAIN})),
        (
            "i1",
            json!({"service_id": SVC, "plan_id": SYNC, "parameters": {"role": "admin"}}),
        ),
        (
            "i1",
            json!({"service_id": SVC, "plan_id": SYNC, "parameters": "x"}),
        ),
        ("missing", json!({"service_id": SVC, "plan_id": SYNC})),
        ("nb", json!({"service_id": SVC, "plan_id": NOBIND})),
    ];
    for (iid, b) in cases {
        let r = w.put_binding(iid, "b1", b.clone(), false);
        assert_eq!(r.status, 400, "{iid} {b}: {}", body_text(&r));
        assert!(!description_of(&r).is_empty());
    }
    let mut bad_role = bind_body(SYNC);
    bad_role["parameters"] = json!({"role": "admin"});
    let r = expect(w.put_binding("i1", "b1", bad_role, false), 400);
    assert!(
        description_of(&r).contains("parameters.role"),
        "{}",
        description_of(&r)
    );
    let r = expect(w.bind("nb", "b1", NOBIND), 400);
    assert!(
        description_of(&r).contains("not bindable"),
        "{}",
        description_of(&r)
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_bind_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let before = w.snapshot();
    expect_422(
        w.put_binding("i1", "b1", bind_body(ASYNC), false),
        "AsyncRequired",
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_bind_answers_202_without_credentials_and_completes_through_binding_last_operation() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let r = expect(w.bind("i1", "b1", ASYNC), 202);
    let op = operation_of(&r);
    assert!(op.starts_with("bind-"), "{op}");
    assert!(
        body(&r).get("credentials").is_none(),
        "202 MUST NOT carry credentials"
    );
    // While binding: fetch 404, repeats 202 with the same operation.
    expect(w.fetch_binding("i1", "b1"), 404);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("10"));
    w.env.advance(4);
    assert_eq!(operation_of(&expect(w.bind("i1", "b1", ASYNC), 202)), op);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", None), 200)),
        "in progress"
    );

    w.env.advance(6);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert_eq!(header(&r, "Retry-After"), None);
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert_eq!(body(&f)["credentials"]["username"], "user-b1");
    assert_eq!(body(&f)["parameters"], json!({}));
    // An identical bind now answers 200 with the credentials.
    let again = expect(w.bind("i1", "b1", ASYNC), 200);
    assert_eq!(body(&again)["credentials"], body(&f)["credentials"]);
}

#[test]
fn binding_to_an_instance_that_is_provisioning_or_deprovisioning_is_422_concurrency_error() {
    let w = world();
    expect(w.provision("i1", ASYNC), 202);
    expect_422(w.bind("i1", "b1", ASYNC), "ConcurrencyError");
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    expect(w.deprovision("i1", ASYNC), 202);
    expect_422(w.bind("i1", "b1", ASYNC), "ConcurrencyError");
    assert!(w.kv.get(&binding_key("i1", "b1")).unwrap().is_none());
}

#[test]
fn binding_to_an_instance_whose_provisioning_failed_is_422() {
    let w = world();
    expect(w.provision("i1", SHORT), 202);
    w.env.advance(SHORT_LIMIT);
    expect(w.last_op("i1", None), 200);
    expect(w.bind("i1", "b1", SHORT), 422);
}

#[test]
fn binding_metadata_carries_expires_at_and_renew_before_in_the_spec_format() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let r = expect(w.bind("i1", "b1", SYNC), 201);
    let m = &body(&r)["metadata"];
    assert_eq!(m["expires_at"], "2023-11-14T23:13:20.0Z");
    assert_eq!(m["renew_before"], "2023-11-14T23:03:20.0Z");
    assert!(
        m.get("expires_at_unix").is_none(),
        "internal fields stay internal: {m}"
    );
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert_eq!(&body(&f)["metadata"], m);

    // Default renew window: a tenth of the lifetime. Bound at T0 + DELAY (after the instance).
    w.ready_instance("i2", ASYNC);
    w.ready_binding("i2", "b2", ASYNC, json!({}));
    let f = expect(w.fetch_binding("i2", "b2"), 200);
    let m = &body(&f)["metadata"];
    assert_eq!(m["expires_at"], "2023-11-15T22:13:30.0Z");
    assert_eq!(m["renew_before"], "2023-11-15T19:49:30.0Z");
    for field in ["expires_at", "renew_before"] {
        assert!(is_spec_timestamp(m[field].as_str().unwrap()), "{m}");
    }
    // Plans without a lifetime have no binding metadata.
    w.ready_instance("i3", PLAIN);
    let r = expect(w.bind("i3", "b3", PLAIN), 201);
    assert!(body(&r).get("metadata").is_none(), "{}", body_text(&r));
}

#[test]
fn rotation_carries_the_predecessors_parameters_over() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "old", SYNC, json!({"role": "read-only"}));
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("old");
    let r = expect(w.put_binding("i1", "new", b.clone(), false), 201);
    assert_eq!(body(&r)["credentials"]["role"], "read-only");
    let old = expect(w.fetch_binding("i1", "old"), 200);
    assert_ne!(
        body(&r)["credentials"]["password"],
        body(&old)["credentials"]["password"]
    );
    let f = expect(w.fetch_binding("i1", "new"), 200);
    assert_eq!(body(&f)["parameters"], json!({"role": "read-only"}));
    assert_eq!(w.binding("i1", "new")["predecessor_binding_id"], "old");
    // The predecessor stays usable until the platform unbinds it.
    expect(w.fetch_binding("i1", "old"), 200);
    // Identical repeat: 200.
    expect(w.put_binding("i1", "new", b, false), 200);
    // Explicit parameters win over the predecessor's.
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("old");
    b["parameters"] = json!({"role": "read-write"});
    let r = expect(w.put_binding("i1", "newer", b, false), 201);
    assert_eq!(body(&r)["credentials"]["role"], "read-write");
}

#[test]
fn rotation_from_an_unknown_expired_or_unrotatable_predecessor_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let rotate = |bid: &str, predecessor: &str| {
        let mut b = bind_body(SYNC);
        b["predecessor_binding_id"] = json!(predecessor);
        w.put_binding("i1", bid, b, false)
    };
    let r = expect(rotate("new", "nope"), 400);
    assert!(
        description_of(&r).contains("nope"),
        "{}",
        description_of(&r)
    );
    expect(rotate("new", "a/b"), 400);

    w.ready_binding("i1", "old", SYNC, json!({}));
    w.env.advance(3600);
    let r = expect(rotate("new", "old"), 400);
    assert!(
        description_of(&r).contains("expired"),
        "{}",
        description_of(&r)
    );

    // A predecessor that was unbound is unknown.
    w.ready_binding("i1", "old2", SYNC, json!({}));
    expect(w.unbind("i1", "old2", SYNC), 200);
    expect(rotate("new", "old2"), 400);
    assert!(w.kv.get(&binding_key("i1", "new")).unwrap().is_none());

    // A plan without binding_rotatable.
    w.ready_instance("p1", PLAIN);
    w.ready_binding("p1", "old", PLAIN, json!({}));
    let mut b = bind_body(PLAIN);
    b["predecessor_binding_id"] = json!("old");
    let r = expect(w.put_binding("p1", "new", b, false), 400);
    assert!(
        description_of(&r).contains("rotated"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn rotation_within_the_lifetime_succeeds_even_after_the_renew_time() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "old", SYNC, json!({}));
    w.env.advance(3599);
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("old");
    let r = expect(w.put_binding("i1", "new", b, false), 201);
    // Bound at T0 + 3599: expires an hour later.
    assert_eq!(body(&r)["metadata"]["expires_at"], "2023-11-15T00:13:19.0Z");
}
