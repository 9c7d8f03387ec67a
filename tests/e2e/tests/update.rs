//! `PATCH /v2/service_instances/:instance_id`: parameter and plan changes, maintenance
//! info, and the refusals the spec requires.

use spin_osb_e2e::{json, new_id, shared, Broker, Plan, Resp};

/// Applies an update with `accepts_incomplete=true` and waits for it when it is
/// asynchronous; returns the final answer (the 200, or the last poll).
fn apply_update(b: &Broker, iid: &str, body: &serde_json::Value) -> Resp {
    let resp = b.update(iid, body, true);
    match resp.status {
        202 => {
            let op = resp.operation();
            let done = b.wait_instance_operation(iid, &op).expect(200);
            assert_eq!(done.state(), "succeeded", "{}", done.body);
            done
        }
        _ => resp.expect(200),
    }
}

fn provision_ready(b: &Broker, plan: &Plan, iid: &str) {
    let resp = b.provision(iid, &plan.provision_body(plan.provision_parameters()), true);
    if resp.status == 202 {
        let op = resp.operation();
        let done = b.wait_instance_operation(iid, &op).expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
    } else {
        resp.expect(201);
    }
}

#[test]
fn updating_parameters_changes_what_fetch_returns() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    provision_ready(&b, &plan, &iid);
    let before = b.fetch_instance(&iid).expect(200).json["parameters"].clone();
    let changed = plan.changed_parameters("service_instance", "update", &before);
    let resp = apply_update(
        &b,
        &iid,
        &json!({"service_id": plan.service_id, "parameters": changed}),
    );
    if resp.what.starts_with("PATCH") {
        assert_eq!(
            resp.json,
            json!({}),
            "a synchronous update answers {{}}: {}",
            resp.body
        );
    }
    let after = b.fetch_instance(&iid).expect(200);
    for (name, value) in changed.as_object().unwrap() {
        assert_eq!(
            after.json["parameters"][name], *value,
            "parameter {name} after the update: {}",
            after.body
        );
    }
    assert_eq!(after.json["plan_id"], json!(plan.plan_id));
    b.deprovision(&iid, &plan, true).expect_one_of(&[200, 202]);
}

#[test]
fn an_update_without_changes_is_200_and_changes_nothing() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    provision_ready(&b, &plan, &iid);
    let before = b.fetch_instance(&iid).expect(200).json;
    let resp = b
        .update(&iid, &json!({"service_id": plan.service_id}), false)
        .expect(200);
    assert_eq!(resp.json, json!({}), "{}", resp.body);
    let resp = b
        .update(
            &iid,
            &json!({"service_id": plan.service_id, "plan_id": plan.plan_id, "parameters": before["parameters"]}),
            false,
        )
        .expect(200);
    assert_eq!(resp.json, json!({}), "{}", resp.body);
    assert_eq!(b.fetch_instance(&iid).expect(200).json, before);
}

#[test]
fn a_plan_change_to_another_plan_of_the_service_is_applied() {
    let b = shared();
    let plans = b.plans();
    let all = plans.catalog.plans();
    let Some((from, to)) = all.iter().filter(|p| p.plan_updateable()).find_map(|from| {
        all.iter()
            .find(|to| to.service_id == from.service_id && to.plan_id != from.plan_id)
            .map(|to| (from.clone(), to.clone()))
    }) else {
        panic!(
            "the default catalog should have a plan_updateable plan with a sibling plan: {}",
            plans.catalog.json
        );
    };
    let iid = new_id();
    provision_ready(&b, &from, &iid);
    let current = b.fetch_instance(&iid).expect(200).json;
    let mut body = json!({
        "service_id": from.service_id,
        "plan_id": to.plan_id,
        "previous_values": {"plan_id": from.plan_id, "service_id": from.service_id},
    });
    // Parameters valid for the target plan, in case it requires some.
    let needed = to.valid_parameters("service_instance", "update");
    if needed.as_object().is_some_and(|m| !m.is_empty()) {
        let mut merged = current["parameters"].clone();
        for (k, v) in needed.as_object().unwrap() {
            merged[k] = v.clone();
        }
        body["parameters"] = merged;
    }
    apply_update(&b, &iid, &body);
    let after = b.fetch_instance(&iid).expect(200);
    assert_eq!(after.json["plan_id"], json!(to.plan_id), "{}", after.body);
    if let Some(version) = to.maintenance_version() {
        assert_eq!(
            after.json["maintenance_info"]["version"],
            json!(version),
            "{}",
            after.body
        );
    }
    let resp = b.deprovision(&iid, &to, true).expect_one_of(&[200, 202]);
    if resp.status == 202 {
        b.wait_instance_operation(&iid, &resp.operation());
    }
}

