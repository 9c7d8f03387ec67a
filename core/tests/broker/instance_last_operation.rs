//! Instance last_operation.

use super::*;

#[test]
fn last_operation_reports_in_progress_with_retry_after_then_succeeded_without_it() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("10"));
    assert!(!description_of(&r).is_empty());
    assert!(body(&r).get("instance_usable").is_none());

    w.env.advance(4);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("6"));
    // Polling without the operation parameter reports the current operation too.
    assert_eq!(state_of(&expect(w.last_op("i1", None), 200)), "in progress");

    w.env.advance(6);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert_eq!(header(&r, "Retry-After"), None);
    assert!(body(&r).get("instance_usable").is_none());
    assert!(body(&r).get("update_repeatable").is_none());
    assert_eq!(w.instance("i1")["status"], "ready");
    // Later polls keep answering succeeded.
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
}

#[test]
fn last_operation_with_an_unknown_operation_id_is_400() {
    let w = world();
    expect(w.provision("i1", ASYNC), 202);
    expect(w.last_op("i1", Some("provision-ffffffffffffffff")), 400);
    expect(w.last_op("i1", Some("bogus")), 400);
}

#[test]
fn last_operation_of_an_unknown_instance_is_404() {
    let w = world();
    expect(w.last_op("nope", None), 404);
    expect(w.last_op("nope", Some("provision-0000000000000001")), 404);
}

#[test]
fn last_operation_after_a_finished_deprovision_is_410() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    w.env.advance(DELAY);
    let first = w.last_op("i1", Some(&op));
    // The poll that completes the deletion may report it, later ones must say 410.
    assert!(
        first.status == 410 || (first.status == 200 && state_of(&first) == "succeeded"),
        "{} {}",
        first.status,
        body_text(&first)
    );
    expect(w.last_op("i1", Some(&op)), 410);
    expect(w.last_op("i1", None), 410);
    assert_eq!(w.instance("i1")["status"], "deleted", "a tombstone remains");
}

#[test]
fn last_operation_for_a_deprovision_of_a_forgotten_instance_is_410() {
    let w = world();
    expect(w.last_op("gone", Some("deprovision-00000000000000aa")), 410);
}

#[test]
fn superseded_operations_are_answered_from_history() {
    let w = world();
    let provision_op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    let update_op = operation_of(&expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    ));
    let r = expect(w.last_op("i1", Some(&provision_op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert_eq!(header(&r, "Retry-After"), None);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&update_op)), 200)),
        "in progress"
    );
}

#[test]
fn exceeding_maximum_polling_duration_fails_the_provision_with_a_description() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT + 1);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    let d = description_of(&r);
    assert!(d.contains("maximum polling duration"), "{d}");
    assert!(d.contains("20"), "{d}");
    assert!(
        body(&r).get("instance_usable").is_none(),
        "not for provisions"
    );
    assert!(
        body(&r).get("update_repeatable").is_none(),
        "not for provisions"
    );
    assert_eq!(header(&r, "Retry-After"), None);
    assert_eq!(w.instance("i1")["status"], "failed");
    expect(w.fetch("i1"), 404);
    // A failed instance can still be deprovisioned.
    let op = operation_of(&expect(w.deprovision("i1", SHORT), 202));
    w.env.advance(SHORT_DELAY);
    let r = w.last_op("i1", Some(&op));
    assert!(
        r.status == 410 || state_of(&r) == "succeeded",
        "{}",
        body_text(&r)
    );
    expect(w.last_op("i1", Some(&op)), 410);
}

#[test]
fn an_operation_finished_within_maximum_polling_duration_succeeds() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT - 1);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
}
