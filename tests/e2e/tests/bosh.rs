//! The BOSH backend end to end: `spin-osb up` with the BOSH test catalog
//! (tests/catalogs/bosh) against the BOSH director *simulator* (tests/bosh-director-sim),
//! over HTTPS with the simulator's CA in the runtime config's `client_tls`.

use std::time::{Duration, Instant};

use bosh_director_sim::{
    AuthKind, DropPoint, ErrandBehaviour, HoldAt, SimConfig, Simulator, TaskFailure, TaskKind,
    TaskState,
};
use spin_osb_e2e::kube::{eventually, KUBE_COMPONENTS};
use spin_osb_e2e::{json, new_id, repo_root, Broker, Options, Plan, Value};

const CLIENT: &str = "spin-osb";
const SECRET: &str = "director-client-secret";

struct Setup {
    sim: Simulator,
    broker: Broker,
    _dir: tempfile::TempDir,
}

fn setup(config: SimConfig) -> Setup {
    setup_with(config, repo_root().join("tests/catalogs/bosh"))
}

fn setup_with(config: SimConfig, catalog: std::path::PathBuf) -> Setup {
    setup_full(config, catalog, None)
}

/// `uaa_url`: the broker's `bosh_uaa_url` (default: the simulator, which serves its UAA).
fn setup_full(config: SimConfig, catalog: std::path::PathBuf, uaa_url: Option<&str>) -> Setup {
    let sim = Simulator::start(config.with_tls());
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("director-ca.pem");
    std::fs::write(&ca, sim.ca_pem().expect("ca")).expect("ca file");
    // Spin's client_tls hosts take no port.
    let host = "127.0.0.1";
    let ids = KUBE_COMPONENTS
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        format!(
            "[[client_tls]]\ncomponent_ids = [{ids}]\nhosts = [{host:?}]\nca_roots_file = {:?}\n",
            ca.display().to_string()
        ),
    )
    .expect("runtime config");
    let options = Options {
        catalog: Some(catalog),
        runtime_config: Some(runtime_config),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_BOSH_DIRECTOR_URL", sim.base_url())
    .env(
        "SPIN_VARIABLE_BOSH_UAA_URL",
        uaa_url.map_or_else(|| sim.base_url(), str::to_string),
    )
    .env("SPIN_VARIABLE_BOSH_CLIENT", CLIENT)
    .env("SPIN_VARIABLE_BOSH_CLIENT_SECRET", SECRET);
    let broker = Broker::start_with_options(options);
    Setup {
        sim,
        broker,
        _dir: dir,
    }
}

fn uaa() -> SimConfig {
    SimConfig::uaa(CLIENT, SECRET, Duration::from_secs(3600))
}

fn plan(b: &Broker, name: &str) -> Plan {
    b.catalog().plan_named(name).expect("plan")
}

fn provision_body(plan: &Plan, parameters: Value) -> Value {
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "o", "space_guid": "s",
        "context": {"platform": "cloudfoundry", "organization_guid": "o", "space_guid": "s"},
        "parameters": parameters})
}

fn deployment(iid: &str) -> String {
    format!("service-instance_{iid}")
}

