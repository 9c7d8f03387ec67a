//! An asynchronous plan: every operation answers 202 with an `operation`, stays
//! `in progress` for the plan's delay, and completes on a later `last_operation` poll.

use std::time::{Duration, Instant};

use spin_osb_e2e::{instance_key, json, new_id, shared};

#[test]
fn an_asynchronous_instance_and_binding_go_through_their_whole_lifecycle() {
    let b = shared();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());

    // Without accepts_incomplete: 422 AsyncRequired, and nothing is stored.
    b.provision(&iid, &body, false)
        .expect_error_code(422, "AsyncRequired");
    assert!(
        b.store_keys_mentioning(&iid).is_empty(),
        "a refused provision must not be stored: {:?}",
        b.store_keys_mentioning(&iid)
    );

    // With it: 202 and an operation; the identical request again: 202, same operation.
    let started = Instant::now();
    let accepted = b.provision(&iid, &body, true).expect(202);
    let op = accepted.operation();
    if plan.has_dashboard_url() {
        let url = accepted.json["dashboard_url"].as_str().unwrap_or_default();
        assert!(
            url.contains(&iid),
            "an asynchronous provision must return the dashboard_url in its 202: {}",
            accepted.body
        );
    }
    let again = b.provision(&iid, &body, true).expect(202);
    assert_eq!(
        again.operation(),
        op,
        "a re-sent provision must return the same operation"
    );
    assert_eq!(
        again.json.get("dashboard_url"),
        accepted.json.get("dashboard_url")
    );

    // In progress, with Retry-After.
    let polled = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(polled.state(), "in progress", "{}", polled.body);
    let retry_after = polled.header("retry-after").unwrap_or_default();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "an in-progress answer should carry Retry-After in seconds, got {retry_after:?}"
    );
    // Also without the operation parameter.
    let polled = b.instance_last_operation(&iid, None).expect(200);
    assert_eq!(polled.state(), "in progress", "{}", polled.body);

    // While provisioning: fetch 404, bind 422 ConcurrencyError, update 422.
    b.fetch_instance(&iid).expect_error(404);
    let bid = new_id();
    let bind_body = plan.bind_body(plan.bind_parameters());
    b.bind(&iid, &bid, &bind_body, true)
        .expect_error_code(422, "ConcurrencyError");
    assert!(
        b.store_json(&spin_osb_e2e::binding_key(&iid, &bid))
            .is_none(),
        "a refused bind must not be stored"
    );

    // After the delay: succeeded.
    let done = b.wait_instance_operation(&iid, &op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the asynchronous plan completed in {:?}; it should take its delay",
        started.elapsed()
    );
    // Asked again, the broker still remembers the outcome.
    let remembered = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(remembered.state(), "succeeded", "{}", remembered.body);
    let fetched = b.fetch_instance(&iid).expect(200);
    assert_eq!(
        fetched.json["plan_id"],
        json!(plan.plan_id),
        "{}",
        fetched.body
    );
    // A provision re-sent after completion is 200 (it is no longer in progress).
    b.provision(&iid, &body, true).expect(200);

    // Asynchronous bind: 202 without credentials, then succeeded, then fetch has them.
    let bound = b.bind(&iid, &bid, &bind_body, true).expect(202);
    let bind_op = bound.operation();
    assert!(
        bound.json.get("credentials").is_none(),
        "a 202 must not carry credentials: {}",
        bound.body
    );
    let again = b.bind(&iid, &bid, &bind_body, true).expect(202);
    assert_eq!(again.operation(), bind_op);
    b.fetch_binding(&iid, &bid).expect_error(404);
    let done = b.wait_binding_operation(&iid, &bid, &bind_op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    let fetched = b.fetch_binding(&iid, &bid).expect(200);
    assert!(
        fetched.json["credentials"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "fetch after an asynchronous bind must return the credentials: {}",
        fetched.body
    );

    // Asynchronous unbind: 202, succeeded, then the binding's last_operation is 410.
    let unbound = b.unbind(&iid, &bid, &plan, true).expect(202);
    let unbind_op = unbound.operation();
    let again = b.unbind(&iid, &bid, &plan, true).expect(202);
    assert_eq!(
        again.operation(),
        unbind_op,
        "a re-sent unbind must return the same operation"
    );
    let done = b.wait_binding_operation(&iid, &bid, &unbind_op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    b.binding_last_operation(&iid, &bid, Some(&unbind_op))
        .expect_error(410);
    b.fetch_binding(&iid, &bid).expect_error(404);
    b.unbind(&iid, &bid, &plan, true).expect_error(410);

    // Asynchronous deprovision: 202, succeeded, then 410.
    let deleting = b.deprovision(&iid, &plan, true).expect(202);
    let deprovision_op = deleting.operation();
    let again = b.deprovision(&iid, &plan, true).expect(202);
    assert_eq!(again.operation(), deprovision_op);
    let done = b.wait_instance_operation(&iid, &deprovision_op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    b.instance_last_operation(&iid, Some(&deprovision_op))
        .expect_error(410);
    b.instance_last_operation(&iid, None).expect_error(410);
    b.fetch_instance(&iid).expect_error(404);
    b.deprovision(&iid, &plan, true).expect_error(410);
    let record = b.store_json(&instance_key(&iid));
    assert!(
        record.as_ref().is_none_or(|r| r["status"] == "deleted"),
        "{record:?}"
    );
}

#[test]
fn an_asynchronous_deprovision_without_accepts_incomplete_is_422_async_required() {
    let b = shared();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let op = b
        .provision(
            &iid,
            &plan.provision_body(plan.provision_parameters()),
            true,
        )
        .expect(202)
        .operation();
    b.wait_instance_operation(&iid, &op).expect(200);
    b.deprovision(&iid, &plan, false)
        .expect_error_code(422, "AsyncRequired");
    b.fetch_instance(&iid).expect(200);
    let op = b.deprovision(&iid, &plan, true).expect(202).operation();
    b.wait_instance_operation(&iid, &op);
}

#[test]
fn a_deprovision_during_provisioning_cancels_it() {
    let b = shared();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let provision_op = b
        .provision(
            &iid,
            &plan.provision_body(plan.provision_parameters()),
            true,
        )
        .expect(202)
        .operation();
    let deprovision_op = b.deprovision(&iid, &plan, true).expect(202).operation();
    assert_ne!(provision_op, deprovision_op);
    let done = b.wait_instance_operation(&iid, &deprovision_op);
    assert!(
        (done.status == 200 && done.state() == "succeeded") || done.status == 410,
        "{} {}",
        done.status,
        done.body
    );
    b.fetch_instance(&iid).expect_error(404);
    // The superseded provision is not reported as succeeded.
    let old = b.instance_last_operation(&iid, Some(&provision_op));
    assert!(
        old.status == 410 || (old.status == 200 && old.state() != "succeeded"),
        "the cancelled provision's operation: {} {}",
        old.status,
        old.body
    );
}

#[test]
fn an_unknown_operation_id_is_not_reported_as_succeeded() {
    let b = shared();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let op = b
        .provision(
            &iid,
            &plan.provision_body(plan.provision_parameters()),
            true,
        )
        .expect(202)
        .operation();
    let resp = b.instance_last_operation(&iid, Some("no-such-operation"));
    assert!(
        resp.status == 400 || resp.status == 404,
        "an unknown operation id: expected 400 or 404, got {} {}",
        resp.status,
        resp.body
    );
    resp.assert_osb_error_body();
    b.wait_instance_operation(&iid, &op).expect(200);
}
