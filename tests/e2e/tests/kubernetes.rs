//! The Kubernetes backend end to end: `spin-osb up` with the Kubernetes test catalog
//! (tests/catalogs/kubernetes) against a real kube-apiserver + controller-manager over
//! HTTPS (token + the cluster's CA in the runtime config's `client_tls`). No kubelet runs:
//! the tests play it by marking pods ready, and set custom-resource status themselves.

use std::sync::OnceLock;
use std::time::Duration;

use spin_osb_e2e::eventually;
use spin_osb_e2e::kube::{cluster, Kube};
use spin_osb_e2e::{json, new_id, repo_root, Broker, Plan, Value};

const WAIT: Duration = Duration::from_secs(60);

fn catalog_dir() -> std::path::PathBuf {
    repo_root().join("tests/catalogs/kubernetes")
}

fn broker_with_token(token: &str) -> Broker {
    let c = cluster();
    let dir = tempfile::tempdir().expect("tmp").keep();
    Broker::start_with_options(c.broker_options(&catalog_dir(), &c.api_url, token, &dir))
}

/// One broker (admin token) for the tests of this binary.
fn broker() -> &'static Broker {
    static BROKER: OnceLock<&'static Broker> = OnceLock::new();
    BROKER.get_or_init(|| spin_osb_e2e::until_exit(broker_with_token(&cluster().admin_token)))
}

fn kube() -> Kube {
    cluster().admin()
}

fn plan(b: &Broker, name: &str) -> Plan {
    b.catalog()
        .plan_named(name)
        .unwrap_or_else(|| panic!("plan {name} in the test catalog"))
}

fn body(plan: &Plan, namespace: Option<&str>, parameters: Value) -> Value {
    let context = match namespace {
        Some(ns) => json!({"platform": "kubernetes", "namespace": ns, "clusterid": "e2e"}),
        None => json!({"platform": "kubernetes", "clusterid": "e2e"}),
    };
    // Kubernetes platforms send the cluster id and the namespace as organization and space.
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "e2e", "space_guid": namespace.unwrap_or("default"),
        "context": context, "parameters": parameters})
}

fn short(id: &str) -> &str {
    &id[..8]
}

/// A namespace for a context-namespace plan.
fn namespace() -> String {
    let ns = format!("e2e-{}", short(&new_id()));
    kube().create_namespace(&ns);
    ns
}

/// Polls last_operation, playing the kubelet in `namespace` between polls, until the
/// operation ends; returns the final answer.
fn wait_ready(b: &Broker, iid: &str, op: &str, namespace: &str) -> Value {
    let k = kube();
    eventually("the operation to finish", WAIT, || {
        k.make_pods_ready(namespace);
        let resp = b.instance_last_operation(iid, Some(op));
        assert_eq!(resp.status, 200, "{}", resp.body);
        (resp.json["state"] != "in progress").then_some(resp.json)
    })
}

fn deprovision_and_wait(b: &Broker, iid: &str, plan: &Plan) {
    let op = b.deprovision(iid, plan, true).expect(202).operation();
    let last = b.wait_instance_operation(iid, &op);
    assert!(
        last.status == 410 || last.json["state"] == "succeeded",
        "a deprovision ends as succeeded, then 410 Gone: {}",
        last.body
    );
    let gone = b.instance_last_operation(iid, Some(&op));
    assert_eq!(gone.status, 410, "{}", gone.body);
}

