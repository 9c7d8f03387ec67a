//! Quotas through the broker: exact under concurrency, slots given back by deprovisions,
//! failed provisions and lost creation races, per-tenant limits from the OSB context, and
//! refusals that say which limit was reached.

use super::*;

/// The test catalog with quotas: the broker's, the main service's and the sync plan's.
fn quota_catalog(plan: &str) -> Catalog {
    let sync = "        description: Synchronous, rotatable, bindings live an hour.\n";
    let asynchronous = "        description: Every operation takes ten seconds.\n";
    let yaml = format!("quotas: {{instances: 100, per_organization: 60}}\n{CATALOG}")
        .replace(sync, &format!("{sync}        quotas: {plan}\n"))
        .replace(asynchronous, &format!("{asynchronous}        quotas: {{instances: 2}}\n"))
        .replace("    plan_updateable: true\n    plans:\n      - id: plan-sync", "    plan_updateable: true\n    quotas: {instances: 50}\n    plans:\n      - id: plan-sync");
    Catalog::from_yaml_documents(&[("catalog.yaml", &yaml)]).expect("catalog with quotas")
}

fn quota_world(plan: &str) -> World {
    World {
        catalog: quota_catalog(plan),
        ..world()
    }
}

/// A provision of the sync plan in `space` of organization `org`.
fn provision_in(w: &World, iid: &str, org: &str, space: &str) -> OsbResponse {
    let mut body = provision_body(SYNC);
    body["organization_guid"] = json!(org);
    body["space_guid"] = json!(space);
    body["context"]["organization_guid"] = json!(org);
    body["context"]["space_guid"] = json!(space);
    w.put(iid, body, false)
}

#[test]
fn fifty_concurrent_provisions_against_a_limit_of_ten_create_exactly_ten() {
    let w = quota_world("{instances: 10}");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let responses = at_once(50, || {
        let n = next.fetch_add(1, Ordering::SeqCst);
        w.provision(&format!("i{n}"), SYNC)
    });
    let created = responses.iter().filter(|r| r.status == 201).count();
    let refused: Vec<&OsbResponse> = responses.iter().filter(|r| r.status == 422).collect();
    assert_eq!((created, refused.len()), (10, 40));
    assert!(body_text(refused[0]).contains("plan sync's quota of 10 instances is reached"));
    let live = w
        .record_keys()
        .iter()
        .filter(|k| k.starts_with("osb/v1/instance/"))
        .count();
    assert_eq!(live, 10, "refused provisions store nothing");

    // A deprovision frees its slot, and the slot can be taken again.
    let first = (0..50)
        .map(|n| format!("i{n}"))
        .find(|iid| w.fetch(iid).status == 200)
        .unwrap();
    expect(w.provision("one-more", SYNC), 422);
    expect(w.deprovision(&first, SYNC), 200);
    expect(w.provision("one-more", SYNC), 201);
    expect(w.provision("and-another", SYNC), 422);
}

#[test]
fn identical_concurrent_provisions_take_one_slot() {
    let w = quota_world("{instances: 2}");
    let responses = at_once(20, || w.provision("same", SYNC));
    assert_eq!(responses.iter().filter(|r| r.status == 201).count(), 1);
    assert!(responses.iter().all(|r| r.status == 201 || r.status == 200));
    expect(w.provision("second", SYNC), 201);
    expect(w.provision("third", SYNC), 422);
}

#[test]
fn a_failed_provision_frees_its_slot() {
    let w = quota_world("{instances: 10}");
    expect(w.provision("a1", ASYNC), 202);
    expect(w.provision("a2", ASYNC), 202);
    let refused = expect(w.provision("a3", ASYNC), 422);
    assert!(body_text(&refused).contains("plan async's quota of 2 instances"));
    // a1 is never polled before its maximum polling duration: it fails, and frees its slot.
    w.env.advance(601);
    assert_eq!(body(&expect(w.last_op("a1", None), 200))["state"], "failed");
    expect(w.provision("a3", ASYNC), 202);
    // Deleting a failed instance gives nothing back twice.
    expect(w.deprovision("a1", ASYNC), 202);
    w.env.advance(DELAY);
    assert_eq!(
        body(&expect(w.last_op("a1", None), 200))["state"],
        "succeeded"
    );
    expect(w.provision("a4", ASYNC), 422);
}

#[test]
fn tenant_limits_count_per_organization_and_space_and_say_which() {
    let w = quota_world("{per_space: 2, per_organization: 3}");
    expect(provision_in(&w, "s1", "org-a", "space-1"), 201);
    expect(provision_in(&w, "s2", "org-a", "space-1"), 201);
    let refused = expect(provision_in(&w, "s3", "org-a", "space-1"), 422);
    assert!(
        body_text(&refused).contains("quota of 2 instances per space"),
        "{}",
        body_text(&refused)
    );
    expect(provision_in(&w, "s3", "org-a", "space-2"), 201);
    let refused = expect(provision_in(&w, "s4", "org-a", "space-3"), 422);
    assert!(body_text(&refused).contains("quota of 3 instances per organization"));
    // Another organization has its own.
    expect(provision_in(&w, "s4", "org-b", "space-9"), 201);
}

