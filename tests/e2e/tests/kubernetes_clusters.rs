//! Several Kubernetes clusters end to end: two real, separate control planes (the suite's
//! `default` on 127.0.0.1 and `east` on 127.0.0.2, each with its own CA, tokens, storage
//! and controller-manager), one broker declaring both (`spin-osb clusters add east` on its
//! manifest, one `[[client_tls]]` per cluster), and the plans of
//! tests/catalogs/clusters choosing between them.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use spin_osb_e2e::kube::{cluster, clusters_options, second_cluster, Cluster, Kube};
use spin_osb_e2e::{
    compile_catalog, eventually, json, new_id, real_spin_bin, repo_root, Broker, Options, Plan,
    Value,
};

const EAST_PORT: u16 = 16543;
const OPERATOR_PASSWORD: &str = "operator-e2e-clusters";
const WAIT: Duration = Duration::from_secs(90);

fn catalog_dir() -> PathBuf {
    repo_root().join("tests/catalogs/clusters")
}

fn east() -> &'static Cluster {
    static EAST: OnceLock<Cluster> = OnceLock::new();
    EAST.get_or_init(|| second_cluster("east", EAST_PORT))
}

/// A broker with both clusters; `east_url`/`east_token` as given.
fn broker_with(east_url: &str, east_token: &str) -> Broker {
    Broker::start_with_options(options_with(east_url, east_token))
}

fn options_with(east_url: &str, east_token: &str) -> Options {
    let home = cluster();
    let mut east = east().clone();
    east.api_url = east_url.to_string();
    let dir = tempfile::tempdir().expect("tmp").keep();
    clusters_options(
        &catalog_dir(),
        &[
            ("default", home, &home.admin_token),
            ("east", &east, east_token),
        ],
        &dir,
    )
    .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
}

/// The broker of most tests: both clusters, the right token for each.
fn broker() -> &'static Broker {
    static BROKER: OnceLock<&'static Broker> = OnceLock::new();
    BROKER
        .get_or_init(|| spin_osb_e2e::until_exit(broker_with(&east().api_url, &east().admin_token)))
}

fn plan(b: &Broker, name: &str) -> Plan {
    b.catalog()
        .plan_named(name)
        .unwrap_or_else(|| panic!("plan {name} in the test catalog"))
}

fn body(plan: &Plan, clusterid: &str, namespace: &str, parameters: Value) -> Value {
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": clusterid, "space_guid": namespace,
        "context": {"platform": "kubernetes", "clusterid": clusterid, "namespace": namespace},
        "parameters": parameters})
}

/// The namespace an instance's objects live in (the catalog's `osb-{{ instance_id[:13] }}`).
fn namespace_of(iid: &str) -> String {
    format!("osb-{}", &iid[..13])
}

fn has_namespace(kube: &Kube, iid: &str) -> bool {
    kube.get(&format!("/api/v1/namespaces/{}", namespace_of(iid)))
        .is_some()
}

fn provision_ready(b: &Broker, iid: &str, body: &Value) {
    let op = b.provision(iid, body, true).expect(202).operation();
    let last = b.wait_instance_operation(iid, &op);
    assert_eq!(last.json["state"], "succeeded", "{}", last.body);
}

/// Where the instance's objects are: `"default"`, `"east"`, or a panic if both or none.
fn landed_on(iid: &str) -> &'static str {
    let (home, east) = (
        has_namespace(&cluster().admin(), iid),
        has_namespace(&east().admin(), iid),
    );
    match (home, east) {
        (true, false) => "default",
        (false, true) => "east",
        other => panic!("instance {iid}: namespace on (default, east) = {other:?}"),
    }
}

fn deprovision_and_wait(b: &Broker, iid: &str, plan: &Plan) {
    let op = b.deprovision(iid, plan, true).expect(202).operation();
    let last = b.wait_instance_operation(iid, &op);
    assert!(
        last.status == 410 || last.json["state"] == "succeeded",
        "{}",
        last.body
    );
}

/// Nothing a user sees may carry a cluster's address.
fn assert_no_address(text: &str) {
    for address in ["127.0.0.1", "127.0.0.2", "https://"] {
        assert!(!text.contains(address), "an address leaked: {text}");
    }
}

