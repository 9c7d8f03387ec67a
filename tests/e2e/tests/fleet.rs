//! `spin-osb fleet upgrade` end to end against the real kube-apiserver: a plan's
//! `maintenance_info` changes with a new image and replica count; the CLI upgrades the
//! fleet canary first, is killed mid-run and resumed from the store, a user's update meanwhile
//! gets the ordinary 422, and a broken next version's canary fails and stops the run with
//! every other instance left as it was. Orphans: objects and namespaces the broker made for
//! instances it no longer has are reported and, on request, deleted; nothing else is
//! touched; a stuck instance is listed and ended. (The BOSH half is in tests/bosh/fleet.rs.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use spin_osb_e2e::kube::{cluster, Kube};
use spin_osb_e2e::{compile_catalog, eventually, json, new_id, Broker, Plan, Value};

const OPERATOR_PASSWORD: &str = "operator-fleet-password";
const WAIT: Duration = Duration::from_secs(120);

/// A one-plan catalog whose Deployment runs `image` with `replicas`, at `version`.
fn catalog(dir: &Path, version: &str, image: &str, replicas: i64) -> PathBuf {
    catalog_with(dir, version, image, replicas, 600)
}

/// [`catalog`] whose operations fail after `max_polling` seconds.
fn catalog_with(
    dir: &Path,
    version: &str,
    image: &str,
    replicas: i64,
    max_polling: u64,
) -> PathBuf {
    let dir = dir.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        r#"services:
  - id: 5e1f0a52-7c3d-4d4b-9b7a-2c2e3f4af1e0
    name: fleet-web
    description: A web server the fleet upgrade suite upgrades.
    bindable: false
    instances_retrievable: true
    plan_updateable: true
    plans:
      - id: 5e1f0a52-7c3d-4d4b-9b7a-2c2e3f4af1e1
        name: web
        description: One Deployment; each maintenance version changes its image and replicas.
        maintenance_info: {{version: {version}}}
        maximum_polling_duration: {max_polling}
        backend:
          type: kubernetes
          namespace:
            name: "{{{{ context.namespace }}}}"
          manifests: |
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web-{{{{ instance_id[:8] }}}}
            spec:
              replicas: {replicas}
              selector:
                matchLabels: {{app: web-{{{{ instance_id[:8] }}}}}}
              template:
                metadata:
                  labels: {{app: web-{{{{ instance_id[:8] }}}}}}
                spec:
                  containers:
                    - name: web
                      image: {image}
"#
    );
    std::fs::write(dir.join("catalog.yaml"), yaml).unwrap();
    dir
}

/// The operator redeploys the broker with a new catalog (same store).
fn redeploy(b: &Broker, catalog: &Path) {
    compile_catalog(catalog, &b.state_dir.join("app").join("osb-catalog"));
    b.restart();
}

fn body(plan: &Plan, namespace: &str) -> Value {
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "e2e", "space_guid": namespace,
        "context": {"platform": "kubernetes", "namespace": namespace, "clusterid": "e2e"}})
}

fn deployment(k: &Kube, namespace: &str, iid: &str) -> Value {
    k.get(&format!(
        "/apis/apps/v1/namespaces/{namespace}/deployments/web-{}",
        &iid[..8]
    ))
    .expect("the instance's Deployment")
}

fn image_and_replicas(k: &Kube, namespace: &str, iid: &str) -> (Value, Value) {
    let d = deployment(k, namespace, iid);
    (
        d["spec"]["template"]["spec"]["containers"][0]["image"].clone(),
        d["spec"]["replicas"].clone(),
    )
}

