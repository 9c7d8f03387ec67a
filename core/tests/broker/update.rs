//! Update.

use super::*;

#[test]
fn a_sync_update_of_parameters_answers_200_and_merges_them() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"size": 1, "username_prefix": "app"}));
    let r = expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 3}})), false),
        200,
    );
    assert_eq!(body(&r), &json!({}));
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(
        body(&f)["parameters"],
        json!({"size": 3, "username_prefix": "app"})
    );
    let record = w.instance("i1");
    assert_eq!(record["operation"]["kind"], "update");
    assert_eq!(record["operation"]["state"], "succeeded");
}

#[test]
fn an_update_without_parameters_keeps_them_and_changes_the_plan() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"size": 2}));
    let r = w.patch(
        "i1",
        update_body(json!({"plan_id": SYNC_B, "previous_values": {"plan_id": SYNC}})),
        false,
    );
    expect(r, 200);
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(body(&f)["plan_id"], SYNC_B);
    assert_eq!(body(&f)["parameters"], json!({"size": 2}));
    assert_eq!(body(&f)["maintenance_info"], json!({"version": "2.0.0"}));
}

#[test]
fn changing_the_plan_of_a_non_updateable_plan_is_422() {
    let w = world();
    w.ready_instance("i1", FIXED);
    let before = w.snapshot();
    let r = expect(
        w.patch("i1", update_body(json!({"plan_id": SYNC})), false),
        422,
    );
    assert_eq!(error_of(&r), None);
    assert!(
        description_of(&r).contains("fixed"),
        "{}",
        description_of(&r)
    );
    assert_eq!(w.snapshot(), before);
    // Parameters of a non-updateable plan can still change.
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
        200,
    );
}

#[test]
fn an_update_with_a_conflicting_maintenance_info_is_422_maintenance_info_conflict() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let before = w.snapshot();
    let r = w.patch(
        "i1",
        update_body(json!({"maintenance_info": {"version": "9.9.9"}})),
        false,
    );
    expect_422(r, "MaintenanceInfoConflict");
    // Changing plan with the old plan's version is a conflict too.
    let r = w.patch(
        "i1",
        update_body(json!({"plan_id": SYNC_B, "maintenance_info": {"version": "1.0.0"}})),
        false,
    );
    expect_422(r, "MaintenanceInfoConflict");
    assert_eq!(w.snapshot(), before);
    // The current version is a no-op.
    let r = w.patch(
        "i1",
        update_body(json!({"maintenance_info": {"version": "1.0.0"}})),
        false,
    );
    expect(r, 200);
}

#[test]
fn a_maintenance_update_to_the_plans_new_version_is_applied() {
    let mut w = world();
    w.ready_instance("i1", SYNC);
    // The operator publishes a new maintenance version of the plan.
    let yaml = CATALOG.replace("{version: 1.0.0, description: First.}", "{version: 1.1.0}");
    assert_ne!(yaml, CATALOG);
    w.catalog = Catalog::from_yaml_documents(&[("catalog.yaml", yaml)]).unwrap();
    // An update that does not ask for it keeps the old version.
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
        200,
    );
    assert_eq!(
        body(&expect(w.fetch("i1"), 200))["maintenance_info"]["version"],
        "1.0.0"
    );
    let r = w.patch(
        "i1",
        update_body(json!({"maintenance_info": {"version": "1.1.0"}, "previous_values": {"maintenance_info": {"version": "1.0.0"}}})),
        false,
    );
    expect(r, 200);
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(body(&f)["maintenance_info"], json!({"version": "1.1.0"}));
    assert_eq!(body(&f)["parameters"], json!({"size": 2}));
}

#[test]
fn a_context_only_update_is_stored_when_the_service_allows_context_updates() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let op = w.instance("i1")["operation"]["id"].clone();
    let context = json!({"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1", "instance_name": "renamed"});
    let r = expect(
        w.patch("i1", update_body(json!({"context": context})), false),
        200,
    );
    assert_eq!(body(&r), &json!({}));
    let record = w.instance("i1");
    assert_eq!(record["context"], context);
    assert_eq!(
        record["operation"]["id"], op,
        "no operation for a context update"
    );
}

