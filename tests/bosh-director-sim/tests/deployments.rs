//! Deploy, tasks, locks, reads, delete, instances and errands over real
//! HTTP (contract A.3–A.10 and the call sequences of part D).

mod common;

use std::time::Duration;

use bosh_director_sim::{
    ErrandBehaviour, HoldAt, RedirectStatus, SimConfig, TaskFailure, TaskKind, TaskState,
};
use common::{manifest, task_id, Api, PASSWORD, USER};
use reqwest::Method;
use serde_json::Value;

#[test]
fn post_deployments_requires_exactly_text_yaml() {
    let api = Api::basic();
    for ct in ["application/x-yaml", "application/json", "text/plain"] {
        let r = api
            .req(Method::POST, "/deployments")
            .header("content-type", ct)
            .body(manifest("ct", 1))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{ct}");
        assert_eq!(r.text().unwrap(), "Endpoint '/deployments' not found.");
    }
    let r = api
        .req(Method::POST, "/deployments")
        .body(manifest("ct", 1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "no content type");
    assert!(api.sim.deployments().is_empty(), "nothing created");
    let r = api
        .req(Method::POST, "/deployments")
        .header("content-type", "text/yaml; charset=utf-8")
        .body(manifest("ct", 1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "parameters after ; are ignored");
}

#[test]
fn invalid_manifests_get_director_errors() {
    let api = Api::basic();
    let cases = [
        ("", 440001),
        ("- just\n- a list\n", 440001),
        ("{unclosed: [", 440001),
        ("releases: []\n", 40001),
    ];
    for (body, code) in cases {
        let r = api.post_manifest(body, None);
        assert_eq!(r.status(), 400, "{body:?}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["code"], code, "{body:?}");
        assert!(e["description"].is_string());
    }
    assert!(api.sim.tasks().is_empty());
}

#[test]
fn deploy_creates_the_record_at_once_and_the_task_runs_to_done() {
    let api = Api::basic();
    api.sim.hold_tasks(HoldAt::Processing);
    let r = api.post_manifest(&manifest("svc-1", 2), Some("op-1"));
    // Sinatra 4 answers a non-GET HTTP/1.1 request with 303 and an absolute
    // Location built from the Host header.
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(loc, format!("{}/tasks/1", api.sim.base_url()));
    let id = task_id(&r);

    // find_or_create: the name is listed while the task is still running.
    let list: Value = api.get("/deployments").json().unwrap();
    assert_eq!(list[0]["name"], "svc-1");
    assert_eq!(list[0]["locked"], true);
    let got: Value = api.get("/deployments/svc-1").json().unwrap();
    assert_eq!(got["manifest"], Value::Null, "no manifest before success");

    let t = api.task_json(id);
    assert_eq!(t["state"], "processing");
    assert_eq!(t["description"], "create deployment");
    assert_eq!(t["deployment"], "svc-1");
    assert_eq!(t["context_id"], "op-1");
    assert_eq!(t["user"], USER);
    assert_eq!(t["timestamp"], Value::Null);
    assert_eq!(t["result"], Value::Null);
    assert!(t["started_at"].is_i64());

    api.sim.release_tasks();
    let t = api.wait_task(id);
    assert_eq!(t["state"], "done");
    assert_eq!(t["result"], "/deployments/svc-1");
    assert!(t["timestamp"].is_i64());
    let got: Value = api.get("/deployments/svc-1").json().unwrap();
    assert_eq!(got["manifest"].as_str().unwrap(), manifest("svc-1", 2));
    let list: Value = api.get("/deployments").json().unwrap();
    assert_eq!(list[0]["locked"], false);
    assert_eq!(list[0]["releases"][0]["version"], "1.2.3");
    let d = api.sim.deployment("svc-1").unwrap();
    assert_eq!(d.post_count, 1);
    assert_eq!(d.instances.len(), 3);
}

#[test]
fn redirect_style_is_configurable() {
    let api =
        Api::with(SimConfig::basic(USER, PASSWORD).with_redirect(RedirectStatus::Always302, false));
    let r = api.post_manifest(&manifest("r", 1), None);
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/tasks/1");
    api.sim.set_redirect(RedirectStatus::Sinatra, true);
    let r = api.post_manifest(&manifest("r", 1), None);
    assert_eq!(r.status(), 303);
}

#[test]
fn a_second_mutation_while_locked_is_accepted_but_its_task_errors() {
    let api = Api::basic();
    let v1 = manifest("locked", 1);
    let first = api.deploy(&v1);
    assert_eq!(api.wait_task(first)["state"], "done");

    // Every task created from here is held in `processing`; the first one
    // takes the deployment lock and keeps it until released.
    api.sim.hold_tasks(HoldAt::Processing);
    let v2 = manifest("locked", 2);
    let holder = api.deploy(&v2);
    assert_eq!(api.task_json(holder)["state"], "processing");
    let contending_deploy = task_id(&api.post_manifest(&manifest("locked", 3), None));
    let contending_delete = task_id(
        &api.req(Method::DELETE, "/deployments/locked")
            .send()
            .unwrap(),
    );
    let errand = task_id(
        &api.req(Method::POST, "/deployments/locked/errands/smoke-tests/runs")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .unwrap(),
    );
    // Release only the contenders: they fail on the lock held by `holder`.
    for id in [contending_deploy, contending_delete, errand] {
        assert!(api.sim.release_task(id));
        let t = api.wait_task(id);
        assert_eq!(t["state"], "error", "task {id}");
        let result = t["result"].as_str().unwrap();
        assert!(
            result.starts_with("Failed to acquire lock for lock:deployment:locked"),
            "{result}"
        );
        assert!(result.len() <= 131, "truncated like the director: {result}");
    }
    let list: Value = api.get("/deployments").json().unwrap();
    assert_eq!(list[0]["locked"], true);
    let locks: Value = api.get("/locks").json().unwrap();
    assert_eq!(locks[0]["resource"][0], "locked");
    assert_eq!(locks[0]["task_id"], holder.to_string());
    // Reads (a `vms` task) take no lock.
    let vms = task_id(&api.get("/deployments/locked/vms?format=full"));
    assert!(api.sim.release_task(vms));
    assert_eq!(api.wait_task(vms)["state"], "done");
    api.sim.release_tasks();
    assert_eq!(api.wait_task(holder)["state"], "done");
    // The failed deploy did not replace the manifest; the holder's did.
    let got: Value = api.get("/deployments/locked").json().unwrap();
    assert_eq!(got["manifest"].as_str().unwrap(), v2);
    assert_eq!(api.sim.deployment("locked").unwrap().post_count, 3);
}

#[test]
fn failed_and_dry_run_deploys_keep_the_stored_manifest() {
    let api = Api::basic();
    let v1 = manifest("keep", 1);
    assert_eq!(api.wait_task(api.deploy(&v1))["state"], "done");

    api.sim
        .fail_next_tasks(TaskFailure::error(1, "Failed to compile package").for_deployment("keep"));
    let t = api.wait_task(api.deploy(&manifest("keep", 5)));
    assert_eq!(t["state"], "error");
    assert_eq!(t["result"], "Failed to compile package");
    let events = api
        .output(t["id"].as_u64().unwrap(), "event")
        .text()
        .unwrap();
    let last: Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "Failed to compile package");

    let r = api
        .req(Method::POST, "/deployments?dry_run=true")
        .header("content-type", "text/yaml")
        .body(manifest("keep", 7))
        .send()
        .unwrap();
    let t = api.wait_task(task_id(&r));
    assert_eq!(t["state"], "done");
    assert_eq!(t["description"], "create deployment (dry run)");

    let got: Value = api.get("/deployments/keep").json().unwrap();
    assert_eq!(got["manifest"].as_str().unwrap(), v1);
    assert_eq!(api.sim.deployment("keep").unwrap().instances.len(), 2);
}

#[test]
fn tasks_list_filters_like_the_director() {
    let api = Api::basic();
    let a1 = api.post_manifest(&manifest("a", 1), Some("ctx-a"));
    let a1 = task_id(&a1);
    api.wait_task(a1);
    let b1 = api.deploy(&manifest("b", 1));
    api.wait_task(b1);
    let vms = task_id(&api.get("/deployments/a/vms?format=full"));
    api.wait_task(vms);
    api.sim.hold_tasks(HoldAt::Queued);
    let a2 = task_id(&api.post_manifest(&manifest("a", 2), Some("ctx-a")));

    let ids = |path: &str| -> Vec<u64> {
        let v: Value = api.get(path).json().unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids("/tasks"), vec![a2, b1, a1], "newest first, no vms");
    assert_eq!(ids("/tasks?verbose=2"), vec![a2, vms, b1, a1]);
    assert_eq!(ids("/tasks?deployment=a"), vec![a2, a1]);
    assert_eq!(ids("/tasks?context_id=ctx-a"), vec![a2, a1]);
    assert_eq!(
        ids("/tasks?state=processing,cancelling,queued&verbose=1&deployment=a"),
        vec![a2]
    );
    assert_eq!(ids("/tasks?state=done&deployment=b"), vec![b1]);
    assert_eq!(ids("/tasks?limit=1"), vec![a2]);
    assert_eq!(ids("/tasks?context_id=none"), Vec::<u64>::new());
    assert_eq!(api.task_json(a2)["state"], "queued");
    api.sim.release_tasks();
    assert_eq!(api.wait_task(a2)["state"], "done");
}

#[test]
fn unknown_tasks_and_deployments_are_director_404s() {
    let api = Api::basic();
    let r = api.get("/tasks/999");
    assert_eq!(r.status(), 404);
    let e: Value = r.json().unwrap();
    assert_eq!(e["code"], 10000);
    assert_eq!(e["description"], "Task 999 not found");
    for (method, path) in [
        (Method::GET, "/deployments/ghost"),
        (Method::DELETE, "/deployments/ghost?force=true"),
        (Method::GET, "/deployments/ghost/vms?format=full"),
        (Method::GET, "/deployments/ghost/instances"),
    ] {
        let r = api.req(method.clone(), path).send().unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["code"], 70000);
        assert_eq!(e["description"], "Deployment 'ghost' doesn't exist");
    }
}

#[test]
fn delete_redirects_to_a_task_and_the_deployment_disappears_when_done() {
    let api = Api::basic();
    api.wait_task(api.deploy(&manifest("gone", 1)));
    api.sim.hold_tasks(HoldAt::Processing);
    let r = api
        .req(Method::DELETE, "/deployments/gone?force=true")
        .header("x-bosh-context-id", "delete-gone")
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let id = task_id(&r);
    let t = api.task_json(id);
    assert_eq!(t["description"], "delete deployment gone");
    assert_eq!(t["context_id"], "delete-gone");
    assert_eq!(api.get("/deployments/gone").status(), 200, "still there");
    api.sim.release_tasks();
    assert_eq!(api.wait_task(id)["state"], "done");
    let r = api.get("/deployments/gone");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["code"], 70000);
    let list: Value = api.get("/deployments").json().unwrap();
    assert_eq!(list, serde_json::json!([]));
    assert_eq!(api.sim.task(id).unwrap().kind, TaskKind::DeleteDeployment);
}