#[test]
fn a_cache_instance_goes_through_provision_bind_unbind_and_deprovision() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "cache");
    let ns = namespace();
    let iid = new_id();
    let name = format!("cache-{}", short(&iid));
    let note = "a: b\nkind: Secret\n---\nmetadata: {name: evil}";

    let op = b
        .provision(&iid, &body(&plan, Some(&ns), json!({"note": note})), true)
        .expect(202)
        .operation();
    let first = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(
        first.json["state"], "in progress",
        "no pod is ready yet: {}",
        first.body
    );
    assert!(first.header("retry-after").is_some());

    // Every object exists, labelled and annotated with the instance.
    let selector = format!("osb.spin-osb.dev/instance={iid}");
    for (path, expected) in [
        (
            format!("/api/v1/namespaces/{ns}/secrets"),
            vec![name.clone()],
        ),
        (
            format!("/api/v1/namespaces/{ns}/configmaps"),
            vec![format!("{name}-config")],
        ),
        (
            format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            vec![name.clone()],
        ),
        (
            format!("/api/v1/namespaces/{ns}/services"),
            vec![name.clone(), format!("{name}-metrics")],
        ),
    ] {
        let mut names: Vec<String> = k
            .list(&path, &selector)
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(names, expected, "{path}");
    }
    let deployment = k
        .get(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
        .expect("deployment");
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "spin-osb"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["osb.spin-osb.dev/instance-id"],
        iid.as_str()
    );
    assert!(
        deployment["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|m| m["manager"]
                .as_str()
                .is_some_and(|n| n.starts_with("spin-osb-"))
                && m["operation"] == "Apply")),
        "objects are created with server-side apply by the instance's spin-osb-… field manager"
    );
    // A parameter that looks like YAML is one plain value.
    let config = k
        .get(&format!("/api/v1/namespaces/{ns}/configmaps/{name}-config"))
        .expect("configmap");
    assert_eq!(config["data"]["note"], note);
    assert!(k
        .get(&format!("/api/v1/namespaces/{ns}/secrets/evil"))
        .is_none());

    let done = wait_ready(b, &iid, &op, &ns);
    assert_eq!(done["state"], "succeeded", "{done}");

    // Bind: a per-binding Secret is created, credentials come from the live objects.
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bop = b.bind(&iid, &bid, &bind_body, true).expect(202).operation();
    let bound = b.wait_binding_operation(&iid, &bid, &bop);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    let user_secret = format!("{name}-user-{}", short(&bid));
    let live_user = k
        .get(&format!("/api/v1/namespaces/{ns}/secrets/{user_secret}"))
        .expect("per-binding secret");
    assert_eq!(
        live_user["metadata"]["annotations"]["osb.spin-osb.dev/binding-id"],
        bid.as_str()
    );
    let fetched = b.fetch_binding(&iid, &bid).expect(200);
    let credentials = &fetched.json["credentials"];
    let service = k
        .get(&format!("/api/v1/namespaces/{ns}/services/{name}"))
        .expect("service");
    let secret = k
        .get(&format!("/api/v1/namespaces/{ns}/secrets/{name}"))
        .expect("secret");
    let decode = |v: &Value| {
        use base64::Engine as _;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(credentials["cluster_ip"], service["spec"]["clusterIP"]);
    assert_eq!(credentials["port"], "6379");
    assert_eq!(credentials["host"], format!("{name}.{ns}.svc"));
    assert_eq!(
        credentials["password"],
        decode(&secret["data"]["password"]).as_str()
    );
    assert_eq!(credentials["username"], format!("user-{}", short(&bid)));
    assert_eq!(
        credentials["user_password"],
        decode(&live_user["data"]["password"]).as_str()
    );
    assert!(credentials["password"].as_str().unwrap().len() >= 32);

    // Unbind removes the per-binding objects.
    let uop = b.unbind(&iid, &bid, &plan, true).expect(202).operation();
    let unbound = b.wait_binding_operation(&iid, &bid, &uop);
    assert!(
        unbound.status == 410 || unbound.json["state"] == "succeeded",
        "{}",
        unbound.body
    );
    assert_eq!(b.binding_last_operation(&iid, &bid, Some(&uop)).status, 410);
    assert!(k
        .get(&format!("/api/v1/namespaces/{ns}/secrets/{user_secret}"))
        .is_none());

    // Deprovision deletes everything the instance owns, and only then reports 410.
    deprovision_and_wait(b, &iid, &plan);
    for path in [
        format!("/api/v1/namespaces/{ns}/secrets/{name}"),
        format!("/api/v1/namespaces/{ns}/configmaps/{name}-config"),
        format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        format!("/api/v1/namespaces/{ns}/services/{name}"),
        format!("/api/v1/namespaces/{ns}/services/{name}-metrics"),
    ] {
        assert!(
            k.get(&path).is_none(),
            "{path} must be gone after deprovision"
        );
    }
    assert!(
        k.get(&format!("/api/v1/namespaces/{ns}")).is_some(),
        "the platform's namespace is not the broker's to delete"
    );
}

