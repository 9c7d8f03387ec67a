//! Upgrade-all by `maintenance_info` through the operator API: canaries first, then the
//! rest with `max_in_flight`; a failing canary stops the run; the run lives in the store
//! (a new CLI resumes it), adopts an upgrade it lost track of, and each upgrade is the
//! instance's ordinary update (a user's update meanwhile is 422).

use super::operator::{basic, PASSWORD};
use super::*;

/// The test catalog with the synchronous plan at `sync_version` and the asynchronous one
/// at `async_version`.
fn catalog_at(sync_version: &str, async_version: &str) -> Catalog {
    let mut yaml = CATALOG.replace(
        "maintenance_info: {version: 1.0.0, description: First.}",
        &format!("maintenance_info: {{version: {sync_version}}}"),
    );
    let async_plan = "        description: Every operation takes ten seconds.\n";
    assert!(yaml.contains(async_plan));
    yaml = yaml.replace(
        async_plan,
        &format!("{async_plan}        maintenance_info: {{version: {async_version}}}\n"),
    );
    Catalog::from_yaml_documents(&[("catalog.yaml", &yaml)]).expect("catalog loads")
}

impl World {
    /// The same store and clock with another catalog (a broker restarted on a new one).
    fn with_catalog(self, catalog: Catalog) -> World {
        World { catalog, ..self }
    }

    fn start_upgrade(&self, settings: Value) -> OsbResponse {
        self.operator_send("POST", "/operator/upgrades", &settings.to_string())
    }

    fn upgrade_step(&self) -> Value {
        let response = self.operator_send("POST", "/operator/upgrades/current/step", "");
        body(&expect(response, 200)).clone()
    }

    /// Steps until the run ends, moving the clock `seconds` between steps; every step's
    /// events, in order.
    fn upgrade_to_the_end(&self, seconds: u64) -> (Value, Vec<Value>) {
        let mut events = Vec::new();
        for _ in 0..100 {
            let run = self.upgrade_step();
            events.extend(run["events"].as_array().unwrap().iter().cloned());
            if run["phase"] == "done" || run["phase"] == "stopped" {
                return (run, events);
            }
            self.env.advance(seconds);
        }
        panic!("the upgrade did not end: {events:#?}");
    }

    fn version_of(&self, iid: &str) -> Value {
        self.instance(iid)["maintenance_info_version"].clone()
    }
}

