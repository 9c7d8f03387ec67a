//! Redis unreachable under two hosts: prompt 503s, nothing written half-way, and every
//! interrupted request completed by retrying it once Redis is back.

use super::*;

/// A request to try while Redis is down, with its name.
type Check<'a> = (&'static str, Box<dyn Fn() -> Resp + 'a>);

const STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// A prompt 503 OSB error that names the state store.
#[track_caller]
fn unavailable(resp: Resp, took: Duration) {
    assert_eq!(
        resp.status, 503,
        "{}: expected 503 while Redis is down, got {}: {}",
        resp.what, resp.status, resp.body
    );
    resp.assert_osb_error_body();
    assert!(
        resp.description().contains("state store"),
        "{}: the 503 must say the state store is unavailable: {}",
        resp.what,
        resp.body
    );
    assert!(took < STORE_TIMEOUT, "{}: the 503 took {took:?}", resp.what);
}

fn timed(f: impl FnOnce() -> Resp) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = f();
    (resp, started.elapsed())
}

#[test]
fn an_unreachable_redis_gives_a_clear_503_and_writes_nothing_half_way() {
    let _serial = serial();
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), false)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), None)),
        ..Options::default()
    };
    let hosts = start_hosts(2, &options);
    let catalog = hosts[0].catalog();
    let sync = catalog.plan_named("sync").expect("sync plan");
    let asynchronous = catalog.plan_named("async").expect("async plan");

    // State from before the outage.
    let p = new_id();
    let pb = new_id();
    hosts[0]
        .provision(&p, &sync.provision_body(json!({"size": 2})), false)
        .expect(201);
    hosts[1]
        .bind(&p, &pb, &sync.bind_body(json!({})), false)
        .expect(201);
    let a = new_id();
    let op = hosts[1]
        .provision(&a, &asynchronous.provision_body(json!({})), true)
        .expect(202)
        .operation();
    assert_eq!(
        hosts[0].wait_instance_operation(&a, &op).json["state"],
        "succeeded"
    );
    let before = redis.snapshot();

    // Outage.
    redis.shutdown_save();
    let mut durations = Vec::new();
    let mut outage_ids = Vec::new();
    for (h, b) in hosts.iter().enumerate() {
        let x = new_id();
        let y = new_id();
        let nb = new_id();
        outage_ids.extend([x.clone(), y.clone(), nb.clone()]);
        let checks: Vec<Check<'_>> = vec![
            (
                "provision (sync)",
                Box::new(|| b.provision(&x, &sync.provision_body(json!({})), false)),
            ),
            (
                "provision (async)",
                Box::new(|| b.provision(&y, &asynchronous.provision_body(json!({})), true)),
            ),
            (
                "bind",
                Box::new(|| b.bind(&p, &nb, &sync.bind_body(json!({})), false)),
            ),
            ("fetch instance", Box::new(|| b.fetch_instance(&p))),
            ("fetch binding", Box::new(|| b.fetch_binding(&p, &pb))),
            (
                "instance last_operation",
                Box::new(|| b.instance_last_operation(&a, None)),
            ),
            (
                "binding last_operation",
                Box::new(|| b.binding_last_operation(&p, &pb, None)),
            ),
            (
                "update",
                Box::new(|| {
                    b.update(
                        &p,
                        &json!({"service_id": sync.service_id, "parameters": {"size": 1}}),
                        false,
                    )
                }),
            ),
            ("unbind", Box::new(|| b.unbind(&p, &pb, &sync, false))),
            (
                "deprovision",
                Box::new(|| b.deprovision(&a, &asynchronous, true)),
            ),
        ];
        for (what, check) in checks {
            let (resp, took) = timed(check);
            eprintln!(
                "redis down, host {h}, {what}: {} in {} ms: {}",
                resp.status,
                took.as_millis(),
                resp.body
            );
            unavailable(resp, took);
            durations.push(took);
        }
        // The catalog never touches the store.
        b.catalog();
    }
    let slowest = durations.iter().max().unwrap();
    eprintln!("slowest 503 during the outage: {slowest:?}");

    // Redis is back: the same requests succeed, and nothing was written while it was down.
    redis.start_again();
    let started = Instant::now();
    for b in &hosts {
        loop {
            let resp = b.fetch_instance(&p);
            if resp.status == 200 {
                break;
            }
            assert_eq!(resp.status, 503, "{}", resp.body);
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no reconnection within 30 s: {}",
                resp.body
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "both hosts answered from Redis again {:?} after it restarted",
        started.elapsed()
    );
    let after = redis.snapshot();
    assert_eq!(
        after, before,
        "the store must be exactly as before the outage (no write happened while Redis was down)"
    );
    for id in &outage_ids {
        let leftovers: Vec<&String> = after.keys().filter(|k| k.contains(id.as_str())).collect();
        assert!(leftovers.is_empty(), "{id}: {leftovers:?}");
    }
    for (h, b) in hosts.iter().enumerate() {
        let x = &outage_ids[h * 3];
        let y = &outage_ids[h * 3 + 1];
        let nb = &outage_ids[h * 3 + 2];
        b.fetch_instance(x).expect(404);
        b.instance_last_operation(x, None).expect(404);
        // Retries succeed as if the first attempt never happened.
        b.provision(x, &sync.provision_body(json!({})), false)
            .expect(201);
        let op = b
            .provision(y, &asynchronous.provision_body(json!({})), true)
            .expect(202)
            .operation();
        assert_eq!(b.wait_instance_operation(y, &op).json["state"], "succeeded");
        b.bind(&p, nb, &sync.bind_body(json!({})), false)
            .expect(201);
    }
    hosts[0].fetch_binding(&p, &pb).expect(200);
    hosts[1].unbind(&p, &pb, &sync, false).expect(200);
    let dop = hosts[0]
        .deprovision(&a, &asynchronous, true)
        .expect(202)
        .operation();
    let gone = hosts[1].wait_instance_operation(&a, &dop);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );

    outage_under_load(&mut redis, &hosts, &sync);
}