#[test]
fn instances_format_full_is_a_vms_task_with_ndjson_result() {
    let api = Api::basic();
    api.wait_task(api.deploy(&manifest("inst", 3)));
    let r = api.get("/deployments/inst/instances?format=full");
    assert_eq!(r.status(), 302, "GET redirects with 302");
    let id = task_id(&r);
    let t = api.wait_task(id);
    assert_eq!(t["state"], "done");
    assert_eq!(t["description"], "retrieve vm-stats");
    let lines = api.result_lines(id);
    assert_eq!(lines.len(), 4, "3 redis + 1 errand instance");
    let redis: Vec<&Value> = lines.iter().filter(|l| l["job_name"] == "redis").collect();
    assert_eq!(redis.len(), 3);
    for (n, l) in redis.iter().enumerate() {
        assert_eq!(l["index"], n as u64);
        assert_eq!(l["job_state"], "running");
        assert_eq!(l["process_state"], "running");
        assert_eq!(l["bootstrap"], n == 0);
        assert_eq!(l["az"], if n % 2 == 0 { "z1" } else { "z2" });
        let ip = l["ips"][0].as_str().unwrap();
        assert!(ip.starts_with("10.244."), "{ip}");
        assert_eq!(l["id"].as_str().unwrap().len(), 36);
        assert!(l["vm_cid"].is_string() && l["agent_id"].is_string());
    }
    // `vms` leaves out the errand instance (no VM); ids and IPs are stable.
    let vms = task_id(&api.get("/deployments/inst/vms?format=full"));
    api.wait_task(vms);
    let vm_lines = api.result_lines(vms);
    assert_eq!(vm_lines.len(), 3);
    assert_eq!(vm_lines[0]["id"], redis[0]["id"]);
    assert_eq!(vm_lines[0]["ips"], redis[0]["ips"]);

    // Without format=full: a direct JSON array.
    let plain: Value = api.get("/deployments/inst/instances").json().unwrap();
    assert_eq!(plain.as_array().unwrap().len(), 4);
    assert!(plain
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["expects_vm"] == false));
    let plain: Value = api.get("/deployments/inst/vms").json().unwrap();
    assert_eq!(plain.as_array().unwrap().len(), 3);
    assert_eq!(plain[0]["job"], "redis");
    assert_eq!(plain[0]["active"], true);

    // Scaling down keeps the surviving instances' identities.
    api.wait_task(api.deploy(&manifest("inst", 1)));
    let d = api.sim.deployment("inst").unwrap();
    let redis0 = d.instances.iter().find(|i| i.group == "redis").unwrap();
    assert_eq!(serde_json::json!(redis0.id), redis[0]["id"]);
    assert_eq!(d.instances.len(), 2);
}

