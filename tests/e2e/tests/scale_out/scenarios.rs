//! The scenarios the workers run concurrently; each records what it expects at the end.

use super::*;

pub struct Plans {
    pub sync: Plan,
    pub asynchronous: Plan,
    pub cache: Plan,
    pub database: Plan,
}

/// Sync plan, full lifecycle: 3 identical provisions at once on 3 hosts, a conflicting
/// provision, 2 identical binds, a conflicting bind, 2 unbinds, 2 deprovisions, repeats.
pub fn sync_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "sync-lifecycle";
    let plan = &p.sync;
    let iid = new_id();
    let params = json!({"size": 1, "username_prefix": "life"});
    let body = plan.provision_body(params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, false)));
    identical_creations(&got, &[201, 200], 201, &format!("{S} provision {iid}"));
    f.provision(None, &iid, &plan.provision_body(json!({"size": 2})), false)
        .must(&[409], "a provision with different parameters conflicts");
    let fetched = f.fetch_instance(None, &iid).must(&[200], "fetch");
    assert_eq!(fetched.json["parameters"], params, "{}", fetched.body);

    let bid = new_id();
    let bind_body = plan.bind_body(json!({"role": "read-only"}));
    let binds = f.fan(2, |i| {
        f.settle(|| f.bind(Some(i + 1), &iid, &bid, &bind_body, false))
    });
    identical_creations(&binds, &[201, 200], 201, &format!("{S} bind {bid}"));
    let creds: BTreeSet<String> = binds
        .iter()
        .map(|g| g.json["credentials"].to_string())
        .collect();
    assert_eq!(
        creds.len(),
        1,
        "identical binds return one credential set: {creds:?}"
    );
    f.bind(
        None,
        &iid,
        &bid,
        &plan.bind_body(json!({"role": "read-write"})),
        false,
    )
    .must(&[409], "a bind with different parameters conflicts");
    let fetched = f
        .fetch_binding(None, &iid, &bid)
        .must(&[200], "fetch binding");
    assert!(creds.contains(&fetched.json["credentials"].to_string()));

    let unbinds = f.fan(2, |i| {
        f.settle(|| f.unbind(Some(i + 2), &iid, &bid, plan, false))
    });
    identical_creations(&unbinds, &[200, 410], 200, &format!("{S} unbind {bid}"));
    f.unbind(None, &iid, &bid, plan, false)
        .must(&[410], "a repeated unbind is 410 Gone");
    f.fetch_binding(None, &iid, &bid)
        .must(&[404], "an unbound binding is not found");

    let deletes = f.fan(2, |i| {
        f.settle(|| f.deprovision(Some(i), &iid, plan, false))
    });
    identical_creations(
        &deletes,
        &[200, 410],
        200,
        &format!("{S} deprovision {iid}"),
    );
    f.deprovision(None, &iid, plan, false)
        .must(&[410], "a repeated deprovision is 410 Gone");
    f.instance_last_op(None, &iid, None)
        .must(&[410], "last_operation of a deleted instance");
    f.expect_instance(S, &iid, plan, Final::Gone, None);
    f.expect_binding(S, &iid, &bid, Final::Gone, None);
}

/// Sync plan, kept: 2 identical provisions, 2 identical binds.
pub fn sync_kept(f: &Fleet, p: &Plans) {
    const S: &str = "sync-kept";
    let plan = &p.sync;
    let iid = new_id();
    let params = json!({"size": 3});
    let body = plan.provision_body(params.clone());
    let got = f.fan(2, |i| {
        f.settle(|| f.provision(Some(i + 1), &iid, &body, false))
    });
    identical_creations(&got, &[201, 200], 201, &format!("{S} provision {iid}"));
    let bid = new_id();
    let bind_body = plan.bind_body(json!({}));
    let binds = f.fan(2, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, false))
    });
    identical_creations(&binds, &[201, 200], 201, &format!("{S} bind {bid}"));
    f.expect_instance(S, &iid, plan, Final::Ready(params), None);
    f.expect_binding(S, &iid, &bid, Final::Ready(json!({})), None);
}