#[test]
fn a_fleet_upgrade_goes_canary_first_survives_a_kill_and_stops_on_a_failing_canary() {
    let c = cluster();
    let k = c.admin();
    let tmp = tempfile::tempdir().unwrap();
    let v1 = catalog(tmp.path(), "1.0.0", "registry.example/web:1", 1);
    let b = Broker::start_with_options(
        c.broker_options(&v1, &c.api_url, &c.admin_token, tmp.path())
            .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD),
    );
    let plan = b.catalog().plan_named("web").expect("plan web");
    let ns = format!("fleet-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    for iid in &ids {
        let op = b
            .provision(iid, &body(&plan, &ns), true)
            .expect(202)
            .operation();
        let done = eventually("the provision", WAIT, || {
            k.make_pods_ready(&ns);
            let last = b.instance_last_operation(iid, Some(&op));
            (last.json["state"] != "in progress").then_some(last.json)
        });
        assert_eq!(done["state"], "succeeded", "{done}");
    }

    // 2.0.0: a new image and two replicas.
    redeploy(
        &b,
        &catalog(tmp.path(), "2.0.0", "registry.example/web:2", 2),
    );
    let (status, listed) = b
        .fleet(OPERATOR_PASSWORD, &["outdated"])
        .finish(WAIT, || {});
    assert!(status.success(), "{listed}");
    for iid in &ids {
        assert!(
            listed.contains(iid.as_str()),
            "{iid} is outdated:\n{listed}"
        );
    }

    // Killed once its canary's upgrade runs (no pod is ready, so it cannot finish yet).
    let first = b.fleet(
        OPERATOR_PASSWORD,
        &["upgrade", "--canaries", "1", "--max-in-flight", "2"],
    );
    first.wait_for("upgrading", WAIT, || {});
    let printed = first.kill();
    let canary = ids
        .iter()
        .find(|iid| printed.contains(&format!("upgrading {iid} (canary)")))
        .unwrap_or_else(|| panic!("a canary was started:\n{printed}"));
    // A user's update of the canary meanwhile is the ordinary ConcurrencyError.
    let user = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let refused = b.update(canary, &user, true).expect(422);
    assert_eq!(
        refused.json["error"], "ConcurrencyError",
        "{}",
        refused.body
    );

    // Run again: the same run resumes from the store and finishes, playing the kubelet.
    let (status, text) = b
        .fleet(OPERATOR_PASSWORD, &["upgrade", "--max-in-flight", "2"])
        .finish(WAIT, || {
            k.make_pods_ready(&ns);
        });
    assert!(status.success(), "{text}");
    assert!(text.contains("resumed"), "{text}");
    assert!(text.contains("3 upgraded, 0 failed"), "{text}");
    for iid in &ids {
        assert_eq!(
            image_and_replicas(&k, &ns, iid),
            (json!("registry.example/web:2"), json!(2)),
            "{iid}"
        );
        let fetched = b.fetch_instance(iid).expect(200);
        assert_eq!(
            fetched.json["maintenance_info"]["version"], "2.0.0",
            "{}",
            fetched.body
        );
    }

    // 3.0.0 is broken (the API refuses a negative replica count): its canary fails, the run
    // stops, and nothing else is touched.
    redeploy(
        &b,
        &catalog(tmp.path(), "3.0.0", "registry.example/web:3", -1),
    );
    let (status, text) = b
        .fleet(
            OPERATOR_PASSWORD,
            &[
                "upgrade",
                "--canaries",
                "1",
                "--attempts",
                "1",
                "--max-in-flight",
                "3",
            ],
        )
        .finish(WAIT, || {
            k.make_pods_ready(&ns);
        });
    assert!(
        !status.success(),
        "a failed canary fails the command:\n{text}"
    );
    assert!(text.contains("stopped: canary"), "{text}");
    assert!(text.contains("0 upgraded, 1 failed"), "{text}");
    for iid in &ids {
        assert_eq!(
            image_and_replicas(&k, &ns, iid),
            (json!("registry.example/web:2"), json!(2)),
            "{iid} is left on 2.0.0"
        );
        let fetched = b.fetch_instance(iid).expect(200);
        assert_eq!(
            fetched.json["maintenance_info"]["version"], "2.0.0",
            "{}",
            fetched.body
        );
    }
    let metrics = b
        .operator_request("GET", "/metrics", OPERATOR_PASSWORD)
        .send()
        .expect(200);
    let line = |outcome: &str| {
        format!(
            "spin_osb_operations_{outcome}_total{{kind=\"update\",service_id=\"{}\",plan_id=\"{}\",service=\"fleet-web\",plan=\"web\"}}",
            plan.service_id, plan.plan_id
        )
    };
    assert!(
        metrics.body.contains(&format!("{} 3", line("succeeded"))),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains(&format!("{} 1", line("failed"))),
        "{}",
        metrics.body
    );

    for iid in &ids {
        let op = b.deprovision(iid, &plan, true).expect(202).operation();
        let last = b.wait_instance_operation(iid, &op);
        assert!(
            last.status == 410 || last.json["state"] == "succeeded",
            "{}",
            last.body
        );
    }
}

/// An object as the broker `broker_id` marks its own, for `instance_id`.
fn marked(
    (kind, api_version): (&str, &str),
    name: &str,
    namespace: Option<&str>,
    broker_id: &str,
    instance_id: &str,
) -> Value {
    let mut metadata = json!({
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "spin-osb",
            "osb.spin-osb.dev/instance": instance_id, "osb.spin-osb.dev/broker": broker_id},
        "annotations": {"osb.spin-osb.dev/instance-id": instance_id},
    });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    if kind == "Deployment" {
        object["spec"] = json!({
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/x:1"}]}},
        });
    }
    object
}