#[test]
fn each_plan_places_instances_on_its_cluster_and_they_stay_there() {
    let b = broker();
    let cases = [
        ("home", "platform-x", "team-a", json!({}), "default"),
        ("east", "platform-x", "team-a", json!({}), "east"),
        ("by-clusterid", "platform-east", "team-a", json!({}), "east"),
        (
            "by-clusterid",
            "platform-home",
            "team-a",
            json!({}),
            "default",
        ),
        (
            "by-region",
            "platform-x",
            "team-a",
            json!({"region": "east"}),
            "east",
        ),
        ("by-region", "platform-x", "team-a", json!({}), "default"),
        ("by-namespace", "platform-x", "team-east", json!({}), "east"),
        ("by-namespace", "platform-x", "team-a", json!({}), "default"),
    ];
    for (plan_name, clusterid, namespace, parameters, expected) in cases {
        let p = plan(b, plan_name);
        let iid = new_id();
        provision_ready(b, &iid, &body(&p, clusterid, namespace, parameters.clone()));
        assert_eq!(
            landed_on(&iid),
            expected,
            "plan {plan_name}, clusterid {clusterid}, namespace {namespace}, parameters {parameters}"
        );
        deprovision_and_wait(b, &iid, &p);
        eventually("the instance's namespace to go", WAIT, || {
            (!has_namespace(&cluster().admin(), &iid) && !has_namespace(&east().admin(), &iid))
                .then_some(())
        });
    }
}

#[test]
fn bind_update_and_deprovision_go_to_the_instances_cluster() {
    let b = broker();
    let (east_plan, home_plan) = (plan(b, "east"), plan(b, "home"));
    let (home_kube, east_kube) = (cluster().admin(), east().admin());
    let iid = new_id();
    provision_ready(
        b,
        &iid,
        &body(&east_plan, "platform-x", "team-a", json!({})),
    );
    assert_eq!(landed_on(&iid), "east");
    // The operator API says where it is.
    let shown = operator(b, "GET", &format!("/operator/instances/{iid}"), None);
    assert_eq!(
        shown["placement"],
        json!({"type": "kubernetes", "cluster": "east", "namespace": namespace_of(&iid)}),
        "{shown}"
    );

    // Credentials come from the live Secret on east.
    let bid = new_id();
    let bound = b
        .bind(&iid, &bid, &east_plan.bind_body(json!({})), true)
        .expect(201);
    let secret = east_kube
        .get(&format!(
            "/api/v1/namespaces/{}/secrets/credentials",
            namespace_of(&iid)
        ))
        .expect("the Secret on east");
    let password = secret["data"]["password"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!password.is_empty());
    assert_eq!(bound.json["credentials"]["namespace"], namespace_of(&iid));

    // A plan change to a plan whose instances go to `default`: this instance stays on east.
    let op = b
        .update(
            &iid,
            &json!({"service_id": home_plan.service_id, "plan_id": home_plan.plan_id}),
            true,
        )
        .expect(202)
        .operation();
    let last = b.wait_instance_operation(&iid, &op);
    assert_eq!(last.json["state"], "succeeded", "{}", last.body);
    assert_eq!(landed_on(&iid), "east");
    let fetched = b.fetch_instance(&iid).expect(200);
    assert_eq!(fetched.json["plan_id"], home_plan.plan_id);

    b.unbind(&iid, &bid, &home_plan, true).expect(200);
    deprovision_and_wait(b, &iid, &home_plan);
    eventually("the namespace on east to go", WAIT, || {
        (!has_namespace(&east_kube, &iid)).then_some(())
    });
    assert!(!has_namespace(&home_kube, &iid));
}

#[test]
fn an_unknown_cluster_is_refused_before_anything_is_stored() {
    let b = broker();
    let west = plan(b, "west");
    let iid = new_id();
    let refused = b
        .provision(&iid, &body(&west, "platform-x", "team-a", json!({})), true)
        .expect_error(400);
    assert!(
        refused
            .description()
            .contains("cluster 'west' is not one of this broker's clusters (default, east)"),
        "{}",
        refused.body
    );
    b.fetch_instance(&iid).expect(404);

    let by_id = plan(b, "by-clusterid");
    let unmapped = b
        .provision(&iid, &body(&by_id, "platform-9", "team-a", json!({})), true)
        .expect_error(400);
    assert!(
        unmapped
            .description()
            .contains("context.clusterid 'platform-9'"),
        "{}",
        unmapped.body
    );
    // The parameter is validated by the plan's schema before any cluster is chosen.
    let by_region = plan(b, "by-region");
    b.provision(
        &iid,
        &body(&by_region, "p", "n", json!({"region": "west"})),
        true,
    )
    .expect(400);
    b.fetch_instance(&iid).expect(404);
}

