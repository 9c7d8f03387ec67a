//! Bindings beyond the basic lifecycle: rotation with `predecessor_binding_id`, several
//! bindings per instance, and binding requests that do not match their instance.

use spin_osb_e2e::{binding_key, json, new_id, shared, Broker, Plan};

fn ready_instance(b: &Broker, plan: &Plan) -> String {
    let iid = new_id();
    let resp = b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        true,
    );
    if resp.status == 202 {
        let done = b
            .wait_instance_operation(&iid, &resp.operation())
            .expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
    } else {
        resp.expect(201);
    }
    iid
}

/// Binds and waits; returns the credentials.
fn bind_ready(b: &Broker, iid: &str, bid: &str, body: &serde_json::Value) -> serde_json::Value {
    let resp = b.bind(iid, bid, body, true);
    if resp.status == 202 {
        let done = b
            .wait_binding_operation(iid, bid, &resp.operation())
            .expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
        b.fetch_binding(iid, bid).expect(200).json["credentials"].clone()
    } else {
        resp.expect(201).json["credentials"].clone()
    }
}

fn rotatable_plan(b: &Broker) -> Plan {
    let plans = b.plans();
    [plans.sync.clone(), plans.asynchronous.clone()]
        .into_iter()
        .chain(plans.catalog.plans())
        .find(|p| p.bindable() && p.binding_rotatable())
        .unwrap_or_else(|| {
            panic!(
                "the default catalog should have a bindable plan with binding_rotatable: true: {}",
                plans.catalog.json
            )
        })
}

#[test]
fn a_binding_can_be_rotated_and_both_bindings_stay_valid() {
    let b = shared();
    let plan = rotatable_plan(&b);
    let iid = ready_instance(&b, &plan);
    let b1 = new_id();
    let creds1 = bind_ready(&b, &iid, &b1, &plan.bind_body(plan.bind_parameters()));

    let b2 = new_id();
    let rotate = json!({
        "service_id": plan.service_id,
        "plan_id": plan.plan_id,
        "predecessor_binding_id": b1,
    });
    let resp = b.bind(&iid, &b2, &rotate, true);
    let creds2 = if resp.status == 202 {
        let done = b
            .wait_binding_operation(&iid, &b2, &resp.operation())
            .expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
        b.fetch_binding(&iid, &b2).expect(200).json["credentials"].clone()
    } else {
        resp.expect(201).json["credentials"].clone()
    };
    assert!(
        creds2.as_object().is_some_and(|c| !c.is_empty()),
        "{creds2}"
    );

    // Both are valid in parallel.
    let f1 = b.fetch_binding(&iid, &b1).expect(200);
    let f2 = b.fetch_binding(&iid, &b2).expect(200);
    assert_eq!(f1.json["credentials"], creds1);
    assert_eq!(f2.json["credentials"], creds2);
    // The successor remembers its predecessor.
    let record = b
        .store_json(&binding_key(&iid, &b2))
        .expect("successor record");
    assert_eq!(record["predecessor_binding_id"], json!(b1), "{record}");

    // Unbinding the predecessor leaves the successor.
    let resp = b.unbind(&iid, &b1, &plan, true);
    if resp.status == 202 {
        b.wait_binding_operation(&iid, &b1, &resp.operation());
    } else {
        resp.expect(200);
    }
    b.fetch_binding(&iid, &b1).expect_error(404);
    b.fetch_binding(&iid, &b2).expect(200);
}

#[test]
fn rotating_from_a_binding_that_does_not_exist_is_400() {
    let b = shared();
    let plan = rotatable_plan(&b);
    let iid = ready_instance(&b, &plan);
    let b2 = new_id();
    let missing = new_id();
    let resp = b
        .bind(
            &iid,
            &b2,
            &json!({"service_id": plan.service_id, "plan_id": plan.plan_id, "predecessor_binding_id": missing}),
            true,
        )
        .expect_error(400);
    assert!(
        resp.description().contains(&missing) || resp.description().contains("predecessor"),
        "the description should name the predecessor: {}",
        resp.body
    );
    assert!(b.store_json(&binding_key(&iid, &b2)).is_none());

    // A predecessor of another instance does not count either.
    let other = ready_instance(&b, &plan);
    let foreign = new_id();
    bind_ready(
        &b,
        &other,
        &foreign,
        &plan.bind_body(plan.bind_parameters()),
    );
    b.bind(
        &iid,
        &b2,
        &json!({"service_id": plan.service_id, "plan_id": plan.plan_id, "predecessor_binding_id": foreign}),
        true,
    )
    .expect_error(400);
    // Nor does a malformed id.
    b.bind(
        &iid,
        &b2,
        &json!({"service_id": plan.service_id, "plan_id": plan.plan_id, "predecessor_binding_id": "../x"}),
        true,
    )
    .expect_error(400);
    assert!(b.store_json(&binding_key(&iid, &b2)).is_none());
}

#[test]
fn an_instance_can_have_several_bindings_with_distinct_credentials() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = ready_instance(&b, &plan);
    let body = plan.bind_body(plan.bind_parameters());
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    let creds: Vec<_> = ids
        .iter()
        .map(|bid| bind_ready(&b, &iid, bid, &body))
        .collect();
    for (i, a) in creds.iter().enumerate() {
        for c in &creds[i + 1..] {
            assert_ne!(a, c, "each binding should get its own credentials");
        }
    }
    for (bid, c) in ids.iter().zip(&creds) {
        assert_eq!(
            &b.fetch_binding(&iid, bid).expect(200).json["credentials"],
            c
        );
    }
}

#[test]
fn a_bind_whose_service_or_plan_does_not_match_the_instance_is_400() {
    let b = shared();
    let plans = b.plans();
    let plan = &plans.sync;
    let iid = ready_instance(&b, plan);
    let bid = new_id();
    let mut body = plan.bind_body(plan.bind_parameters());
    body["plan_id"] = json!(plans.asynchronous.plan_id);
    b.bind(&iid, &bid, &body, true).expect_error(400);
    let mut body = plan.bind_body(plan.bind_parameters());
    body["service_id"] = json!("no-such-service");
    b.bind(&iid, &bid, &body, true).expect_error(400);
    assert!(b.store_json(&binding_key(&iid, &bid)).is_none());
}

/// A binding's credentials are served only while its instance exists: after the instance
/// is deprovisioned (here with the binding still in place), fetching the binding is 404.
#[test]
fn a_binding_of_a_deprovisioned_instance_is_not_served() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = ready_instance(&b, &plan);
    let bid = new_id();
    bind_ready(&b, &iid, &bid, &plan.bind_body(json!({})));
    b.fetch_binding(&iid, &bid).expect(200);
    b.deprovision(&iid, &plan, false).expect(200);
    let resp = b.fetch_binding(&iid, &bid).expect_error(404);
    assert!(!resp.body.contains("credentials"), "{}", resp.body);
}
