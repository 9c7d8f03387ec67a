//! The broker's OSB behaviour, driven natively through `Broker::handle` over the catalog in
//! `tests/broker/catalog.yaml`, a `MemoryKv` (Spin's SQLite semantics) and a `TestEnv`
//! whose clock the tests move.
//!
//! One module per part of the spec (provision, fetch instance, instance `last_operation`,
//! update, deprovision, bind and rotation, fetch binding, unbind, binding `last_operation`,
//! routing), then robustness (store outages, corrupt records), concurrency, crash recovery
//! and storage (store calls, claims, tombstones). This file is the harness they share.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::executor::block_on;
use serde_json::{json, Value};
use spin_osb_core::broker::Broker;
use spin_osb_core::catalog::Catalog;
use spin_osb_core::env::TestEnv;
use spin_osb_core::http::{Endpoint, OsbRequest, OsbResponse};
use spin_osb_core::kv::{Kv, KvError, MemoryKv};
use spin_osb_core::state::{binding_key, instance_key};

const SVC: &str = "svc-main";
const SYNC: &str = "plan-sync";
const SYNC_B: &str = "plan-sync-b";
const ASYNC: &str = "plan-async";
const SHORT: &str = "plan-short";
const FIXED: &str = "plan-fixed";
const NOBIND: &str = "plan-nobind";
const PLAIN_SVC: &str = "svc-plain";
const PLAIN: &str = "plan-plain";
/// `ASYNC`'s `delay_seconds`.
const DELAY: u64 = 10;
/// `SHORT`'s `delay_seconds` and `maximum_polling_duration`.
const SHORT_DELAY: u64 = 5;
const SHORT_LIMIT: u64 = 20;
/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000;

const CATALOG: &str = include_str!("catalog.yaml");