#[test]
fn a_plan_change_from_a_plan_that_is_not_updateable_is_refused() {
    let b = shared();
    let plans = b.plans();
    let all = plans.catalog.plans();
    let Some((from, to)) = all
        .iter()
        .filter(|p| !p.plan_updateable())
        .find_map(|from| {
            all.iter()
                .find(|to| to.service_id == from.service_id && to.plan_id != from.plan_id)
                .map(|to| (from.clone(), to.clone()))
        })
    else {
        eprintln!("every plan with a sibling is plan_updateable; nothing to check");
        return;
    };
    let iid = new_id();
    provision_ready(&b, &from, &iid);
    let resp = b.update(
        &iid,
        &json!({"service_id": from.service_id, "plan_id": to.plan_id}),
        true,
    );
    assert!(
        resp.status == 400 || resp.status == 422,
        "plan change from non-updateable plan {}: expected 400/422, got {} {}",
        from.name,
        resp.status,
        resp.body
    );
    resp.assert_osb_error_body();
    assert_eq!(
        b.fetch_instance(&iid).expect(200).json["plan_id"],
        json!(from.plan_id)
    );
}

#[test]
fn an_update_to_a_plan_that_does_not_exist_is_400() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    provision_ready(&b, &plan, &iid);
    b.update(
        &iid,
        &json!({"service_id": plan.service_id, "plan_id": "no-such-plan"}),
        true,
    )
    .expect_error(400);
    b.update(
        &iid,
        &json!({"service_id": "no-such-service", "plan_id": plan.plan_id}),
        true,
    )
    .expect_error(400);
    assert_eq!(
        b.fetch_instance(&iid).expect(200).json["plan_id"],
        json!(plan.plan_id)
    );
}

#[test]
fn a_maintenance_info_version_that_does_not_match_the_catalog_is_422_maintenance_info_conflict() {
    let b = shared();
    let plans = b.plans();
    let plan = plans
        .catalog
        .plans()
        .into_iter()
        .find(|p| {
            p.maintenance_version().is_some()
                && (p.plan_id == plans.sync.plan_id || p.plan_id == plans.asynchronous.plan_id)
        })
        .or_else(|| {
            plans
                .catalog
                .plans()
                .into_iter()
                .find(|p| p.maintenance_version().is_some())
        })
        .unwrap_or_else(|| plans.sync.clone());
    let iid = new_id();

    // On provision: nothing is created.
    let mut body = plan.provision_body(plan.provision_parameters());
    body["maintenance_info"] = json!({"version": "99.99.99-e2e"});
    b.provision(&iid, &body, true)
        .expect_error_code(422, "MaintenanceInfoConflict");
    assert!(b.store_keys_mentioning(&iid).is_empty());

    // On update: nothing changes.
    provision_ready(&b, &plan, &iid);
    let before = b.fetch_instance(&iid).expect(200).json;
    b.update(
        &iid,
        &json!({"service_id": plan.service_id, "maintenance_info": {"version": "99.99.99-e2e"}}),
        true,
    )
    .expect_error_code(422, "MaintenanceInfoConflict");
    assert_eq!(b.fetch_instance(&iid).expect(200).json, before);

    // The catalog's own version is accepted.
    if let Some(version) = plan.maintenance_version() {
        let resp = b.update(
            &iid,
            &json!({"service_id": plan.service_id, "maintenance_info": {"version": version}}),
            true,
        );
        assert!(
            resp.status == 200 || resp.status == 202,
            "{} {}",
            resp.status,
            resp.body
        );
        if resp.status == 202 {
            b.wait_instance_operation(&iid, &resp.operation());
        }
        let iid2 = new_id();
        let mut body = plan.provision_body(plan.provision_parameters());
        body["maintenance_info"] = json!({"version": version});
        provision_with(&b, &iid2, &body);
    }
}

