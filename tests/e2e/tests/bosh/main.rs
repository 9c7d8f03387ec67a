//! The BOSH backend end to end: `spin-osb up` with the BOSH test catalog
//! (tests/catalogs/bosh) against the BOSH director *simulator* (tests/bosh-director-sim),
//! over HTTPS with the simulator's CA in the runtime config's `client_tls`.
//!
//! Each test starts its own simulator and broker. [`lifecycle`]: whole lifecycles;
//! [`failures`]: director failures and what descriptions reveal; [`recovery`]: concurrency,
//! lost answers, restarts, tokens and unreachable directors; [`fleet`]: fleet upgrades.

use std::time::{Duration, Instant};

use bosh_director_sim::{
    AuthKind, DropPoint, ErrandBehaviour, HoldAt, SimConfig, Simulator, TaskFailure, TaskKind,
    TaskState,
};
use spin_osb_e2e::eventually;
use spin_osb_e2e::kube::KUBE_COMPONENTS;
use spin_osb_e2e::{json, new_id, repo_root, Broker, Options, Plan, Value};

mod failures;
mod fleet;
mod lifecycle;
mod recovery;

const CLIENT: &str = "spin-osb";
const SECRET: &str = "director-client-secret";
/// The operator API's password (fleet upgrades).
const OPERATOR_PASSWORD: &str = "operator-bosh-password";

struct Setup {
    sim: Simulator,
    broker: Broker,
    _dir: tempfile::TempDir,
}

fn setup(config: SimConfig) -> Setup {
    setup_with(config, repo_root().join("tests/catalogs/bosh"))
}

fn setup_with(config: SimConfig, catalog: std::path::PathBuf) -> Setup {
    setup_full(config, catalog, None)
}

/// `uaa_url`: the broker's `bosh_uaa_url` (default: the simulator, which serves its UAA).
fn setup_full(config: SimConfig, catalog: std::path::PathBuf, uaa_url: Option<&str>) -> Setup {
    let sim = Simulator::start(config.with_tls());
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("director-ca.pem");
    std::fs::write(&ca, sim.ca_pem().expect("ca")).expect("ca file");
    // Spin's client_tls hosts take no port.
    let host = "127.0.0.1";
    let ids = KUBE_COMPONENTS
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        format!(
            "[[client_tls]]\ncomponent_ids = [{ids}]\nhosts = [{host:?}]\nca_roots_file = {:?}\n",
            ca.display().to_string()
        ),
    )
    .expect("runtime config");
    let options = Options {
        catalog: Some(catalog),
        runtime_config: Some(runtime_config),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_BOSH_DIRECTOR_URL", sim.base_url())
    .env(
        "SPIN_VARIABLE_BOSH_UAA_URL",
        uaa_url.map_or_else(|| sim.base_url(), str::to_string),
    )
    .env("SPIN_VARIABLE_BOSH_CLIENT", CLIENT)
    .env("SPIN_VARIABLE_BOSH_CLIENT_SECRET", SECRET)
    .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD);
    let broker = Broker::start_with_options(options);
    Setup {
        sim,
        broker,
        _dir: dir,
    }
}

fn uaa() -> SimConfig {
    SimConfig::uaa(CLIENT, SECRET, Duration::from_secs(3600))
}

fn plan(b: &Broker, name: &str) -> Plan {
    b.catalog().plan_named(name).expect("plan")
}

fn provision_body(plan: &Plan, parameters: Value) -> Value {
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "o", "space_guid": "s",
        "context": {"platform": "cloudfoundry", "organization_guid": "o", "space_guid": "s"},
        "parameters": parameters})
}

fn deployment(iid: &str) -> String {
    format!("service-instance_{iid}")
}

fn provisioned(s: &Setup, plan: &Plan, iid: &str) {
    let op = s
        .broker
        .provision(iid, &provision_body(plan, json!({})), true)
        .expect(202)
        .operation();
    let done = s.broker.wait_instance_operation(iid, &op);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
}

fn deprovisioned(s: &Setup, plan: &Plan, iid: &str) {
    let op = s
        .broker
        .deprovision(iid, plan, true)
        .expect(202)
        .operation();
    let last = s.broker.wait_instance_operation(iid, &op);
    assert!(
        last.status == 410 || last.json["state"] == "succeeded",
        "{}",
        last.body
    );
    assert_eq!(s.broker.instance_last_operation(iid, Some(&op)).status, 410);
}

/// A request to the simulator as another director client would make it (an operator's
/// `bosh` CLI): basic auth with the test client.
fn foreign_call(sim: &Simulator, method: &str, path: &str, content_type: &str, body: &str) -> u16 {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token: Value = client
        .post(format!("{}/uaa/oauth/token", sim.base_url()))
        .basic_auth(CLIENT, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    client
        .request(method, format!("{}{path}", sim.base_url()))
        .header(
            "authorization",
            format!("bearer {}", token["access_token"].as_str().unwrap()),
        )
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}