fn catalog() -> Catalog {
    Catalog::from_yaml_documents(&[("catalog.yaml", CATALOG)]).expect("the test catalog loads")
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A broker over its own catalog, store and clock.
struct World<K: Kv = MemoryKv> {
    catalog: Catalog,
    kv: K,
    env: TestEnv,
}

fn world() -> World {
    World {
        catalog: catalog(),
        kv: MemoryKv::default(),
        env: TestEnv::at(T0),
    }
}

fn route(endpoint: Endpoint, iid: &str, bid: &str) -> (&'static str, String) {
    let instance = format!("/v2/service_instances/{iid}");
    let binding = format!("{instance}/service_bindings/{bid}");
    match endpoint {
        Endpoint::Catalog => ("GET", "/v2/catalog".into()),
        Endpoint::Provision => ("PUT", instance),
        Endpoint::Update => ("PATCH", instance),
        Endpoint::Deprovision => ("DELETE", instance),
        Endpoint::FetchInstance => ("GET", instance),
        Endpoint::InstanceLastOperation => ("GET", format!("{instance}/last_operation")),
        Endpoint::Bind => ("PUT", binding),
        Endpoint::Unbind => ("DELETE", binding),
        Endpoint::FetchBinding => ("GET", binding),
        Endpoint::BindingLastOperation => ("GET", format!("{binding}/last_operation")),
    }
}

fn request(
    endpoint: Endpoint,
    iid: &str,
    bid: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> OsbRequest {
    let (method, path) = route(endpoint, iid, bid);
    OsbRequest {
        method: method.into(),
        path,
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        headers: vec![("x-broker-api-version".into(), "2.17".into())],
        body: body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default(),
    }
}

fn incomplete(yes: bool) -> Vec<(&'static str, &'static str)> {
    if yes {
        vec![("accepts_incomplete", "true")]
    } else {
        Vec::new()
    }
}

static NO_CONFIG: spin_osb_core::outbound::MapConfig =
    spin_osb_core::outbound::MapConfig(std::collections::BTreeMap::new());

impl<K: Kv> World<K> {
    fn broker(&self) -> Broker<'_> {
        Broker {
            catalog: &self.catalog,
            kv: &self.kv,
            env: &self.env,
            http: &spin_osb_core::outbound::NoHttp,
            config: &NO_CONFIG,
            parameters: &spin_osb_core::parameter_check::InProcessChecker,
        }
    }

    fn send(&self, request: &OsbRequest, endpoint: Endpoint) -> OsbResponse {
        block_on(self.broker().handle(endpoint, request))
    }

    fn call(
        &self,
        endpoint: Endpoint,
        iid: &str,
        bid: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> OsbResponse {
        self.send(&request(endpoint, iid, bid, query, body), endpoint)
    }

    /// `PUT /v2/service_instances/:iid` with a full body.
    fn put(&self, iid: &str, body: Value, accepts_incomplete: bool) -> OsbResponse {
        self.call(
            Endpoint::Provision,
            iid,
            "",
            &incomplete(accepts_incomplete),
            Some(&body),
        )
    }

    /// Provision of `plan` of the main service, no parameters; async plans get
    /// `accepts_incomplete=true`.
    fn provision(&self, iid: &str, plan: &str) -> OsbResponse {
        self.put(iid, provision_body(plan), is_async(plan))
    }

    fn patch(&self, iid: &str, body: Value, accepts_incomplete: bool) -> OsbResponse {
        self.call(
            Endpoint::Update,
            iid,
            "",
            &incomplete(accepts_incomplete),
            Some(&body),
        )
    }

    fn deprovision_as(
        &self,
        iid: &str,
        service: &str,
        plan: &str,
        accepts_incomplete: bool,
    ) -> OsbResponse {
        let mut query = vec![("service_id", service), ("plan_id", plan)];
        query.extend(incomplete(accepts_incomplete));
        self.call(Endpoint::Deprovision, iid, "", &query, None)
    }

    fn deprovision(&self, iid: &str, plan: &str) -> OsbResponse {
        self.deprovision_as(iid, service_of(plan), plan, is_async(plan))
    }

    fn fetch(&self, iid: &str) -> OsbResponse {
        self.call(Endpoint::FetchInstance, iid, "", &[], None)
    }

    fn last_op(&self, iid: &str, operation: Option<&str>) -> OsbResponse {
        let query: Vec<(&str, &str)> = operation.map(|o| ("operation", o)).into_iter().collect();
        self.call(Endpoint::InstanceLastOperation, iid, "", &query, None)
    }

    fn put_binding(
        &self,
        iid: &str,
        bid: &str,
        body: Value,
        accepts_incomplete: bool,
    ) -> OsbResponse {
        self.call(
            Endpoint::Bind,
            iid,
            bid,
            &incomplete(accepts_incomplete),
            Some(&body),
        )
    }

    fn bind(&self, iid: &str, bid: &str, plan: &str) -> OsbResponse {
        self.put_binding(iid, bid, bind_body(plan), is_async(plan))
    }

    fn unbind_as(
        &self,
        iid: &str,
        bid: &str,
        service: &str,
        plan: &str,
        accepts_incomplete: bool,
    ) -> OsbResponse {
        let mut query = vec![("service_id", service), ("plan_id", plan)];
        query.extend(incomplete(accepts_incomplete));
        self.call(Endpoint::Unbind, iid, bid, &query, None)
    }

    fn unbind(&self, iid: &str, bid: &str, plan: &str) -> OsbResponse {
        self.unbind_as(iid, bid, service_of(plan), plan, is_async(plan))
    }

    fn fetch_binding(&self, iid: &str, bid: &str) -> OsbResponse {
        self.call(Endpoint::FetchBinding, iid, bid, &[], None)
    }

    fn binding_last_op(&self, iid: &str, bid: &str, operation: Option<&str>) -> OsbResponse {
        let query: Vec<(&str, &str)> = operation.map(|o| ("operation", o)).into_iter().collect();
        self.call(Endpoint::BindingLastOperation, iid, bid, &query, None)
    }
}

impl World<MemoryKv> {
    /// A provisioned, ready instance of `plan` (async plans are polled to completion).
    fn ready_instance(&self, iid: &str, plan: &str) {
        self.ready_instance_with(iid, plan, json!({}));
    }

    fn ready_instance_with(&self, iid: &str, plan: &str, parameters: Value) {
        let mut body = provision_body(plan);
        body["parameters"] = parameters;
        let response = self.put(iid, body, is_async(plan));
        if is_async(plan) {
            let op = operation_of(&expect(response, 202));
            self.env.advance(delay_of(plan));
            assert_eq!(
                state_of(&expect(self.last_op(iid, Some(&op)), 200)),
                "succeeded"
            );
        } else {
            expect(response, 201);
        }
    }

    /// A ready binding of `plan` on a ready instance.
    fn ready_binding(&self, iid: &str, bid: &str, plan: &str, parameters: Value) {
        let mut body = bind_body(plan);
        body["parameters"] = parameters;
        let response = self.put_binding(iid, bid, body, is_async(plan));
        if is_async(plan) {
            let op = operation_of(&expect(response, 202));
            self.env.advance(delay_of(plan));
            assert_eq!(
                state_of(&expect(self.binding_last_op(iid, bid, Some(&op)), 200)),
                "succeeded"
            );
        } else {
            expect(response, 201);
        }
    }

    /// The stored record at `key` as JSON.
    fn record(&self, key: &str) -> Value {
        let raw = self
            .kv
            .get(key)
            .unwrap()
            .unwrap_or_else(|| panic!("no record {key}"));
        serde_json::from_slice(&raw).unwrap()
    }

    fn instance(&self, iid: &str) -> Value {
        self.record(&instance_key(iid))
    }

    fn binding(&self, iid: &str, bid: &str) -> Value {
        self.record(&binding_key(iid, bid))
    }

    /// Overwrites the record at `key` (simulating a crash or another writer).
    fn write_record(&self, key: &str, record: &Value) {
        self.kv
            .set(key, &serde_json::to_vec(record).unwrap())
            .unwrap();
    }

    /// Record keys (claim counters and indexes left out).
    fn record_keys(&self) -> Vec<String> {
        self.kv
            .keys()
            .into_iter()
            .filter(|k| {
                !k.contains("/claim/")
                    && !k.contains("/binding-index/")
                    && !k.starts_with("osb/v1/expiry/")
                    && !k.starts_with("osb/v1/index/")
                    && !k.starts_with("osb/v1/metrics/")
            })
            .collect()
    }

    /// Every key and value, for "nothing changed" checks.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.kv
            .keys()
            .into_iter()
            .map(|k| {
                let v = self.kv.get(&k).unwrap().unwrap();
                (k, v)
            })
            .collect()
    }
}

fn is_async(plan: &str) -> bool {
    plan == ASYNC || plan == SHORT
}

fn delay_of(plan: &str) -> u64 {
    match plan {
        ASYNC => DELAY,
        SHORT => SHORT_DELAY,
        _ => 0,
    }
}

fn service_of(plan: &str) -> &'static str {
    if plan == PLAIN {
        PLAIN_SVC
    } else {
        SVC
    }
}

