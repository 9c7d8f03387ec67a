//! The end state after the run: through every host, in Redis, and in Kubernetes.

use super::*;

/// Every instance and binding answers the same on every host, and as the scenario implies.
pub fn verify_through_every_host(
    f: &Fleet,
    instances: &[InstanceExpect],
    bindings: &[BindingExpect],
) {
    let mut problems = Vec::new();
    let n = f.hosts.len();
    for inst in instances {
        let answers: Vec<(u16, u16, Value, Value)> = (0..n)
            .map(|h| {
                let fetched = f.fetch_instance(Some(h), &inst.iid);
                assert_eq!(fetched.host, h);
                let last = f.instance_last_op(Some(h), &inst.iid, None);
                (
                    fetched.status,
                    last.status,
                    fetched.json.clone(),
                    last.json.clone(),
                )
            })
            .collect();
        if answers.iter().any(|a| a != &answers[0]) {
            problems.push(format!(
                "instance {} ({}): hosts disagree: {answers:?}",
                inst.iid, inst.scenario
            ));
            continue;
        }
        let (fetch, last, body, last_body) = &answers[0];
        let ok = match &inst.last {
            Final::Ready(params) => {
                *fetch == 200
                    && *last == 200
                    && last_body["state"] == "succeeded"
                    && body["parameters"] == *params
            }
            Final::Gone => *fetch == 404 && *last == 410,
        };
        if !ok {
            problems.push(format!(
                "instance {} ({}): expected {:?}, got fetch {fetch} {body}, last_operation {last} {last_body}",
                inst.iid, inst.scenario, inst.last
            ));
        }
    }
    for b in bindings {
        let answers: Vec<(u16, u16, Value, Value)> = (0..n)
            .map(|h| {
                let fetched = f.fetch_binding(Some(h), &b.iid, &b.bid);
                let last = f.binding_last_op(Some(h), &b.iid, &b.bid, None);
                (
                    fetched.status,
                    last.status,
                    fetched.json.clone(),
                    last.json.clone(),
                )
            })
            .collect();
        if answers.iter().any(|a| a != &answers[0]) {
            problems.push(format!(
                "binding {} ({}): hosts disagree: {answers:?}",
                b.bid, b.scenario
            ));
            continue;
        }
        let (fetch, last, body, last_body) = &answers[0];
        let ok = match &b.last {
            Final::Ready(params) => {
                *fetch == 200
                    && *last == 200
                    && last_body["state"] == "succeeded"
                    && body["credentials"]
                        .as_object()
                        .is_some_and(|c| !c.is_empty())
                    && body["parameters"] == *params
            }
            Final::Gone => *fetch == 404 && *last == 410,
        };
        if !ok {
            problems.push(format!(
                "binding {} of {} ({}): expected {:?}, got fetch {fetch} {body}, last_operation {last} {last_body}",
                b.bid, b.iid, b.scenario, b.last
            ));
        }
    }
    eprintln!(
        "verified {} instances and {} bindings through each of the {n} hosts",
        instances.len(),
        bindings.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Redis holds exactly the expected records (plus their claim counters and the
/// Kubernetes discovery cache): nothing lost, nothing extra, no lease or operation left.
pub fn verify_redis(redis: &RedisServer, instances: &[InstanceExpect], bindings: &[BindingExpect]) {
    let store = redis.snapshot();
    let mut expected: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for i in instances {
        let status = if i.last == Final::Gone {
            "deleted"
        } else {
            "ready"
        };
        assert!(
            expected
                .insert(instance_key(&i.iid), (status, i.scenario))
                .is_none(),
            "instance ids are unique"
        );
    }
    for b in bindings {
        let status = if b.last == Final::Gone {
            "deleted"
        } else {
            "ready"
        };
        expected.insert(binding_key(&b.iid, &b.bid), (status, b.scenario));
    }
    let mut problems = Vec::new();
    let mut claims: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut caches = 0;
    // Binding keys named by the instances' binding indexes (see core/src/expiry.rs).
    let mut indexed: BTreeSet<String> = BTreeSet::new();
    // (instance id, slot) of every instance-index entry.
    let mut instance_slots: BTreeSet<(String, String)> = BTreeSet::new();
    let mut counters = 0;
    for (key, value) in &store {
        if key.starts_with("osb/v1/metrics/") {
            counters += 1;
            continue;
        }
        if let Some(slot) = key.strip_prefix("osb/v1/index/metrics/") {
            // The metrics' series index names counters that exist (a counter is
            // incremented before it is indexed).
            let counter = String::from_utf8_lossy(value).to_string();
            if slot != "n" && !store.contains_key(&counter) {
                problems.push(format!(
                    "metrics index {key} names a missing counter {counter}"
                ));
            }
            continue;
        }
        if key == "osb/v1/broker" || key.starts_with("osb/v1/broker/claim/") {
            // The broker's identity (see core/src/state/identity.rs).
            continue;
        }
        if key.starts_with("osb/v1/expiry/") {
            // The tombstone expiry ledger and its cursor (see core/src/expiry.rs).
            continue;
        }
        if let Some(slot) = key.strip_prefix("osb/v1/index/instances/") {
            // The instance index (see core/src/index.rs): each instance record must name a
            // slot that names it (checked below); extra slots of concurrent creators are
            // allowed but must name known instances.
            if slot != "n" {
                let iid = String::from_utf8_lossy(value).to_string();
                if !expected.contains_key(&instance_key(&iid)) {
                    problems.push(format!(
                        "instance index {key} names an unknown instance {iid}"
                    ));
                }
                instance_slots.insert((iid, slot.to_string()));
            }
            continue;
        }
        if let Some((instance, entry)) = key.split_once("/binding-index/") {
            let iid = instance.trim_start_matches("osb/v1/instance/");
            if !expected.contains_key(instance) {
                problems.push(format!("binding index {key} of an unknown instance"));
            }
            if entry != "n" {
                indexed.insert(binding_key(iid, &String::from_utf8_lossy(value)));
            }
            continue;
        }
        if let Some((record, generation)) = key.split_once("/claim/") {
            if !expected.contains_key(record) {
                problems.push(format!("claim counter {key} of an unknown record"));
            }
            let n = String::from_utf8_lossy(value).parse::<i64>().unwrap_or(-1);
            claims
                .entry(record.to_string())
                .or_default()
                .push((generation.to_string(), n));
            continue;
        }
        if key.starts_with("osb/v1/cache/kubernetes/") {
            caches += 1;
            continue;
        }
        let Some((status, scenario)) = expected.get(key) else {
            problems.push(format!(
                "unexpected key {key}: {}",
                String::from_utf8_lossy(value)
            ));
            continue;
        };
        let record: Value = match serde_json::from_slice(value) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{key} ({scenario}) is not JSON: {e}"));
                continue;
            }
        };
        let op = &record["operation"];
        if record["schema"] != 1
            || record["status"] != *status
            || op["state"] == "in progress"
            || op.get("lease_until").is_some_and(|l| !l.is_null())
        {
            problems.push(format!(
                "{key} ({scenario}): expected status {status}, no running operation and no lease; got status {}, operation {op}",
                record["status"]
            ));
        }
    }
    for key in expected.keys() {
        if !store.contains_key(key) {
            problems.push(format!("lost record {key} ({})", expected[key].1));
        }
        if !claims.contains_key(key) {
            problems.push(format!("record {key} has no claim counter"));
        }
        if let Some(iid) = key.strip_prefix("osb/v1/instance/") {
            let slot = store
                .get(key)
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .and_then(|r| r["index_slot"].as_u64());
            let listed = slot
                .is_some_and(|slot| instance_slots.contains(&(iid.to_string(), slot.to_string())));
            if !listed {
                problems.push(format!(
                    "instance {key} (slot {slot:?}) is missing from the instance index"
                ));
            }
        }
        if key.starts_with("osb/v1/binding/") && !indexed.contains(key) {
            problems.push(format!(
                "binding {key} is missing from its instance's index"
            ));
        }
    }
    let takeovers: Vec<String> = claims
        .iter()
        .filter(|(_, gens)| gens.len() > 1)
        .map(|(k, gens)| format!("{k}: {gens:?}"))
        .collect();
    let creators: usize = claims
        .values()
        .flat_map(|g| g.iter().map(|(_, n)| *n as usize))
        .sum();
    eprintln!(
        "redis: {} keys = {} records + {} claim counters (sum {creators} creation attempts) + {caches} discovery cache entries + {counters} metrics counters; claim takeovers: {takeovers:?}",
        store.len(),
        expected.len(),
        claims.values().map(Vec::len).sum::<usize>(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each Kubernetes instance owns exactly one object of each expected name while it
/// exists and none once deleted; each binding its one Secret (cache) or nothing.
pub fn verify_kubernetes(k: &Kube, instances: &[InstanceExpect], bindings: &[BindingExpect]) {
    let mut problems = Vec::new();
    let mut checked = 0;
    for inst in instances {
        let Some(info) = &inst.kube else { continue };
        let expected = match inst.last {
            Final::Ready(_) => expected_instance_objects(&inst.iid, info),
            Final::Gone => no_objects(),
        };
        // Namespace deletion finishes asynchronously in the controller-manager.
        let deadline = Instant::now() + Duration::from_secs(60);
        let found = loop {
            let found = instance_objects(k, &inst.iid, info);
            if found == expected || Instant::now() > deadline {
                break found;
            }
            thread::sleep(Duration::from_millis(500));
        };
        checked += found.values().map(Vec::len).sum::<usize>();
        if found != expected {
            problems.push(format!(
                "instance {} ({}): objects by label {found:?}, expected {expected:?}",
                inst.iid, inst.scenario
            ));
        }
    }
    for b in bindings {
        let Some(info) = &b.kube else { continue };
        let selector = format!("osb.spin-osb.dev/binding={}", b.bid);
        let found = names(
            k,
            &format!("/api/v1/namespaces/{}/secrets", info.namespace),
            &selector,
        );
        let expected: Vec<String> = match (&b.last, info.plan.as_str()) {
            (Final::Ready(_), "cache") => {
                vec![format!("cache-{}-user-{}", &b.iid[..8], &b.bid[..8])]
            }
            _ => vec![],
        };
        checked += found.len();
        if found != expected {
            problems.push(format!(
                "binding {} ({}): secrets by label {found:?}, expected {expected:?}",
                b.bid, b.scenario
            ));
        }
    }
    eprintln!("kubernetes: {checked} objects found by label, each exactly once as expected");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
