//! A synchronous plan from provision to deprovision, with the spec's idempotency and
//! conflict answers at every step.

use spin_osb_e2e::{binding_key, instance_key, json, new_id, query, shared, Value};

#[test]
fn a_synchronous_instance_and_binding_go_through_their_whole_lifecycle() {
    let b = shared();
    let plans = b.plans();
    let plan = &plans.sync;
    let iid = new_id();
    let params = plan.provision_parameters();
    let body = plan.provision_body(params.clone());

    // Provision: 201, then an identical request is 200 with the same answer.
    let created = b.provision(&iid, &body, false).expect(201);
    assert!(created.json.is_object(), "{}", created.body);
    assert!(
        created.json.get("operation").is_none(),
        "a synchronous 201 carries no operation: {}",
        created.body
    );
    if plan.has_dashboard_url() {
        let url = created.json["dashboard_url"].as_str().unwrap_or_default();
        assert!(
            url.contains(&iid),
            "the plan defines a dashboard_url; it should identify the instance: {}",
            created.body
        );
    } else {
        assert!(created
            .json
            .get("dashboard_url")
            .is_none_or(|u| u.is_string() || u.is_null()));
    }
    let again = b.provision(&iid, &body, false).expect(200);
    assert_eq!(
        again.json.get("dashboard_url"),
        created.json.get("dashboard_url"),
        "the repeated provision should describe the same instance"
    );
    // accepts_incomplete=true on a synchronous plan changes nothing.
    b.provision(&iid, &body, true).expect(200);

    // Same id, different attributes: 409.
    let mut other_params = body.clone();
    other_params["parameters"] = plan.changed_parameters("service_instance", "create", &params);
    b.provision(&iid, &other_params, false).expect_error(409);
    if let Some(other_plan) = plans
        .catalog
        .plans()
        .into_iter()
        .find(|p| p.service_id == plan.service_id && p.plan_id != plan.plan_id)
    {
        let mut other = body.clone();
        other["plan_id"] = json!(other_plan.plan_id);
        other["parameters"] = other_plan.provision_parameters();
        b.provision(&iid, &other, true).expect_error(409);
    }

    // Fetch: service, plan and parameters as provisioned.
    let fetched = b.fetch_instance(&iid).expect(200);
    assert_eq!(
        fetched.json["service_id"],
        json!(plan.service_id),
        "{}",
        fetched.body
    );
    assert_eq!(
        fetched.json["plan_id"],
        json!(plan.plan_id),
        "{}",
        fetched.body
    );
    assert_eq!(fetched.json["parameters"], params, "{}", fetched.body);
    assert_eq!(
        fetched.json.get("dashboard_url"),
        created.json.get("dashboard_url"),
        "{}",
        fetched.body
    );
    if let Some(version) = plan.maintenance_version() {
        assert_eq!(
            fetched.json["maintenance_info"]["version"],
            json!(version),
            "{}",
            fetched.body
        );
    }

    // The state file holds one ready record for it.
    let record = b.store_json(&instance_key(&iid)).expect("instance record");
    assert_eq!(record["schema"], 1, "{record}");
    assert_eq!(record["status"], "ready", "{record}");

    // Bind: 201 with credentials; identical again: 200 with the same credentials.
    let bid = new_id();
    let bind_params = plan.bind_parameters();
    let bind_body = plan.bind_body(bind_params.clone());
    let bound = b.bind(&iid, &bid, &bind_body, false).expect(201);
    let credentials = bound.json["credentials"].clone();
    assert!(
        credentials.as_object().is_some_and(|c| !c.is_empty()),
        "bind should return credentials: {}",
        bound.body
    );
    let bound_again = b.bind(&iid, &bid, &bind_body, false).expect(200);
    assert_eq!(bound_again.json["credentials"], credentials);

    // Same binding id, different parameters: 409.
    let mut different = bind_body.clone();
    different["parameters"] = plan.changed_parameters("service_binding", "create", &bind_params);
    b.bind(&iid, &bid, &different, false).expect_error(409);
    let mut different_app = bind_body.clone();
    different_app["bind_resource"]["app_guid"] = json!("another-app");
    b.bind(&iid, &bid, &different_app, false).expect_error(409);

    // Fetch the binding: the same credentials, and its parameters.
    let fetched = b.fetch_binding(&iid, &bid).expect(200);
    assert_eq!(fetched.json["credentials"], credentials, "{}", fetched.body);
    if let Some(p) = fetched.json.get("parameters") {
        assert_eq!(p, &bind_params, "{}", fetched.body);
    }

    // Unbind needs service_id and plan_id.
    let path = format!("/v2/service_instances/{iid}/service_bindings/{bid}");
    b.request("DELETE", &path).send().expect_error(400);
    b.request(
        "DELETE",
        &format!("{path}?{}", query(&[("service_id", &plan.service_id)])),
    )
    .send()
    .expect_error(400);
    b.request(
        "DELETE",
        &format!("{path}?{}", query(&[("plan_id", &plan.plan_id)])),
    )
    .send()
    .expect_error(400);
    b.fetch_binding(&iid, &bid).expect(200);

    // Unbind: 200 {}, then 410, and the binding is gone.
    let unbound = b.unbind(&iid, &bid, plan, false).expect(200);
    assert_eq!(unbound.json, json!({}), "{}", unbound.body);
    b.unbind(&iid, &bid, plan, false).expect_error(410);
    b.fetch_binding(&iid, &bid).expect_error(404);
    if let Some(record) = b.store_json(&binding_key(&iid, &bid)) {
        assert_eq!(record["status"], "deleted", "{record}");
        assert!(
            record.get("credentials").is_none_or(Value::is_null),
            "credentials should not outlive the binding: {record}"
        );
    }

    // Deprovision needs service_id and plan_id too.
    b.request("DELETE", &format!("/v2/service_instances/{iid}"))
        .send()
        .expect_error(400);
    b.fetch_instance(&iid).expect(200);

    // Deprovision: 200 {}, then 410; last_operation 410; fetch 404.
    let gone = b.deprovision(&iid, plan, false).expect(200);
    assert_eq!(gone.json, json!({}), "{}", gone.body);
    b.deprovision(&iid, plan, false).expect_error(410);
    b.instance_last_operation(&iid, None).expect_error(410);
    b.fetch_instance(&iid).expect_error(404);
}