fn of(events: &[Value], event: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == event)
        .map(|e| e["instance_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn canaries_go_first_then_the_rest_and_every_instance_reaches_the_new_version() {
    let w = World {
        catalog: catalog_at("1.0.0", "1.0.0"),
        ..world()
    };
    let ids: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    for iid in &ids {
        expect(w.provision(iid, SYNC), 201);
    }
    expect(w.provision("a0", ASYNC), 202);
    w.env.advance(DELAY);
    expect(w.last_op("a0", None), 200);
    let w = w.with_catalog(catalog_at("1.1.0", "2.0.0"));
    let outdated = w.operator("/operator/instances", &[("outdated", "true")]);
    assert_eq!(body(&outdated)["instances"].as_array().unwrap().len(), 6);

    let started = expect(
        w.start_upgrade(
            json!({"canaries": 2, "max_in_flight": 2, "canary_filter": {"plan_id": SYNC}}),
        ),
        201,
    );
    assert_eq!(body(&started)["phase"], "canaries");
    let first = w.upgrade_step();
    // Two canaries of the filtered plan, and nothing else yet.
    assert_eq!(
        of(first["events"].as_array().unwrap(), "succeeded"),
        ["s0", "s1"]
    );
    assert_eq!(first["phase"], "rest");
    let (run, events) = w.upgrade_to_the_end(DELAY);
    assert_eq!(run["phase"], "done", "{run:#}");
    assert_eq!(run["succeeded"], 6);
    assert_eq!(run["failed_total"], 0);
    assert_eq!(of(&events, "started"), ["a0"]);
    for iid in &ids {
        assert_eq!(w.version_of(iid), "1.1.0", "{iid}");
    }
    assert_eq!(w.version_of("a0"), "2.0.0");
    let fetched = expect(w.fetch("a0"), 200);
    assert_eq!(body(&fetched)["maintenance_info"]["version"], "2.0.0");
    let outdated = w.operator("/operator/instances", &[("outdated", "true")]);
    assert_eq!(body(&outdated)["instances"], json!([]));
    // A finished run is replaced by the next one, which finds nothing to do.
    expect(w.start_upgrade(json!({})), 201);
    let (run, _) = w.upgrade_to_the_end(1);
    assert_eq!(
        (run["phase"].clone(), run["succeeded"].clone()),
        (json!("done"), json!(0))
    );
}

#[test]
fn a_failing_canary_stops_the_run_and_leaves_the_others_alone() {
    let w = World {
        catalog: catalog_at("1.0.0", "1.0.0"),
        ..world()
    };
    for iid in ["a0", "a1", "a2"] {
        expect(w.provision(iid, ASYNC), 202);
    }
    w.env.advance(DELAY);
    for iid in ["a0", "a1", "a2"] {
        expect(w.last_op(iid, None), 200);
    }
    let w = w.with_catalog(catalog_at("1.0.0", "2.0.0"));
    expect(
        w.start_upgrade(json!({"canaries": 1, "attempts": 2, "max_in_flight": 3})),
        201,
    );
    // Polled only after the plan's maximum polling duration (600 s), every attempt fails.
    let (run, events) = w.upgrade_to_the_end(601);
    assert_eq!(run["phase"], "stopped", "{run:#}");
    assert_eq!(
        of(&events, "started"),
        ["a0", "a0"],
        "two attempts of the canary"
    );
    assert_eq!(of(&events, "retrying"), ["a0"]);
    assert_eq!(of(&events, "failed"), ["a0"]);
    assert!(
        run["stop_reason"]
            .as_str()
            .unwrap()
            .contains("canary a0 failed"),
        "{run:#}"
    );
    assert_eq!(run["failed"][0]["canary"], true);
    for iid in ["a1", "a2"] {
        assert_eq!(w.version_of(iid), "1.0.0");
        assert_eq!(
            w.instance(iid)["operation"]["kind"],
            "provision",
            "{iid} untouched"
        );
    }
}

#[test]
fn a_run_lives_in_the_store_adopts_what_it_lost_and_users_get_the_ordinary_422() {
    let w = World {
        catalog: catalog_at("1.0.0", "1.0.0"),
        ..world()
    };
    for iid in ["a0", "a1"] {
        expect(w.provision(iid, ASYNC), 202);
    }
    w.env.advance(DELAY);
    for iid in ["a0", "a1"] {
        expect(w.last_op(iid, None), 200);
    }
    let w = w.with_catalog(catalog_at("1.0.0", "2.0.0"));
    // An upgrade started but never recorded (its step crashed): a1's update to 2.0.0.
    let upgrade = update_body(json!({"plan_id": ASYNC, "maintenance_info": {"version": "2.0.0"}}));
    expect(w.patch("a1", upgrade, true), 202);

    let created = expect(
        w.start_upgrade(json!({"canaries": 0, "max_in_flight": 5})),
        201,
    );
    let id = body(&created)["id"].clone();
    let first = w.upgrade_step();
    let events = first["events"].as_array().unwrap().clone();
    assert_eq!(of(&events, "started"), ["a0"]);
    assert_eq!(of(&events, "adopted"), ["a1"]);
    // A user's update while the upgrade runs is the ordinary ConcurrencyError.
    let user = update_body(json!({"parameters": {"size": 2}}));
    expect_422(w.patch("a0", user, true), "ConcurrencyError");
    // The CLI was killed: a new one asks to start and gets the same run back.
    let resumed = expect(w.start_upgrade(json!({"canaries": 3})), 200);
    assert_eq!(body(&resumed)["id"], id);
    assert_eq!(body(&resumed)["resumed"], true);
    assert_eq!(
        body(&resumed)["settings"]["canaries"],
        0,
        "the stored settings win"
    );
    w.env.advance(DELAY);
    let (run, events) = w.upgrade_to_the_end(DELAY);
    assert_eq!(run["phase"], "done", "{run:#}");
    assert_eq!(run["succeeded"], 2);
    assert_eq!(of(&events, "succeeded").len(), 2);
    assert_eq!(w.version_of("a0"), "2.0.0");
    assert_eq!(w.version_of("a1"), "2.0.0");
}

#[test]
fn bad_upgrade_requests_are_clear_errors() {
    let w = world();
    expect(
        w.operator_send("POST", "/operator/upgrades/current/step", ""),
        404,
    );
    expect(
        w.operator_send("GET", "/operator/upgrades/current", ""),
        404,
    );
    for bad in [
        r#"{"max_in_flight": 0}"#,
        r#"{"attempts": 11}"#,
        r#"{"canaries": -1}"#,
        r#"{"canary": 1}"#,
        "not json",
    ] {
        let response = expect(w.operator_send("POST", "/operator/upgrades", bad), 400);
        assert!(!body_text(&response).is_empty());
    }
    expect(w.operator_send("PUT", "/operator/upgrades", "{}"), 405);
    let unauthenticated = w.operator_as(
        &super::operator::operator_config(),
        "POST",
        "/operator/upgrades",
        &[],
        None,
    );
    expect(unauthenticated, 401);
    let _ = basic("operator", PASSWORD);
    // An abandoned run is stopped; the next start makes a new one.
    expect(w.start_upgrade(json!({})), 201);
    let abandoned = expect(
        w.operator_send("DELETE", "/operator/upgrades/current", ""),
        200,
    );
    assert_eq!(body(&abandoned)["phase"], "stopped");
    expect(w.start_upgrade(json!({})), 201);
}
