//! The whole life of a deployment, on UAA and basic-auth directors, and the shipped
//! catalog's BOSH plan.

use super::*;

#[test]
fn a_deployment_goes_through_its_whole_lifecycle_with_errands_on_uaa() {
    let s = setup(uaa());
    let b = &s.broker;
    let plan = plan(b, "redis");
    let iid = new_id();
    let name = deployment(&iid);

    let op = b
        .provision(
            &iid,
            &provision_body(&plan, json!({"maxmemory": "no\nkind: evil"})),
            true,
        )
        .expect(202)
        .operation();
    let done = b.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);

    // One deploy, then the post-deploy errand, both tagged with the operation id.
    let tasks: Vec<_> = s
        .sim
        .tasks()
        .into_iter()
        .filter(|t| t.deployment.as_deref() == Some(name.as_str()))
        .collect();
    let kinds: Vec<TaskKind> = tasks.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [TaskKind::UpdateDeployment, TaskKind::RunErrand],
        "{tasks:?}"
    );
    assert!(tasks.iter().all(|t| t.context_id == op), "{tasks:?}");
    let posted = s
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/deployments")
        .expect("a deploy request");
    assert_eq!(posted.content_type.as_deref(), Some("text/yaml"));
    assert_eq!(posted.auth, AuthKind::Bearer);
    let info = s.sim.deployment(&name).expect("deployment");
    assert_eq!(info.post_count, 1);
    let manifest: Value = serde_json::from_str(info.manifest.as_deref().unwrap()).unwrap();
    assert_eq!(manifest["name"], name.as_str());
    // A parameter that looks like YAML stays one string value in the manifest.
    assert_eq!(
        manifest["instance_groups"][0]["jobs"][0]["properties"]["maxmemory"],
        "no\nkind: evil"
    );
    assert_eq!(
        s.sim.token_grants(),
        1,
        "the UAA token is cached in the store"
    );

    // Bind: asynchronous, addresses from the vms task.
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bop = b.bind(&iid, &bid, &bind_body, true).expect(202).operation();
    let bound = b.wait_binding_operation(&iid, &bid, &bop);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    let credentials = b.fetch_binding(&iid, &bid).expect(200).json["credentials"].clone();
    let mut redis: Vec<_> = info
        .instances
        .iter()
        .filter(|i| i.group == "redis")
        .collect();
    redis.sort_by_key(|i| i.index);
    assert_eq!(credentials["host"], redis[0].ip.as_str());
    assert_eq!(
        credentials["hosts"],
        redis
            .iter()
            .map(|i| i.ip.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(credentials["deployment"], name.as_str());
    assert_eq!(
        credentials["password"],
        manifest["instance_groups"][0]["jobs"][0]["properties"]["password"]
    );
    b.unbind(&iid, &bid, &plan, true).expect(200);

    // Update: deploys again (secrets unchanged), errand again.
    let update = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "parameters": {"instances": 3}});
    let uop = b.update(&iid, &update, true).expect(202).operation();
    let updated = b.wait_instance_operation(&iid, &uop);
    assert_eq!(updated.json["state"], "succeeded", "{}", updated.body);
    let info = s.sim.deployment(&name).unwrap();
    assert_eq!(info.post_count, 2);
    let manifest2: Value = serde_json::from_str(info.manifest.as_deref().unwrap()).unwrap();
    assert_eq!(manifest2["instance_groups"][0]["instances"], 3);
    assert_eq!(
        manifest2["instance_groups"][0]["jobs"][0]["properties"]["password"],
        manifest["instance_groups"][0]["jobs"][0]["properties"]["password"],
        "generated secrets are stable across updates"
    );

    // Deprovision: the pre-delete errand, then the delete.
    let before = s.sim.tasks().len();
    deprovisioned(&s, &plan, &iid);
    let kinds: Vec<TaskKind> = s.sim.tasks()[before..].iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TaskKind::RunErrand, TaskKind::DeleteDeployment]);
    assert!(s.sim.deployment(&name).is_none());
}

#[test]
fn basic_auth_directors_get_basic_credentials() {
    let s = setup(SimConfig::basic(CLIENT, SECRET));
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    provisioned(&s, &plan, &iid);
    let authenticated: Vec<_> = s
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path != "/info")
        .collect();
    assert!(!authenticated.is_empty());
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bop = s
        .broker
        .bind(&iid, &bid, &bind_body, true)
        .expect(202)
        .operation();
    let bound = s.broker.wait_binding_operation(&iid, &bid, &bop);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    let host = s.broker.fetch_binding(&iid, &bid).expect(200).json["credentials"]["host"].clone();
    assert!(
        host.as_str().is_some_and(|h| h.starts_with("10.244.")),
        "{host}"
    );
    s.broker.unbind(&iid, &bid, &plan, true).expect(200);
    deprovisioned(&s, &plan, &iid);
    let requests = s.sim.requests();
    assert!(requests
        .iter()
        .filter(|r| r.path != "/info")
        .all(|r| r.auth == AuthKind::Basic && r.authenticated));
    assert_eq!(
        s.sim.token_grants(),
        0,
        "a basic-auth director is never asked for tokens"
    );
}

#[test]
fn deprovisioning_an_already_deleted_deployment_succeeds() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    provisioned(&s, &plan, &iid);
    let status = foreign_call(
        &s.sim,
        "DELETE",
        &format!("/deployments/{}", deployment(&iid)),
        "text/plain",
        "",
    );
    assert!(status == 302 || status == 303, "{status}");
    eventually(
        "the deployment to be deleted",
        Duration::from_secs(30),
        || s.sim.deployment(&deployment(&iid)).is_none().then_some(()),
    );
    deprovisioned(&s, &plan, &iid);
}

/// The shipped catalog's BOSH plan (catalog/redis-bosh.yaml).
#[test]
fn the_default_catalogs_bosh_plan_deploys_binds_and_deletes() {
    let s = setup_with(uaa(), repo_root().join("catalog"));
    let plan = s
        .broker
        .catalog()
        .plans()
        .into_iter()
        .find(|p| p.service["name"] == "redis-dedicated-vm")
        .expect("the BOSH plan of catalog/");
    let iid = new_id();
    provisioned(&s, &plan, &iid);
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bop = s
        .broker
        .bind(&iid, &bid, &bind_body, true)
        .expect(202)
        .operation();
    let bound = s.broker.wait_binding_operation(&iid, &bid, &bop);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    let credentials = s.broker.fetch_binding(&iid, &bid).expect(200).json["credentials"].clone();
    let vm = s.sim.deployment(&deployment(&iid)).unwrap().instances;
    let redis = vm.iter().find(|i| i.group == "redis").expect("a redis VM");
    assert_eq!(credentials["host"], redis.ip.as_str());
    assert!(credentials["uri"]
        .as_str()
        .unwrap()
        .starts_with("redis://:"));
    s.broker.unbind(&iid, &bid, &plan, true).expect(200);
    deprovisioned(&s, &plan, &iid);
}