fn run_errand(
    api: &Api,
    deployment: &str,
    errand: &str,
    body: &str,
) -> reqwest::blocking::Response {
    api.req(
        Method::POST,
        &format!("/deployments/{deployment}/errands/{errand}/runs"),
    )
    .header("content-type", "application/json")
    .header("x-bosh-context-id", "ctx-errand")
    .body(body.to_string())
    .send()
    .unwrap()
}

#[test]
fn errands_end_done_even_when_they_fail_and_report_exit_codes() {
    let api = Api::basic();
    api.wait_task(api.deploy(&manifest("err", 2)));

    let id = task_id(&run_errand(&api, "err", "smoke-tests", "{}"));
    let t = api.wait_task(id);
    assert_eq!(t["state"], "done");
    assert_eq!(t["result"], "1 succeeded, 0 errored, 0 canceled");
    assert_eq!(
        t["description"],
        "run errand smoke-tests from deployment err"
    );
    assert_eq!(t["context_id"], "ctx-errand");
    let lines = api.result_lines(id);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["exit_code"], 0);
    assert_eq!(lines[0]["errand_name"], "smoke-tests");
    assert_eq!(lines[0]["instance"]["group"], "smoke-tests");
    assert!(lines[0]["logs"]["blobstore_id"].is_string());

    api.sim.set_errand(
        "smoke-tests",
        ErrandBehaviour {
            exit_code: 1,
            stdout: "ran\n".into(),
            stderr: "boom\n".into(),
        },
    );
    let id = task_id(&run_errand(
        &api,
        "err",
        "smoke-tests",
        r#"{"keep-alive":false}"#,
    ));
    let t = api.wait_task(id);
    assert_eq!(t["state"], "done", "a failed errand still ends done");
    assert_eq!(t["result"], "0 succeeded, 1 errored, 0 canceled");
    let lines = api.result_lines(id);
    assert_eq!(lines[0]["exit_code"], 1);
    assert_eq!(lines[0]["stderr"], "boom\n");

    // A colocated errand runs on every instance of the groups that have it;
    // an instance selection narrows it down.
    api.sim.set_errand_exit_code("smoke-colocated", 0);
    let id = task_id(&run_errand(&api, "err", "smoke-colocated", "{}"));
    assert_eq!(
        api.wait_task(id)["result"],
        "2 succeeded, 0 errored, 0 canceled"
    );
    let id = task_id(&run_errand(
        &api,
        "err",
        "smoke-colocated",
        r#"{"instances":[{"group":"redis","id":"1"}]}"#,
    ));
    assert_eq!(
        api.wait_task(id)["result"],
        "1 succeeded, 0 errored, 0 canceled"
    );
    let listed: Value = api.get("/deployments/err/errands").json().unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{"name": "smoke-tests"}, {"name": "smoke-colocated"}])
    );

    let id = task_id(&run_errand(&api, "err", "no-such-errand", "{}"));
    let t = api.wait_task(id);
    assert_eq!(t["state"], "error");
    assert_eq!(t["result"], "Errand 'no-such-errand' doesn't exist");

    let r = run_errand(&api, "err", "smoke-tests", "");
    assert_eq!(r.status(), 500, "empty body is a JSON parse error");
    assert!(r.bytes().unwrap().is_empty());
    let r = run_errand(&api, "ghost", "smoke-tests", "{}");
    assert_eq!(r.status(), 404);
}