fn provisioned(s: &Setup, plan: &Plan, iid: &str) {
    let op = s
        .broker
        .provision(iid, &provision_body(plan, json!({})), true)
        .expect(202)
        .operation();
    let done = s.broker.wait_instance_operation(iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
}

fn deprovisioned(s: &Setup, plan: &Plan, iid: &str) {
    let op = s
        .broker
        .deprovision(iid, plan, true)
        .expect(202)
        .operation();
    let last = s.broker.wait_instance_operation(iid, &op);
    assert!(
        last.status == 410 || last.json["state"] == "succeeded",
        "{}",
        last.body
    );
    assert_eq!(s.broker.instance_last_operation(iid, Some(&op)).status, 410);
}

/// A request to the simulator as another director client would make it (an operator's
/// `bosh` CLI): basic auth with the test client.
fn foreign_call(sim: &Simulator, method: &str, path: &str, content_type: &str, body: &str) -> u16 {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token: Value = client
        .post(format!("{}/uaa/oauth/token", sim.base_url()))
        .basic_auth(CLIENT, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    client
        .request(method, format!("{}{path}", sim.base_url()))
        .header(
            "authorization",
            format!("bearer {}", token["access_token"].as_str().unwrap()),
        )
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

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
fn a_lock_failure_fails_the_operation_with_a_retryable_description() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    let name = deployment(&iid);
    s.sim.fail_next_tasks(
        TaskFailure::error(
            1,
            &format!(
                "Failed to acquire lock for lock:deployment:{name} uid: 1. Locking task id is 7"
            ),
        )
        .for_deployment(&name),
    );
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let failed = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    let description = failed.json["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("lock") && description.contains("retry"),
        "{description}"
    );
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn a_failing_errand_fails_the_operation_although_its_task_is_done() {
    let s = setup(uaa());
    s.sim.set_errand_exit_code("smoke-tests", 1);
    let plan = plan(&s.broker, "redis");
    let iid = new_id();
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let failed = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    let description = failed.json["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("smoke-tests") && description.contains("exit code 1"),
        "{description}"
    );
    let errand = s
        .sim
        .tasks()
        .into_iter()
        .find(|t| t.kind == TaskKind::RunErrand)
        .unwrap();
    assert_eq!(
        errand.state,
        TaskState::Done,
        "the director reports the errand task done"
    );
    s.sim.set_errand_exit_code("smoke-tests", 0);
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn a_task_that_errors_fails_the_operation_briefly_and_logs_the_directors_result() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    let result = "Failed to compile package redis: /var/vcap/data/compile/redis exited 2";
    s.sim
        .fail_next_tasks(TaskFailure::error(1, result).for_deployment(&deployment(&iid)));
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let failed = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed");
    let description = failed.json["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("director task") && description.contains("error"),
        "{description}"
    );
    assert!(
        !description.contains("/var/vcap") && !description.contains(&s.sim.base_url()),
        "users see no raw director output or address: {description}"
    );
    // Output reaches the log a moment after the answer that produced it.
    eventually(
        "the director's result in the log",
        Duration::from_secs(10),
        || s.broker.output.text().contains(result).then_some(()),
    );
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn errand_output_client_names_and_addresses_stay_out_of_descriptions() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "redis");
    let iid = new_id();
    s.sim.set_errand(
        "smoke-tests",
        ErrandBehaviour {
            exit_code: 1,
            stdout: "connecting to 10.244.0.7:6379 with password hunter2: refused".into(),
            stderr: String::new(),
        },
    );
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let failed = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(failed.json["state"], "failed", "{}", failed.body);
    let description = failed.json["description"].as_str().unwrap_or_default();
    assert!(description.contains("exit code 1"), "{description}");
    assert!(!description.contains("hunter2"), "{description}");
    eventually(
        "the errand's output in the log",
        Duration::from_secs(10),
        || s.broker.output.text().contains("hunter2").then_some(()),
    );
    s.sim.set_errand("smoke-tests", ErrandBehaviour::default());
    deprovisioned(&s, &plan, &iid);

    // An unreachable director: the description names neither its address nor the client.
    let iid = new_id();
    s.sim.go_down();
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let poll = s
        .broker
        .instance_last_operation(&iid, Some(&op))
        .expect(200);
    let description = poll.json["description"].as_str().unwrap_or_default();
    assert!(description.contains("cannot reach"), "{description}");
    let address = s.sim.addr().to_string();
    assert!(
        !description.contains(&address) && !description.contains(CLIENT),
        "{description}"
    );
    eventually(
        "the director's address in the log",
        Duration::from_secs(10),
        || s.broker.output.text().contains(&address).then_some(()),
    );
    s.sim.come_up().expect("up again");
    let done = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn an_update_while_a_director_task_runs_is_a_concurrency_error() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    provisioned(&s, &plan, &iid);
    // An operator starts something on the deployment (a recreate) and it is still running.
    s.sim.hold_tasks(HoldAt::Processing);
    let status = foreign_call(
        &s.sim,
        "PUT",
        &format!("/deployments/{}/jobs/*?state=recreate", deployment(&iid)),
        "text/yaml",
        "",
    );
    assert!(status == 302 || status == 303, "{status}");
    let update = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "parameters": {"e2e": 1}});
    let refused = s
        .broker
        .update(&iid, &update, true)
        .expect_error_code(422, "ConcurrencyError");
    assert!(refused.body.contains("director task"), "{}", refused.body);
    assert_eq!(s.sim.deployment(&deployment(&iid)).unwrap().post_count, 1);
    s.sim.release_tasks();
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn a_lost_deploy_response_is_recovered_by_context_id_without_a_second_deploy() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    // The director creates the task, but the broker never learns its id (as if it had
    // crashed between posting and persisting).
    s.sim
        .drop_next_requests(1, Some("/deployments"), DropPoint::AfterProcessing);
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let done = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    assert!(
        s.sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/deployments" && r.status.is_none()),
        "the deploy's response must have been lost"
    );
    assert_eq!(
        s.sim.deployment(&deployment(&iid)).unwrap().post_count,
        1,
        "the deploy must not be posted twice"
    );
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn the_broker_killed_mid_operation_resumes_it_from_the_store() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "redis");
    let iid = new_id();
    s.sim.hold_tasks(HoldAt::Processing);
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    s.broker.kill9();
    s.sim.release_tasks();
    s.broker.restart();
    let done = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    assert_eq!(s.sim.deployment(&deployment(&iid)).unwrap().post_count, 1);
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn an_expired_token_is_renewed_once_and_the_operation_continues() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    s.sim.hold_tasks(HoldAt::Processing);
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    let grants = s.sim.token_grants();
    s.sim.expire_tokens();
    let poll = s
        .broker
        .instance_last_operation(&iid, Some(&op))
        .expect(200);
    assert_eq!(poll.json["state"], "in progress", "{}", poll.body);
    assert_eq!(
        s.sim.token_grants(),
        grants + 1,
        "one new token after the 401"
    );
    s.sim.release_tasks();
    let done = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn an_unreachable_director_delays_the_operation_but_does_not_fail_it() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    s.sim.hold_tasks(HoldAt::Processing);
    let op = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true)
        .expect(202)
        .operation();
    s.sim.go_down();
    for _ in 0..3 {
        let poll = s
            .broker
            .instance_last_operation(&iid, Some(&op))
            .expect(200);
        assert_eq!(poll.json["state"], "in progress", "{}", poll.body);
        assert!(poll.json["description"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach"));
    }
    s.sim.come_up().expect("up again");
    s.sim.release_tasks();
    let done = eventually("the provision", Duration::from_secs(60), || {
        let poll = s
            .broker
            .instance_last_operation(&iid, Some(&op))
            .expect(200);
        (poll.json["state"] != "in progress").then_some(poll.json)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    deprovisioned(&s, &plan, &iid);
}

#[test]
fn a_director_answering_after_the_lease_would_end_is_given_up_in_time_and_deploys_once() {
    let s = setup(uaa());
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    // The director creates the deploy task at once but answers 45 s later, after the
    // 30 s lease of the step that posted it would have run out.
    s.sim
        .stall_next_requests(1, Some("/deployments"), Duration::from_secs(45));
    let (op, first_step, (poll, poll_took)) = std::thread::scope(|scope| {
        let poll_during_the_stall = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            let started = Instant::now();
            let poll = s.broker.instance_last_operation(&iid, None);
            (poll, started.elapsed())
        });
        let started = Instant::now();
        let op = s
            .broker
            .provision(&iid, &provision_body(&plan, json!({})), true)
            .expect(202)
            .operation();
        (
            op,
            started.elapsed(),
            poll_during_the_stall.join().expect("poll thread"),
        )
    });
    // The step gives up on the director within its budget (well inside the lease), so no
    // other poll can ever take the lease while it still waits.
    assert!(
        first_step < Duration::from_secs(25),
        "the step must end inside its 30 s lease; the provision took {first_step:?}"
    );
    assert_eq!(poll.status, 200, "{}", poll.body);
    assert_eq!(
        poll.json["state"], "in progress",
        "a poll while the step runs finds it in progress: {}",
        poll.body
    );
    assert!(
        poll_took < Duration::from_secs(5),
        "a poll while another request holds the lease does not wait for the director: {poll_took:?}"
    );
    let done = s.broker.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    assert_eq!(
        s.sim.deployment(&deployment(&iid)).unwrap().post_count,
        1,
        "the deploy whose answer came too late must not be posted again"
    );
    deprovisioned(&s, &plan, &iid);
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

/// `/info` is unauthenticated, so the UAA it names is checked against `bosh_uaa_url`: a
/// director naming another UAA gets no token request (the client secret stays home) and
/// the operation fails, saying which variable disagrees.
#[test]
fn a_uaa_other_than_the_configured_one_never_sees_the_client_secret() {
    // Port 9 (discard) on loopback: never contacted, which is the point.
    let s = setup_full(
        uaa(),
        repo_root().join("tests/catalogs/bosh"),
        Some("https://127.0.0.1:9"),
    );
    let plan = plan(&s.broker, "plain");
    let iid = new_id();
    let resp = s
        .broker
        .provision(&iid, &provision_body(&plan, json!({})), true);
    let failed = if resp.status == 202 {
        s.broker.wait_instance_operation(&iid, &resp.operation())
    } else {
        resp
    };
    assert!(
        failed.body.contains("bosh_uaa_url"),
        "{}: {}",
        failed.status,
        failed.body
    );
    assert_eq!(s.sim.token_grants(), 0);
    assert!(
        s.sim
            .requests()
            .iter()
            .all(|r| !r.path.contains("oauth/token")),
        "no token request may be sent"
    );
}
