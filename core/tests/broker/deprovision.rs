//! Deprovision.

use super::*;

#[test]
fn a_sync_deprovision_answers_200_and_leaves_a_tombstone() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let r = expect(w.deprovision("i1", SYNC), 200);
    assert_eq!(body(&r), &json!({}));
    let record = w.instance("i1");
    assert_eq!(record["status"], "deleted");
    assert_eq!(record["operation"]["kind"], "deprovision");
    assert_eq!(record["operation"]["state"], "succeeded");
    // Gone: repeated deprovisions are 410, fetch 404, last_operation 410.
    expect(w.deprovision("i1", SYNC), 410);
    expect(w.fetch("i1"), 404);
    expect(w.last_op("i1", None), 410);
}

#[test]
fn deprovisioning_an_unknown_instance_is_410() {
    let w = world();
    let r = expect(w.deprovision("nope", SYNC), 410);
    assert!(!description_of(&r).is_empty());
    expect(w.deprovision("nope", ASYNC), 410);
    assert!(w.kv.keys().is_empty());
}

#[test]
fn deprovision_without_or_with_mismatched_service_and_plan_ids_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let before = w.snapshot();
    let q = |pairs: &[(&str, &str)]| w.call(Endpoint::Deprovision, "i1", "", pairs, None);
    expect(q(&[("plan_id", SYNC)]), 400);
    expect(q(&[("service_id", SVC)]), 400);
    expect(q(&[("service_id", ""), ("plan_id", SYNC)]), 400);
    expect(q(&[("service_id", SVC), ("plan_id", SYNC_B)]), 400);
    expect(q(&[("service_id", PLAIN_SVC), ("plan_id", SYNC)]), 400);
    expect(
        q(&[
            ("service_id", SVC),
            ("plan_id", SYNC),
            ("accepts_incomplete", "maybe"),
        ]),
        400,
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_deprovision_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let before = w.snapshot();
    expect_422(w.deprovision_as("i1", SVC, ASYNC, false), "AsyncRequired");
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_deprovision_answers_202_repeats_give_the_same_operation_then_410() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    assert!(op.starts_with("deprovision-"), "{op}");
    w.env.advance(3);
    assert_eq!(operation_of(&expect(w.deprovision("i1", ASYNC), 202)), op);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("7"));
    w.env.advance(DELAY);
    let _ = w.last_op("i1", Some(&op));
    expect(w.last_op("i1", Some(&op)), 410);
    expect(w.deprovision("i1", ASYNC), 410);
}

#[test]
fn a_deprovision_during_async_provisioning_stops_creation_and_the_old_operation_reports_failed() {
    let w = world();
    let provision_op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(3);
    let deprovision_op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    assert_ne!(provision_op, deprovision_op);

    // The provision is over: failed, answered from history.
    let r = expect(w.last_op("i1", Some(&provision_op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert!(
        description_of(&r).contains("cancelled"),
        "{}",
        description_of(&r)
    );
    // The deletion runs.
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&deprovision_op)), 200)),
        "in progress"
    );
    assert_eq!(state_of(&expect(w.last_op("i1", None), 200)), "in progress");
    expect(w.fetch("i1"), 404);

    // Past the time creation would have finished, it never does.
    w.env.advance(DELAY);
    let _ = w.last_op("i1", Some(&deprovision_op));
    expect(w.last_op("i1", Some(&deprovision_op)), 410);
    let record = w.instance("i1");
    assert_eq!(record["status"], "deleted");
    let history = record["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|h| h["id"] == provision_op.as_str() && h["state"] == "failed"));
    // ...and the provision's id keeps answering failed after the deletion.
    let r = expect(w.last_op("i1", Some(&provision_op)), 200);
    assert_eq!(state_of(&r), "failed");
    expect(w.fetch("i1"), 404);
}

#[test]
fn deprovisioning_an_instance_being_updated_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    );
    let before = w.snapshot();
    expect_422(w.deprovision("i1", ASYNC), "ConcurrencyError");
    assert_eq!(w.snapshot(), before);
}