#[test]
fn an_update_changes_replicas_and_deletes_what_is_no_longer_rendered() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "cache");
    let ns = namespace();
    let iid = new_id();
    let name = format!("cache-{}", short(&iid));
    let op = b
        .provision(&iid, &body(&plan, Some(&ns), json!({"replicas": 1})), true)
        .expect(202)
        .operation();
    assert_eq!(wait_ready(b, &iid, &op, &ns)["state"], "succeeded");
    assert!(k
        .get(&format!("/api/v1/namespaces/{ns}/services/{name}-metrics"))
        .is_some());

    let update = json!({
        "service_id": plan.service_id,
        "plan_id": plan.plan_id,
        "parameters": {"replicas": 2, "metrics": false},
        "context": {"platform": "kubernetes", "namespace": ns, "clusterid": "e2e"},
    });
    let op = b.update(&iid, &update, true).expect(202).operation();
    let done = wait_ready(b, &iid, &op, &ns);
    assert_eq!(done["state"], "succeeded", "{done}");
    let deployment = k
        .get(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
        .expect("deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["status"]["availableReplicas"], 2);
    assert!(
        k.get(&format!("/api/v1/namespaces/{ns}/services/{name}-metrics"))
            .is_none(),
        "an object the update no longer renders is deleted"
    );
    assert_eq!(
        b.fetch_instance(&iid).expect(200).json["parameters"]["replicas"],
        2
    );
    deprovision_and_wait(b, &iid, &plan);
}

#[test]
fn a_deployment_past_its_progress_deadline_fails_the_provision_with_the_reason() {
    let b = broker();
    let plan = plan(b, "cache");
    let ns = namespace();
    let iid = new_id();
    let op = b
        .provision(
            &iid,
            &body(&plan, Some(&ns), json!({"progress_deadline": 1})),
            true,
        )
        .expect(202)
        .operation();
    // Nobody plays the kubelet: the deployment controller gives up after 1 s.
    let failed = b.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    let description = failed.json["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("timed out progressing") && description.contains("Deployment"),
        "{description}"
    );
    deprovision_and_wait(b, &iid, &plan);
}

#[test]
fn a_stateful_set_gets_a_namespace_of_its_own_that_deprovision_deletes() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "database");
    let iid = new_id();
    let ns = format!("osb-{iid}");
    let op = b
        .provision(&iid, &body(&plan, None, json!({})), true)
        .expect(202)
        .operation();
    let namespace = eventually("the instance namespace", WAIT, || {
        k.get(&format!("/api/v1/namespaces/{ns}"))
    });
    assert_eq!(
        namespace["metadata"]["labels"]["osb.spin-osb.dev/instance"],
        iid.as_str()
    );
    let in_progress = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(
        in_progress.json["state"], "in progress",
        "{}",
        in_progress.body
    );
    assert!(
        in_progress.json["description"]
            .as_str()
            .unwrap_or_default()
            .contains("StatefulSet"),
        "{}",
        in_progress.body
    );
    assert_eq!(wait_ready(b, &iid, &op, &ns)["state"], "succeeded");

    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bound = b.bind(&iid, &bid, &bind_body, false).expect(201);
    assert_eq!(
        bound.json["credentials"]["host"],
        format!("db-0.db.{ns}.svc")
    );
    assert_eq!(bound.json["credentials"]["port"], "5432");
    b.unbind(&iid, &bid, &plan, false).expect(200);

    deprovision_and_wait(b, &iid, &plan);
    assert!(k.get(&format!("/api/v1/namespaces/{ns}")).is_none());
}

#[test]
fn a_custom_resource_follows_the_plans_readiness_rules() {
    let b = broker();
    let k = kube();
    k.apply(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/caches.test.spin-osb.dev",
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "caches.test.spin-osb.dev"},
            "spec": {
                "group": "test.spin-osb.dev",
                "scope": "Namespaced",
                "names": {"plural": "caches", "singular": "cache", "kind": "Cache"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
                }]
            }
        }),
    );
    eventually("the CRD to be served", WAIT, || {
        k.raw("GET", "/apis/test.spin-osb.dev/v1", None)
            .filter(|(s, _)| *s == 200)
    });
    let plan = plan(b, "custom");

    // Ready once the declared condition holds.
    let iid = new_id();
    let path = format!("/apis/test.spin-osb.dev/v1/namespaces/osb-{iid}/caches/cache");
    let op = b
        .provision(&iid, &body(&plan, None, json!({})), true)
        .expect(202)
        .operation();
    eventually("the custom resource", WAIT, || k.get(&path));
    let pending = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(pending.json["state"], "in progress");
    k.patch_status(
        &path,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
    );
    let still = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(
        still.json["state"], "in progress",
        "both parts of the rule must hold"
    );
    k.patch_status(
        &path,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    let done = b.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    deprovision_and_wait(b, &iid, &plan);

    // Failed, with the resource's own message, once the failure rule holds.
    let iid = new_id();
    let path = format!("/apis/test.spin-osb.dev/v1/namespaces/osb-{iid}/caches/cache");
    let op = b
        .provision(&iid, &body(&plan, None, json!({})), true)
        .expect(202)
        .operation();
    eventually("the custom resource", WAIT, || k.get(&path));
    k.patch_status(
        &path,
        json!({"phase": "Failed", "message": "out of memory"}),
    );
    let failed = b.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    assert!(failed.json["description"]
        .as_str()
        .unwrap_or_default()
        .contains("out of memory"));
    deprovision_and_wait(b, &iid, &plan);
}