#[test]
fn a_token_for_one_cluster_is_refused_by_the_other_and_the_failure_names_the_cluster() {
    let east_admin_on_home = cluster().with_token(&east().admin_token);
    let (status, _) = east_admin_on_home
        .raw("GET", "/api/v1/namespaces", None)
        .expect("the default cluster answers");
    assert_eq!(
        status, 401,
        "east's token means nothing to the default cluster"
    );

    // A broker whose `east` token is the default cluster's.
    let b = broker_with(&east().api_url, &cluster().admin_token);
    let p = plan(&b, "east");
    let iid = new_id();
    let op = b
        .provision(&iid, &body(&p, "platform-x", "team-a", json!({})), true)
        .expect(202)
        .operation();
    let last = b.wait_instance_operation(&iid, &op);
    assert_eq!(last.json["state"], "failed", "{}", last.body);
    let description = last.json["description"].as_str().unwrap_or_default();
    assert!(
        description
            .contains("Kubernetes cluster 'east' refused the broker's token (401 Unauthorized)"),
        "{description}"
    );
    assert_no_address(description);
    assert!(
        !description.contains(&cluster().admin_token),
        "{description}"
    );
    assert!(!has_namespace(&east().admin(), &iid) && !has_namespace(&cluster().admin(), &iid));
}

#[test]
fn an_unreachable_cluster_is_named_while_the_broker_retries() {
    // Nothing listens there: connections to east are refused.
    let closed = format!("https://127.0.0.2:{}", spin_osb_test_support::free_port());
    let b = broker_with(&closed, &east().admin_token);
    let p = plan(&b, "east");
    let iid = new_id();
    let op = b
        .provision(&iid, &body(&p, "platform-x", "team-a", json!({})), true)
        .expect(202)
        .operation();
    let last = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(last.json["state"], "in progress", "{}", last.body);
    let description = last.json["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("cannot reach Kubernetes cluster 'east': connection refused"),
        "{description}"
    );
    assert_no_address(description);
    // The default cluster is unaffected.
    let home = plan(&b, "home");
    let other = new_id();
    provision_ready(&b, &other, &body(&home, "platform-x", "team-a", json!({})));
    assert_eq!(landed_on(&other), "default");
    deprovision_and_wait(&b, &other, &home);
}

fn operator(b: &Broker, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut request = b.operator_request(method, path, OPERATOR_PASSWORD);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().expect(200).json
}

/// A ConfigMap carrying this broker's marks for an instance it does not have.
fn left_behind(kube: &Kube, broker_id: &str, namespace: &str) -> String {
    let gone = new_id();
    let name = format!("left-{}", &gone[..8]);
    kube.apply(
        &format!("/api/v1/namespaces/{namespace}/configmaps/{name}"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "spin-osb",
                "osb.spin-osb.dev/instance": gone, "osb.spin-osb.dev/broker": broker_id},
            "annotations": {"osb.spin-osb.dev/instance-id": gone}}}),
    );
    name
}

