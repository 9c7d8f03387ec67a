//! Three hosts, one Redis, the scenarios on eight workers, and one host killed midway.

use super::*;

#[test]
fn three_hosts_sharing_redis_behave_as_one_broker() {
    let _serial = serial();
    let c = cluster();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), true)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), Some(c))),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_KUBERNETES_API_URL", &c.api_url)
    .env("SPIN_VARIABLE_KUBERNETES_TOKEN", &c.admin_token);
    let hosts = start_hosts(3, &options);
    for (i, h) in hosts.iter().enumerate() {
        eprintln!("host {i}: {} (pid {})", h.base(), h.pid());
    }
    let catalog = hosts[0].catalog();
    let plan = |name: &str| {
        catalog
            .plan_named(name)
            .unwrap_or_else(|| panic!("plan {name} in the combined catalog"))
    };
    let plans = Plans {
        sync: plan("sync"),
        asynchronous: plan("async"),
        cache: plan("cache"),
        database: plan("database"),
    };
    let fleet = Fleet::new(&hosts, Some(c.admin()));

    let mut scenarios: Vec<(&str, Scenario)> = Vec::new();
    for _ in 0..8 {
        scenarios.push(("sync-lifecycle", sync_lifecycle));
    }
    for _ in 0..6 {
        scenarios.push(("sync-kept", sync_kept));
    }
    for _ in 0..4 {
        scenarios.push(("async-lifecycle", async_lifecycle));
    }
    for _ in 0..3 {
        scenarios.push(("async-kept", async_kept));
    }
    for _ in 0..3 {
        scenarios.push(("deprovision-during-provision", deprovision_during_provision));
    }
    for _ in 0..4 {
        scenarios.push(("conflicting-creators", conflicting_creators));
    }
    for _ in 0..3 {
        scenarios.push(("reprovision-deleted-id", reprovision_deleted_id));
    }
    scenarios.push(("kube-cache-kept", kube_cache_kept));
    scenarios.push(("kube-cache-kept", kube_cache_kept));
    scenarios.push(("kube-cache-lifecycle", kube_cache_lifecycle));
    scenarios.push(("kube-database-kept", kube_database_kept));
    scenarios.push(("kube-database-lifecycle", kube_database_lifecycle));
    // Shuffle (Fisher-Yates), keeping the Kubernetes ones early so they overlap the kill.
    for i in (1..scenarios.len()).rev() {
        let j = random_below(i + 1);
        scenarios.swap(i, j);
    }
    scenarios.sort_by_key(|(name, _)| !name.starts_with("kube"));

    const WORKERS: usize = 8;
    const KILL_AT_MUTATING: usize = 90;
    const REJOIN_AFTER: usize = 150;
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let kill_log: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let started = Instant::now();
    thread::scope(|s| {
        // The chaos: SIGKILL host 2 mid-run, start it again later.
        s.spawn(|| {
            while fleet.mutating.load(Ordering::SeqCst) < KILL_AT_MUTATING
                && !done.load(Ordering::SeqCst)
            {
                thread::sleep(Duration::from_millis(10));
            }
            // Kill it while it is busy (up to 10 s of waiting for 2 requests in flight).
            let busy_deadline = Instant::now() + Duration::from_secs(10);
            while fleet.in_flight[2].load(Ordering::SeqCst) < 2
                && Instant::now() < busy_deadline
                && !done.load(Ordering::SeqCst)
            {
                thread::yield_now();
            }
            let in_flight = fleet.in_flight[2].load(Ordering::SeqCst);
            let at = fleet.total.load(Ordering::SeqCst);
            hosts[2].kill9();
            fleet.alive[2].store(false, Ordering::SeqCst);
            kill_log.lock().unwrap().push(format!(
                "host 2 killed (SIGKILL) at {:.1} s, after {at} requests, with {in_flight} in flight",
                started.elapsed().as_secs_f64()
            ));
            while fleet.total.load(Ordering::SeqCst) < at + REJOIN_AFTER
                && !done.load(Ordering::SeqCst)
            {
                thread::sleep(Duration::from_millis(10));
            }
            hosts[2].restart();
            fleet.alive[2].store(true, Ordering::SeqCst);
            kill_log.lock().unwrap().push(format!(
                "host 2 back on {} at {:.1} s, after {} requests",
                hosts[2].base(),
                started.elapsed().as_secs_f64(),
                fleet.total.load(Ordering::SeqCst)
            ));
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((name, scenario)) = scenarios.get(i) else {
                        break;
                    };
                    let result =
                        std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&fleet, &plans)));
                    if let Err(e) = result {
                        let message = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{name} #{i}: {message}"));
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        done.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed();
    fleet.counting.store(false, Ordering::SeqCst);

    let total = fleet.total.load(Ordering::SeqCst);
    let mutating = fleet.mutating.load(Ordering::SeqCst);
    let per_host: Vec<usize> = fleet
        .per_host
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    eprintln!(
        "scale-out run: {} scenarios, {total} requests ({mutating} provision/bind/unbind/deprovision) in {:.1} s ({:.1} req/s); per host {per_host:?}; statuses {:?}; {} requests without response (retried elsewhere); {} ConcurrencyError answers retried",
        scenarios.len(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        fleet.statuses.lock().unwrap(),
        fleet.transport_errors.load(Ordering::SeqCst),
        fleet.concurrency_errors.load(Ordering::SeqCst),
    );
    for line in kill_log.lock().unwrap().iter() {
        eprintln!("  {line}");
    }
    for note in fleet.notes.lock().unwrap().iter() {
        eprintln!("  note: {note}");
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        mutating >= 200,
        "at least 200 provision/bind/unbind/deprovision requests: {mutating}"
    );
    assert_eq!(
        kill_log.lock().unwrap().len(),
        2,
        "host 2 was killed and restarted"
    );
    assert!(
        per_host.iter().all(|&n| n > 20),
        "every host served: {per_host:?}"
    );
    assert!(hosts.iter().all(Broker::is_running));

    let instances = fleet.instances.lock().unwrap().clone();
    let bindings = fleet.bindings.lock().unwrap().clone();
    verify_through_every_host(&fleet, &instances, &bindings);
    verify_redis(&redis, &instances, &bindings);
    verify_kubernetes(fleet.kube.as_ref().unwrap(), &instances, &bindings);

    // Clean the cluster up: deprovision what was kept, drop the test namespaces.
    fleet.counting.store(false, Ordering::SeqCst);
    let k = fleet.kube.as_ref().unwrap();
    for inst in instances.iter().filter(|i| i.kube.is_some()) {
        if matches!(inst.last, Final::Ready(_)) {
            let resp = fleet.settle(|| fleet.deprovision(None, &inst.iid, &inst.plan, true));
            if resp.status == 202 {
                let op = resp.operation();
                let info = inst.kube.as_ref().unwrap();
                fleet.wait_instance(&inst.iid, &op, Some(&info.namespace));
            }
        }
        let info = inst.kube.as_ref().unwrap();
        if info.namespace.starts_with("e2e-so-") {
            k.delete(&format!("/api/v1/namespaces/{}", info.namespace));
        }
    }
}
