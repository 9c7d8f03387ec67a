//! The broker under the real Spin CLI (not this project's host), on Spin's own key-value
//! stores, whose compare-and-swap is weaker than documented: the SQLite store upserts a
//! swap on an absent key, and the Redis store writes and then reports `cas-failed` every
//! time. The same OSB answers as under `spin-osb up` are expected on both:
//! * the whole lifecycle of the sync and async credentials plans;
//! * 50 identical concurrent provisions, then binds: exactly one 201, the rest 200;
//! * `kill -9` of Spin mid-operation, a restart, and the operation polled to success;
//! * two Spin processes on one Redis answering as one broker;
//! * concurrent `last_operation` polls of one BOSH operation (against the director
//!   simulator) on both processes, one of them killed and restarted meanwhile: one
//!   deployment, at most one director step per poll.
//!
//! The real Spin CLI comes from the build the project's CI provides (`scripts/test.sh`
//! installs it); without it these tests say so and pass, except under `CI=true`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use bosh_director_sim::{HoldAt, SimConfig, Simulator};
use spin_osb_e2e::{
    concurrently, json, new_id, real_spin_bin, repo_root, status_histogram, until_exit, Broker,
    Options, Resp,
};
use spin_osb_test_support::redis::RedisServer;

/// Each test starts Spin processes that compile twelve components; one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Options for a broker under real Spin, or `None` (test skipped) when the CLI is missing
/// outside CI.
fn real_spin(options: Options) -> Option<Options> {
    match real_spin_bin() {
        Ok(_) => Some(Options {
            real_spin: true,
            ..options
        }),
        Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// Sync and async lifecycles, then exact concurrency, spread over `brokers` (one or more
/// processes sharing a store).
fn lifecycle_and_concurrency(brokers: &[&'static Broker]) {
    let a = brokers[0];
    let on = |i: usize| brokers[i % brokers.len()];
    let plans = a.plans();

    // Sync: every step answered at once, on alternating processes.
    let (sync, iid, bid) = (plans.sync.clone(), new_id(), new_id());
    on(0)
        .provision(&iid, &sync.provision_body(json!({})), false)
        .expect(201);
    on(1)
        .bind(&iid, &bid, &sync.bind_body(json!({})), false)
        .expect(201);
    on(0).fetch_binding(&iid, &bid).expect(200);
    on(1).unbind(&iid, &bid, &sync, false).expect(200);
    on(0).deprovision(&iid, &sync, false).expect(200);
    on(1).fetch_instance(&iid).expect_error(404);

    // Async: 202 and an operation, polled to success on either process.
    let (asynchronous, iid) = (plans.asynchronous.clone(), new_id());
    let op = on(1)
        .provision(&iid, &asynchronous.provision_body(json!({})), true)
        .expect(202)
        .operation();
    on(0).wait_instance_operation(&iid, &op);
    on(1).fetch_instance(&iid).expect(200);

    // 50 identical provisions at once: one creates (201), the others see it (200).
    let (iid, body) = (new_id(), sync.provision_body(json!({})));
    let results = {
        let (iid, body, brokers) = (iid.clone(), body.clone(), brokers.to_vec());
        concurrently(50, move |i| {
            brokers[i % brokers.len()].provision(&iid, &body, false)
        })
    };
    let counts = status_histogram(&results);
    assert_eq!(
        counts,
        BTreeMap::from([(200, 49), (201, 1)]),
        "provisions: {counts:?}"
    );

    // And 50 identical binds of one binding.
    let (bid, body) = (new_id(), sync.bind_body(json!({})));
    let results = {
        let (iid, bid, body, brokers) = (iid.clone(), bid.clone(), body.clone(), brokers.to_vec());
        concurrently(50, move |i| {
            brokers[i % brokers.len()].bind(&iid, &bid, &body, false)
        })
    };
    let counts = status_histogram(&results);
    assert_eq!(
        counts,
        BTreeMap::from([(200, 49), (201, 1)]),
        "binds: {counts:?}"
    );
    let credentials: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| r.json["credentials"].to_string())
        .collect();
    assert_eq!(
        credentials.len(),
        1,
        "every answer names the same credentials"
    );
}

#[test]
fn under_real_spin_with_sqlite_the_broker_answers_as_under_spin_osb() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(options) = real_spin(Options::default()) else {
        return;
    };
    let broker = until_exit(Broker::start_with_options(options));
    lifecycle_and_concurrency(&[broker]);
    killed_mid_operation_and_restarted(broker);
}

/// An async provision whose first step has run; `kill -9` of Spin (with the trigger
/// process it started); Spin started again on the same state: the poll finishes the
/// operation and the instance is there.
fn killed_mid_operation_and_restarted(broker: &Broker) {
    let plan = broker.plans().asynchronous;
    let iid = new_id();
    let op = broker
        .provision(&iid, &plan.provision_body(json!({})), true)
        .expect(202)
        .operation();
    let first = broker.instance_last_operation(&iid, Some(&op)).expect(200);
    assert_eq!(first.json["state"], "in progress", "{}", first.body);
    broker.kill9();
    broker.restart();
    let done = broker.wait_instance_operation(&iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    broker.fetch_instance(&iid).expect(200);
    let bid = new_id();
    broker
        .bind(&iid, &bid, &plan.bind_body(json!({})), true)
        .expect(202);
}

fn redis_runtime_config(dir: &Path, redis: &RedisServer) -> std::path::PathBuf {
    let path = dir.join("runtime-config.toml");
    std::fs::write(
        &path,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .expect("runtime config");
    path
}

#[test]
fn two_real_spin_processes_on_one_redis_answer_as_one_broker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(options) = real_spin(Options::default()) else {
        return;
    };
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        runtime_config: Some(redis_runtime_config(dir.path(), &redis)),
        ..options
    };
    let a = until_exit(Broker::start_with_options(options.clone()));
    let b = until_exit(Broker::start_with_options(options));
    lifecycle_and_concurrency(&[a, b]);
}

/// Several real Spin processes on one Redis polling one BOSH operation at once: the
/// director sees one deployment, and never more director steps than polls.
#[test]
fn concurrent_polls_under_real_spin_on_redis_advance_one_bosh_operation_once() {
    const CLIENT: &str = "spin-osb";
    const SECRET: &str = "director-client-secret";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(options) = real_spin(Options::default()) else {
        return;
    };
    let redis = RedisServer::start();
    let sim = Simulator::start(SimConfig::basic(CLIENT, SECRET));
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(repo_root().join("tests/catalogs/bosh")),
        runtime_config: Some(redis_runtime_config(dir.path(), &redis)),
        ..options
    }
    .env("SPIN_VARIABLE_BOSH_DIRECTOR_URL", sim.base_url())
    .env("SPIN_VARIABLE_BOSH_CLIENT", CLIENT)
    .env("SPIN_VARIABLE_BOSH_CLIENT_SECRET", SECRET);
    let a = until_exit(Broker::start_with_options(options.clone()));
    let b = until_exit(Broker::start_with_options(options));
    let brokers = [a, b];
    let plan = a.catalog().plan_named("plain").expect("plan");
    let iid = new_id();
    let deployment = format!("service-instance_{iid}");

    sim.hold_tasks(HoldAt::Processing);
    let body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "o", "space_guid": "s"});
    let op = a.provision(&iid, &body, true).expect(202).operation();
    let polls_at_once = |n: usize| -> Vec<Resp> {
        let (iid, op) = (iid.clone(), op.clone());
        concurrently(n, move |i| {
            brokers[i % brokers.len()].instance_last_operation(&iid, Some(&op))
        })
    };
    let task_polls = || {
        sim.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/tasks/"))
            .count()
    };

    // While the director holds the task: every poll says in progress, nothing is deployed
    // twice, and the director is not asked more often than it is polled.
    let mut polls = 0;
    for _ in 0..5 {
        for r in polls_at_once(20) {
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json["state"], "in progress", "{}", r.body);
        }
        polls += 20;
    }
    assert_eq!(sim.deployment(&deployment).expect("deployed").post_count, 1);
    assert!(
        task_polls() <= polls,
        "{} task polls for {polls} last_operation polls",
        task_polls()
    );

    // One process dies mid-operation; the task finishes meanwhile; it comes back.
    a.kill9();
    sim.release_tasks();
    a.restart();
    let mut finished = false;
    for _ in 0..60 {
        let states: Vec<String> = polls_at_once(10)
            .iter()
            .map(|r| {
                assert_eq!(r.status, 200, "{}", r.body);
                r.json["state"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        polls += 10;
        assert!(
            states
                .iter()
                .all(|s| s == "in progress" || s == "succeeded"),
            "{states:?}"
        );
        if states.iter().all(|s| s == "succeeded") {
            finished = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(finished, "the operation did not finish");
    assert_eq!(sim.deployment(&deployment).expect("deployed").post_count, 1);
    assert!(
        task_polls() <= polls,
        "{} task polls for {polls} last_operation polls",
        task_polls()
    );
    b.fetch_instance(&iid).expect(200);
}
