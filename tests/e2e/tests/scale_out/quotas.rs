//! Quotas across two hosts sharing one Redis: 50 provisions at once, spread over both
//! hosts, against a plan limit of 10 create exactly 10 instances (the slots are atomic
//! increments in the shared store, whichever host takes them); deprovisions on one host
//! free slots that provisions on the other take, and both hosts report the same use.

use super::*;

const OPERATOR_PASSWORD: &str = "operator-scale-out-quotas";

/// The plan's use as `GET /operator/quotas` of `host` reports it.
fn plan_use(host: &Broker, plan_id: &str) -> u64 {
    let report = host
        .operator_request("GET", "/operator/quotas", OPERATOR_PASSWORD)
        .send()
        .expect(200);
    let limits = report.json["limits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let plan: Vec<&Value> = limits
        .iter()
        .filter(|l| l["scope"] == "plan" && l["scope_id"] == plan_id)
        .collect();
    assert_eq!(plan.len(), 1, "{}", report.body);
    plan[0]["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}", report.body))
}

fn statuses(answers: &[impl std::ops::Deref<Target = Resp>]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts.entry(answer.status).or_insert(0) += 1;
    }
    counts
}

#[test]
fn two_hosts_on_one_redis_enforce_a_quota_exactly() {
    let _serial = serial();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let catalog = catalog_dir(dir.path(), false);
    let file = catalog.join("credentials.yaml");
    let text = std::fs::read_to_string(&file).expect("catalog");
    let sync = "        name: sync\n";
    assert!(text.contains(sync));
    let text = text.replace(sync, &format!("{sync}        quotas: {{instances: 10}}\n"));
    std::fs::write(&file, text).expect("catalog with a quota");
    let options = Options {
        catalog: Some(catalog),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), None)),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD);
    let hosts = start_hosts(2, &options);
    let sync = hosts[0].catalog().plan_named("sync").expect("sync plan");
    let fleet = Fleet::new(&hosts, None);
    let body = sync.provision_body(json!({}));

    let ids: Vec<String> = (0..50).map(|_| new_id()).collect();
    let answers = fleet.fan(ids.len(), |i| fleet.provision(None, &ids[i], &body, false));
    let created: Vec<usize> = (0..50).filter(|&i| answers[i].status == 201).collect();
    let refused = answers.iter().filter(|r| r.status == 422).count();
    assert_eq!(
        (created.len(), refused),
        (10, 40),
        "statuses: {:?}",
        statuses(&answers)
    );
    assert!(answers.iter().filter(|r| r.status == 422).all(|r| r
        .body
        .contains("plan sync's quota of 10 instances is reached")));
    for host in &hosts {
        for (i, id) in ids.iter().enumerate() {
            let expected = if created.contains(&i) { 200 } else { 404 };
            assert_eq!(host.fetch_instance(id).status, expected, "instance {i}");
        }
        assert_eq!(plan_use(host, &sync.plan_id), 10);
    }

    // Three deprovisions on host 0 free three slots; host 1 takes exactly those.
    for &i in &created[..3] {
        hosts[0].deprovision(&ids[i], &sync, false).expect(200);
    }
    let more: Vec<String> = (0..10).map(|_| new_id()).collect();
    let again = fleet.fan(more.len(), |i| {
        fleet.provision(Some(1), &more[i], &body, false)
    });
    assert_eq!(
        again.iter().filter(|r| r.status == 201).count(),
        3,
        "statuses: {:?}",
        statuses(&again)
    );
    for host in &hosts {
        assert_eq!(plan_use(host, &sync.plan_id), 10);
    }
}