#[test]
fn a_context_only_update_is_ignored_when_the_service_does_not_allow_context_updates() {
    let w = world();
    w.ready_instance("i1", PLAIN);
    let before = w.instance("i1");
    let r = w.patch(
        "i1",
        json!({"service_id": PLAIN_SVC, "context": {"platform": "cloudfoundry", "instance_name": "x"}}),
        false,
    );
    expect(r, 200);
    assert_eq!(w.instance("i1"), before);
}

#[test]
fn a_no_op_update_answers_200_and_starts_no_operation() {
    let w = world();
    w.ready_instance_with("i1", ASYNC, json!({"size": 2}));
    let before = w.snapshot();
    for body in [
        update_body(json!({})),
        update_body(json!({"plan_id": ASYNC})),
        update_body(json!({"parameters": {"size": 2}})),
        update_body(json!({"parameters": {}})),
    ] {
        // No AsyncRequired either: nothing is done asynchronously.
        let r = expect(w.patch("i1", body.clone(), false), 200);
        assert_eq!(crate::body(&r), &json!({}), "{body}");
    }
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_update_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    w.ready_instance("i2", SYNC);
    let before = w.snapshot();
    let r = w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false);
    expect_422(r, "AsyncRequired");
    // A plan change to an async plan likewise.
    expect_422(
        w.patch("i2", update_body(json!({"plan_id": ASYNC})), false),
        "AsyncRequired",
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_update_answers_202_and_repeats_give_the_same_operation_until_it_completes() {
    let w = world();
    w.ready_instance_with("i1", ASYNC, json!({"username_prefix": "app"}));
    let update = update_body(json!({"parameters": {"size": 2}}));
    let op = operation_of(&expect(w.patch("i1", update.clone(), true), 202));
    assert!(op.starts_with("update-"), "{op}");
    // Pending parameters are not applied yet.
    assert_eq!(
        w.instance("i1")["parameters"],
        json!({"username_prefix": "app"})
    );

    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(header(&r, "Retry-After").is_some());

    w.env.advance(2);
    assert_eq!(
        operation_of(&expect(w.patch("i1", update.clone(), true), 202)),
        op
    );
    // A different update while one runs: ConcurrencyError.
    let other = update_body(json!({"parameters": {"size": 3}}));
    expect_422(w.patch("i1", other, true), "ConcurrencyError");

    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(
        body(&f)["parameters"],
        json!({"username_prefix": "app", "size": 2})
    );
    // Once applied, the same request is a no-op.
    expect(w.patch("i1", update, true), 200);
}

#[test]
fn an_async_plan_change_is_applied_when_the_operation_succeeds() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let op = operation_of(&expect(
        w.patch("i1", update_body(json!({"plan_id": ASYNC})), true),
        202,
    ));
    assert_eq!(w.instance("i1")["plan_id"], SYNC);
    // The platform polls with the plan prior to the update; deprovision with either plan
    // id is accepted but blocked by the update.
    expect_422(w.deprovision_as("i1", SVC, ASYNC, true), "ConcurrencyError");
    expect_422(w.deprovision_as("i1", SVC, SYNC, true), "ConcurrencyError");
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
    assert_eq!(body(&expect(w.fetch("i1"), 200))["plan_id"], ASYNC);
}

#[test]
fn a_failed_async_update_reports_instance_usable_and_update_repeatable_and_keeps_the_instance() {
    let w = world();
    w.ready_instance_with("i1", SHORT, json!({"size": 1}));
    let op = operation_of(&expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    ));
    w.env.advance(SHORT_LIMIT);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert!(description_of(&r).contains("maximum polling duration"));
    assert_eq!(body(&r)["instance_usable"], true);
    assert_eq!(body(&r)["update_repeatable"], true);
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(body(&f)["parameters"], json!({"size": 1}));
    // The update can be repeated.
    let again = operation_of(&expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    ));
    assert_ne!(again, op);
}