/// Async plan, full lifecycle with polls on any host.
pub fn async_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "async-lifecycle";
    let plan = &p.asynchronous;
    let iid = new_id();
    let params = json!({"size": 2});
    let body = plan.provision_body(params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, true)));
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "async provisions");
    let done = f.wait_instance(&iid, &op, None);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    f.provision(None, &iid, &body, true)
        .must(&[200], "a repeat after success is 200");
    f.provision(None, &iid, &plan.provision_body(json!({"size": 1})), true)
        .must(&[409], "conflicting provision");

    let bid = new_id();
    let bind_body = plan.bind_body(json!({"role": "read-write"}));
    let binds = f.fan(2, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, true))
    });
    identical_creations(&binds, &[202, 200], 202, &format!("{S} bind {bid}"));
    let bop = one_operation(&binds, "async binds");
    let bound = f.wait_binding(&iid, &bid, &bop, None);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    f.fetch_binding(None, &iid, &bid)
        .must(&[200], "fetch binding");

    let unbinds = f.fan(2, |i| {
        f.settle(|| f.unbind(Some(i + 1), &iid, &bid, plan, true))
    });
    identical_creations(&unbinds, &[202, 410], 202, &format!("{S} unbind {bid}"));
    let uop = one_operation(&unbinds, "async unbinds");
    let unbound = f.wait_binding(&iid, &bid, &uop, None);
    assert!(
        unbound.status == 410 || unbound.json["state"] == "succeeded",
        "{}",
        unbound.body
    );
    f.binding_last_op(None, &iid, &bid, Some(&uop))
        .must(&[410], "unbound → 410");

    let deletes = f.fan(2, |i| {
        f.settle(|| f.deprovision(Some(i + 2), &iid, plan, true))
    });
    identical_creations(
        &deletes,
        &[202, 410],
        202,
        &format!("{S} deprovision {iid}"),
    );
    let dop = one_operation(&deletes, "async deprovisions");
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    f.instance_last_op(None, &iid, Some(&dop))
        .must(&[410], "deprovisioned → 410");
    f.deprovision(None, &iid, plan, true)
        .must(&[410], "repeated deprovision");
    f.expect_instance(S, &iid, plan, Final::Gone, None);
    f.expect_binding(S, &iid, &bid, Final::Gone, None);
}

/// Async plan, kept.
pub fn async_kept(f: &Fleet, p: &Plans) {
    const S: &str = "async-kept";
    let plan = &p.asynchronous;
    let iid = new_id();
    let params = json!({"username_prefix": "kept"});
    let body = plan.provision_body(params.clone());
    let got = f.fan(2, |i| {
        f.settle(|| f.provision(Some(i + 1), &iid, &body, true))
    });
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "async provisions");
    let done = f.wait_instance(&iid, &op, None);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let bid = new_id();
    let bind_body = plan.bind_body(json!({"role": "read-only"}));
    let bop = f
        .settle(|| f.bind(None, &iid, &bid, &bind_body, true))
        .must(&[202], "async bind")
        .operation();
    let bound = f.wait_binding(&iid, &bid, &bop, None);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    f.expect_instance(S, &iid, plan, Final::Ready(params), None);
    f.expect_binding(
        S,
        &iid,
        &bid,
        Final::Ready(json!({"role": "read-only"})),
        None,
    );
}

/// Async plan: a deprovision on another host while the provision is still running
/// cancels it; the provision's operation then polls as failed.
pub fn deprovision_during_provision(f: &Fleet, p: &Plans) {
    const S: &str = "deprovision-during-provision";
    let plan = &p.asynchronous;
    let iid = new_id();
    let body = plan.provision_body(json!({}));
    let first = f
        .settle(|| f.provision(Some(0), &iid, &body, true))
        .must(&[202], "provision");
    let op = first.operation();
    let dop = f
        .settle(|| f.deprovision(Some(1), &iid, plan, true))
        .must(&[202], "deprovision during provisioning")
        .operation();
    let cancelled = f
        .instance_last_op(Some(2), &iid, Some(&op))
        .must(&[200], "old operation");
    assert!(
        cancelled.json["state"] == "failed" || cancelled.uncertain,
        "the cancelled provision polls as failed: {}",
        cancelled.body
    );
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    f.provision(None, &iid, &body, true)
        .must(&[202], "the id can be used again");
    // ... and deleted again at once (both answers are fine; the end state is gone).
    let dop = f
        .settle(|| f.deprovision(None, &iid, plan, true))
        .must(&[202], "second deprovision")
        .operation();
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    f.expect_instance(S, &iid, plan, Final::Gone, None);
}

