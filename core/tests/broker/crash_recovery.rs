//! Crash recovery.

use super::*;
#[test]
fn a_crash_after_the_record_was_written_but_before_the_backend_step_is_resumed_by_a_poll() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    // Rewind to "record written, backend never called, request died holding the lease".
    let mut record = w.instance("i1");
    record["operation"]["backend"] = Value::Null;
    record["operation"]["lease_until"] = json!(T0 + 30);
    record["operation"]
        .as_object_mut()
        .unwrap()
        .remove("retry_after");
    record["operation"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    w.write_record(&instance_key("i1"), &record);

    // While the dead request's lease runs, polls report progress and change nothing.
    w.env.advance(20);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(header(&r, "Retry-After").is_some());
    assert_eq!(w.instance("i1"), record);

    // Once it expired, the next poll takes the first backend step...
    w.env.advance(11);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(w.instance("i1")["operation"]["backend"]["ready_at"].is_u64());
    // ...and the operation completes as usual.
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
    expect(w.fetch("i1"), 200);
}
#[test]
fn a_sync_provision_that_crashed_holding_its_lease_is_finished_by_the_resent_request() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    let done = w.instance("i1");
    let mut record = done.clone();
    record["status"] = json!("creating");
    record["operation"]["state"] = json!("in_progress");
    record["operation"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    record["operation"]["lease_until"] = json!(T0 + 30);
    w.write_record(&instance_key("i1"), &record);

    expect(w.fetch("i1"), 404);
    expect_422(w.provision("i1", SYNC), "ConcurrencyError");
    w.env.advance(31);
    let r = expect(w.provision("i1", SYNC), 201);
    assert_eq!(
        body(&r)["dashboard_url"],
        "https://dash.example.com/sync/i1"
    );
    assert_eq!(w.instance("i1")["status"], "ready");
    assert_eq!(w.instance("i1")["operation"]["id"], done["operation"]["id"]);
    expect(w.provision("i1", SYNC), 200);
}
#[test]
fn a_crash_during_an_async_bind_is_resumed_by_a_poll_after_the_lease_expires() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let op = operation_of(&expect(w.bind("i1", "b1", ASYNC), 202));
    let mut record = w.binding("i1", "b1");
    record["operation"]["backend"] = Value::Null;
    let now = w.env.now.load(Ordering::SeqCst);
    record["operation"]["lease_until"] = json!(now + 30);
    w.write_record(&binding_key("i1", "b1"), &record);
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&op)), 200)),
        "in progress"
    );
    w.env.advance(21);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&op)), 200)),
        "in progress"
    );
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&op)), 200)),
        "succeeded"
    );
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert!(f.json_body().unwrap()["credentials"]["password"].is_string());
}
#[test]
fn a_creation_claim_left_by_a_crashed_request_is_taken_over() {
    let w = world();
    // A request claimed the id and died before writing the record.
    w.kv.increment(&format!("{}/claim/g0", instance_key("i1")), 1)
        .unwrap();
    expect(w.provision("i1", SYNC), 201);
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    expect(w.fetch("i1"), 200);
}
#[test]
fn a_deprovision_exceeding_maximum_polling_duration_fails_and_leaves_the_instance_usable() {
    let w = world();
    w.ready_instance_with("i1", SHORT, json!({"size": 1}));
    let op = operation_of(&expect(w.deprovision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert_eq!(body(&r)["instance_usable"], true);
    assert!(
        body(&r).get("update_repeatable").is_none(),
        "only for updates"
    );
    expect(w.fetch("i1"), 200);
    // The platform may try again.
    let again = operation_of(&expect(w.deprovision("i1", SHORT), 202));
    assert_ne!(again, op);
    w.env.advance(SHORT_DELAY);
    let _ = w.last_op("i1", Some(&again));
    expect(w.last_op("i1", Some(&again)), 410);
}
#[test]
fn a_sync_update_with_accepts_incomplete_still_answers_200() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let r = expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        200,
    );
    assert!(body(&r).get("operation").is_none());
}
#[test]
fn a_store_outage_at_any_step_of_a_sync_deprovision_or_unbind_is_recovered_by_retrying() {
    let setup = |w: &World<FlakyKv>| {
        expect(w.provision("i1", SYNC), 201);
        expect(w.bind("i1", "b1", SYNC), 201);
    };
    let (start, end) = store_operations(setup, |w| {
        expect(w.unbind("i1", "b1", SYNC), 200);
        expect(w.deprovision("i1", SYNC), 200);
    });
    for fail_from in start..end {
        let w = flaky_world(usize::MAX);
        setup(&w);
        let w = World {
            kv: FlakyKv { fail_from, ..w.kv },
            ..w
        };
        let unbound = w.unbind("i1", "b1", SYNC);
        let deprovisioned = if unbound.status == 200 {
            w.deprovision("i1", SYNC)
        } else {
            unbound.clone()
        };
        assert_eq!(deprovisioned.status, 503, "fail_from {fail_from}");
        w.kv.armed.store(false, Ordering::SeqCst);
        if unbound.status != 200 {
            let r = retry_until_settled(&w, || w.unbind("i1", "b1", SYNC));
            assert!(
                r.status == 200 || r.status == 410,
                "fail_from {fail_from}: {} {}",
                r.status,
                body_text(&r)
            );
        }
        let r = retry_until_settled(&w, || w.deprovision("i1", SYNC));
        assert!(
            r.status == 200 || r.status == 410,
            "fail_from {fail_from}: {} {}",
            r.status,
            body_text(&r)
        );
        expect(w.unbind("i1", "b1", SYNC), 410);
        expect(w.deprovision("i1", SYNC), 410);
        expect(w.fetch("i1"), 404);
    }
}
#[test]
fn a_store_outage_at_any_step_of_a_sync_update_is_recovered_by_retrying() {
    let setup = |w: &World<FlakyKv>| {
        expect(w.provision("i1", SYNC), 201);
    };
    let update = || update_body(json!({"parameters": {"size": 2}}));
    let (start, end) = store_operations(setup, |w| {
        expect(w.patch("i1", update(), false), 200);
    });
    for fail_from in start..end {
        let w = flaky_world(usize::MAX);
        setup(&w);
        let w = World {
            kv: FlakyKv { fail_from, ..w.kv },
            ..w
        };
        expect(w.patch("i1", update(), false), 503);
        w.kv.armed.store(false, Ordering::SeqCst);
        // The platform re-sends the PATCH, as it does after any 5xx.
        eprintln!("store outage from operation {fail_from} (the update's first is {start})");
        let r = retry_until_settled(&w, || w.patch("i1", update(), false));
        assert_eq!(r.status, 200, "fail_from {fail_from}: {}", body_text(&r));
        let f = expect(w.fetch("i1"), 200);
        assert_eq!(
            body(&f)["parameters"],
            json!({"size": 2}),
            "fail_from {fail_from}"
        );
    }
}
#[test]
fn concurrent_identical_async_provisions_over_a_tombstone_create_one_operation() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.deprovision("i1", SYNC), 200);
    let barrier = std::sync::Barrier::new(50);
    let responses: Vec<OsbResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    w.provision("i1", ASYNC)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let current = w.instance("i1")["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for r in &responses {
        // The spec allows a broker to refuse concurrent requests with ConcurrencyError.
        let ok = (r.status == 202 && operation_of(r) == current)
            || (r.status == 422 && error_of(r) == Some("ConcurrencyError"));
        assert!(ok, "{} {}", r.status, body_text(r));
    }
    assert!(responses.iter().any(|r| r.status == 202));
    assert_eq!(w.instance("i1")["plan_id"], ASYNC);
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
}
#[test]
fn fifty_concurrent_identical_async_binds_share_one_record_and_one_operation() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let barrier = std::sync::Barrier::new(50);
    let responses: Vec<OsbResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    w.bind("i1", "b1", ASYNC)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ops: Vec<String> = responses
        .iter()
        .map(|r| operation_of(&expect(r.clone(), 202)))
        .collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(
        w.record_keys(),
        vec![binding_key("i1", "b1"), instance_key("i1")]
    );
}
#[test]
fn a_bind_with_the_deprecated_app_guid_is_identical_to_one_with_bind_resource_app_guid() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.bind("i1", "b1", SYNC), 201);
    let legacy = json!({"service_id": SVC, "plan_id": SYNC, "app_guid": "app-1"});
    expect(w.put_binding("i1", "b1", legacy, false), 200);
}
#[test]
fn absent_and_empty_parameters_are_the_same_provision() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    let mut b = provision_body(SYNC);
    b["parameters"] = json!({});
    expect(w.put("i1", b, false), 200);
}
#[test]
fn rotation_from_a_binding_of_another_instance_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_instance("i2", SYNC);
    w.ready_binding("i2", "theirs", SYNC, json!({}));
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("theirs");
    expect(w.put_binding("i1", "new", b, false), 400);
}
#[test]
fn a_resent_rotation_answers_200_after_the_predecessor_is_gone() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "old", SYNC, json!({"role": "read-only"}));
    let mut rotation = bind_body(SYNC);
    rotation["predecessor_binding_id"] = json!("old");
    let created = expect(w.put_binding("i1", "new", rotation.clone(), false), 201);
    // The platform completes the rotation by unbinding the predecessor...
    expect(w.unbind("i1", "old", SYNC), 200);
    // ...then re-sends the PUT of the successor (retry after a lost response, reconcile
    // loop): the binding exists with identical attributes, so the spec's answer is 200.
    let again = expect(w.put_binding("i1", "new", rotation.clone(), false), 200);
    assert_eq!(body(&again)["credentials"], body(&created)["credentials"]);
    // Likewise once the predecessor has expired.
    w.ready_binding("i1", "old2", SYNC, json!({}));
    let mut rotation2 = bind_body(SYNC);
    rotation2["predecessor_binding_id"] = json!("old2");
    expect(w.put_binding("i1", "new2", rotation2.clone(), false), 201);
    w.env.advance(3600);
    expect(w.put_binding("i1", "new2", rotation2, false), 200);
}
#[test]
fn an_instance_whose_plan_left_the_catalog_can_still_be_deprovisioned() {
    let mut w = world();
    assert_eq!(w.provision("i-orphan", SYNC).status, 201);
    let without = CATALOG.replace("id: plan-sync\n", "id: plan-sync-renamed\n");
    w.catalog = Catalog::from_yaml_documents(&[("catalog.yaml", without.as_str())])
        .expect("the changed catalog loads");
    let gone = w.deprovision("i-orphan", SYNC);
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_eq!(w.fetch("i-orphan").status, 404);
}
#[test]
fn a_binding_whose_plan_left_the_catalog_can_still_be_unbound() {
    let mut w = world();
    assert_eq!(w.provision("i-orphan-b", SYNC).status, 201);
    let bound = w.put_binding(
        "i-orphan-b",
        "b-1",
        json!({"service_id": SVC, "plan_id": SYNC}),
        false,
    );
    assert_eq!(bound.status, 201, "{:?}", bound.body);
    let without = CATALOG.replace("id: plan-sync\n", "id: plan-sync-renamed\n");
    w.catalog = Catalog::from_yaml_documents(&[("catalog.yaml", without.as_str())])
        .expect("the changed catalog loads");
    let unbound = w.unbind("i-orphan-b", "b-1", SYNC);
    assert_eq!(unbound.status, 200, "{:?}", unbound.body);
    assert_eq!(w.deprovision("i-orphan-b", SYNC).status, 200);
}
/// Spin's Redis store writes on compare-and-swap and then reports failure: every transition
/// must still happen exactly once, and nothing may be reported as a conflict.
#[test]
fn the_whole_lifecycle_works_on_a_store_whose_swaps_report_failure() {
    let w = world();
    w.kv.swap_reports_failure.store(true, Ordering::SeqCst);
    for plan in [SYNC, ASYNC] {
        let iid = format!("i-{plan}");
        w.ready_instance(&iid, plan);
        w.ready_binding(&iid, "b1", plan, json!({}));
        // Identical repeats are idempotent answers, not conflicts.
        let again = w.bind(&iid, "b1", plan);
        assert!(
            again.status == 200 || again.status == 202,
            "{}",
            body_text(&again)
        );
        let r = w.unbind(&iid, "b1", plan);
        if is_async(plan) {
            let op = operation_of(&expect(r, 202));
            w.env.advance(delay_of(plan));
            assert_eq!(
                state_of(&expect(w.binding_last_op(&iid, "b1", Some(&op)), 200)),
                "succeeded"
            );
        } else {
            expect(r, 200);
        }
        let r = w.deprovision(&iid, plan);
        if is_async(plan) {
            let op = operation_of(&expect(r, 202));
            w.env.advance(delay_of(plan));
            let r = w.last_op(&iid, Some(&op));
            assert!(r.status == 200 || r.status == 410, "{}", body_text(&r));
        } else {
            expect(r, 200);
        }
        expect(w.fetch(&iid), 404);
    }
}