#[test]
fn update_requests_that_are_malformed_or_name_unknown_things_are_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let before = w.snapshot();
    let cases = [
        (json!({"plan_id": SYNC}), "service_id"),
        (json!({"service_id": ""}), "service_id"),
        (json!({"service_id": PLAIN_SVC}), "service_id"),
        (json!({"service_id": SVC, "plan_id": "nope"}), "nope"),
        (json!({"service_id": SVC, "plan_id": PLAIN}), PLAIN),
        (
            json!({"service_id": SVC, "parameters": {"size": 0}}),
            "parameters.size",
        ),
        (
            json!({"service_id": SVC, "parameters": {"size": 2, "extra_field": 1}}),
            "extra_field",
        ),
    ];
    for (b, needle) in cases {
        let r = w.patch("i1", b.clone(), false);
        assert_eq!(r.status, 400, "{b}: {}", body_text(&r));
        assert!(
            description_of(&r).contains(needle),
            "{b}: {}",
            description_of(&r)
        );
    }
    expect(
        w.patch(
            "nope",
            update_body(json!({"parameters": {"size": 2}})),
            false,
        ),
        400,
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn updating_an_instance_that_is_still_provisioning_is_422_concurrency_error() {
    let w = world();
    expect(w.provision("i1", ASYNC), 202);
    expect_422(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        "ConcurrencyError",
    );
}

#[test]
fn updating_an_instance_whose_provisioning_failed_is_422() {
    let w = world();
    expect(w.provision("i1", SHORT), 202);
    w.env.advance(SHORT_LIMIT);
    expect(w.last_op("i1", None), 200);
    let r = expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        422,
    );
    assert!(
        description_of(&r).contains("deprovision"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn updating_an_instance_being_deprovisioned_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.deprovision("i1", ASYNC), 202);
    expect_422(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        "ConcurrencyError",
    );
}

/// An update is checked as the instance will run after it: the stored parameters merged
/// with the new ones, against the target plan's update schema.
#[test]
fn updates_check_the_merged_parameters_against_the_target_plans_update_schema() {
    let w = world();
    let to_strict = |parameters: Option<Value>| {
        let mut body = json!({"plan_id": "plan-strict"});
        if let Some(p) = parameters {
            body["parameters"] = p;
        }
        update_body(body)
    };
    // A stored parameter the target plan's update schema does not allow.
    w.ready_instance_with("i1", SYNC, json!({"username_prefix": "app", "size": 1}));
    let r = expect(
        w.patch("i1", to_strict(Some(json!({"size": 2}))), false),
        400,
    );
    assert!(
        description_of(&r).contains("username_prefix"),
        "{}",
        body_text(&r)
    );
    assert_eq!(w.instance("i1")["plan_id"], SYNC);
    // A stored value out of the target plan's range, with no new parameters at all.
    w.ready_instance_with("i2", SYNC, json!({"size": 3}));
    let r = expect(w.patch("i2", to_strict(None), false), 400);
    assert!(description_of(&r).contains("size"), "{}", body_text(&r));
    // Merged parameters that fit are accepted.
    w.ready_instance_with("i3", SYNC, json!({"size": 3}));
    expect(
        w.patch("i3", to_strict(Some(json!({"size": 2}))), false),
        200,
    );
    assert_eq!(w.instance("i3")["plan_id"], "plan-strict");
    // Same plan, new parameter, stored ones still valid: accepted.
    w.ready_instance_with("i4", SYNC, json!({"size": 3}));
    expect(
        w.patch(
            "i4",
            update_body(json!({"parameters": {"username_prefix": "x"}})),
            false,
        ),
        200,
    );
}
