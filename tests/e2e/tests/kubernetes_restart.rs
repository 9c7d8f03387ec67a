//! The Kubernetes API goes away in the middle of an operation: polls keep answering
//! `in progress` (a transient failure never fails an operation), and the operation
//! finishes once the API is back. Own binary: it runs its own apiserver on the shared etcd.

use std::time::Duration;

use spin_osb_e2e::eventually;
use spin_osb_e2e::kube::cluster;
use spin_osb_e2e::{json, new_id, repo_root, Broker};

#[test]
fn an_operation_survives_the_api_server_restarting() {
    let c = cluster();
    let mut api = c.extra_apiserver(16444);
    let dir = tempfile::tempdir().expect("tmp");
    let b = Broker::start_with_options(c.broker_options(
        &repo_root().join("tests/catalogs/kubernetes"),
        &api.url(),
        &c.admin_token,
        dir.path(),
    ));
    let plan = b.catalog().plan_named("database").expect("plan");
    let iid = new_id();
    let ns = format!("osb-{iid}");
    let body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "e2e", "space_guid": "default",
        "context": {"platform": "kubernetes"}});
    let op = b.provision(&iid, &body, true).expect(202).operation();
    let k = c.admin();
    eventually("the namespace", Duration::from_secs(60), || {
        k.get(&format!("/apis/apps/v1/namespaces/{ns}/statefulsets/db"))
    });

    api.stop();
    for _ in 0..3 {
        let poll = b.instance_last_operation(&iid, Some(&op)).expect(200);
        assert_eq!(poll.json["state"], "in progress", "{}", poll.body);
        assert!(
            poll.json["description"]
                .as_str()
                .unwrap_or_default()
                .contains("cannot reach"),
            "{}",
            poll.body
        );
    }
    api.start();
    let done = eventually("the provision to finish", Duration::from_secs(90), || {
        k.make_pods_ready(&ns);
        let poll = b.instance_last_operation(&iid, Some(&op)).expect(200);
        (poll.json["state"] != "in progress").then_some(poll.json)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    let gone = b.deprovision(&iid, &plan, true).expect(202).operation();
    let last = b.wait_instance_operation(&iid, &gone);
    assert!(
        last.status == 410 || last.json["state"] == "succeeded",
        "{}",
        last.body
    );
    assert_eq!(b.instance_last_operation(&iid, Some(&gone)).status, 410);
}
