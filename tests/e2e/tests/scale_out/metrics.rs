//! Metrics across two hosts sharing one Redis: concurrent provisions spread over both
//! hosts, and identical ones racing for one id, are counted exactly once each — by atomic
//! increments in the shared store, whichever host served them — and either host's
//! `/metrics` shows the same numbers.

use super::*;

const OPERATOR_PASSWORD: &str = "operator-scale-out-password";

fn metrics(host: &Broker) -> String {
    host.operator_request("GET", "/metrics", OPERATOR_PASSWORD)
        .send()
        .expect(200)
        .body
}

/// The value of the one sample of `metric` for `plan_id` (and `kind`, when given; ready
/// instances for `spin_osb_instances`).
fn sample(text: &str, metric: &str, plan_id: &str, kind: Option<&str>) -> f64 {
    let mut labels = vec![("plan_id", plan_id)];
    labels.extend(kind.map(|k| ("kind", k)));
    if metric == "spin_osb_instances" {
        labels.push(("status", "ready"));
    }
    let matching = spin_osb_e2e::metrics_text::samples(text, metric, &labels);
    assert_eq!(matching.len(), 1, "{metric} {plan_id} {kind:?}:\n{text}");
    matching[0]
}

#[test]
fn two_hosts_on_one_redis_count_every_operation_exactly_once() {
    let _serial = serial();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), false)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), None)),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD);
    let hosts = start_hosts(2, &options);
    let sync = hosts[0].catalog().plan_named("sync").expect("sync plan");
    let fleet = Fleet::new(&hosts, None);
    let body = sync.provision_body(json!({}));

    // 40 distinct instances, each on a random host, all at once; and 20 identical
    // provisions of one more id racing on both hosts (exactly one creates it).
    let ids: Vec<String> = (0..40).map(|_| new_id()).collect();
    let created = fleet.fan(ids.len(), |i| fleet.provision(None, &ids[i], &body, false));
    assert!(
        created.iter().all(|r| r.status == 201),
        "every distinct provision is 201"
    );
    let contested = new_id();
    let raced = fleet.fan(20, |_| fleet.provision(None, &contested, &body, false));
    identical_creations(
        &raced,
        &[200, 201],
        201,
        "identical provisions across hosts",
    );
    // Ten deprovisions, spread over both hosts.
    let deleted = fleet.fan(10, |i| fleet.deprovision(None, &ids[i], &sync, false));
    assert!(
        deleted.iter().all(|r| r.status == 200),
        "every deprovision is 200"
    );

    let plan_id = sync.plan_id.as_str();
    for host in &hosts {
        let text = metrics(host);
        let provisions = sample(
            &text,
            "spin_osb_operations_succeeded_total",
            plan_id,
            Some("provision"),
        );
        assert_eq!(provisions, 41.0, "40 distinct + 1 contested:\n{text}");
        let started = sample(
            &text,
            "spin_osb_operations_started_total",
            plan_id,
            Some("provision"),
        );
        assert_eq!(started, 41.0);
        let deprovisions = sample(
            &text,
            "spin_osb_operations_succeeded_total",
            plan_id,
            Some("deprovision"),
        );
        assert_eq!(deprovisions, 10.0);
        assert_eq!(sample(&text, "spin_osb_instances", plan_id, None), 31.0);
    }
}
