//! Concurrency and recovery: a busy director, lost answers, a killed broker, expired
//! tokens, an unreachable or slow director.

use super::*;

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