fn provision_body(plan: &str) -> Value {
    json!({
        "service_id": service_of(plan),
        "plan_id": plan,
        "context": {"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1"},
        "organization_guid": "org-1",
        "space_guid": "space-1",
    })
}

fn bind_body(plan: &str) -> Value {
    json!({
        "service_id": service_of(plan),
        "plan_id": plan,
        "bind_resource": {"app_guid": "app-1"},
        "context": {"platform": "cloudfoundry"},
    })
}

fn update_body(extra: Value) -> Value {
    let mut body = json!({ "service_id": SVC });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[track_caller]
fn expect(response: OsbResponse, status: u16) -> OsbResponse {
    assert_eq!(
        response.status,
        status,
        "expected {status}, got {} {}",
        response.status,
        body_text(&response)
    );
    response
}

/// Asserts a 422 carrying `code`.
#[track_caller]
fn expect_422(response: OsbResponse, code: &str) -> OsbResponse {
    let response = expect(response, 422);
    assert_eq!(
        error_of(&response),
        Some(code),
        "wrong error code: {}",
        body_text(&response)
    );
    response
}

fn body_text(response: &OsbResponse) -> String {
    response
        .body_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn body(response: &OsbResponse) -> &'static Value {
    // Tests are short-lived: leaking each parsed body keeps the call sites simple.
    Box::leak(Box::new(response.json_body().expect("a JSON body")))
}

#[track_caller]
fn operation_of(response: &OsbResponse) -> String {
    body(response)["operation"]
        .as_str()
        .unwrap_or_else(|| panic!("no operation in {}", body_text(response)))
        .to_string()
}

fn state_of(response: &OsbResponse) -> String {
    body(response)["state"].as_str().unwrap_or("").to_string()
}

fn error_of(response: &OsbResponse) -> Option<&str> {
    body(response)["error"].as_str()
}

fn description_of(response: &OsbResponse) -> String {
    body(response)["description"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn header<'r>(response: &'r OsbResponse, name: &str) -> Option<&'r str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_spec_timestamp(s: &str) -> bool {
    // yyyy-mm-ddThh:mm:ss.0Z
    let b = s.as_bytes();
    b.len() == 22
        && s.ends_with(".0Z")
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

fn concurrent_provisions(plan: &str, threads: usize) -> (World, Vec<OsbResponse>) {
    let w = world();
    let barrier = std::sync::Barrier::new(threads);
    let responses = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    w.provision("i1", plan)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (w, responses)
}

/// `send` from `threads` threads at once, after a barrier.
fn at_once(threads: usize, send: impl Fn() -> OsbResponse + Sync) -> Vec<OsbResponse> {
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    send()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn statuses(responses: &[OsbResponse]) -> std::collections::BTreeMap<u16, usize> {
    let mut histogram = std::collections::BTreeMap::new();
    for r in responses {
        *histogram.entry(r.status).or_default() += 1;
    }
    histogram
}

/// A store whose first `increment` of `stall_key` takes effect and then holds its answer
/// until released: the caller has claimed, but is slow to learn it.
struct StallingKv {
    inner: MemoryKv,
    stall_key: String,
    stalled: AtomicBool,
    entered: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Kv for StallingKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.inner.delete(key)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let result = self.inner.increment(key, delta);
        if key == self.stall_key && !self.stalled.swap(true, Ordering::SeqCst) {
            self.entered.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        result
    }
    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError> {
        self.inner.compare_and_swap(key, expected, new)
    }
}

fn flaky_world(fail_from: usize) -> World<FlakyKv> {
    World {
        catalog: catalog(),
        kv: FlakyKv::new(fail_from),
        env: TestEnv::at(T0),
    }
}

/// The number of store operations `run` performs on a healthy store.
fn store_operations(
    setup: impl Fn(&World<FlakyKv>),
    run: impl Fn(&World<FlakyKv>),
) -> (usize, usize) {
    let w = flaky_world(usize::MAX);
    setup(&w);
    let before = w.kv.calls.load(Ordering::SeqCst);
    run(&w);
    let after = w.kv.calls.load(Ordering::SeqCst);
    assert!(after > before, "the run uses the store");
    (before, after)
}

/// A store whose outage begins at its `fail_from`th call to a state key. Metrics counters
/// are outside the outage (a request never fails for them; `metrics::` tests their own
/// failures): they are only counted, in `all_calls`.
struct FlakyKv {
    inner: MemoryKv,
    calls: AtomicUsize,
    all_calls: AtomicUsize,
    fail_from: usize,
    armed: AtomicBool,
}

impl FlakyKv {
    fn new(fail_from: usize) -> Self {
        Self {
            inner: MemoryKv::default(),
            calls: AtomicUsize::new(0),
            all_calls: AtomicUsize::new(0),
            fail_from,
            armed: AtomicBool::new(true),
        }
    }

    fn check(&self, key: &str) -> Result<(), KvError> {
        self.all_calls.fetch_add(1, Ordering::SeqCst);
        if key.starts_with("osb/v1/metrics/") || key.starts_with("osb/v1/index/metrics/") {
            return Ok(());
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.armed.load(Ordering::SeqCst) && n >= self.fail_from {
            Err(KvError("injected outage".into()))
        } else {
            Ok(())
        }
    }
}

impl Kv for FlakyKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check(key)?;
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.check(key)?;
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.check(key)?;
        self.inner.delete(key)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check(key)?;
        self.inner.increment(key, delta)
    }
    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError> {
        self.check(key)?;
        self.inner.compare_and_swap(key, expected, new)
    }
}

/// Retries `send` like a platform would: after a 503 at once, after a ConcurrencyError
/// (a dead request's lease) once the lease has expired.
fn retry_until_settled<K: Kv>(w: &World<K>, send: impl Fn() -> OsbResponse) -> OsbResponse {
    let mut last = String::new();
    for _ in 0..5 {
        let r = send();
        match (r.status, error_of(&r)) {
            (503, _) => {}
            (422, Some("ConcurrencyError")) => {
                w.env.advance(spin_osb_core::broker::LEASE_SECONDS + 1)
            }
            _ => return r,
        }
        last = format!("{} {}", r.status, body_text(&r));
    }
    panic!("did not settle after 5 tries; last answer: {last}")
}

mod bind;
mod binding_last_operation;
mod concurrency;
mod crash_recovery;
mod deprovision;
mod fetch_binding;
mod fetch_instance;
mod instance_last_operation;
mod metrics;
mod operator;
mod provision;
mod quota;
mod robustness;
mod routing;
mod storage;
mod unbind;
mod update;
mod upgrade;
