//! Injected failures and pacing: 500s, dropped requests and connections,
//! the director going down and coming back, task failures by deployment
//! and kind, and time-driven task progression.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bosh_director_sim::{DropPoint, HoldAt, SimConfig, TaskFailure, TaskKind, TaskState};
use common::{client, manifest, task_id, Api, PASSWORD, USER};
use serde_json::Value;

#[test]
fn next_requests_fail_with_an_empty_500_optionally_by_path() {
    let api = Api::basic();
    api.sim.fail_next_requests(2, Some("/tasks"));
    assert_eq!(
        api.get("/deployments").status(),
        200,
        "other paths unaffected"
    );
    for _ in 0..2 {
        let r = api.get("/tasks");
        assert_eq!(r.status(), 500);
        assert!(r.bytes().unwrap().is_empty());
    }
    assert_eq!(api.get("/tasks").status(), 200, "only two");

    api.sim.fail_next_requests(1, None);
    let r = client().get(api.url("/info")).send().unwrap();
    assert_eq!(r.status(), 500, "before auth, on any path");
    let statuses: Vec<Option<u16>> = api.sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![Some(200), Some(500), Some(500), Some(200), Some(500)]
    );
}

#[test]
fn dropped_requests_get_no_answer_before_or_after_processing() {
    let api = Api::basic();
    api.sim
        .drop_next_requests(1, Some("/deployments"), DropPoint::BeforeProcessing);
    let r = api
        .req(reqwest::Method::POST, "/deployments")
        .header("content-type", "text/yaml")
        .header("x-bosh-context-id", "ctx-before")
        .body(manifest("dropped", 1))
        .send();
    assert!(r.is_err(), "no response: {r:?}");
    assert!(api.sim.tasks().is_empty(), "nothing happened");
    assert!(api.sim.deployments().is_empty());

    // The lost-response case: the task exists, the broker never saw its id
    // and must find it by context id (contract A.11).
    api.sim
        .drop_next_requests(1, Some("/deployments"), DropPoint::AfterProcessing);
    let r = api.post_manifest_result(&manifest("dropped", 1), "ctx-after");
    assert!(r.is_err(), "no response: {r:?}");
    let found: Value = api
        .get("/tasks?context_id=ctx-after&deployment=dropped")
        .json()
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let id = found[0]["id"].as_u64().unwrap();
    assert_eq!(api.wait_task(id)["state"], "done");
    let log = api.sim.requests();
    assert_eq!(log[0].status, None);
    assert_eq!(log[1].status, None);
    assert_eq!(log[1].context_id.as_deref(), Some("ctx-after"));
}

#[test]
fn dropped_connections_are_closed_before_any_response() {
    let api = Api::basic();
    api.sim.drop_next_connections(1);
    assert!(client().get(api.url("/info")).send().is_err());
    assert_eq!(client().get(api.url("/info")).send().unwrap().status(), 200);
    // The dropped connection never became a request.
    assert_eq!(api.sim.requests().len(), 1);
}

#[test]
fn down_refuses_connections_and_up_serves_again_on_the_same_port() {
    let api = Api::basic();
    let id = api.deploy(&manifest("survivor", 1));
    api.wait_task(id);
    let port = api.sim.port();
    api.sim.go_down();
    let err = client().get(api.url("/info")).send().unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    api.sim.come_up().unwrap();
    assert_eq!(api.sim.port(), port);
    let r = api.get("/deployments/survivor");
    assert_eq!(r.status(), 200, "state survives the outage");
    // A keep-alive connection opened before going down is closed too.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    api.sim.go_down();
    let mut rest = Vec::new();
    let closed = conn.read_to_end(&mut rest);
    assert!(closed.is_ok() || closed.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    assert!(rest.is_empty());
    api.sim.come_up().unwrap();
    assert_eq!(client().get(api.url("/info")).send().unwrap().status(), 200);
}

#[test]
fn task_failures_can_target_a_deployment_and_a_kind_and_a_state() {
    let api = Api::basic();
    api.wait_task(api.deploy(&manifest("x", 1)));
    api.wait_task(api.deploy(&manifest("y", 1)));
    api.sim.fail_next_tasks(
        TaskFailure::error(1, "CPI error 'Bosh::Clouds::CloudError'")
            .for_deployment("y")
            .for_kind(TaskKind::DeleteDeployment),
    );
    api.sim.fail_next_tasks(
        TaskFailure::error(1, "")
            .for_kind(TaskKind::RunErrand)
            .with_state(TaskState::Timeout),
    );
    let del_x = task_id(
        &api.req(reqwest::Method::DELETE, "/deployments/x")
            .send()
            .unwrap(),
    );
    assert_eq!(api.wait_task(del_x)["state"], "done", "x is not targeted");
    let dep_y = api.deploy(&manifest("y", 2));
    assert_eq!(
        api.wait_task(dep_y)["state"],
        "done",
        "deploys are not targeted"
    );
    let del_y = task_id(
        &api.req(reqwest::Method::DELETE, "/deployments/y")
            .send()
            .unwrap(),
    );
    let t = api.wait_task(del_y);
    assert_eq!(t["state"], "error");
    assert_eq!(t["result"], "CPI error 'Bosh::Clouds::CloudError'");
    assert!(
        api.sim.deployment("y").is_some(),
        "a failed delete keeps it"
    );
    let errand = task_id(
        &api.req(
            reqwest::Method::POST,
            "/deployments/y/errands/smoke-tests/runs",
        )
        .body("{}")
        .send()
        .unwrap(),
    );
    assert_eq!(api.wait_task(errand)["state"], "timeout");
}

#[test]
fn tasks_progress_on_configured_durations() {
    let api = Api::with(
        SimConfig::basic(USER, PASSWORD)
            .with_timings(Duration::from_millis(300), Duration::from_millis(300)),
    );
    let started = Instant::now();
    let id = api.deploy(&manifest("slow", 1));
    assert_eq!(api.task_json(id)["state"], "queued");
    assert_eq!(api.task_json(id)["started_at"], Value::Null);
    let mut seen = vec![];
    loop {
        let state = api.task_json(id)["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "done" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen, ["queued", "processing", "done"]);
    assert!(started.elapsed() >= Duration::from_millis(600));

    // New timings apply to new tasks.
    api.sim.set_task_timings(Duration::ZERO, Duration::ZERO);
    let id = api.deploy(&manifest("fast", 1));
    assert_eq!(api.task_json(id)["state"], "done");
}

#[test]
fn held_tasks_wait_for_release_one_by_one() {
    let api = Api::basic();
    api.sim.hold_tasks(HoldAt::Queued);
    let a = api.deploy(&manifest("ha", 1));
    let b = api.deploy(&manifest("hb", 1));
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(api.task_json(a)["state"], "queued");
    assert!(api.sim.release_task(a));
    assert_eq!(api.wait_task(a)["state"], "done");
    assert_eq!(api.task_json(b)["state"], "queued", "b is still held");
    api.sim.release_tasks();
    assert_eq!(api.wait_task(b)["state"], "done");
    assert!(
        !api.sim.release_task(b),
        "finished tasks cannot be released"
    );
}