#[test]
fn a_synchronous_provision_is_not_reported_as_an_operation_in_progress() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        true,
    )
    .expect(201);
    let last = b.instance_last_operation(&iid, None);
    // Platforms do not poll after a 201, but a poll must not claim the provision is
    // still running.
    if last.status == 200 {
        assert_eq!(last.state(), "succeeded", "{}", last.body);
    }
    b.deprovision(&iid, &plan, true).expect(200);
}

#[test]
fn binding_an_instance_that_does_not_exist_is_rejected() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    let bid = new_id();
    let resp = b.bind(&iid, &bid, &plan.bind_body(plan.bind_parameters()), false);
    assert!(
        resp.status == 400 || resp.status == 404,
        "bind on a missing instance: expected 400 or 404, got {}: {}",
        resp.status,
        resp.body
    );
    resp.assert_osb_error_body();
    assert!(
        b.store_keys_mentioning(&iid).is_empty(),
        "{:?}",
        b.store_keys_mentioning(&iid)
    );
}

#[test]
fn deprovisioning_and_unbinding_unknown_ids_are_410() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    b.deprovision(&iid, &plan, false).expect_error(410);
    b.deprovision(&iid, &plan, true).expect_error(410);
    b.unbind(&iid, &new_id(), &plan, false).expect_error(410);
    b.fetch_instance(&iid).expect_error(404);
    b.instance_last_operation(&iid, None).expect_error(404);
    b.binding_last_operation(&iid, &new_id(), None)
        .expect_error(404);
    assert!(b.store_keys_mentioning(&iid).is_empty());
}

#[test]
fn deprovision_with_a_service_or_plan_that_does_not_match_is_refused() {
    let b = shared();
    let plans = b.plans();
    let plan = &plans.sync;
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    let path = format!(
        "/v2/service_instances/{iid}?{}",
        query(&[
            ("service_id", &plan.service_id),
            ("plan_id", "no-such-plan")
        ])
    );
    b.request("DELETE", &path).send().expect_error(400);
    b.fetch_instance(&iid).expect(200);
    b.deprovision(&iid, plan, false).expect(200);
}

#[test]
fn a_deprovisioned_instance_id_can_be_provisioned_again() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    b.provision(&iid, &body, false).expect(201);
    b.deprovision(&iid, &plan, false).expect(200);
    b.provision(&iid, &body, false).expect(201);
    b.fetch_instance(&iid).expect(200);
    b.deprovision(&iid, &plan, false).expect(200);
}
