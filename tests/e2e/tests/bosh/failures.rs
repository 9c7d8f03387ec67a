//! Director failures (locks, errands, tasks) and what their descriptions may and may not
//! reveal.

use super::*;

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