#[test]
fn task_output_types_ranges_and_204() {
    let api = Api::basic();
    let id = api.deploy(&manifest("out", 1));
    api.wait_task(id);
    assert_eq!(
        api.output(id, "result").status(),
        204,
        "deploys have no result"
    );
    assert_eq!(api.output(id, "none").status(), 204);
    let r = api.output(id, "event");
    assert_eq!(r.status(), 200);
    let events = r.text().unwrap();
    assert_eq!(events.lines().count(), 2);
    for l in events.lines() {
        let _: Value = serde_json::from_str(l).unwrap();
    }
    let r = api
        .req(Method::GET, &format!("/tasks/{id}/output?type=event"))
        .header("range", "bytes=5-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    let size = events.len();
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 5-{}/{size}", size - 1).as_str()
    );
    assert_eq!(r.text().unwrap(), events[5..]);
    let r = api
        .req(Method::GET, &format!("/tasks/{id}/output?type=event"))
        .header("range", format!("bytes={size}-"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    assert_eq!(api.get("/tasks/77/output?type=result").status(), 404);
}

#[test]
fn tasks_can_be_cancelled_once() {
    let api = Api::basic();
    api.sim.hold_tasks(HoldAt::Processing);
    let id = api.deploy(&manifest("cancel", 1));
    let r = api
        .req(Method::DELETE, &format!("/task/{id}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let t = api.wait_task(id);
    assert_eq!(t["state"], "cancelled");
    let r = api
        .req(Method::DELETE, &format!("/task/{id}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().unwrap(),
        format!("Cannot cancel task {id}: invalid state (cancelled)")
    );
    assert_eq!(api.sim.deployment("cancel").unwrap().manifest, None);
    assert_eq!(api.sim.deployment("cancel").unwrap().locked_by, None);
}

#[test]
fn timestamp_can_follow_the_director_source_instead() {
    let mut config = SimConfig::basic(USER, PASSWORD);
    config.timestamp_while_running = true;
    let api = Api::with(config);
    api.sim.hold_tasks(HoldAt::Processing);
    let id = api.deploy(&manifest("ts", 1));
    assert!(api.task_json(id)["timestamp"].is_i64());
    assert_eq!(api.sim.task(id).unwrap().state, TaskState::Processing);
}

#[test]
fn seeded_deployments_and_job_states_show_up_in_full_listings() {
    let api = Api::basic();
    let name = api.sim.seed_deployment(&manifest("seeded", 2)).unwrap();
    assert_eq!(name, "seeded");
    assert!(api.sim.set_job_state("seeded", "redis", "failing"));
    let id = task_id(&api.get("/deployments/seeded/vms?format=full"));
    api.wait_task(id);
    let lines = api.result_lines(id);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["job_state"] == "failing"));
    assert!(api
        .sim
        .wait_for_task(id, Duration::from_secs(1))
        .is_some_and(|t| t.state == TaskState::Done));
}