fn provision_with(b: &Broker, iid: &str, body: &serde_json::Value) {
    let resp = b.provision(iid, body, true);
    if resp.status == 202 {
        let done = b
            .wait_instance_operation(iid, &resp.operation())
            .expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
    } else {
        resp.expect(201);
    }
}

#[test]
fn updating_an_instance_that_does_not_exist_is_400() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    b.update(
        &iid,
        &json!({"service_id": plan.service_id, "parameters": plan.provision_parameters()}),
        true,
    )
    .expect_error(400);
    assert!(b.store_keys_mentioning(&iid).is_empty());
}

#[test]
fn an_update_while_an_asynchronous_operation_is_in_progress_is_422_concurrency_error() {
    let b = shared();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    let op = b.provision(&iid, &body, true).expect(202).operation();

    // During provisioning.
    let changed =
        plan.changed_parameters("service_instance", "update", &plan.provision_parameters());
    b.update(
        &iid,
        &json!({"service_id": plan.service_id, "parameters": changed}),
        true,
    )
    .expect_error_code(422, "ConcurrencyError");
    b.wait_instance_operation(&iid, &op).expect(200);

    // During an asynchronous update.
    let update = json!({"service_id": plan.service_id, "parameters": changed});
    let resp = b.update(&iid, &update, true);
    if resp.status == 200 {
        eprintln!(
            "updates of plan {} are synchronous; cannot hold one in progress",
            plan.name
        );
        return;
    }
    let update_op = resp.expect(202).operation();
    // The identical update again: 202 with the same operation.
    assert_eq!(
        b.update(&iid, &update, true).expect(202).operation(),
        update_op
    );
    let other = plan.changed_parameters("service_instance", "update", &changed);
    b.update(
        &iid,
        &json!({"service_id": plan.service_id, "parameters": other}),
        true,
    )
    .expect_error_code(422, "ConcurrencyError");
    // Deprovision and bind wait too.
    b.deprovision(&iid, &plan, true)
        .expect_error_code(422, "ConcurrencyError");
    let done = b.wait_instance_operation(&iid, &update_op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    let fetched = b.fetch_instance(&iid).expect(200);
    for (name, value) in changed.as_object().unwrap() {
        assert_eq!(fetched.json["parameters"][name], *value, "{}", fetched.body);
    }
    let op = b.deprovision(&iid, &plan, true).expect(202).operation();
    b.wait_instance_operation(&iid, &op);
}

#[test]
fn an_asynchronous_update_without_accepts_incomplete_is_422_async_required() {
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
    let before = b.fetch_instance(&iid).expect(200).json;
    let changed = plan.changed_parameters("service_instance", "update", &before["parameters"]);
    let resp = b.update(
        &iid,
        &json!({"service_id": plan.service_id, "parameters": changed}),
        false,
    );
    if resp.status == 200 {
        eprintln!("updates of plan {} are synchronous", plan.name);
        return;
    }
    resp.expect_error_code(422, "AsyncRequired");
    assert_eq!(b.fetch_instance(&iid).expect(200).json, before);
}