/// Sync plan: two different bodies for one new id race on different hosts. Exactly one
/// body wins everywhere; every request with the other body gets 409.
pub fn conflicting_creators(f: &Fleet, p: &Plans) {
    const S: &str = "conflicting-creators";
    let plan = &p.sync;
    let iid = new_id();
    let bodies = [json!({"size": 1}), json!({"size": 3})];
    let got = f.fan(4, |i| {
        let body = plan.provision_body(bodies[i % 2].clone());
        (i % 2, f.settle(|| f.provision(Some(i), &iid, &body, false)))
    });
    let winners: BTreeSet<usize> = got
        .iter()
        .filter(|(_, g)| g.status == 201 || g.status == 200)
        .map(|(b, _)| *b)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one body wins: {:?}",
        got.iter()
            .map(|(b, g)| (b, g.status, g.body.clone()))
            .collect::<Vec<_>>()
    );
    let winner = *winners.iter().next().unwrap();
    for (b, g) in &got {
        let expected: &[u16] = if *b == winner { &[201, 200] } else { &[409] };
        assert!(
            expected.contains(&g.status),
            "{S}: body {b} (winner {winner}) on host {} got {}: {}",
            g.host,
            g.status,
            g.body
        );
    }
    let fetched = f.fetch_instance(None, &iid).must(&[200], "fetch");
    assert_eq!(
        fetched.json["parameters"], bodies[winner],
        "{}",
        fetched.body
    );
    f.expect_instance(S, &iid, plan, Final::Ready(bodies[winner].clone()), None);
}

/// Sync plan: an id is deprovisioned, then re-provisioned by 3 identical requests at once.
pub fn reprovision_deleted_id(f: &Fleet, p: &Plans) {
    const S: &str = "reprovision-deleted-id";
    let plan = &p.sync;
    let iid = new_id();
    f.settle(|| f.provision(None, &iid, &plan.provision_body(json!({"size": 1})), false))
        .must(&[201, 200], "first life");
    f.settle(|| f.deprovision(None, &iid, plan, false))
        .must(&[200, 410], "first death");
    let params = json!({"size": 2, "username_prefix": "again"});
    let body = plan.provision_body(params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, false)));
    identical_creations(&got, &[201, 200], 201, &format!("{S} provision {iid}"));
    let fetched = f.fetch_instance(None, &iid).must(&[200], "fetch");
    assert_eq!(fetched.json["parameters"], params);
    f.expect_instance(S, &iid, plan, Final::Ready(params), None);
}

/// Kubernetes `cache` (async provision and bind), kept: identical provisions on every
/// host, a conflict, polls on any host while playing the kubelet, identical binds.
pub fn kube_cache_kept(f: &Fleet, p: &Plans) {
    const S: &str = "kube-cache-kept";
    let k = f.kube.as_ref().expect("cluster");
    let plan = &p.cache;
    let ns = format!("e2e-so-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let iid = new_id();
    let params = json!({"replicas": 1, "note": "scale-out"});
    let body = kube_body(plan, Some(&ns), params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, true)));
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "kube provisions");
    f.provision(
        None,
        &iid,
        &kube_body(plan, Some(&ns), json!({"replicas": 2})),
        true,
    )
    .must(&[409], "conflicting kube provision");
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let info = KubeInfo {
        plan: "cache".into(),
        namespace: ns.clone(),
    };
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let binds = f.fan(3, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, true))
    });
    identical_creations(&binds, &[202, 200], 202, &format!("{S} bind {bid}"));
    let bop = one_operation(&binds, "kube binds");
    let bound = f.wait_binding(&iid, &bid, &bop, Some(&ns));
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    f.expect_instance(S, &iid, plan, Final::Ready(params), Some(info.clone()));
    f.expect_binding(S, &iid, &bid, Final::Ready(json!({})), Some(info));
}

