//! `spin-osb fleet upgrade` end to end against the real kube-apiserver: a plan's
//! `maintenance_info` changes with a new image and replica count; the CLI upgrades the
//! fleet canary first, is killed mid-run and resumed from the store, a user's update meanwhile
//! gets the ordinary 422, and a broken next version's canary fails and stops the run with
//! every other instance left as it was. (The BOSH half is in tests/bosh/fleet.rs.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use spin_osb_e2e::kube::{cluster, Kube};
use spin_osb_e2e::{compile_catalog, eventually, json, new_id, Broker, Plan, Value};

const OPERATOR_PASSWORD: &str = "operator-fleet-password";
const WAIT: Duration = Duration::from_secs(120);

/// A one-plan catalog whose Deployment runs `image` with `replicas`, at `version`.
fn catalog(dir: &Path, version: &str, image: &str, replicas: i64) -> PathBuf {
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
        .request("GET", "/metrics")
        .auth("operator", OPERATOR_PASSWORD)
        .version(None)
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