#[test]
fn the_service_and_broker_limits_apply_to_every_plan() {
    let catalog = quota_catalog("{instances: 1000}")
        .services()
        .iter()
        .find(|s| s.id == SVC)
        .and_then(|s| s.quotas.clone());
    assert_eq!(catalog.and_then(|q| q.instances), Some(50));
    let w = quota_world("{instances: 1000}");
    for n in 0..50 {
        expect(w.provision(&format!("i{n}"), SYNC), 201);
    }
    let refused = expect(w.provision("i50", SYNC), 422);
    assert!(
        body_text(&refused).contains("service main's quota of 50 instances"),
        "{}",
        body_text(&refused)
    );
    // GET /v2/catalog never shows quotas.
    let listed = expect(w.call(Endpoint::Catalog, "", "", &[], None), 200);
    assert!(!body_text(&listed).contains("quotas"));
}

#[test]
fn quotas_declared_twice_or_malformed_are_catalog_errors() {
    let twice = Catalog::from_yaml_documents(&[
        ("a.yaml", format!("quotas: {{instances: 1}}\n{CATALOG}")),
        (
            "b.yaml",
            "quotas: {instances: 2}\nservices: []\n".to_string(),
        ),
    ]);
    let error = twice.unwrap_err().to_string();
    assert!(error.contains("already declared in a.yaml"), "{error}");
    let bad = Catalog::from_yaml_documents(&[(
        "c.yaml",
        CATALOG.replace(
            "        description: Synchronous, rotatable, bindings live an hour.\n",
            "        description: x\n        quotas: {per_galaxy: 3}\n",
        ),
    )]);
    assert!(bad.unwrap_err().to_string().contains("per_galaxy"));
}

#[test]
fn quota_use_appears_in_the_operator_api_and_the_metrics() {
    let w = quota_world("{instances: 10, per_space: 4}");
    for n in 0..3 {
        expect(provision_in(&w, &format!("s{n}"), "org-a", "space-1"), 201);
    }
    let usage = |query: &[(&str, &str)]| {
        let answer = expect(w.operator("/operator/quotas", query), 200);
        body(&answer)["limits"].as_array().unwrap().clone()
    };
    let find = |limits: &[Value], scope: &str, tenant: &str| {
        limits
            .iter()
            .find(|l| l["scope"] == scope && l["tenant"] == tenant)
            .unwrap_or_else(|| panic!("{scope} {tenant} in {limits:?}"))
            .clone()
    };
    let all = usage(&[]);
    assert_eq!(find(&all, "plan", "all")["used"], 3);
    assert_eq!(find(&all, "plan", "all")["max"], 10);
    assert_eq!(find(&all, "service", "all")["used"], 3);
    assert_eq!(find(&all, "broker", "all")["used"], 3);
    assert_eq!(
        find(&all, "plan", "space")["used"],
        Value::Null,
        "no space named"
    );
    let space = usage(&[("space_guid", "space-1")]);
    assert_eq!(find(&space, "plan", "space")["used"], 3);
    assert_eq!(find(&space, "plan", "space")["max"], 4);

    let response = expect(w.operator("/metrics", &[]), 200);
    let text = body_text(&response);
    let line = "spin_osb_quota_used{scope=\"plan\",scope_id=\"plan-sync\"} 3";
    assert!(text.contains(line), "{text}");
    assert!(
        text.contains("spin_osb_quota_limit{scope=\"plan\",scope_id=\"plan-sync\"} 10"),
        "{text}"
    );
}

#[test]
fn a_plan_change_counts_against_the_target_plans_limit_and_gives_back_what_it_leaves() {
    let w = quota_world("{instances: 3}");
    for iid in ["s1", "s2", "s3"] {
        expect(w.provision(iid, SYNC), 201);
    }
    expect(w.provision("s4", SYNC), 422);
    let to_async = update_body(json!({ "plan_id": ASYNC }));
    expect(w.patch("s1", to_async.clone(), true), 202);
    expect(w.patch("s2", to_async.clone(), true), 202);
    let refused = expect(w.patch("s3", to_async.clone(), true), 422);
    assert!(
        body_text(&refused).contains("plan async's quota of 2 instances"),
        "{}",
        body_text(&refused)
    );
    assert_eq!(body(&expect(w.fetch("s3"), 200))["plan_id"], SYNC);
    // While they change, s1 and s2 still hold their slots of plan sync.
    expect(w.provision("s4", SYNC), 422);

    // s1's change succeeds: it gives back its slot of plan sync, keeps the one of async.
    w.env.advance(DELAY);
    let done = expect(w.last_op("s1", None), 200);
    assert_eq!(body(&done)["state"], "succeeded");
    expect(w.provision("s4", SYNC), 201);
    expect(w.provision("s5", SYNC), 422);

    // s2's change is never polled and fails at its deadline: it gives back the slot of
    // async it took, and stays (and counts) on sync.
    w.env.advance(601);
    let failed = expect(w.last_op("s2", None), 200);
    assert_eq!(body(&failed)["state"], "failed");
    assert_eq!(body(&expect(w.fetch("s2"), 200))["plan_id"], SYNC);
    expect(w.patch("s3", to_async, true), 202);
    expect(w.provision("s5", SYNC), 422);
    // A deprovision still gives back exactly the slots the instance holds.
    expect(w.deprovision("s4", SYNC), 200);
    expect(w.provision("s5", SYNC), 201);
}
