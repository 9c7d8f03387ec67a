//! Unbind.

use super::*;

#[test]
fn a_sync_unbind_answers_200_and_removes_the_credentials() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    let r = expect(w.unbind("i1", "b1", SYNC), 200);
    assert_eq!(body(&r), &json!({}));
    let record = w.binding("i1", "b1");
    assert_eq!(record["status"], "deleted");
    assert!(
        record.get("credentials").is_none(),
        "secrets must not outlive the binding"
    );
    expect(w.unbind("i1", "b1", SYNC), 410);
    // The id can be bound again.
    expect(w.bind("i1", "b1", SYNC), 201);
}

#[test]
fn unbinding_an_unknown_binding_is_410() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.unbind("i1", "nope", SYNC), 410);
    expect(w.unbind("no-instance", "nope", SYNC), 410);
}

#[test]
fn unbind_without_or_with_mismatched_service_and_plan_ids_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    let before = w.snapshot();
    let q = |pairs: &[(&str, &str)]| w.call(Endpoint::Unbind, "i1", "b1", pairs, None);
    expect(q(&[("plan_id", SYNC)]), 400);
    expect(q(&[("service_id", SVC)]), 400);
    expect(q(&[("service_id", SVC), ("plan_id", "nope")]), 400);
    expect(q(&[("service_id", PLAIN_SVC), ("plan_id", SYNC)]), 400);
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_unbind_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    w.ready_binding("i1", "b1", ASYNC, json!({}));
    let before = w.snapshot();
    expect_422(w.unbind_as("i1", "b1", SVC, ASYNC, false), "AsyncRequired");
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_unbind_answers_202_repeats_give_the_same_operation_then_binding_last_operation_is_410()
{
    let w = world();
    w.ready_instance("i1", ASYNC);
    w.ready_binding("i1", "b1", ASYNC, json!({}));
    let bind_op = w.binding("i1", "b1")["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let op = operation_of(&expect(w.unbind("i1", "b1", ASYNC), 202));
    assert!(op.starts_with("unbind-"), "{op}");
    assert_eq!(operation_of(&expect(w.unbind("i1", "b1", ASYNC), 202)), op);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(header(&r, "Retry-After").is_some());
    // Binding again while unbinding: ConcurrencyError.
    expect_422(w.bind("i1", "b1", ASYNC), "ConcurrencyError");
    w.env.advance(DELAY);
    let first = w.binding_last_op("i1", "b1", Some(&op));
    assert!(
        first.status == 410 || state_of(&first) == "succeeded",
        "{}",
        body_text(&first)
    );
    expect(w.binding_last_op("i1", "b1", Some(&op)), 410);
    expect(w.binding_last_op("i1", "b1", None), 410);
    expect(w.unbind("i1", "b1", ASYNC), 410);
    // The bind operation is history.
    let r = expect(w.binding_last_op("i1", "b1", Some(&bind_op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert!(w.binding("i1", "b1").get("credentials").is_none());
}

#[test]
fn an_unbind_during_an_async_bind_stops_it_and_the_old_operation_reports_failed() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let bind_op = operation_of(&expect(w.bind("i1", "b1", ASYNC), 202));
    w.env.advance(2);
    let unbind_op = operation_of(&expect(w.unbind("i1", "b1", ASYNC), 202));
    let r = expect(w.binding_last_op("i1", "b1", Some(&bind_op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert_eq!(
        state_of(&expect(
            w.binding_last_op("i1", "b1", Some(&unbind_op)),
            200
        )),
        "in progress"
    );
    expect(w.fetch_binding("i1", "b1"), 404);
    w.env.advance(DELAY);
    let _ = w.binding_last_op("i1", "b1", Some(&unbind_op));
    expect(w.binding_last_op("i1", "b1", Some(&unbind_op)), 410);
    let record = w.binding("i1", "b1");
    assert_eq!(record["status"], "deleted");
    assert!(
        record.get("credentials").is_none(),
        "no credentials were ever issued"
    );
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&bind_op)), 200)),
        "failed"
    );
}

#[test]
fn unbinding_after_a_plan_change_accepts_the_instances_current_plan() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    expect(
        w.patch("i1", update_body(json!({"plan_id": SYNC_B})), false),
        200,
    );
    // The binding is associated with the instance, whose plan is now SYNC_B.
    expect(w.unbind_as("i1", "b1", SVC, SYNC_B, false), 200);
}