#[test]
fn orphans_are_found_and_cleaned_in_every_cluster_and_a_cluster_that_cannot_be_asked_is_named() {
    let b = broker();
    let east_kube = east().admin();
    let p = plan(b, "east");
    let live = new_id();
    provision_ready(b, &live, &body(&p, "platform-x", "team-a", json!({})));
    let broker_id = operator(b, "GET", "/operator/orphans", None)["broker_id"]
        .as_str()
        .expect("broker_id")
        .to_string();
    east_kube.create_namespace("clusters-orphans");
    let orphan = left_behind(&east_kube, &broker_id, "clusters-orphans");

    let report = operator(b, "GET", "/operator/orphans", None);
    let section = &report["kubernetes"];
    assert!(section.get("errors").is_none(), "{report}");
    let orphans = section["orphans"].as_array().expect("orphans");
    let ours: Vec<&Value> = orphans.iter().filter(|o| o["name"] == orphan).collect();
    assert_eq!(ours.len(), 1, "{report}");
    assert_eq!(ours[0]["cluster"], "east", "{report}");
    assert!(
        orphans.iter().all(|o| o["instance_id"] != live),
        "a live instance's objects are no orphans: {report}"
    );

    let cleaned = operator(
        b,
        "POST",
        "/operator/orphans/cleanup",
        Some(&json!({"kubernetes": [ours[0]]})),
    );
    assert_eq!(cleaned["results"][0]["state"], "deleting", "{cleaned}");
    eventually("the orphan to go from east", WAIT, || {
        east_kube
            .get(&format!(
                "/api/v1/namespaces/clusters-orphans/configmaps/{orphan}"
            ))
            .is_none()
            .then_some(())
    });
    assert!(
        has_namespace(&east_kube, &live),
        "the live instance is untouched"
    );
    deprovision_and_wait(b, &live, &p);

    // East unreachable: the default cluster is still searched, and east is named.
    let closed = format!("https://127.0.0.2:{}", spin_osb_test_support::free_port());
    let cut_off = broker_with(&closed, &east().admin_token);
    let report = operator(&cut_off, "GET", "/operator/orphans", None);
    let errors = report["kubernetes"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["cluster"], "east", "{report}");
    let error = errors[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot reach Kubernetes cluster 'east'"),
        "{report}"
    );
    assert_no_address(error);
    assert!(report["kubernetes"]["orphans"].is_array(), "{report}");
    assert!(report["kubernetes"].get("error").is_none(), "{report}");
}

/// The same manifest edit, variables and per-cluster `[[client_tls]]` under the real Spin
/// CLI: each instance reaches its own cluster over HTTPS with that cluster's CA.
#[test]
fn under_real_spin_each_cluster_is_reached_with_its_own_ca() {
    let options = match real_spin_bin() {
        Ok(_) => Options {
            real_spin: true,
            ..options_with(&east().api_url, &east().admin_token)
        },
        Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
        Err(e) => return eprintln!("skipped: {e}"),
    };
    let b = Broker::start_with_options(options);
    for (plan_name, expected) in [("home", "default"), ("east", "east")] {
        let p = plan(&b, plan_name);
        let iid = new_id();
        provision_ready(&b, &iid, &body(&p, "platform-x", "team-a", json!({})));
        assert_eq!(landed_on(&iid), expected, "plan {plan_name}");
        deprovision_and_wait(&b, &iid, &p);
        assert!(!has_namespace(&east().admin(), &iid) && !has_namespace(&cluster().admin(), &iid));
    }
}

#[test]
fn an_instance_keeps_its_cluster_when_the_catalog_moves_its_plan() {
    let b = broker_with(&east().api_url, &east().admin_token);
    let p = plan(&b, "east");
    let iid = new_id();
    provision_ready(&b, &iid, &body(&p, "platform-x", "team-a", json!({})));
    assert_eq!(landed_on(&iid), "east");
    let bid = new_id();
    let first = b
        .bind(&iid, &bid, &p.bind_body(json!({})), true)
        .expect(201);

    // The operator moves plan east to the default cluster and restarts the broker.
    let moved = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(catalog_dir().join("clusters.yaml")).expect("catalog");
    let east_only = "          cluster: east\n";
    assert_eq!(text.matches(east_only).count(), 1);
    std::fs::write(
        moved.path().join("clusters.yaml"),
        text.replace(east_only, "          cluster: default\n"),
    )
    .expect("moved catalog");
    compile_catalog(moved.path(), &b.state_dir.join("app/osb-catalog"));
    b.restart();
    let newcomer = new_id();
    provision_ready(&b, &newcomer, &body(&p, "platform-x", "team-a", json!({})));
    assert_eq!(
        landed_on(&newcomer),
        "default",
        "new instances follow the catalog"
    );

    // The old instance's operations still go to east: a new binding reads its Secret there.
    let again = new_id();
    let second = b
        .bind(&iid, &again, &p.bind_body(json!({})), true)
        .expect(201);
    assert_eq!(
        second.json["credentials"]["password"], first.json["credentials"]["password"],
        "{}",
        second.body
    );
    b.unbind(&iid, &again, &p, true).expect(200);
    b.unbind(&iid, &bid, &p, true).expect(200);
    deprovision_and_wait(&b, &iid, &p);
    assert!(!has_namespace(&east().admin(), &iid));
    deprovision_and_wait(&b, &newcomer, &p);
    assert!(!has_namespace(&cluster().admin(), &newcomer));
}