/// Kubernetes `cache`, full lifecycle; ends with no object left.
pub fn kube_cache_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "kube-cache-lifecycle";
    let k = f.kube.as_ref().expect("cluster");
    let plan = &p.cache;
    let ns = format!("e2e-so-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let iid = new_id();
    let body = kube_body(plan, Some(&ns), json!({}));
    let got = f.fan(2, |i| f.settle(|| f.provision(Some(i), &iid, &body, true)));
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "kube provisions");
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bop = f
        .settle(|| f.bind(None, &iid, &bid, &bind_body, true))
        .must(&[202], "kube bind")
        .operation();
    let bound = f.wait_binding(&iid, &bid, &bop, Some(&ns));
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    let unbinds = f.fan(2, |i| {
        f.settle(|| f.unbind(Some(i), &iid, &bid, plan, true))
    });
    identical_creations(&unbinds, &[202, 410], 202, &format!("{S} unbind {bid}"));
    let uop = one_operation(&unbinds, "kube unbinds");
    let unbound = f.wait_binding(&iid, &bid, &uop, Some(&ns));
    assert!(
        unbound.status == 410 || unbound.json["state"] == "succeeded",
        "{}",
        unbound.body
    );
    let deletes = f.fan(3, |i| f.settle(|| f.deprovision(Some(i), &iid, plan, true)));
    identical_creations(
        &deletes,
        &[202, 410],
        202,
        &format!("{S} deprovision {iid}"),
    );
    let dop = one_operation(&deletes, "kube deprovisions");
    let gone = f.wait_instance(&iid, &dop, Some(&ns));
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    let info = KubeInfo {
        plan: "cache".into(),
        namespace: ns,
    };
    f.expect_instance(S, &iid, plan, Final::Gone, Some(info.clone()));
    f.expect_binding(S, &iid, &bid, Final::Gone, Some(info));
}

/// Kubernetes `database` (a namespace of its own, synchronous bind), kept.
pub fn kube_database_kept(f: &Fleet, p: &Plans) {
    const S: &str = "kube-database-kept";
    let plan = &p.database;
    let iid = new_id();
    let ns = format!("osb-{iid}");
    let body = kube_body(plan, None, json!({}));
    let got = f.fan(2, |i| {
        f.settle(|| f.provision(Some(i + 1), &iid, &body, true))
    });
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "kube provisions");
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let binds = f.fan(3, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, false))
    });
    identical_creations(&binds, &[201, 200], 201, &format!("{S} bind {bid}"));
    let info = KubeInfo {
        plan: "database".into(),
        namespace: ns,
    };
    f.expect_instance(S, &iid, plan, Final::Ready(json!({})), Some(info.clone()));
    f.expect_binding(S, &iid, &bid, Final::Ready(json!({})), Some(info));
}

/// Kubernetes `database`, provisioned then deprovisioned (its namespace goes too).
pub fn kube_database_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "kube-database-lifecycle";
    let plan = &p.database;
    let iid = new_id();
    let ns = format!("osb-{iid}");
    let body = kube_body(plan, None, json!({}));
    let op = f
        .settle(|| f.provision(None, &iid, &body, true))
        .must(&[202], "kube provision")
        .operation();
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let deletes = f.fan(2, |i| f.settle(|| f.deprovision(Some(i), &iid, plan, true)));
    identical_creations(
        &deletes,
        &[202, 410],
        202,
        &format!("{S} deprovision {iid}"),
    );
    let dop = one_operation(&deletes, "kube deprovisions");
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    let info = KubeInfo {
        plan: "database".into(),
        namespace: ns,
    };
    f.expect_instance(S, &iid, plan, Final::Gone, Some(info));
}

pub type Scenario = fn(&Fleet, &Plans);