#[test]
fn orphans_are_reported_and_deleted_on_request_and_stuck_instances_ended() {
    let c = cluster();
    let k = c.admin();
    let tmp = tempfile::tempdir().unwrap();
    let dir = catalog_with(tmp.path(), "1.0.0", "registry.example/web:1", 1, 3);
    let b = Broker::start_with_options(
        c.broker_options(&dir, &c.api_url, &c.admin_token, tmp.path())
            .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD),
    );
    let plan = b.catalog().plan_named("web").expect("plan web");
    let ns = format!("orphans-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let live = new_id();
    let op = b
        .provision(&live, &body(&plan, &ns), true)
        .expect(202)
        .operation();
    let done = eventually("the provision", WAIT, || {
        k.make_pods_ready(&ns);
        let last = b.instance_last_operation(&live, Some(&op));
        (last.json["state"] != "in progress").then_some(last.json)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    // Never made ready, and nobody polls it: stuck once its 3 s are over.
    let stuck = new_id();
    b.provision(&stuck, &body(&plan, &ns), true).expect(202);

    // Left behind by instances the broker no longer has, and things that are not its own:
    // unlabelled, and another broker's (sharing the cluster).
    let report = b
        .operator_request("GET", "/operator/orphans", OPERATOR_PASSWORD)
        .send()
        .expect(200);
    let broker_id = report.json["broker_id"]
        .as_str()
        .expect("broker_id")
        .to_string();
    let gone = new_id();
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let deployment_kind = ("Deployment", "apps/v1");
    let orphan = format!("web-orphan-{}", &gone[..8]);
    let object = marked(deployment_kind, &orphan, Some(&ns), &broker_id, &gone);
    k.apply(&format!("{deployments}/{orphan}"), object);
    let orphan_ns = format!("osb-{}", &gone[..8]);
    let object = marked(("Namespace", "v1"), &orphan_ns, None, &broker_id, &gone);
    k.apply(&format!("/api/v1/namespaces/{orphan_ns}"), object);
    let mut foreign = marked(deployment_kind, "not-ours", Some(&ns), &broker_id, &gone);
    foreign["metadata"]["labels"] = json!({"app": "not-ours"});
    k.apply(&format!("{deployments}/not-ours"), foreign);
    let theirs = marked(
        deployment_kind,
        "another-brokers",
        Some(&ns),
        "0123456789abcdef",
        &gone,
    );
    k.apply(&format!("{deployments}/another-brokers"), theirs);
    std::thread::sleep(Duration::from_secs(4));

    let (status, text) = b.fleet(OPERATOR_PASSWORD, &["orphans"]).finish(WAIT, || {});
    assert!(status.success(), "{text}");
    assert!(
        text.contains(&format!("Deployment {ns}/{orphan}")),
        "{text}"
    );
    assert!(text.contains(&format!("Namespace {orphan_ns}")), "{text}");
    assert!(text.contains(&format!("stuck: {stuck}")), "{text}");
    assert!(text.contains("2 orphan(s), 1 stuck instance(s)"), "{text}");
    for left_alone in ["not-ours", "another-brokers", &live[..8]] {
        assert!(
            !text.contains(left_alone),
            "{left_alone} is not an orphan:\n{text}"
        );
    }
    assert!(
        k.get(&format!("{deployments}/{orphan}")).is_some(),
        "reporting deletes nothing"
    );

    let (status, text) = b
        .fleet(OPERATOR_PASSWORD, &["orphans", "--delete"])
        .finish(WAIT, || {});
    assert!(status.success(), "{text}");
    assert!(text.contains(&format!("{stuck}: failed")), "{text}");
    eventually("the orphan Deployment to go", WAIT, || {
        k.get(&format!("{deployments}/{orphan}"))
            .is_none()
            .then_some(())
    });
    let namespace = k.get(&format!("/api/v1/namespaces/{orphan_ns}"));
    assert!(
        namespace.is_none_or(|n| n["metadata"]["deletionTimestamp"].is_string()),
        "the orphan namespace is being deleted"
    );
    assert!(
        k.get(&format!("{deployments}/not-ours")).is_some(),
        "not the broker's: left alone"
    );
    assert!(
        k.get(&format!("{deployments}/another-brokers")).is_some(),
        "another broker's"
    );
    assert!(
        k.get(&format!("{deployments}/web-{}", &live[..8]))
            .is_some(),
        "alive: left alone"
    );
    let last = b.instance_last_operation(&stuck, None).expect(200);
    assert_eq!(last.json["state"], "failed", "{}", last.body);
    let (_, text) = b.fleet(OPERATOR_PASSWORD, &["orphans"]).finish(WAIT, || {});
    assert!(text.contains("0 orphan(s), 0 stuck instance(s)"), "{text}");

    for iid in [&live, &stuck] {
        let op = b.deprovision(iid, &plan, true).expect(202).operation();
        let last = b.wait_instance_operation(iid, &op);
        assert!(
            last.status == 410 || last.json["state"] == "succeeded",
            "{}",
            last.body
        );
    }
    k.delete(&format!("{deployments}/not-ours"));
    k.delete(&format!("{deployments}/another-brokers"));
}