#[test]
fn an_existing_object_the_instance_does_not_own_is_a_conflict_not_adopted() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "cache");
    let ns = namespace();
    let iid = new_id();
    let name = format!("cache-{}", short(&iid));
    k.apply(
        &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"password": "theirs"}}),
    );
    let op = b
        .provision(&iid, &body(&plan, Some(&ns), json!({})), true)
        .expect(202)
        .operation();
    let failed = b.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    assert!(
        failed.json["description"]
            .as_str()
            .unwrap_or_default()
            .contains("not managed by"),
        "{}",
        failed.body
    );
    // Deprovision leaves the foreign object alone.
    deprovision_and_wait(b, &iid, &plan);
    let secret = k
        .get(&format!("/api/v1/namespaces/{ns}/secrets/{name}"))
        .expect("still there");
    assert!(secret["metadata"]["annotations"]
        .get("osb.spin-osb.dev/instance-id")
        .is_none());
}

/// Provisions `plan` with `parameters` in `ns` and waits for the operation to end.
fn provision_and_wait(b: &Broker, plan: &Plan, iid: &str, ns: &str, parameters: Value) -> Value {
    let op = b
        .provision(iid, &body(plan, Some(ns), parameters), true)
        .expect(202)
        .operation();
    b.wait_instance_operation(iid, &op).json
}

fn description(answer: &Value) -> &str {
    answer["description"].as_str().unwrap_or_default()
}

#[test]
fn two_instances_rendering_one_object_at_once_never_share_it() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "confined");
    for _ in 0..3 {
        let ns = namespace();
        let (first, second) = (new_id(), new_id());
        // Both see `shared-settings` absent and create it at the same moment.
        let answers = std::thread::scope(|scope| {
            let ids = [&first, &second];
            let handles = ids.map(|iid| {
                let (plan, ns) = (&plan, &ns);
                scope.spawn(move || provision_and_wait(b, plan, iid, ns, json!({})))
            });
            handles.map(|h| h.join().expect("provision thread"))
        });
        let states: Vec<&str> = answers
            .iter()
            .map(|a| a["state"].as_str().unwrap_or_default())
            .collect();
        let mut sorted = states.clone();
        sorted.sort();
        assert_eq!(sorted, ["failed", "succeeded"], "{answers:?}");
        let loser = answers.iter().find(|a| a["state"] == "failed").unwrap();
        assert!(description(loser).contains("not managed by"), "{loser}");
        let winner = if states[0] == "succeeded" {
            &first
        } else {
            &second
        };
        let live = k
            .get(&format!(
                "/api/v1/namespaces/{ns}/configmaps/shared-settings"
            ))
            .expect("the object");
        assert_eq!(live["data"]["owner"], json!(winner), "{live}");
        assert_eq!(
            live["metadata"]["annotations"]["osb.spin-osb.dev/instance-id"],
            json!(winner)
        );
        for iid in [&first, &second] {
            deprovision_and_wait(b, iid, &plan);
        }
        assert!(k
            .get(&format!(
                "/api/v1/namespaces/{ns}/configmaps/shared-settings"
            ))
            .is_none());
    }
}

#[test]
fn objects_are_confined_to_the_instances_namespace_and_named_as_kubernetes_requires() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "confined");
    let ns = namespace();
    let elsewhere = namespace();
    let cases = [
        (
            json!({"name": "mine", "namespace": elsewhere}),
            "the instance's objects live in",
        ),
        (
            json!({"name": "x?dryRun=All"}),
            "is not a valid object name",
        ),
        (
            json!({"name": "../secrets/x"}),
            "is not a valid object name",
        ),
    ];
    for (parameters, expected) in cases {
        let iid = new_id();
        let answer = provision_and_wait(b, &plan, &iid, &ns, parameters.clone());
        assert_eq!(answer["state"], "failed", "{parameters}: {answer}");
        assert!(
            description(&answer).contains(expected),
            "{parameters}: {answer}"
        );
        deprovision_and_wait(b, &iid, &plan);
    }
    assert!(
        k.list(
            &format!("/api/v1/namespaces/{elsewhere}/configmaps"),
            "app.kubernetes.io/managed-by=spin-osb"
        )
        .is_empty(),
        "nothing was created in another namespace"
    );
}

