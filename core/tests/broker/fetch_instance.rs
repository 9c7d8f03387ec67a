//! Fetch instance.

use super::*;

#[test]
fn fetching_an_instance_returns_its_plan_parameters_maintenance_info_and_metadata() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"size": 2}));
    let r = expect(w.fetch("i1"), 200);
    let b = body(&r);
    assert_eq!(b["service_id"], SVC);
    assert_eq!(b["plan_id"], SYNC);
    assert_eq!(b["parameters"], json!({"size": 2}));
    assert_eq!(b["maintenance_info"], json!({"version": "1.0.0"}));
    assert_eq!(b["dashboard_url"], "https://dash.example.com/sync/i1");
    assert_eq!(
        b["metadata"]["labels"],
        json!({"service": "main", "plan": "sync"})
    );
}

#[test]
fn fetching_an_unknown_or_still_provisioning_instance_is_404() {
    let w = world();
    expect(w.fetch("nope"), 404);
    expect(w.provision("i1", ASYNC), 202);
    expect(w.fetch("i1"), 404);
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    expect(w.fetch("i1"), 200);
}

#[test]
fn fetching_an_instance_being_updated_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    );
    expect_422(w.fetch("i1"), "ConcurrencyError");
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    let r = expect(w.fetch("i1"), 200);
    assert_eq!(body(&r)["parameters"], json!({"size": 2}));
}

#[test]
fn fetching_an_instance_being_or_already_deprovisioned_is_404() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.deprovision("i1", ASYNC), 202);
    expect(w.fetch("i1"), 404);
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    expect(w.fetch("i1"), 404);
}

#[test]
fn fetching_an_instance_of_a_service_without_instances_retrievable_is_404() {
    let w = world();
    expect(w.provision("i1", PLAIN), 201);
    expect(w.fetch("i1"), 404);
}
