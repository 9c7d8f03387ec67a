//! Quotas through HTTP against `spin-osb up`: 50 concurrent provisions against a plan
//! limit of 10 create exactly 10 instances (the other 40 get the 422 naming the limit),
//! a deprovision frees its slot, and a per-space limit counts each space apart.

use std::sync::Arc;

use spin_osb_e2e::{json, new_id, repo_root, Broker, Options, Value};
use spin_osb_test_support::concurrency::concurrently;

/// The shipped credentials catalog with quotas on its synchronous plan.
fn catalog(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("catalog/credentials.yaml")).unwrap();
    let sync = "        name: sync\n";
    assert!(text.contains(sync));
    let text = text.replace(
        sync,
        &format!("{sync}        quotas: {{instances: 10, per_space: 8}}\n"),
    );
    let dir = dir.join("catalog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("credentials.yaml"), text).unwrap();
    dir
}

fn body(plan: &spin_osb_e2e::Plan, space: &str) -> Value {
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "org", "space_guid": space,
        "context": {"platform": "cloudfoundry", "organization_guid": "org", "space_guid": space}})
}

#[test]
fn fifty_concurrent_provisions_against_a_limit_of_ten_create_exactly_ten() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Arc::new(Broker::start_with_options(Options {
        catalog: Some(catalog(tmp.path())),
        ..Options::default()
    }));
    let plan = b.catalog().plan_named("sync").expect("plan sync");
    // Five spaces of ten requests: the plan's limit (10) binds before any space's (8).
    let ids: Arc<Vec<String>> = Arc::new((0..50).map(|_| new_id()).collect());
    let answers = {
        let (b, ids, plan) = (b.clone(), ids.clone(), plan.clone());
        concurrently(50, move |i| {
            let answer = b.provision(&ids[i], &body(&plan, &format!("space-{}", i % 5)), false);
            (answer.status, answer.body)
        })
    };
    let created: Vec<usize> = (0..50).filter(|i| answers[*i].0 == 201).collect();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|a| a.0 == 422)
        .map(|a| &a.1)
        .collect();
    assert_eq!((created.len(), refused.len()), (10, 40), "{answers:?}");
    assert!(
        refused[0].contains("plan sync's quota of 10 instances is reached"),
        "{}",
        refused[0]
    );
    for i in 0..50 {
        let expected = if created.contains(&i) { 200 } else { 404 };
        assert_eq!(b.fetch_instance(&ids[i]).status, expected, "instance {i}");
    }

    // A deprovision frees its slot for the next provision, and only one.
    let extra = new_id();
    b.provision(&extra, &body(&plan, "space-x"), false)
        .expect(422);
    b.deprovision(&ids[created[0]], &plan, false).expect(200);
    b.provision(&extra, &body(&plan, "space-x"), false)
        .expect(201);
    b.provision(&new_id(), &body(&plan, "space-x"), false)
        .expect(422);
}

#[test]
fn a_per_space_limit_counts_each_space_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::start_with_options(Options {
        catalog: Some(catalog(tmp.path())),
        ..Options::default()
    });
    let plan = b.catalog().plan_named("sync").expect("plan sync");
    for _ in 0..8 {
        b.provision(&new_id(), &body(&plan, "crowded"), false)
            .expect(201);
    }
    let refused = b
        .provision(&new_id(), &body(&plan, "crowded"), false)
        .expect(422);
    assert!(
        refused.body.contains("quota of 8 instances per space"),
        "{}",
        refused.body
    );
    b.provision(&new_id(), &body(&plan, "roomy"), false)
        .expect(201);
}
