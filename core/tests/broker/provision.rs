//! Provision.

use super::*;

#[test]
fn a_sync_provision_answers_201_with_the_dashboard_url_and_metadata() {
    let w = world();
    let r = expect(w.provision("i1", SYNC), 201);
    let b = body(&r);
    assert_eq!(b["dashboard_url"], "https://dash.example.com/sync/i1");
    assert_eq!(
        b["metadata"]["labels"],
        json!({"service": "main", "plan": "sync"})
    );
    assert_eq!(b["metadata"]["attributes"]["broker"], "spin-osb");
    assert_eq!(b["metadata"]["attributes"]["backend"], "credentials");
    assert!(
        b.get("operation").is_none(),
        "a sync answer has no operation"
    );
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    let record = w.instance("i1");
    assert_eq!(record["status"], "ready");
    assert_eq!(record["operation"]["state"], "succeeded");
    assert_eq!(record["maintenance_info_version"], "1.0.0");
}

/// Without randomness there are no seeds, secrets, operation ids or write tokens: every
/// request that would need one fails with a clear 500 and nothing is written.
#[test]
fn when_randomness_fails_requests_fail_and_nothing_is_written() {
    let w = world();
    w.ready_instance("ready", SYNC);
    let before = w.snapshot();
    w.env
        .randomness_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for response in [
        w.provision("new", SYNC),
        w.put("new-async", provision_body(ASYNC), true),
        w.put_binding("ready", "b1", bind_body(SYNC), false),
        w.patch(
            "ready",
            update_body(json!({"parameters": {"size": 2}})),
            true,
        ),
    ] {
        let response = expect(response, 500);
        assert!(
            description_of(&response).contains("random source failed"),
            "{}",
            body_text(&response)
        );
    }
    assert_eq!(w.snapshot(), before, "nothing may be written");
    w.env
        .randomness_fails
        .store(false, std::sync::atomic::Ordering::SeqCst);
    expect(w.provision("new", SYNC), 201);
}

#[test]
fn a_sync_provision_with_accepts_incomplete_still_answers_201() {
    let w = world();
    expect(w.put("i1", provision_body(SYNC), true), 201);
}

#[test]
fn an_identical_provision_of_a_provisioned_instance_answers_200() {
    let w = world();
    let first = expect(w.provision("i1", SYNC), 201);
    let again = expect(w.provision("i1", SYNC), 200);
    assert_eq!(body(&again)["dashboard_url"], body(&first)["dashboard_url"]);
    // Context is not an attribute of the instance: a different one is still "identical".
    let mut other_context = provision_body(SYNC);
    other_context["context"] = json!({"platform": "kubernetes", "namespace": "ns"});
    expect(w.put("i1", other_context, false), 200);
}

#[test]
fn a_provision_with_different_attributes_answers_409() {
    let w = world();
    let mut body = provision_body(SYNC);
    body["parameters"] = json!({"size": 1});
    expect(w.put("i1", body.clone(), false), 201);
    let before = w.snapshot();

    body["parameters"] = json!({"size": 2});
    expect(w.put("i1", body.clone(), false), 409);
    expect(w.provision("i1", SYNC_B), 409);
    assert_eq!(
        w.snapshot(),
        before,
        "a conflicting provision changes nothing"
    );
}

#[test]
fn an_async_provision_without_accepts_incomplete_is_422_async_required_and_stores_nothing() {
    let w = world();
    let r = expect_422(w.put("i1", provision_body(ASYNC), false), "AsyncRequired");
    assert!(!description_of(&r).is_empty());
    let r = w.call(
        Endpoint::Provision,
        "i1",
        "",
        &[("accepts_incomplete", "false")],
        Some(&provision_body(ASYNC)),
    );
    expect_422(r, "AsyncRequired");
    assert!(w.kv.keys().is_empty(), "{:?}", w.kv.keys());
}

#[test]
fn an_async_provision_answers_202_with_an_operation_and_the_dashboard_url() {
    let w = world();
    let r = expect(w.provision("i1", ASYNC), 202);
    let op = operation_of(&r);
    assert!(op.starts_with("provision-"), "{op}");
    assert_eq!(
        body(&r)["dashboard_url"],
        "https://dash.example.com/async/i1"
    );
    assert_eq!(body(&r)["metadata"]["labels"]["plan"], "async");
    let record = w.instance("i1");
    assert_eq!(record["status"], "creating");
    assert_eq!(record["operation"]["id"], op);
    assert_eq!(record["operation"]["state"], "in_progress");
}

#[test]
fn an_identical_provision_while_in_progress_answers_202_with_the_same_operation() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(3);
    let again = expect(w.provision("i1", ASYNC), 202);
    assert_eq!(operation_of(&again), op);
    assert_eq!(
        body(&again)["dashboard_url"],
        "https://dash.example.com/async/i1"
    );
    // Different attributes while in progress: 409 all the same.
    let mut other = provision_body(ASYNC);
    other["parameters"] = json!({"size": 3});
    expect(w.put("i1", other, true), 409);
    // ...and an identical one without accepts_incomplete is still AsyncRequired.
    expect_422(w.put("i1", provision_body(ASYNC), false), "AsyncRequired");
}

#[test]
fn an_identical_provision_after_async_completion_answers_200() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let r = expect(w.provision("i1", ASYNC), 200);
    assert!(body(&r).get("operation").is_none());
}

