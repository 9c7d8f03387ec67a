//! Many identical requests at once: every one succeeds, and the store ends up with exactly
//! one record (the first-creator-wins claim in the key-value store).

use spin_osb_e2e::{
    binding_key, concurrently, instance_key, new_id, shared, status_histogram, Resp,
};

const PROVISIONS: usize = 50;
const BINDS: usize = 20;

fn assert_one_record(b: &spin_osb_e2e::Broker, prefix: &str, record_key: &str) {
    let keys = b.store_keys(prefix);
    let records: Vec<&String> = keys.iter().filter(|k| !k.contains("/claim/")).collect();
    assert_eq!(
        records,
        vec![record_key],
        "exactly one record expected under {prefix}; keys: {keys:?}"
    );
    let record = b.store_json(record_key).unwrap();
    assert_eq!(record["schema"], 1, "{record}");
    assert_eq!(record["status"], "ready", "{record}");
}

#[test]
fn fifty_identical_synchronous_provisions_at_once_all_succeed_with_one_record() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    let results: Vec<Resp> = {
        let iid = iid.clone();
        concurrently(PROVISIONS, move |_| {
            let b = shared();
            b.provision(&iid, &body, false)
        })
    };
    let histogram = status_histogram(&results);
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.status != 201 && r.status != 200)
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(
        bad.is_empty(),
        "every identical provision should be 201 or 200; got {histogram:?}; failures: {bad:#?}"
    );
    assert_eq!(
        histogram.get(&201).copied().unwrap_or(0),
        1,
        "exactly one of them created the instance (201), the others found it (200): {histogram:?}"
    );
    eprintln!("{PROVISIONS} concurrent synchronous provisions: {histogram:?}");
    let dashboards: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| {
            r.json
                .get("dashboard_url")
                .map(|d| d.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        dashboards.len(),
        1,
        "all answers describe the same instance: {dashboards:?}"
    );
    assert_one_record(&b, &instance_key(&iid), &instance_key(&iid));
    b.fetch_instance(&iid).expect(200);
}

#[test]
fn fifty_identical_asynchronous_provisions_at_once_share_one_operation_and_one_record() {
    let b = shared();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    let results: Vec<Resp> = {
        let iid = iid.clone();
        concurrently(PROVISIONS, move |_| {
            let b = shared();
            b.provision(&iid, &body, true)
        })
    };
    let histogram = status_histogram(&results);
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.status != 202)
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(
        bad.is_empty(),
        "every identical asynchronous provision should be 202; got {histogram:?}; failures: {bad:#?}"
    );
    let operations: std::collections::BTreeSet<String> =
        results.iter().map(Resp::operation).collect();
    assert_eq!(
        operations.len(),
        1,
        "all 202s must carry the same operation: {operations:?}"
    );
    let op = operations.into_iter().next().unwrap();
    let keys = b.store_keys(&instance_key(&iid));
    assert_eq!(
        keys.iter().filter(|k| !k.contains("/claim/")).count(),
        1,
        "one record expected; keys {keys:?}"
    );
    let done = b.wait_instance_operation(&iid, &op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    assert_one_record(&b, &instance_key(&iid), &instance_key(&iid));
}

#[test]
fn twenty_identical_binds_at_once_all_succeed_with_one_binding_record() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    let bid = new_id();
    let body = plan.bind_body(plan.bind_parameters());
    let results: Vec<Resp> = {
        let (iid, bid) = (iid.clone(), bid.clone());
        concurrently(BINDS, move |_| {
            let b = shared();
            b.bind(&iid, &bid, &body, false)
        })
    };
    let histogram = status_histogram(&results);
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.status != 201 && r.status != 200)
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(
        bad.is_empty(),
        "every identical bind should be 201 or 200; got {histogram:?}; failures: {bad:#?}"
    );
    eprintln!("{BINDS} concurrent binds: {histogram:?}");
    assert_eq!(
        histogram.get(&201).copied().unwrap_or(0),
        1,
        "exactly one of them created the binding (201), the others found it (200): {histogram:?}"
    );
    let credentials: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| r.json["credentials"].to_string())
        .collect();
    assert_eq!(
        credentials.len(),
        1,
        "every answer must carry the one binding's credentials: {credentials:?}"
    );
    assert_one_record(&b, &binding_key(&iid, &bid), &binding_key(&iid, &bid));
    let fetched = b.fetch_binding(&iid, &bid).expect(200);
    assert_eq!(
        fetched.json["credentials"].to_string(),
        *credentials.iter().next().unwrap()
    );
}

#[test]
fn twenty_identical_asynchronous_binds_at_once_share_one_operation() {
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
    let bid = new_id();
    let body = plan.bind_body(plan.bind_parameters());
    let results: Vec<Resp> = {
        let (iid, bid) = (iid.clone(), bid.clone());
        concurrently(BINDS, move |_| {
            let b = shared();
            b.bind(&iid, &bid, &body, true)
        })
    };
    let histogram = status_histogram(&results);
    let expected = results[0].status;
    assert!(
        results.iter().all(|r| r.status == expected)
            && (expected == 202 || expected == 201 || expected == 200),
        "identical asynchronous binds: {histogram:?}; {:#?}",
        results
            .iter()
            .map(|r| format!("{} {}", r.status, r.body))
            .collect::<Vec<_>>()
    );
    if expected == 202 {
        let operations: std::collections::BTreeSet<String> =
            results.iter().map(Resp::operation).collect();
        assert_eq!(operations.len(), 1, "{operations:?}");
        let op = operations.into_iter().next().unwrap();
        let done = b.wait_binding_operation(&iid, &bid, &op).expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
    }
    assert_one_record(&b, &binding_key(&iid, &bid), &binding_key(&iid, &bid));
}

#[test]
fn concurrent_provisions_of_different_instances_all_succeed() {
    let b = shared();
    let plan = b.plans().sync;
    let ids: Vec<String> = (0..20).map(|_| new_id()).collect();
    let body = plan.provision_body(plan.provision_parameters());
    let results: Vec<Resp> = {
        let ids = ids.clone();
        concurrently(ids.len(), move |i| {
            let b = shared();
            b.provision(&ids[i], &body, false)
        })
    };
    let histogram = status_histogram(&results);
    assert_eq!(
        histogram.get(&201).copied().unwrap_or(0),
        ids.len(),
        "every distinct instance is created: {histogram:?}: {:#?}",
        results
            .iter()
            .filter(|r| r.status != 201)
            .map(|r| &r.body)
            .collect::<Vec<_>>()
    );
    for iid in &ids {
        b.fetch_instance(iid).expect(200);
    }
}