/// Redis stops while provisions and binds are in flight on both hosts. Afterwards every
/// interrupted request is retried as a platform would (the same provision again, or a
/// deprovision for orphan mitigation) until it succeeds; then every record is complete,
/// with no operation or lease left, and nothing else is in the store.
fn outage_under_load(redis: &mut RedisServer, hosts: &[Broker], sync: &Plan) {
    let stop = AtomicBool::new(false);
    let attempts: Mutex<Vec<(String, String, u16, u16)>> = Mutex::new(Vec::new());
    let mut outage = Duration::ZERO;
    thread::scope(|s| {
        for t in 0..8 {
            let (stop, attempts) = (&stop, &attempts);
            s.spawn(move || {
                let b = &hosts[t % hosts.len()];
                while !stop.load(Ordering::SeqCst) {
                    let iid = new_id();
                    let bid = new_id();
                    let resp = b.provision(&iid, &sync.provision_body(json!({})), false);
                    let bound = if resp.status == 201 {
                        b.bind(&iid, &bid, &sync.bind_body(json!({})), false).status
                    } else {
                        0
                    };
                    attempts
                        .lock()
                        .unwrap()
                        .push((iid, bid, resp.status, bound));
                }
            });
        }
        thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        redis.shutdown_save();
        thread::sleep(Duration::from_millis(3000));
        stop.store(true, Ordering::SeqCst);
        redis.start_again();
        outage = started.elapsed();
    });
    let attempts = attempts.into_inner().unwrap();
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut bind_outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, _, provision, bind) in &attempts {
        *outcomes.entry(*provision).or_default() += 1;
        if *bind != 0 {
            *bind_outcomes.entry(*bind).or_default() += 1;
        }
    }
    eprintln!(
        "outage under load: {} provisions attempted around a {outage:?} outage: provision statuses {outcomes:?}, bind statuses {bind_outcomes:?}",
        attempts.len()
    );
    assert!(
        outcomes.get(&503).copied().unwrap_or(0) > 0,
        "some requests must have met the outage: {outcomes:?}"
    );

    // Recovery, as a platform does it: retry until a final answer.
    let concurrency = std::cell::Cell::new(0usize);
    let started = Instant::now();
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for (n, (iid, bid, provision, bind)) in attempts.iter().enumerate() {
        let (provision, bind) = (*provision, *bind);
        let b = &hosts[n % hosts.len()];
        let retry = |f: &dyn Fn() -> Resp| -> Resp {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let resp = f();
                let busy = resp.status == 422 && resp.json["error"] == "ConcurrencyError";
                if busy {
                    concurrency.set(concurrency.get() + 1);
                }
                if !(busy || resp.status == 503) || Instant::now() > deadline {
                    return resp;
                }
                thread::sleep(Duration::from_millis(500));
            }
        };
        if provision == 201 && bind == 201 {
            expected.insert(instance_key(iid), "ready");
            expected.insert(binding_key(iid, bid), "ready");
            continue;
        }
        if n % 2 == 0 {
            // Retry the provision (and the bind).
            let resp = retry(&|| b.provision(iid, &sync.provision_body(json!({})), false));
            assert!(
                resp.status == 201 || resp.status == 200,
                "retried provision {iid} (first answer {provision}): {} {}",
                resp.status,
                resp.body
            );
            let resp = retry(&|| b.bind(iid, bid, &sync.bind_body(json!({})), false));
            assert!(
                resp.status == 201 || resp.status == 200,
                "retried bind {bid} (first answer {bind}): {} {}",
                resp.status,
                resp.body
            );
            expected.insert(instance_key(iid), "ready");
            expected.insert(binding_key(iid, bid), "ready");
        } else {
            // Orphan mitigation: unbind and deprovision whatever may exist.
            let unbound = retry(&|| b.unbind(iid, bid, sync, false));
            assert!(
                unbound.status == 200 || unbound.status == 410,
                "unbind {bid}: {} {}",
                unbound.status,
                unbound.body
            );
            let resp = retry(&|| b.deprovision(iid, sync, false));
            assert!(
                resp.status == 200 || resp.status == 410,
                "orphan mitigation of {iid} (first answer {provision}): {} {}",
                resp.status,
                resp.body
            );
            if resp.status == 200 {
                expected.insert(instance_key(iid), "deleted");
            }
            if unbound.status == 200 {
                expected.insert(binding_key(iid, bid), "deleted");
            }
        }
    }
    eprintln!(
        "outage under load: recovered every request in {:?} ({} ConcurrencyError answers on the way)",
        started.elapsed(),
        concurrency.get()
    );

    let store = redis.snapshot();
    let mut problems = Vec::new();
    for (key, value) in &store {
        if key.contains("/claim/")
            || key.contains("/binding-index/")
            || key.starts_with("osb/v1/index/")
        {
            continue;
        }
        if !key.starts_with("osb/v1/") {
            problems.push(format!("unexpected key {key}"));
            continue;
        }
        let record: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
        let wanted = expected.get(key.as_str());
        let of_this_phase = attempts
            .iter()
            .any(|(iid, _, _, _)| key.contains(iid.as_str()));
        if !of_this_phase {
            // Records of the first part of the test.
            continue;
        }
        match wanted {
            None => problems.push(format!("{key}: a record nobody accounted for: {record}")),
            Some(status) if record["status"] != *status => {
                problems.push(format!("{key}: expected {status}: {record}"))
            }
            _ => {}
        }
        let op = &record["operation"];
        if op["state"] == "in progress" || op.get("lease_until").is_some_and(|l| !l.is_null()) {
            problems.push(format!(
                "{key}: an operation or lease was left behind: {op}"
            ));
        }
    }
    for key in expected.keys() {
        if !store.contains_key(key) {
            problems.push(format!("lost record {key}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
