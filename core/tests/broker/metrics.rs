//! `GET /metrics` after scripted lifecycles: every value comes from counters the requests
//! incremented in the store (nothing is scanned), and reads back exactly.

use super::operator::{basic, operator_config, PASSWORD};
use super::*;

impl<K: Kv> World<K> {
    /// The Prometheus text of `GET /metrics`.
    fn metrics(&self) -> String {
        let response = self.operator("/metrics", &[]);
        assert_eq!(response.status, 200, "{}", body_text(&response));
        assert!(response
            .headers
            .iter()
            .any(|(n, v)| n == "Content-Type" && v.starts_with("text/plain; version=0.0.4")));
        body_text(&response)
    }
}

/// The value of the one sample of `metric` whose labels include all of `labels`
/// (`None` if there is none).
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            (name == metric
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().unwrap())
        })
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?} matches {found:?}");
    found.first().copied()
}

fn value(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, metric, labels).unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{text}"))
}

#[test]
fn a_synchronous_lifecycle_is_counted_by_plan_kind_and_outcome() {
    let w = world();
    for iid in ["i1", "i2", "i3"] {
        expect(w.provision(iid, SYNC), 201);
    }
    expect(w.bind("i1", "b1", SYNC), 201);
    expect(w.bind("i1", "b2", SYNC), 201);
    expect(w.unbind("i1", "b1", SYNC), 200);
    expect(w.deprovision("i3", SYNC), 200);
    // Refused requests change nothing.
    expect(w.provision("i1", SYNC_B), 409);
    let text = w.metrics();
    let plan = [
        ("service_id", SVC),
        ("plan_id", SYNC),
        ("plan", "sync"),
        ("service", "main"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = plan.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    assert_eq!(
        value(&text, "spin_osb_instances", &with(&[("status", "ready")])),
        2.0
    );
    assert_eq!(
        value(&text, "spin_osb_bindings", &with(&[("status", "ready")])),
        1.0
    );
    for (kind, n) in [
        ("provision", 3.0),
        ("bind", 2.0),
        ("unbind", 1.0),
        ("deprovision", 1.0),
    ] {
        let labels = with(&[("kind", kind)]);
        assert_eq!(
            value(&text, "spin_osb_operations_started_total", &labels),
            n,
            "{kind}"
        );
        assert_eq!(
            value(&text, "spin_osb_operations_succeeded_total", &labels),
            n,
            "{kind}"
        );
        assert_eq!(
            value(&text, "spin_osb_operations_failed_total", &labels),
            0.0,
            "{kind}"
        );
        assert_eq!(
            value(&text, "spin_osb_operations_in_progress", &labels),
            0.0,
            "{kind}"
        );
        assert_eq!(
            value(&text, "spin_osb_operation_duration_seconds_count", &labels),
            n
        );
        let fast = with(&[("kind", kind), ("le", "0.005")]);
        assert_eq!(
            value(&text, "spin_osb_operation_duration_seconds_bucket", &fast),
            n
        );
    }
    assert_eq!(
        sample(&text, "spin_osb_instances", &[("plan_id", SYNC_B)]),
        None
    );
}

#[test]
fn asynchronous_operations_are_in_progress_until_a_poll_ends_them_with_their_duration() {
    let w = world();
    expect(w.provision("a1", ASYNC), 202);
    expect(w.provision("a2", ASYNC), 202);
    let plan = [("plan_id", ASYNC), ("kind", "provision")];
    let text = w.metrics();
    assert_eq!(
        value(
            &text,
            "spin_osb_instances",
            &[("plan_id", ASYNC), ("status", "creating")]
        ),
        2.0
    );
    assert_eq!(
        value(&text, "spin_osb_operations_started_total", &plan),
        2.0
    );
    assert_eq!(value(&text, "spin_osb_operations_in_progress", &plan), 2.0);
    assert_eq!(
        value(&text, "spin_osb_operations_succeeded_total", &plan),
        0.0
    );

    // A deprovision cancels a2's provision (failed) and runs itself.
    expect(w.deprovision("a2", ASYNC), 202);
    w.env.advance(DELAY);
    assert_eq!(
        body(&expect(w.last_op("a1", None), 200))["state"],
        "succeeded"
    );
    let text = w.metrics();
    assert_eq!(
        value(
            &text,
            "spin_osb_instances",
            &[("plan_id", ASYNC), ("status", "ready")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "spin_osb_instances",
            &[("plan_id", ASYNC), ("status", "creating")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, "spin_osb_operations_succeeded_total", &plan),
        1.0
    );
    assert_eq!(value(&text, "spin_osb_operations_failed_total", &plan), 1.0);
    assert_eq!(value(&text, "spin_osb_operations_in_progress", &plan), 0.0);
    let deprovision = [("plan_id", ASYNC), ("kind", "deprovision")];
    assert_eq!(
        value(&text, "spin_osb_operations_in_progress", &deprovision),
        1.0
    );
    // a1 took the plan's ten seconds, the cancelled a2 none: buckets are cumulative.
    let bucket = |le| [("plan_id", ASYNC), ("kind", "provision"), ("le", le)];
    assert_eq!(
        value(
            &text,
            "spin_osb_operation_duration_seconds_bucket",
            &bucket("0.005")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "spin_osb_operation_duration_seconds_bucket",
            &bucket("5")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "spin_osb_operation_duration_seconds_bucket",
            &bucket("10")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "spin_osb_operation_duration_seconds_bucket",
            &bucket("+Inf")
        ),
        2.0
    );
    assert_eq!(
        value(&text, "spin_osb_operation_duration_seconds_sum", &plan),
        10.0
    );

    assert_eq!(
        body(&expect(w.last_op("a2", None), 200))["state"],
        "succeeded"
    );
    let text = w.metrics();
    assert_eq!(
        value(
            &text,
            "spin_osb_instances",
            &[("plan_id", ASYNC), ("status", "creating")]
        ),
        0.0
    );
    assert_eq!(
        value(&text, "spin_osb_operations_succeeded_total", &deprovision),
        1.0
    );
}

#[test]
fn metrics_need_the_operator_credentials() {
    let w = world();
    let response = w.operator_as(&operator_config(), "GET", "/metrics", &[], None);
    expect(response, 401);
    let response = w.operator_as(
        &operator_config(),
        "POST",
        "/metrics",
        &[],
        Some(basic("operator", PASSWORD)),
    );
    expect(response, 405);
}