#[test]
fn provision_with_unknown_ids_or_missing_fields_or_a_malformed_body_is_400() {
    let w = world();
    let cases = [
        json!({"service_id": "nope", "plan_id": SYNC}),
        json!({"service_id": SVC, "plan_id": "nope"}),
        json!({"service_id": SVC, "plan_id": PLAIN}),
        json!({"service_id": SVC}),
        json!({"plan_id": SYNC}),
        json!({"service_id": "", "plan_id": SYNC}),
        json!({"service_id": SVC, "plan_id": 5}),
        json!({"service_id": SVC, "plan_id": SYNC, "parameters": []}),
        json!({"service_id": SVC, "plan_id": SYNC, "context": "x"}),
        json!([1, 2]),
    ];
    for case in cases {
        let r = w.put("i1", case.clone(), false);
        assert_eq!(r.status, 400, "{case}: {}", body_text(&r));
        assert!(!description_of(&r).is_empty());
    }
    // organization_guid and space_guid: REQUIRED, non-empty strings; the 400 names them.
    for (field, value) in [
        ("organization_guid", None),
        ("organization_guid", Some("")),
        ("organization_guid", Some("  ")),
        ("space_guid", None),
        ("space_guid", Some("")),
    ] {
        let mut body = provision_body(SYNC);
        match value {
            Some(v) => body[field] = json!(v),
            None => {
                body.as_object_mut().unwrap().remove(field);
            }
        }
        let r = w.put("i1", body, false);
        assert_eq!(r.status, 400, "{field}={value:?}: {}", body_text(&r));
        assert!(description_of(&r).contains(field), "{}", body_text(&r));
    }
    let mut raw = request(Endpoint::Provision, "i1", "", &[], None);
    raw.body = b"{not json".to_vec();
    expect(w.send(&raw, Endpoint::Provision), 400);
    raw.body = Vec::new();
    expect(w.send(&raw, Endpoint::Provision), 400);
    let r = w.call(
        Endpoint::Provision,
        "i1",
        "",
        &[("accepts_incomplete", "yes")],
        Some(&provision_body(SYNC)),
    );
    expect(r, 400);
    assert!(w.kv.keys().is_empty(), "{:?}", w.kv.keys());
}

#[test]
fn an_invalid_instance_id_is_400() {
    let w = world();
    let mut r = request(
        Endpoint::Provision,
        "i1",
        "",
        &[],
        Some(&provision_body(SYNC)),
    );
    r.path = "/v2/service_instances/a%2Fb".into();
    expect(w.send(&r, Endpoint::Provision), 400);
    assert!(w.kv.keys().is_empty());
}

#[test]
fn provision_parameters_violating_the_schema_are_400_naming_the_field() {
    let w = world();
    let cases = [
        (json!({"size": 5}), "parameters.size"),
        (json!({"size": "big"}), "parameters.size"),
        (
            json!({"username_prefix": "9abc"}),
            "parameters.username_prefix",
        ),
        (json!({"colour": "red"}), "colour"),
    ];
    for (parameters, field) in cases {
        let mut b = provision_body(SYNC);
        b["parameters"] = parameters.clone();
        let r = expect(w.put("i1", b, false), 400);
        assert!(
            description_of(&r).contains(field),
            "{parameters}: {}",
            description_of(&r)
        );
    }
    assert!(w.kv.keys().is_empty());
    let mut b = provision_body(SYNC);
    b["parameters"] = json!({"size": 3, "username_prefix": "app"});
    expect(w.put("i1", b, false), 201);
}

#[test]
fn provision_with_a_different_maintenance_info_version_is_422_maintenance_info_conflict() {
    let w = world();
    let mut b = provision_body(SYNC);
    b["maintenance_info"] = json!({"version": "0.9.0"});
    let r = expect_422(w.put("i1", b.clone(), false), "MaintenanceInfoConflict");
    assert!(
        description_of(&r).contains("0.9.0"),
        "{}",
        description_of(&r)
    );
    // A plan without maintenance_info has no version to match.
    let mut b2 = provision_body(FIXED);
    b2["maintenance_info"] = json!({"version": "1.0.0"});
    expect_422(w.put("i2", b2, false), "MaintenanceInfoConflict");
    assert!(w.kv.keys().is_empty());
    b["maintenance_info"] = json!({"version": "1.0.0", "description": "ignored"});
    expect(w.put("i1", b, false), 201);
}

#[test]
fn a_provision_of_a_deprovisioned_id_starts_afresh() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    let first_op = w.instance("i1")["operation"]["id"].clone();
    expect(w.deprovision("i1", SYNC), 200);
    let r = expect(w.provision("i1", SYNC_B), 201);
    assert_eq!(
        body(&r)["dashboard_url"],
        "https://dash.example.com/sync-b/i1"
    );
    let record = w.instance("i1");
    assert_eq!(record["status"], "ready");
    assert_eq!(record["plan_id"], SYNC_B);
    assert_ne!(record["operation"]["id"], first_op);
    expect(w.fetch("i1"), 200);
}

#[test]
fn a_provision_over_an_instance_whose_provisioning_failed_is_409() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT);
    assert_eq!(state_of(&w.last_op("i1", Some(&op))), "failed");
    let r = expect(w.provision("i1", SHORT), 409);
    assert!(
        description_of(&r).contains("deprovision"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn a_provision_during_a_deprovision_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.deprovision("i1", ASYNC), 202);
    expect_422(w.provision("i1", ASYNC), "ConcurrencyError");
}

#[test]
fn an_identical_provision_during_the_deprovision_of_a_provisioning_instance_is_422_concurrency_error(
) {
    let w = world();
    let provision_op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    let deprovision_op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    let r = w.provision("i1", ASYNC);
    // The spec: a 202 to a re-sent PUT carries the operation of the original request; this
    // request cannot be honoured while the instance is being deleted (Blocking Operations).
    assert!(
        r.status != 202 || (operation_of(&r) != deprovision_op && operation_of(&r) == provision_op),
        "got 202 with {}",
        body_text(&r)
    );
    expect_422(r, "ConcurrencyError");
}
