//! Crash safety: the host is killed (`kill -9`) or stopped and restarted on the same state
//! dir; every accepted operation completes and nothing that was answered is lost.
//! Each test runs its own broker.

use spin_osb_e2e::{instance_key, new_id, Broker};

#[test]
fn an_asynchronous_provision_survives_kill_9_and_completes_after_restart() {
    let b = Broker::start();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    let op = b.provision(&iid, &body, true).expect(202).operation();
    let polled = b.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(polled.state(), "in progress", "{}", polled.body);

    b.kill9();
    assert!(!b.is_running());
    b.restart();

    // The platform re-sends or polls: both see the same operation.
    assert_eq!(b.provision(&iid, &body, true).expect(202).operation(), op);
    let done = b.wait_instance_operation(&iid, &op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    let fetched = b.fetch_instance(&iid).expect(200);
    assert_eq!(fetched.json["plan_id"], serde_json::json!(plan.plan_id));
    let record = b.store_json(&instance_key(&iid)).unwrap();
    assert_eq!(record["status"], "ready", "{record}");

    // The instance is fully usable after the crash.
    let bid = new_id();
    let resp = b.bind(&iid, &bid, &plan.bind_body(plan.bind_parameters()), true);
    if resp.status == 202 {
        let done = b
            .wait_binding_operation(&iid, &bid, &resp.operation())
            .expect(200);
        assert_eq!(done.state(), "succeeded", "{}", done.body);
    } else {
        resp.expect(201);
    }
    b.fetch_binding(&iid, &bid).expect(200);
}

#[test]
fn a_kill_9_right_after_the_202_loses_nothing() {
    let b = Broker::start();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    let op = b.provision(&iid, &body, true).expect(202).operation();
    // No poll at all before the crash.
    b.kill9();
    // Let the plan's delay pass while the broker is down.
    std::thread::sleep(std::time::Duration::from_secs(3));
    b.restart();
    let done = b.wait_instance_operation(&iid, &op).expect(200);
    assert_eq!(done.state(), "succeeded", "{}", done.body);
    b.fetch_instance(&iid).expect(200);
}

#[test]
fn synchronous_instances_and_bindings_survive_kill_9() {
    let b = Broker::start();
    let plan = b.plans().sync;
    let iid = new_id();
    let body = plan.provision_body(plan.provision_parameters());
    b.provision(&iid, &body, false).expect(201);
    let bid = new_id();
    let credentials = b
        .bind(&iid, &bid, &plan.bind_body(plan.bind_parameters()), false)
        .expect(201)
        .json["credentials"]
        .clone();
    let before = b.fetch_instance(&iid).expect(200).json;

    b.kill9();
    b.restart();

    assert_eq!(b.fetch_instance(&iid).expect(200).json, before);
    assert_eq!(
        b.fetch_binding(&iid, &bid).expect(200).json["credentials"],
        credentials
    );
    b.provision(&iid, &body, false).expect(200);
    b.unbind(&iid, &bid, &plan, false).expect(200);
    b.deprovision(&iid, &plan, false).expect(200);
}

#[test]
fn an_asynchronous_deprovision_survives_kill_9() {
    let b = Broker::start();
    let plan = b.plans().asynchronous;
    let iid = new_id();
    let op = b
        .provision(
            &iid,
            &plan.provision_body(plan.provision_parameters()),
            true,
        )
        .expect(202)
        .operation();
    b.wait_instance_operation(&iid, &op).expect(200);
    let op = b.deprovision(&iid, &plan, true).expect(202).operation();
    b.kill9();
    b.restart();
    assert_eq!(b.deprovision(&iid, &plan, true).expect(202).operation(), op);
    let done = b.wait_instance_operation(&iid, &op);
    assert!(
        (done.status == 200 && done.state() == "succeeded") || done.status == 410,
        "{} {}",
        done.status,
        done.body
    );
    b.instance_last_operation(&iid, Some(&op)).expect_error(410);
    b.fetch_instance(&iid).expect_error(404);
}

#[test]
fn a_broker_stopped_with_sigterm_exits_cleanly_and_restarts_with_its_state() {
    let b = Broker::start();
    let plan = b.plans().sync;
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    let status = b.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "spin-osb should exit 0 on SIGTERM, got {status:?}"
    );
    b.restart();
    b.fetch_instance(&iid).expect(200);
}

#[test]
fn kill_9_during_a_burst_of_provisions_leaves_no_half_created_instance() {
    let b = std::sync::Arc::new(Broker::start());
    let plan = b.plans().sync;
    let body = plan.provision_body(plan.provision_parameters());
    let ids: Vec<String> = (0..120).map(|_| new_id()).collect();
    // Fire the provisions and kill the host once a few have been answered, so that
    // others are cut off at every stage (claimed, record written, leased, ...).
    let (tx, rx) = std::sync::mpsc::channel();
    let workers: Vec<_> = ids
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, iid)| {
            let b = b.clone();
            let body = body.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let answer = b
                    .request("PUT", &spin_osb_e2e::instance_path(&iid))
                    .json(&body)
                    .try_send()
                    .map(|r| r.status);
                let _ = tx.send(());
                (i, answer)
            })
        })
        .collect();
    for _ in 0..10 {
        rx.recv().unwrap();
    }
    b.kill9();
    let mut answers: Vec<Result<u16, String>> = vec![Err(String::new()); ids.len()];
    for w in workers {
        let (i, answer) = w.join().unwrap();
        answers[i] = answer;
    }
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    eprintln!(
        "before the kill: {answered} of {} provisions answered",
        answers.len()
    );
    b.restart();

    // Whatever was answered 201 must exist; retrying any of them must end in 200/201.
    let mut retried = 0;
    for (iid, answer) in ids.iter().zip(&answers) {
        if answer.as_ref().is_ok_and(|s| *s == 201) {
            b.fetch_instance(iid).expect(200);
        }
        // A provision cut off while it held its lease is refused with ConcurrencyError
        // until the lease expires; the platform retries.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let resp = b.provision(iid, &body, false);
            if resp.status == 422
                && resp.json["error"] == "ConcurrencyError"
                && std::time::Instant::now() < deadline
            {
                retried += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
            resp.expect_one_of(&[200, 201]);
            break;
        }
        b.fetch_instance(iid).expect(200);
        let record = b.store_json(&instance_key(iid)).unwrap();
        assert_eq!(record["status"], "ready", "{iid}: {record}");
    }
    eprintln!("retries on ConcurrencyError after the restart: {retried}");
}
