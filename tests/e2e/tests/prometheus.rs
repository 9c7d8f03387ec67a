//! `GET /metrics` scraped by a real Prometheus (Debian's `prometheus` package, started on
//! loopback by the test) after a scripted lifecycle through `spin-osb up`: the values
//! Prometheus stores are the counts the lifecycle made, and it scrapes with the operator's
//! credentials (the platform's are refused).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use spin_osb_e2e::metrics_text::sum_of;
use spin_osb_e2e::{eventually, new_id, Broker, Options, Resp};
use spin_osb_test_support::files::{tempdir, write_file};
use spin_osb_test_support::http::client;
use spin_osb_test_support::ports::free_port;
use spin_osb_test_support::process::ChildGuard;

const OPERATOR_PASSWORD: &str = "operator-prometheus-password";

/// Debian's Prometheus, if installed (the test command installs it; without it the test
/// is skipped, except under CI where that is a failure).
fn prometheus_binary() -> Option<PathBuf> {
    let found = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not installed (scripts/test.sh installs Debian's package)"
        );
        eprintln!("skipped: prometheus is not installed");
    }
    found
}

/// A Prometheus scraping the broker every second, on its own loopback port.
struct Prometheus {
    _process: ChildGuard,
    _data: tempfile::TempDir,
    url: String,
}

impl Prometheus {
    fn start(binary: &PathBuf, broker: &Broker) -> Prometheus {
        let data = tempdir("spin-osb-prometheus-");
        let target = broker.base().trim_start_matches("http://").to_string();
        let config = write_file(
            data.path(),
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: spin-osb\n    metrics_path: /metrics\n\
                 \x20   basic_auth: {{username: operator, password: {OPERATOR_PASSWORD}}}\n\
                 \x20   static_configs: [{{targets: ['{target}']}}]\n"
            ),
        );
        let port = free_port();
        let process = ChildGuard::spawn(
            Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    data.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("prometheus starts");
        Prometheus {
            _process: process,
            _data: data,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The value of an instant query returning one number (`None` while it has none).
    fn query(&self, expression: &str) -> Option<f64> {
        let response = client(Duration::from_secs(5))
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expression)])
            .send()
            .ok()?;
        let body: Value = response.json().ok()?;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }
}

fn metrics(b: &Broker) -> Resp {
    b.operator_request("GET", "/metrics", OPERATOR_PASSWORD)
        .send()
}

/// A PromQL selector: `sum(metric{k="v",…})`.
fn promql(metric: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("sum({metric}{{{}}})", labels.join(","))
}

#[test]
fn prometheus_scrapes_the_counts_of_a_scripted_lifecycle() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let b = Broker::start_with_options(
        Options::default().env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD),
    );
    let plans = b.plans();
    let sync = &plans.sync;
    let plan_id = sync.plan_id.as_str();
    // The platform's credentials do not open the metrics.
    b.request("GET", "/metrics")
        .version(None)
        .send()
        .expect(401);

    // What finding the plans left behind is the baseline.
    let before = metrics(&b).expect(200).body;
    let instances = new_id();
    let ids: Vec<String> = (0..3).map(|i| format!("{instances}-{i}")).collect();
    for iid in &ids {
        b.provision(
            iid,
            &sync.provision_body(sync.provision_parameters()),
            false,
        )
        .expect(201);
    }
    let body = sync.bind_body(sync.bind_parameters());
    b.bind(&ids[0], "binding-1", &body, false).expect(201);
    b.bind(&ids[0], "binding-2", &body, false).expect(201);
    b.unbind(&ids[0], "binding-1", sync, false).expect(200);
    b.deprovision(&ids[2], sync, false).expect(200);
    // A refused request is no operation.
    b.provision(
        &ids[0],
        &sync.provision_body(serde_json::json!({"no-such": 1})),
        false,
    );

    let expected: Vec<(String, f64)> = [
        ("spin_osb_instances", vec![("status", "ready")], 2.0),
        ("spin_osb_bindings", vec![("status", "ready")], 1.0),
        (
            "spin_osb_operations_started_total",
            vec![("kind", "provision")],
            3.0,
        ),
        (
            "spin_osb_operations_succeeded_total",
            vec![("kind", "provision")],
            3.0,
        ),
        (
            "spin_osb_operations_succeeded_total",
            vec![("kind", "bind")],
            2.0,
        ),
        (
            "spin_osb_operations_succeeded_total",
            vec![("kind", "unbind")],
            1.0,
        ),
        (
            "spin_osb_operations_succeeded_total",
            vec![("kind", "deprovision")],
            1.0,
        ),
        (
            "spin_osb_operations_failed_total",
            vec![("kind", "provision")],
            0.0,
        ),
        (
            "spin_osb_operations_in_progress",
            vec![("kind", "provision")],
            0.0,
        ),
        (
            "spin_osb_operation_duration_seconds_count",
            vec![("kind", "bind")],
            2.0,
        ),
    ]
    .into_iter()
    .map(|(metric, mut labels, delta)| {
        labels.push(("plan_id", plan_id));
        let expression = promql(metric, &labels);
        (expression, sum_of(&before, metric, &labels) + delta)
    })
    .collect();

    let prometheus = Prometheus::start(&binary, &b);
    let mut last = Vec::new();
    let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            "Prometheus to store the lifecycle's counts",
            Duration::from_secs(60),
            || {
                last = expected
                    .iter()
                    .map(|(expression, want)| {
                        (expression.clone(), *want, prometheus.query(expression))
                    })
                    .collect();
                last.iter()
                    .all(|(_, want, got)| *got == Some(*want))
                    .then_some(())
            },
        )
    }));
    if settled.is_err() {
        panic!(
            "Prometheus (expression, expected, stored):\n{:#?}\nthe broker's /metrics:\n{}",
            last,
            metrics(&b).body
        );
    }
    assert_eq!(prometheus.query("up{job=\"spin-osb\"}"), Some(1.0));
}