#[test]
fn a_binding_source_the_instance_does_not_own_is_never_read() {
    let b = broker();
    let k = kube();
    let plan = plan(b, "confined");
    let ns = namespace();
    k.apply(
        &format!("/api/v1/namespaces/{ns}/configmaps/theirs"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"owner": "someone else"}}),
    );
    let iid = new_id();
    let ready = provision_and_wait(b, &plan, &iid, &ns, json!({}));
    assert_eq!(ready["state"], "succeeded", "{ready}");
    let mut bind = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "bind_resource": {"app_guid": "app"}, "parameters": {"source": "theirs"}});
    let refused = b.bind(&iid, "b-theirs", &bind, true);
    assert!(
        refused.status >= 400 && refused.body.contains("not managed by"),
        "{} {}",
        refused.status,
        refused.body
    );
    assert!(!refused.body.contains("someone else"), "{}", refused.body);
    bind["parameters"] = json!({"source": "shared-settings"});
    let bound = b.bind(&iid, "b-own", &bind, true).expect(201);
    assert_eq!(
        bound.json["credentials"]["owner"],
        json!(iid),
        "{}",
        bound.body
    );
    deprovision_and_wait(b, &iid, &plan);
}

#[test]
fn a_token_without_rbac_grants_fails_the_operation_with_the_apis_reason() {
    let b = broker_with_token(&cluster().restricted_token);
    let plan = plan(&b, "database");
    let iid = new_id();
    let op = b
        .provision(&iid, &body(&plan, None, json!({})), true)
        .expect(202)
        .operation();
    let failed = b.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    let description = failed.json["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("403") && description.contains("forbidden"),
        "{description}"
    );
    assert!(
        !description.contains(&cluster().api_url) && !description.contains("cannot"),
        "users get the status and reason, not the API's address or raw message: {description}"
    );
    eventually("the API's address and message in the log", WAIT, || {
        let log = b.output.text();
        (log.contains(&cluster().api_url) && log.contains("cannot")).then_some(())
    });
    assert!(
        !b.output.text().contains(&cluster().restricted_token),
        "tokens are never logged"
    );
}

/// The shipped catalog's Kubernetes plans (catalog/kubernetes-*.yaml) against the cluster.
#[test]
fn the_default_catalogs_kubernetes_plans_provision_bind_and_deprovision() {
    let c = cluster();
    let dir = tempfile::tempdir().expect("tmp");
    let b = Broker::start_with_options(c.broker_options(
        &repo_root().join("catalog"),
        &c.api_url,
        &c.admin_token,
        dir.path(),
    ));
    let k = kube();
    for (service, plan_name, expected_keys) in [
        ("redis", "small", vec!["host", "password", "port", "uri"]),
        (
            "redis",
            "ha",
            vec!["host", "password", "port", "replicas_host", "uri"],
        ),
        (
            "postgresql",
            "small",
            vec!["database", "host", "password", "port", "uri", "username"],
        ),
    ] {
        let plan = b
            .catalog()
            .plans()
            .into_iter()
            .find(|p| p.name == plan_name && p.service["name"] == service)
            .unwrap_or_else(|| panic!("{service}/{plan_name} in catalog/"));
        let iid = new_id();
        let ns = format!("osb-{iid}");
        let op = b
            .provision(&iid, &body(&plan, None, json!({})), true)
            .expect(202)
            .operation();
        let done = wait_ready(&b, &iid, &op, &ns);
        assert_eq!(done["state"], "succeeded", "{service}/{plan_name}: {done}");

        let bid = new_id();
        let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
        let bound = b.bind(&iid, &bid, &bind_body, false).expect(201);
        let credentials = bound.json["credentials"].as_object().expect("credentials");
        let mut keys: Vec<&str> = credentials.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, expected_keys, "{service}/{plan_name}");
        assert!(credentials["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 32));
        assert!(credentials["host"].as_str().unwrap().contains(&ns));
        b.unbind(&iid, &bid, &plan, false).expect(200);

        deprovision_and_wait(&b, &iid, &plan);
        assert!(
            k.get(&format!("/api/v1/namespaces/{ns}")).is_none(),
            "{service}/{plan_name}"
        );
    }
}
