//! The broker's OSB behaviour, driven natively through `Broker::handle` over the catalog in
//! `tests/broker/catalog.yaml`, a `MemoryKv` (Spin's SQLite semantics) and a `TestEnv`
//! whose clock the tests move.
//!
//! Sections follow the spec: provision, fetch instance, instance `last_operation`, update,
//! deprovision, bind (and rotation), fetch binding, unbind, binding `last_operation`, then
//! robustness (store outages, corrupt records, concurrency, crash recovery).

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

const CATALOG: &str = include_str!("broker/catalog.yaml");

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

    /// Record keys (claim counters left out).
    fn record_keys(&self) -> Vec<String> {
        self.kv
            .keys()
            .into_iter()
            .filter(|k| !k.contains("/claim/") && !k.starts_with("osb/v1/expiry/"))
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

// ---------------------------------------------------------------------------------------
// Provision
// ---------------------------------------------------------------------------------------

#[test]
fn a_sync_provision_answers_201_with_the_dashboard_url_and_metadata() {
    let w = world();
    let r = expect(w.provision("i1", SYNC), 201);
    let b = body(&r);
    assert_eq!(b["dashboard_url"], "https://dash.example.com/sync/i1");
    assert_eq!(
        b["metadata"]["labels"],
        json!({"service": "main", "plan": "sync"})
    );
    assert_eq!(b["metadata"]["attributes"]["broker"], "spin-osb");
    assert_eq!(b["metadata"]["attributes"]["backend"], "credentials");
    assert!(
        b.get("operation").is_none(),
        "a sync answer has no operation"
    );
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    let record = w.instance("i1");
    assert_eq!(record["status"], "ready");
    assert_eq!(record["operation"]["state"], "succeeded");
    assert_eq!(record["maintenance_info_version"], "1.0.0");
}

/// Without randomness there are no seeds, secrets, operation ids or write tokens: every
/// request that would need one fails with a clear 500 and nothing is written.
#[test]
fn when_randomness_fails_requests_fail_and_nothing_is_written() {
    let w = world();
    w.ready_instance("ready", SYNC);
    let before = w.snapshot();
    w.env
        .randomness_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for response in [
        w.provision("new", SYNC),
        w.put("new-async", provision_body(ASYNC), true),
        w.put_binding("ready", "b1", bind_body(SYNC), false),
        w.patch(
            "ready",
            update_body(json!({"parameters": {"size": 2}})),
            true,
        ),
    ] {
        let response = expect(response, 500);
        assert!(
            description_of(&response).contains("random source failed"),
            "{}",
            body_text(&response)
        );
    }
    assert_eq!(w.snapshot(), before, "nothing may be written");
    w.env
        .randomness_fails
        .store(false, std::sync::atomic::Ordering::SeqCst);
    expect(w.provision("new", SYNC), 201);
}

/// An update is checked as the instance will run after it: the stored parameters merged
/// with the new ones, against the target plan's update schema.
#[test]
fn updates_check_the_merged_parameters_against_the_target_plans_update_schema() {
    let w = world();
    let to_strict = |parameters: Option<Value>| {
        let mut body = json!({"plan_id": "plan-strict"});
        if let Some(p) = parameters {
            body["parameters"] = p;
        }
        update_body(body)
    };
    // A stored parameter the target plan's update schema does not allow.
    w.ready_instance_with("i1", SYNC, json!({"username_prefix": "app", "size": 1}));
    let r = expect(
        w.patch("i1", to_strict(Some(json!({"size": 2}))), false),
        400,
    );
    assert!(
        description_of(&r).contains("username_prefix"),
        "{}",
        body_text(&r)
    );
    assert_eq!(w.instance("i1")["plan_id"], SYNC);
    // A stored value out of the target plan's range, with no new parameters at all.
    w.ready_instance_with("i2", SYNC, json!({"size": 3}));
    let r = expect(w.patch("i2", to_strict(None), false), 400);
    assert!(description_of(&r).contains("size"), "{}", body_text(&r));
    // Merged parameters that fit are accepted.
    w.ready_instance_with("i3", SYNC, json!({"size": 3}));
    expect(
        w.patch("i3", to_strict(Some(json!({"size": 2}))), false),
        200,
    );
    assert_eq!(w.instance("i3")["plan_id"], "plan-strict");
    // Same plan, new parameter, stored ones still valid: accepted.
    w.ready_instance_with("i4", SYNC, json!({"size": 3}));
    expect(
        w.patch(
            "i4",
            update_body(json!({"parameters": {"username_prefix": "x"}})),
            false,
        ),
        200,
    );
}

#[test]
fn a_sync_provision_with_accepts_incomplete_still_answers_201() {
    let w = world();
    expect(w.put("i1", provision_body(SYNC), true), 201);
}

#[test]
fn an_identical_provision_of_a_provisioned_instance_answers_200() {
    let w = world();
    let first = expect(w.provision("i1", SYNC), 201);
    let again = expect(w.provision("i1", SYNC), 200);
    assert_eq!(body(&again)["dashboard_url"], body(&first)["dashboard_url"]);
    // Context is not an attribute of the instance: a different one is still "identical".
    let mut other_context = provision_body(SYNC);
    other_context["context"] = json!({"platform": "kubernetes", "namespace": "ns"});
    expect(w.put("i1", other_context, false), 200);
}

#[test]
fn a_provision_with_different_attributes_answers_409() {
    let w = world();
    let mut body = provision_body(SYNC);
    body["parameters"] = json!({"size": 1});
    expect(w.put("i1", body.clone(), false), 201);
    let before = w.snapshot();

    body["parameters"] = json!({"size": 2});
    expect(w.put("i1", body.clone(), false), 409);
    expect(w.provision("i1", SYNC_B), 409);
    assert_eq!(
        w.snapshot(),
        before,
        "a conflicting provision changes nothing"
    );
}

#[test]
fn an_async_provision_without_accepts_incomplete_is_422_async_required_and_stores_nothing() {
    let w = world();
    let r = expect_422(w.put("i1", provision_body(ASYNC), false), "AsyncRequired");
    assert!(!description_of(&r).is_empty());
    let r = w.call(
        Endpoint::Provision,
        "i1",
        "",
        &[("accepts_incomplete", "false")],
        Some(&provision_body(ASYNC)),
    );
    expect_422(r, "AsyncRequired");
    assert!(w.kv.keys().is_empty(), "{:?}", w.kv.keys());
}

#[test]
fn an_async_provision_answers_202_with_an_operation_and_the_dashboard_url() {
    let w = world();
    let r = expect(w.provision("i1", ASYNC), 202);
    let op = operation_of(&r);
    assert!(op.starts_with("provision-"), "{op}");
    assert_eq!(
        body(&r)["dashboard_url"],
        "https://dash.example.com/async/i1"
    );
    assert_eq!(body(&r)["metadata"]["labels"]["plan"], "async");
    let record = w.instance("i1");
    assert_eq!(record["status"], "creating");
    assert_eq!(record["operation"]["id"], op);
    assert_eq!(record["operation"]["state"], "in_progress");
}

#[test]
fn an_identical_provision_while_in_progress_answers_202_with_the_same_operation() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(3);
    let again = expect(w.provision("i1", ASYNC), 202);
    assert_eq!(operation_of(&again), op);
    assert_eq!(
        body(&again)["dashboard_url"],
        "https://dash.example.com/async/i1"
    );
    // Different attributes while in progress: 409 all the same.
    let mut other = provision_body(ASYNC);
    other["parameters"] = json!({"size": 3});
    expect(w.put("i1", other, true), 409);
    // ...and an identical one without accepts_incomplete is still AsyncRequired.
    expect_422(w.put("i1", provision_body(ASYNC), false), "AsyncRequired");
}

#[test]
fn an_identical_provision_after_async_completion_answers_200() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let r = expect(w.provision("i1", ASYNC), 200);
    assert!(body(&r).get("operation").is_none());
}

#[test]
fn provision_with_unknown_ids_or_missing_fields_or_a_malformed_body_is_400() {
    let w = world();
    let cases = [
        json!({"service_id": "nope", "plan_id": SYNC}),
        json!({"service_id": SVC, "plan_id": "nope"}),
        json!({"service_id": SVC, "plan_id": PLAIN}),
        json!({"service_id": SVC}),
        json!({"plan_id": SYNC}),
        json!({"service_id": "", "plan_id": SYNC}),
        json!({"service_id": SVC, "plan_id": 5}),
        json!({"service_id": SVC, "plan_id": SYNC, "parameters": []}),
        json!({"service_id": SVC, "plan_id": SYNC, "context": "x"}),
        json!([1, 2]),
    ];
    for case in cases {
        let r = w.put("i1", case.clone(), false);
        assert_eq!(r.status, 400, "{case}: {}", body_text(&r));
        assert!(!description_of(&r).is_empty());
    }
    // organization_guid and space_guid: REQUIRED, non-empty strings; the 400 names them.
    for (field, value) in [
        ("organization_guid", None),
        ("organization_guid", Some("")),
        ("organization_guid", Some("  ")),
        ("space_guid", None),
        ("space_guid", Some("")),
    ] {
        let mut body = provision_body(SYNC);
        match value {
            Some(v) => body[field] = json!(v),
            None => {
                body.as_object_mut().unwrap().remove(field);
            }
        }
        let r = w.put("i1", body, false);
        assert_eq!(r.status, 400, "{field}={value:?}: {}", body_text(&r));
        assert!(description_of(&r).contains(field), "{}", body_text(&r));
    }
    let mut raw = request(Endpoint::Provision, "i1", "", &[], None);
    raw.body = b"{not json".to_vec();
    expect(w.send(&raw, Endpoint::Provision), 400);
    raw.body = Vec::new();
    expect(w.send(&raw, Endpoint::Provision), 400);
    let r = w.call(
        Endpoint::Provision,
        "i1",
        "",
        &[("accepts_incomplete", "yes")],
        Some(&provision_body(SYNC)),
    );
    expect(r, 400);
    assert!(w.kv.keys().is_empty(), "{:?}", w.kv.keys());
}

#[test]
fn an_invalid_instance_id_is_400() {
    let w = world();
    let mut r = request(
        Endpoint::Provision,
        "i1",
        "",
        &[],
        Some(&provision_body(SYNC)),
    );
    r.path = "/v2/service_instances/a%2Fb".into();
    expect(w.send(&r, Endpoint::Provision), 400);
    assert!(w.kv.keys().is_empty());
}

#[test]
fn provision_parameters_violating_the_schema_are_400_naming_the_field() {
    let w = world();
    let cases = [
        (json!({"size": 5}), "parameters.size"),
        (json!({"size": "big"}), "parameters.size"),
        (
            json!({"username_prefix": "9abc"}),
            "parameters.username_prefix",
        ),
        (json!({"colour": "red"}), "colour"),
    ];
    for (parameters, field) in cases {
        let mut b = provision_body(SYNC);
        b["parameters"] = parameters.clone();
        let r = expect(w.put("i1", b, false), 400);
        assert!(
            description_of(&r).contains(field),
            "{parameters}: {}",
            description_of(&r)
        );
    }
    assert!(w.kv.keys().is_empty());
    let mut b = provision_body(SYNC);
    b["parameters"] = json!({"size": 3, "username_prefix": "app"});
    expect(w.put("i1", b, false), 201);
}

#[test]
fn provision_with_a_different_maintenance_info_version_is_422_maintenance_info_conflict() {
    let w = world();
    let mut b = provision_body(SYNC);
    b["maintenance_info"] = json!({"version": "0.9.0"});
    let r = expect_422(w.put("i1", b.clone(), false), "MaintenanceInfoConflict");
    assert!(
        description_of(&r).contains("0.9.0"),
        "{}",
        description_of(&r)
    );
    // A plan without maintenance_info has no version to match.
    let mut b2 = provision_body(FIXED);
    b2["maintenance_info"] = json!({"version": "1.0.0"});
    expect_422(w.put("i2", b2, false), "MaintenanceInfoConflict");
    assert!(w.kv.keys().is_empty());
    b["maintenance_info"] = json!({"version": "1.0.0", "description": "ignored"});
    expect(w.put("i1", b, false), 201);
}

#[test]
fn a_provision_of_a_deprovisioned_id_starts_afresh() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    let first_op = w.instance("i1")["operation"]["id"].clone();
    expect(w.deprovision("i1", SYNC), 200);
    let r = expect(w.provision("i1", SYNC_B), 201);
    assert_eq!(
        body(&r)["dashboard_url"],
        "https://dash.example.com/sync-b/i1"
    );
    let record = w.instance("i1");
    assert_eq!(record["status"], "ready");
    assert_eq!(record["plan_id"], SYNC_B);
    assert_ne!(record["operation"]["id"], first_op);
    expect(w.fetch("i1"), 200);
}

#[test]
fn a_provision_over_an_instance_whose_provisioning_failed_is_409() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT);
    assert_eq!(state_of(&w.last_op("i1", Some(&op))), "failed");
    let r = expect(w.provision("i1", SHORT), 409);
    assert!(
        description_of(&r).contains("deprovision"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn a_provision_during_a_deprovision_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.deprovision("i1", ASYNC), 202);
    expect_422(w.provision("i1", ASYNC), "ConcurrencyError");
}

#[test]
fn an_identical_provision_during_the_deprovision_of_a_provisioning_instance_is_422_concurrency_error(
) {
    let w = world();
    let provision_op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    let deprovision_op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    let r = w.provision("i1", ASYNC);
    // The spec: a 202 to a re-sent PUT carries the operation of the original request; this
    // request cannot be honoured while the instance is being deleted (Blocking Operations).
    assert!(
        r.status != 202 || (operation_of(&r) != deprovision_op && operation_of(&r) == provision_op),
        "got 202 with {}",
        body_text(&r)
    );
    expect_422(r, "ConcurrencyError");
}

// ---------------------------------------------------------------------------------------
// Fetch instance
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Instance last_operation
// ---------------------------------------------------------------------------------------

#[test]
fn last_operation_reports_in_progress_with_retry_after_then_succeeded_without_it() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("10"));
    assert!(!description_of(&r).is_empty());
    assert!(body(&r).get("instance_usable").is_none());

    w.env.advance(4);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("6"));
    // Polling without the operation parameter reports the current operation too.
    assert_eq!(state_of(&expect(w.last_op("i1", None), 200)), "in progress");

    w.env.advance(6);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert_eq!(header(&r, "Retry-After"), None);
    assert!(body(&r).get("instance_usable").is_none());
    assert!(body(&r).get("update_repeatable").is_none());
    assert_eq!(w.instance("i1")["status"], "ready");
    // Later polls keep answering succeeded.
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
}

#[test]
fn last_operation_with_an_unknown_operation_id_is_400() {
    let w = world();
    expect(w.provision("i1", ASYNC), 202);
    expect(w.last_op("i1", Some("provision-ffffffffffffffff")), 400);
    expect(w.last_op("i1", Some("bogus")), 400);
}

#[test]
fn last_operation_of_an_unknown_instance_is_404() {
    let w = world();
    expect(w.last_op("nope", None), 404);
    expect(w.last_op("nope", Some("provision-0000000000000001")), 404);
}

#[test]
fn last_operation_after_a_finished_deprovision_is_410() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    w.env.advance(DELAY);
    let first = w.last_op("i1", Some(&op));
    // The poll that completes the deletion may report it, later ones must say 410.
    assert!(
        first.status == 410 || (first.status == 200 && state_of(&first) == "succeeded"),
        "{} {}",
        first.status,
        body_text(&first)
    );
    expect(w.last_op("i1", Some(&op)), 410);
    expect(w.last_op("i1", None), 410);
    assert_eq!(w.instance("i1")["status"], "deleted", "a tombstone remains");
}

#[test]
fn last_operation_for_a_deprovision_of_a_forgotten_instance_is_410() {
    let w = world();
    expect(w.last_op("gone", Some("deprovision-00000000000000aa")), 410);
}

#[test]
fn superseded_operations_are_answered_from_history() {
    let w = world();
    let provision_op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    let update_op = operation_of(&expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    ));
    let r = expect(w.last_op("i1", Some(&provision_op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert_eq!(header(&r, "Retry-After"), None);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&update_op)), 200)),
        "in progress"
    );
}

#[test]
fn exceeding_maximum_polling_duration_fails_the_provision_with_a_description() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT + 1);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    let d = description_of(&r);
    assert!(d.contains("maximum polling duration"), "{d}");
    assert!(d.contains("20"), "{d}");
    assert!(
        body(&r).get("instance_usable").is_none(),
        "not for provisions"
    );
    assert!(
        body(&r).get("update_repeatable").is_none(),
        "not for provisions"
    );
    assert_eq!(header(&r, "Retry-After"), None);
    assert_eq!(w.instance("i1")["status"], "failed");
    expect(w.fetch("i1"), 404);
    // A failed instance can still be deprovisioned.
    let op = operation_of(&expect(w.deprovision("i1", SHORT), 202));
    w.env.advance(SHORT_DELAY);
    let r = w.last_op("i1", Some(&op));
    assert!(
        r.status == 410 || state_of(&r) == "succeeded",
        "{}",
        body_text(&r)
    );
    expect(w.last_op("i1", Some(&op)), 410);
}

#[test]
fn an_operation_finished_within_maximum_polling_duration_succeeds() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT - 1);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
}

// ---------------------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------------------

#[test]
fn a_sync_update_of_parameters_answers_200_and_merges_them() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"size": 1, "username_prefix": "app"}));
    let r = expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 3}})), false),
        200,
    );
    assert_eq!(body(&r), &json!({}));
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(
        body(&f)["parameters"],
        json!({"size": 3, "username_prefix": "app"})
    );
    let record = w.instance("i1");
    assert_eq!(record["operation"]["kind"], "update");
    assert_eq!(record["operation"]["state"], "succeeded");
}

#[test]
fn an_update_without_parameters_keeps_them_and_changes_the_plan() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"size": 2}));
    let r = w.patch(
        "i1",
        update_body(json!({"plan_id": SYNC_B, "previous_values": {"plan_id": SYNC}})),
        false,
    );
    expect(r, 200);
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(body(&f)["plan_id"], SYNC_B);
    assert_eq!(body(&f)["parameters"], json!({"size": 2}));
    assert_eq!(body(&f)["maintenance_info"], json!({"version": "2.0.0"}));
}

#[test]
fn changing_the_plan_of_a_non_updateable_plan_is_422() {
    let w = world();
    w.ready_instance("i1", FIXED);
    let before = w.snapshot();
    let r = expect(
        w.patch("i1", update_body(json!({"plan_id": SYNC})), false),
        422,
    );
    assert_eq!(error_of(&r), None);
    assert!(
        description_of(&r).contains("fixed"),
        "{}",
        description_of(&r)
    );
    assert_eq!(w.snapshot(), before);
    // Parameters of a non-updateable plan can still change.
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
        200,
    );
}

#[test]
fn an_update_with_a_conflicting_maintenance_info_is_422_maintenance_info_conflict() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let before = w.snapshot();
    let r = w.patch(
        "i1",
        update_body(json!({"maintenance_info": {"version": "9.9.9"}})),
        false,
    );
    expect_422(r, "MaintenanceInfoConflict");
    // Changing plan with the old plan's version is a conflict too.
    let r = w.patch(
        "i1",
        update_body(json!({"plan_id": SYNC_B, "maintenance_info": {"version": "1.0.0"}})),
        false,
    );
    expect_422(r, "MaintenanceInfoConflict");
    assert_eq!(w.snapshot(), before);
    // The current version is a no-op.
    let r = w.patch(
        "i1",
        update_body(json!({"maintenance_info": {"version": "1.0.0"}})),
        false,
    );
    expect(r, 200);
}

#[test]
fn a_maintenance_update_to_the_plans_new_version_is_applied() {
    let mut w = world();
    w.ready_instance("i1", SYNC);
    // The operator publishes a new maintenance version of the plan.
    let yaml = CATALOG.replace("{version: 1.0.0, description: First.}", "{version: 1.1.0}");
    assert_ne!(yaml, CATALOG);
    w.catalog = Catalog::from_yaml_documents(&[("catalog.yaml", yaml)]).unwrap();
    // An update that does not ask for it keeps the old version.
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
        200,
    );
    assert_eq!(
        body(&expect(w.fetch("i1"), 200))["maintenance_info"]["version"],
        "1.0.0"
    );
    let r = w.patch(
        "i1",
        update_body(json!({"maintenance_info": {"version": "1.1.0"}, "previous_values": {"maintenance_info": {"version": "1.0.0"}}})),
        false,
    );
    expect(r, 200);
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(body(&f)["maintenance_info"], json!({"version": "1.1.0"}));
    assert_eq!(body(&f)["parameters"], json!({"size": 2}));
}

#[test]
fn a_context_only_update_is_stored_when_the_service_allows_context_updates() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let op = w.instance("i1")["operation"]["id"].clone();
    let context = json!({"platform": "cloudfoundry", "organization_guid": "org-1", "space_guid": "space-1", "instance_name": "renamed"});
    let r = expect(
        w.patch("i1", update_body(json!({"context": context})), false),
        200,
    );
    assert_eq!(body(&r), &json!({}));
    let record = w.instance("i1");
    assert_eq!(record["context"], context);
    assert_eq!(
        record["operation"]["id"], op,
        "no operation for a context update"
    );
}

#[test]
fn a_context_only_update_is_ignored_when_the_service_does_not_allow_context_updates() {
    let w = world();
    w.ready_instance("i1", PLAIN);
    let before = w.instance("i1");
    let r = w.patch(
        "i1",
        json!({"service_id": PLAIN_SVC, "context": {"platform": "cloudfoundry", "instance_name": "x"}}),
        false,
    );
    expect(r, 200);
    assert_eq!(w.instance("i1"), before);
}

#[test]
fn a_no_op_update_answers_200_and_starts_no_operation() {
    let w = world();
    w.ready_instance_with("i1", ASYNC, json!({"size": 2}));
    let before = w.snapshot();
    for body in [
        update_body(json!({})),
        update_body(json!({"plan_id": ASYNC})),
        update_body(json!({"parameters": {"size": 2}})),
        update_body(json!({"parameters": {}})),
    ] {
        // No AsyncRequired either: nothing is done asynchronously.
        let r = expect(w.patch("i1", body.clone(), false), 200);
        assert_eq!(crate::body(&r), &json!({}), "{body}");
    }
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_update_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    w.ready_instance("i2", SYNC);
    let before = w.snapshot();
    let r = w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false);
    expect_422(r, "AsyncRequired");
    // A plan change to an async plan likewise.
    expect_422(
        w.patch("i2", update_body(json!({"plan_id": ASYNC})), false),
        "AsyncRequired",
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_update_answers_202_and_repeats_give_the_same_operation_until_it_completes() {
    let w = world();
    w.ready_instance_with("i1", ASYNC, json!({"username_prefix": "app"}));
    let update = update_body(json!({"parameters": {"size": 2}}));
    let op = operation_of(&expect(w.patch("i1", update.clone(), true), 202));
    assert!(op.starts_with("update-"), "{op}");
    // Pending parameters are not applied yet.
    assert_eq!(
        w.instance("i1")["parameters"],
        json!({"username_prefix": "app"})
    );

    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(header(&r, "Retry-After").is_some());

    w.env.advance(2);
    assert_eq!(
        operation_of(&expect(w.patch("i1", update.clone(), true), 202)),
        op
    );
    // A different update while one runs: ConcurrencyError.
    let other = update_body(json!({"parameters": {"size": 3}}));
    expect_422(w.patch("i1", other, true), "ConcurrencyError");

    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(
        body(&f)["parameters"],
        json!({"username_prefix": "app", "size": 2})
    );
    // Once applied, the same request is a no-op.
    expect(w.patch("i1", update, true), 200);
}

#[test]
fn an_async_plan_change_is_applied_when_the_operation_succeeds() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let op = operation_of(&expect(
        w.patch("i1", update_body(json!({"plan_id": ASYNC})), true),
        202,
    ));
    assert_eq!(w.instance("i1")["plan_id"], SYNC);
    // The platform polls with the plan prior to the update; deprovision with either plan
    // id is accepted but blocked by the update.
    expect_422(w.deprovision_as("i1", SVC, ASYNC, true), "ConcurrencyError");
    expect_422(w.deprovision_as("i1", SVC, SYNC, true), "ConcurrencyError");
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
    assert_eq!(body(&expect(w.fetch("i1"), 200))["plan_id"], ASYNC);
}

#[test]
fn a_failed_async_update_reports_instance_usable_and_update_repeatable_and_keeps_the_instance() {
    let w = world();
    w.ready_instance_with("i1", SHORT, json!({"size": 1}));
    let op = operation_of(&expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    ));
    w.env.advance(SHORT_LIMIT);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert!(description_of(&r).contains("maximum polling duration"));
    assert_eq!(body(&r)["instance_usable"], true);
    assert_eq!(body(&r)["update_repeatable"], true);
    let f = expect(w.fetch("i1"), 200);
    assert_eq!(body(&f)["parameters"], json!({"size": 1}));
    // The update can be repeated.
    let again = operation_of(&expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    ));
    assert_ne!(again, op);
}

#[test]
fn update_requests_that_are_malformed_or_name_unknown_things_are_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let before = w.snapshot();
    let cases = [
        (json!({"plan_id": SYNC}), "service_id"),
        (json!({"service_id": ""}), "service_id"),
        (json!({"service_id": PLAIN_SVC}), "service_id"),
        (json!({"service_id": SVC, "plan_id": "nope"}), "nope"),
        (json!({"service_id": SVC, "plan_id": PLAIN}), PLAIN),
        (
            json!({"service_id": SVC, "parameters": {"size": 0}}),
            "parameters.size",
        ),
        (
            json!({"service_id": SVC, "parameters": {"size": 2, "extra_field": 1}}),
            "extra_field",
        ),
    ];
    for (b, needle) in cases {
        let r = w.patch("i1", b.clone(), false);
        assert_eq!(r.status, 400, "{b}: {}", body_text(&r));
        assert!(
            description_of(&r).contains(needle),
            "{b}: {}",
            description_of(&r)
        );
    }
    expect(
        w.patch(
            "nope",
            update_body(json!({"parameters": {"size": 2}})),
            false,
        ),
        400,
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn updating_an_instance_that_is_still_provisioning_is_422_concurrency_error() {
    let w = world();
    expect(w.provision("i1", ASYNC), 202);
    expect_422(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        "ConcurrencyError",
    );
}

#[test]
fn updating_an_instance_whose_provisioning_failed_is_422() {
    let w = world();
    expect(w.provision("i1", SHORT), 202);
    w.env.advance(SHORT_LIMIT);
    expect(w.last_op("i1", None), 200);
    let r = expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        422,
    );
    assert!(
        description_of(&r).contains("deprovision"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn updating_an_instance_being_deprovisioned_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.deprovision("i1", ASYNC), 202);
    expect_422(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        "ConcurrencyError",
    );
}

// ---------------------------------------------------------------------------------------
// Deprovision
// ---------------------------------------------------------------------------------------

#[test]
fn a_sync_deprovision_answers_200_and_leaves_a_tombstone() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let r = expect(w.deprovision("i1", SYNC), 200);
    assert_eq!(body(&r), &json!({}));
    let record = w.instance("i1");
    assert_eq!(record["status"], "deleted");
    assert_eq!(record["operation"]["kind"], "deprovision");
    assert_eq!(record["operation"]["state"], "succeeded");
    // Gone: repeated deprovisions are 410, fetch 404, last_operation 410.
    expect(w.deprovision("i1", SYNC), 410);
    expect(w.fetch("i1"), 404);
    expect(w.last_op("i1", None), 410);
}

#[test]
fn deprovisioning_an_unknown_instance_is_410() {
    let w = world();
    let r = expect(w.deprovision("nope", SYNC), 410);
    assert!(!description_of(&r).is_empty());
    expect(w.deprovision("nope", ASYNC), 410);
    assert!(w.kv.keys().is_empty());
}

#[test]
fn deprovision_without_or_with_mismatched_service_and_plan_ids_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let before = w.snapshot();
    let q = |pairs: &[(&str, &str)]| w.call(Endpoint::Deprovision, "i1", "", pairs, None);
    expect(q(&[("plan_id", SYNC)]), 400);
    expect(q(&[("service_id", SVC)]), 400);
    expect(q(&[("service_id", ""), ("plan_id", SYNC)]), 400);
    expect(q(&[("service_id", SVC), ("plan_id", SYNC_B)]), 400);
    expect(q(&[("service_id", PLAIN_SVC), ("plan_id", SYNC)]), 400);
    expect(
        q(&[
            ("service_id", SVC),
            ("plan_id", SYNC),
            ("accepts_incomplete", "maybe"),
        ]),
        400,
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_deprovision_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let before = w.snapshot();
    expect_422(w.deprovision_as("i1", SVC, ASYNC, false), "AsyncRequired");
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_deprovision_answers_202_repeats_give_the_same_operation_then_410() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    assert!(op.starts_with("deprovision-"), "{op}");
    w.env.advance(3);
    assert_eq!(operation_of(&expect(w.deprovision("i1", ASYNC), 202)), op);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("7"));
    w.env.advance(DELAY);
    let _ = w.last_op("i1", Some(&op));
    expect(w.last_op("i1", Some(&op)), 410);
    expect(w.deprovision("i1", ASYNC), 410);
}

#[test]
fn a_deprovision_during_async_provisioning_stops_creation_and_the_old_operation_reports_failed() {
    let w = world();
    let provision_op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(3);
    let deprovision_op = operation_of(&expect(w.deprovision("i1", ASYNC), 202));
    assert_ne!(provision_op, deprovision_op);

    // The provision is over: failed, answered from history.
    let r = expect(w.last_op("i1", Some(&provision_op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert!(
        description_of(&r).contains("cancelled"),
        "{}",
        description_of(&r)
    );
    // The deletion runs.
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&deprovision_op)), 200)),
        "in progress"
    );
    assert_eq!(state_of(&expect(w.last_op("i1", None), 200)), "in progress");
    expect(w.fetch("i1"), 404);

    // Past the time creation would have finished, it never does.
    w.env.advance(DELAY);
    let _ = w.last_op("i1", Some(&deprovision_op));
    expect(w.last_op("i1", Some(&deprovision_op)), 410);
    let record = w.instance("i1");
    assert_eq!(record["status"], "deleted");
    let history = record["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|h| h["id"] == provision_op.as_str() && h["state"] == "failed"));
    // ...and the provision's id keeps answering failed after the deletion.
    let r = expect(w.last_op("i1", Some(&provision_op)), 200);
    assert_eq!(state_of(&r), "failed");
    expect(w.fetch("i1"), 404);
}

#[test]
fn deprovisioning_an_instance_being_updated_is_422_concurrency_error() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        202,
    );
    let before = w.snapshot();
    expect_422(w.deprovision("i1", ASYNC), "ConcurrencyError");
    assert_eq!(w.snapshot(), before);
}

// ---------------------------------------------------------------------------------------
// Bind
// ---------------------------------------------------------------------------------------

#[test]
fn a_sync_bind_answers_201_with_rendered_credentials() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({"username_prefix": "app", "size": 2}));
    let mut b = bind_body(SYNC);
    b["parameters"] = json!({"role": "read-only"});
    let r = expect(w.put_binding("i1", "binding-123456789", b, false), 201);
    let creds = &body(&r)["credentials"];
    assert_eq!(creds["username"], "app-binding-");
    assert_eq!(creds["role"], "read-only");
    assert_eq!(creds["size"], "2");
    assert_eq!(creds["instance_id"], "i1");
    let password = creds["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    assert!(body(&r).get("operation").is_none());
    // Secrets differ per binding.
    let r2 = expect(w.bind("i1", "other-binding", SYNC), 201);
    assert_ne!(body(&r2)["credentials"]["password"], password);
    assert_eq!(body(&r2)["credentials"]["role"], "read-write");
    let record = w.binding("i1", "binding-123456789");
    assert_eq!(record["status"], "ready");
    assert_eq!(record["bind_resource"], json!({"app_guid": "app-1"}));
}

#[test]
fn an_identical_bind_answers_200_and_a_different_one_409() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let first = expect(w.bind("i1", "b1", SYNC), 201);
    let again = expect(w.bind("i1", "b1", SYNC), 200);
    assert_eq!(body(&again)["credentials"], body(&first)["credentials"]);
    assert_eq!(body(&again)["metadata"], body(&first)["metadata"]);
    let before = w.snapshot();
    let mut different = bind_body(SYNC);
    different["parameters"] = json!({"role": "read-only"});
    expect(w.put_binding("i1", "b1", different, false), 409);
    let mut other_app = bind_body(SYNC);
    other_app["bind_resource"] = json!({"app_guid": "app-2"});
    expect(w.put_binding("i1", "b1", other_app, false), 409);
    assert_eq!(w.snapshot(), before);
}

#[test]
fn bind_requests_that_are_malformed_or_name_unknown_things_are_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_instance("nb", NOBIND);
    let before = w.snapshot();
    let cases = [
        ("i1", json!({"plan_id": SYNC})),
        ("i1", json!({"service_id": SVC})),
        ("i1", json!({"service_id": SVC, "plan_id": ""})),
        ("i1", json!({"service_id": SVC, "plan_id": SYNC_B})),
        ("i1", json!({"service_id": PLAIN_SVC, "plan_id": PLAIN})),
        (
            "i1",
            json!({"service_id": SVC, "plan_id": SYNC, "parameters": {"role": "admin"}}),
        ),
        (
            "i1",
            json!({"service_id": SVC, "plan_id": SYNC, "parameters": "x"}),
        ),
        ("missing", json!({"service_id": SVC, "plan_id": SYNC})),
        ("nb", json!({"service_id": SVC, "plan_id": NOBIND})),
    ];
    for (iid, b) in cases {
        let r = w.put_binding(iid, "b1", b.clone(), false);
        assert_eq!(r.status, 400, "{iid} {b}: {}", body_text(&r));
        assert!(!description_of(&r).is_empty());
    }
    let mut bad_role = bind_body(SYNC);
    bad_role["parameters"] = json!({"role": "admin"});
    let r = expect(w.put_binding("i1", "b1", bad_role, false), 400);
    assert!(
        description_of(&r).contains("parameters.role"),
        "{}",
        description_of(&r)
    );
    let r = expect(w.bind("nb", "b1", NOBIND), 400);
    assert!(
        description_of(&r).contains("not bindable"),
        "{}",
        description_of(&r)
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_bind_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let before = w.snapshot();
    expect_422(
        w.put_binding("i1", "b1", bind_body(ASYNC), false),
        "AsyncRequired",
    );
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_bind_answers_202_without_credentials_and_completes_through_binding_last_operation() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let r = expect(w.bind("i1", "b1", ASYNC), 202);
    let op = operation_of(&r);
    assert!(op.starts_with("bind-"), "{op}");
    assert!(
        body(&r).get("credentials").is_none(),
        "202 MUST NOT carry credentials"
    );
    // While binding: fetch 404, repeats 202 with the same operation.
    expect(w.fetch_binding("i1", "b1"), 404);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert_eq!(header(&r, "Retry-After"), Some("10"));
    w.env.advance(4);
    assert_eq!(operation_of(&expect(w.bind("i1", "b1", ASYNC), 202)), op);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", None), 200)),
        "in progress"
    );

    w.env.advance(6);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert_eq!(header(&r, "Retry-After"), None);
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert_eq!(body(&f)["credentials"]["username"], "user-b1");
    assert_eq!(body(&f)["parameters"], json!({}));
    // An identical bind now answers 200 with the credentials.
    let again = expect(w.bind("i1", "b1", ASYNC), 200);
    assert_eq!(body(&again)["credentials"], body(&f)["credentials"]);
}

#[test]
fn binding_to_an_instance_that_is_provisioning_or_deprovisioning_is_422_concurrency_error() {
    let w = world();
    expect(w.provision("i1", ASYNC), 202);
    expect_422(w.bind("i1", "b1", ASYNC), "ConcurrencyError");
    w.env.advance(DELAY);
    expect(w.last_op("i1", None), 200);
    expect(w.deprovision("i1", ASYNC), 202);
    expect_422(w.bind("i1", "b1", ASYNC), "ConcurrencyError");
    assert!(w.kv.get(&binding_key("i1", "b1")).unwrap().is_none());
}

#[test]
fn binding_to_an_instance_whose_provisioning_failed_is_422() {
    let w = world();
    expect(w.provision("i1", SHORT), 202);
    w.env.advance(SHORT_LIMIT);
    expect(w.last_op("i1", None), 200);
    expect(w.bind("i1", "b1", SHORT), 422);
}

#[test]
fn binding_metadata_carries_expires_at_and_renew_before_in_the_spec_format() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let r = expect(w.bind("i1", "b1", SYNC), 201);
    let m = &body(&r)["metadata"];
    assert_eq!(m["expires_at"], "2023-11-14T23:13:20.0Z");
    assert_eq!(m["renew_before"], "2023-11-14T23:03:20.0Z");
    assert!(
        m.get("expires_at_unix").is_none(),
        "internal fields stay internal: {m}"
    );
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert_eq!(&body(&f)["metadata"], m);

    // Default renew window: a tenth of the lifetime. Bound at T0 + DELAY (after the instance).
    w.ready_instance("i2", ASYNC);
    w.ready_binding("i2", "b2", ASYNC, json!({}));
    let f = expect(w.fetch_binding("i2", "b2"), 200);
    let m = &body(&f)["metadata"];
    assert_eq!(m["expires_at"], "2023-11-15T22:13:30.0Z");
    assert_eq!(m["renew_before"], "2023-11-15T19:49:30.0Z");
    for field in ["expires_at", "renew_before"] {
        assert!(is_spec_timestamp(m[field].as_str().unwrap()), "{m}");
    }
    // Plans without a lifetime have no binding metadata.
    w.ready_instance("i3", PLAIN);
    let r = expect(w.bind("i3", "b3", PLAIN), 201);
    assert!(body(&r).get("metadata").is_none(), "{}", body_text(&r));
}

#[test]
fn rotation_carries_the_predecessors_parameters_over() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "old", SYNC, json!({"role": "read-only"}));
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("old");
    let r = expect(w.put_binding("i1", "new", b.clone(), false), 201);
    assert_eq!(body(&r)["credentials"]["role"], "read-only");
    let old = expect(w.fetch_binding("i1", "old"), 200);
    assert_ne!(
        body(&r)["credentials"]["password"],
        body(&old)["credentials"]["password"]
    );
    let f = expect(w.fetch_binding("i1", "new"), 200);
    assert_eq!(body(&f)["parameters"], json!({"role": "read-only"}));
    assert_eq!(w.binding("i1", "new")["predecessor_binding_id"], "old");
    // The predecessor stays usable until the platform unbinds it.
    expect(w.fetch_binding("i1", "old"), 200);
    // Identical repeat: 200.
    expect(w.put_binding("i1", "new", b, false), 200);
    // Explicit parameters win over the predecessor's.
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("old");
    b["parameters"] = json!({"role": "read-write"});
    let r = expect(w.put_binding("i1", "newer", b, false), 201);
    assert_eq!(body(&r)["credentials"]["role"], "read-write");
}

#[test]
fn rotation_from_an_unknown_expired_or_unrotatable_predecessor_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let rotate = |bid: &str, predecessor: &str| {
        let mut b = bind_body(SYNC);
        b["predecessor_binding_id"] = json!(predecessor);
        w.put_binding("i1", bid, b, false)
    };
    let r = expect(rotate("new", "nope"), 400);
    assert!(
        description_of(&r).contains("nope"),
        "{}",
        description_of(&r)
    );
    expect(rotate("new", "a/b"), 400);

    w.ready_binding("i1", "old", SYNC, json!({}));
    w.env.advance(3600);
    let r = expect(rotate("new", "old"), 400);
    assert!(
        description_of(&r).contains("expired"),
        "{}",
        description_of(&r)
    );

    // A predecessor that was unbound is unknown.
    w.ready_binding("i1", "old2", SYNC, json!({}));
    expect(w.unbind("i1", "old2", SYNC), 200);
    expect(rotate("new", "old2"), 400);
    assert!(w.kv.get(&binding_key("i1", "new")).unwrap().is_none());

    // A plan without binding_rotatable.
    w.ready_instance("p1", PLAIN);
    w.ready_binding("p1", "old", PLAIN, json!({}));
    let mut b = bind_body(PLAIN);
    b["predecessor_binding_id"] = json!("old");
    let r = expect(w.put_binding("p1", "new", b, false), 400);
    assert!(
        description_of(&r).contains("rotated"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn rotation_within_the_lifetime_succeeds_even_after_the_renew_time() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "old", SYNC, json!({}));
    w.env.advance(3599);
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("old");
    let r = expect(w.put_binding("i1", "new", b, false), 201);
    // Bound at T0 + 3599: expires an hour later.
    assert_eq!(body(&r)["metadata"]["expires_at"], "2023-11-15T00:13:19.0Z");
}

// ---------------------------------------------------------------------------------------
// Fetch binding
// ---------------------------------------------------------------------------------------

#[test]
fn fetching_a_binding_returns_credentials_and_parameters_or_404() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.fetch_binding("i1", "b1"), 404);
    w.ready_binding("i1", "b1", SYNC, json!({"role": "read-only"}));
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert_eq!(body(&f)["credentials"]["role"], "read-only");
    assert_eq!(body(&f)["parameters"], json!({"role": "read-only"}));
    // A binding id is scoped to its instance.
    w.ready_instance("i2", SYNC);
    expect(w.fetch_binding("i2", "b1"), 404);
    expect(w.unbind("i1", "b1", SYNC), 200);
    expect(w.fetch_binding("i1", "b1"), 404);
}

#[test]
fn fetching_a_binding_of_a_service_without_bindings_retrievable_is_404() {
    let w = world();
    w.ready_instance("i1", PLAIN);
    expect(w.bind("i1", "b1", PLAIN), 201);
    expect(w.fetch_binding("i1", "b1"), 404);
}

// ---------------------------------------------------------------------------------------
// Unbind
// ---------------------------------------------------------------------------------------

#[test]
fn a_sync_unbind_answers_200_and_removes_the_credentials() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    let r = expect(w.unbind("i1", "b1", SYNC), 200);
    assert_eq!(body(&r), &json!({}));
    let record = w.binding("i1", "b1");
    assert_eq!(record["status"], "deleted");
    assert!(
        record.get("credentials").is_none(),
        "secrets must not outlive the binding"
    );
    expect(w.unbind("i1", "b1", SYNC), 410);
    // The id can be bound again.
    expect(w.bind("i1", "b1", SYNC), 201);
}

#[test]
fn unbinding_an_unknown_binding_is_410() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.unbind("i1", "nope", SYNC), 410);
    expect(w.unbind("no-instance", "nope", SYNC), 410);
}

#[test]
fn unbind_without_or_with_mismatched_service_and_plan_ids_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    let before = w.snapshot();
    let q = |pairs: &[(&str, &str)]| w.call(Endpoint::Unbind, "i1", "b1", pairs, None);
    expect(q(&[("plan_id", SYNC)]), 400);
    expect(q(&[("service_id", SVC)]), 400);
    expect(q(&[("service_id", SVC), ("plan_id", "nope")]), 400);
    expect(q(&[("service_id", PLAIN_SVC), ("plan_id", SYNC)]), 400);
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_unbind_without_accepts_incomplete_is_422_async_required() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    w.ready_binding("i1", "b1", ASYNC, json!({}));
    let before = w.snapshot();
    expect_422(w.unbind_as("i1", "b1", SVC, ASYNC, false), "AsyncRequired");
    assert_eq!(w.snapshot(), before);
}

#[test]
fn an_async_unbind_answers_202_repeats_give_the_same_operation_then_binding_last_operation_is_410()
{
    let w = world();
    w.ready_instance("i1", ASYNC);
    w.ready_binding("i1", "b1", ASYNC, json!({}));
    let bind_op = w.binding("i1", "b1")["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let op = operation_of(&expect(w.unbind("i1", "b1", ASYNC), 202));
    assert!(op.starts_with("unbind-"), "{op}");
    assert_eq!(operation_of(&expect(w.unbind("i1", "b1", ASYNC), 202)), op);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(header(&r, "Retry-After").is_some());
    // Binding again while unbinding: ConcurrencyError.
    expect_422(w.bind("i1", "b1", ASYNC), "ConcurrencyError");
    w.env.advance(DELAY);
    let first = w.binding_last_op("i1", "b1", Some(&op));
    assert!(
        first.status == 410 || state_of(&first) == "succeeded",
        "{}",
        body_text(&first)
    );
    expect(w.binding_last_op("i1", "b1", Some(&op)), 410);
    expect(w.binding_last_op("i1", "b1", None), 410);
    expect(w.unbind("i1", "b1", ASYNC), 410);
    // The bind operation is history.
    let r = expect(w.binding_last_op("i1", "b1", Some(&bind_op)), 200);
    assert_eq!(state_of(&r), "succeeded");
    assert!(w.binding("i1", "b1").get("credentials").is_none());
}

#[test]
fn an_unbind_during_an_async_bind_stops_it_and_the_old_operation_reports_failed() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let bind_op = operation_of(&expect(w.bind("i1", "b1", ASYNC), 202));
    w.env.advance(2);
    let unbind_op = operation_of(&expect(w.unbind("i1", "b1", ASYNC), 202));
    let r = expect(w.binding_last_op("i1", "b1", Some(&bind_op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert_eq!(
        state_of(&expect(
            w.binding_last_op("i1", "b1", Some(&unbind_op)),
            200
        )),
        "in progress"
    );
    expect(w.fetch_binding("i1", "b1"), 404);
    w.env.advance(DELAY);
    let _ = w.binding_last_op("i1", "b1", Some(&unbind_op));
    expect(w.binding_last_op("i1", "b1", Some(&unbind_op)), 410);
    let record = w.binding("i1", "b1");
    assert_eq!(record["status"], "deleted");
    assert!(
        record.get("credentials").is_none(),
        "no credentials were ever issued"
    );
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&bind_op)), 200)),
        "failed"
    );
}

#[test]
fn unbinding_after_a_plan_change_accepts_the_instances_current_plan() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    expect(
        w.patch("i1", update_body(json!({"plan_id": SYNC_B})), false),
        200,
    );
    // The binding is associated with the instance, whose plan is now SYNC_B.
    expect(w.unbind_as("i1", "b1", SVC, SYNC_B, false), 200);
}

// ---------------------------------------------------------------------------------------
// Binding last_operation
// ---------------------------------------------------------------------------------------

#[test]
fn binding_last_operation_of_an_unknown_binding_is_404_and_of_an_unknown_operation_400() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.binding_last_op("i1", "nope", None), 404);
    expect(
        w.binding_last_op("i1", "nope", Some("bind-0000000000000001")),
        404,
    );
    // The binding record is gone altogether but the platform polls its unbind: 410.
    expect(
        w.binding_last_op("i1", "nope", Some("unbind-0000000000000001")),
        410,
    );
    expect(w.bind("i1", "b1", ASYNC), 202);
    expect(
        w.binding_last_op("i1", "b1", Some("bind-ffffffffffffffff")),
        400,
    );
}

#[test]
fn exceeding_maximum_polling_duration_fails_the_bind() {
    let w = world();
    w.ready_instance("i1", SHORT);
    let op = operation_of(&expect(w.bind("i1", "b1", SHORT), 202));
    w.env.advance(SHORT_LIMIT);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert!(description_of(&r).contains("maximum polling duration"));
    assert!(body(&r).get("instance_usable").is_none());
    expect(w.fetch_binding("i1", "b1"), 404);
    // Unbinding the failed binding cleans it up.
    let op = operation_of(&expect(w.unbind("i1", "b1", SHORT), 202));
    w.env.advance(SHORT_DELAY);
    let _ = w.binding_last_op("i1", "b1", Some(&op));
    expect(w.binding_last_op("i1", "b1", Some(&op)), 410);
}

// ---------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------

#[test]
fn a_request_sent_to_the_wrong_endpoint_component_is_404() {
    let w = world();
    let r = request(
        Endpoint::Provision,
        "i1",
        "",
        &[],
        Some(&provision_body(SYNC)),
    );
    expect(w.send(&r, Endpoint::Bind), 404);
    assert!(w.kv.keys().is_empty());
}

#[test]
fn the_catalog_endpoint_serves_the_catalog_without_backends() {
    let w = world();
    let r = expect(w.call(Endpoint::Catalog, "", "", &[], None), 200);
    let text = body_text(&r);
    assert!(text.contains("plan-async"));
    assert!(!text.contains("backend"), "{text}");
    assert!(!text.contains("binding_lifetime"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Robustness: store outages, corrupt records
// ---------------------------------------------------------------------------------------

#[test]
fn a_store_outage_is_503_on_every_endpoint_and_changes_nothing() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    w.ready_instance("i2", ASYNC);
    expect(w.bind("i2", "b2", ASYNC), 202);
    let before = w.snapshot();
    w.kv.fail.store(true, Ordering::SeqCst);
    let responses = [
        w.provision("new", SYNC),
        w.provision("i1", SYNC),
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
        w.deprovision("i1", SYNC),
        w.fetch("i1"),
        w.last_op("i2", None),
        w.bind("i1", "new", SYNC),
        w.bind("i1", "b1", SYNC),
        w.unbind("i1", "b1", SYNC),
        w.fetch_binding("i1", "b1"),
        w.binding_last_op("i2", "b2", None),
    ];
    w.kv.fail.store(false, Ordering::SeqCst);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 503, "request {i}: {}", body_text(r));
        assert!(description_of(r).contains("retry"), "{}", description_of(r));
    }
    assert_eq!(w.snapshot(), before);
    // Everything works once the store is back.
    expect(w.fetch("i1"), 200);
    expect(w.provision("new", SYNC), 201);
}

#[test]
fn a_corrupt_instance_record_is_500_on_every_endpoint_not_a_panic() {
    let w = world();
    let raws: [&[u8]; 4] = [
        b"{not json",
        br#"{"schema": 1}"#,
        br#"{"schema": 99, "instance_id": "i1"}"#,
        b"\xff\xfe",
    ];
    for raw in raws {
        w.kv.set(&instance_key("i1"), raw).unwrap();
        let responses = [
            w.provision("i1", SYNC),
            w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
            w.deprovision("i1", SYNC),
            w.fetch("i1"),
            w.last_op("i1", None),
            w.bind("i1", "b1", SYNC),
        ];
        for (i, r) in responses.iter().enumerate() {
            assert_eq!(r.status, 500, "{raw:?} request {i}: {}", body_text(r));
            assert!(
                description_of(r).contains(&instance_key("i1")),
                "names the key: {}",
                description_of(r)
            );
        }
        assert_eq!(
            w.kv.get(&instance_key("i1")).unwrap().unwrap(),
            raw,
            "not overwritten"
        );
    }
}

#[test]
fn a_record_with_a_newer_schema_is_500_asking_for_an_upgrade() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let mut record = w.instance("i1");
    record["schema"] = json!(2);
    w.write_record(&instance_key("i1"), &record);
    let r = expect(w.fetch("i1"), 500);
    assert!(
        description_of(&r).contains("newer"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn a_corrupt_binding_record_is_500_on_every_binding_endpoint_not_a_panic() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.kv.set(&binding_key("i1", "b1"), b"[1,2").unwrap();
    let responses = [
        w.bind("i1", "b1", SYNC),
        w.unbind("i1", "b1", SYNC),
        w.fetch_binding("i1", "b1"),
        w.binding_last_op("i1", "b1", None),
    ];
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 500, "request {i}: {}", body_text(r));
    }
    // A corrupt predecessor is 500 as well, not "does not exist".
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("b1");
    expect(w.put_binding("i1", "b2", b, false), 500);
    assert_eq!(
        w.kv.get(&binding_key("i1", "b1")).unwrap().unwrap(),
        b"[1,2"
    );
}

/// A store that fails every operation from the `fail_from`-th on (0-based) while `armed`.
struct FlakyKv {
    inner: MemoryKv,
    calls: AtomicUsize,
    fail_from: usize,
    armed: AtomicBool,
}

impl FlakyKv {
    fn new(fail_from: usize) -> Self {
        Self {
            inner: MemoryKv::default(),
            calls: AtomicUsize::new(0),
            fail_from,
            armed: AtomicBool::new(true),
        }
    }

    fn check(&self) -> Result<(), KvError> {
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
        self.check()?;
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.check()?;
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.check()?;
        self.inner.delete(key)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check()?;
        self.inner.increment(key, delta)
    }
    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError> {
        self.check()?;
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

#[test]
fn a_store_outage_at_any_step_of_a_sync_provision_and_bind_is_recovered_by_retrying() {
    for fail_from in 0..16 {
        let w = World {
            catalog: catalog(),
            kv: FlakyKv::new(fail_from),
            env: TestEnv::at(T0),
        };
        let first = w.provision("i1", SYNC);
        if first.status == 201 {
            // The outage came after the provision: it must hit the bind instead.
            let r = w.bind("i1", "b1", SYNC);
            w.kv.armed.store(false, Ordering::SeqCst);
            if r.status != 201 {
                assert_eq!(r.status, 503, "fail_from {fail_from}: {}", body_text(&r));
                let r = retry_until_settled(&w, || w.bind("i1", "b1", SYNC));
                assert!(
                    r.status == 201 || r.status == 200,
                    "fail_from {fail_from}: {} {}",
                    r.status,
                    body_text(&r)
                );
            }
        } else {
            assert_eq!(
                first.status,
                503,
                "fail_from {fail_from}: {}",
                body_text(&first)
            );
            w.kv.armed.store(false, Ordering::SeqCst);
            let r = retry_until_settled(&w, || w.provision("i1", SYNC));
            assert!(
                r.status == 201 || r.status == 200,
                "fail_from {fail_from}: {} {}",
                r.status,
                body_text(&r)
            );
            expect(w.bind("i1", "b1", SYNC), 201);
        }
        expect(w.fetch("i1"), 200);
        let f = expect(w.fetch_binding("i1", "b1"), 200);
        assert_eq!(body(&f)["credentials"]["instance_id"], "i1");
        let keys: Vec<String> =
            w.kv.inner
                .keys()
                .into_iter()
                .filter(|k| !k.contains("/claim/"))
                .collect();
        assert_eq!(
            keys,
            vec![binding_key("i1", "b1"), instance_key("i1")],
            "fail_from {fail_from}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

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

#[test]
fn fifty_concurrent_identical_async_provisions_share_one_record_and_one_operation() {
    let (w, responses) = concurrent_provisions(ASYNC, 50);
    let mut ops: Vec<String> = responses
        .iter()
        .map(|r| operation_of(&expect(r.clone(), 202)))
        .collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    assert_eq!(w.instance("i1")["operation"]["id"], ops[0].as_str());
    assert!(w.instance("i1")["history"]
        .as_array()
        .is_none_or(|h| h.is_empty()));
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&ops[0])), 200)),
        "succeeded"
    );
}

#[test]
fn fifty_concurrent_identical_sync_provisions_create_one_instance() {
    let (w, responses) = concurrent_provisions(SYNC, 50);
    let created = responses.iter().filter(|r| r.status == 201).count();
    assert!(created >= 1, "someone provisioned it");
    for r in &responses {
        let ok = r.status == 201
            || r.status == 200
            || (r.status == 422 && error_of(r) == Some("ConcurrencyError"));
        assert!(ok, "{} {}", r.status, body_text(r));
    }
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    let record = w.instance("i1");
    assert_eq!(record["status"], "ready");
    assert!(
        record["history"].as_array().is_none_or(|h| h.is_empty()),
        "{record}"
    );
    expect(w.provision("i1", SYNC), 200);
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

/// Exactly one of N identical deletions deleted the resource (200); the others find it
/// gone (410): "200 … MUST be returned if the Service Instance was deleted as a result of
/// this request".
#[test]
fn twenty_concurrent_identical_sync_deletions_answer_one_200_and_410s() {
    for _ in 0..10 {
        let w = world();
        expect(w.provision("i1", SYNC), 201);
        expect(w.bind("i1", "b1", SYNC), 201);
        let unbinds = at_once(20, || w.unbind("i1", "b1", SYNC));
        assert_eq!(statuses(&unbinds), [(200, 1), (410, 19)].into(), "unbinds");
        let deprovisions = at_once(20, || w.deprovision("i1", SYNC));
        assert_eq!(
            statuses(&deprovisions),
            [(200, 1), (410, 19)].into(),
            "deprovisions"
        );
        for r in unbinds
            .iter()
            .chain(&deprovisions)
            .filter(|r| r.status == 410)
        {
            assert_eq!(error_of(r), None, "{}", body_text(r));
        }
    }
}

#[test]
fn concurrent_polls_of_one_operation_agree() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(DELAY);
    let states: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| w.last_op("i1", Some(&op))))
            .collect();
        handles
            .into_iter()
            .map(|h| state_of(&expect(h.join().unwrap(), 200)))
            .collect()
    });
    // A poll racing the one that holds the lease may still see "in progress".
    assert!(
        states
            .iter()
            .all(|s| s == "succeeded" || s == "in progress"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "succeeded"), "{states:?}");
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
}

// ---------------------------------------------------------------------------------------
// Crash recovery
// ---------------------------------------------------------------------------------------

#[test]
fn a_crash_after_the_record_was_written_but_before_the_backend_step_is_resumed_by_a_poll() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    // Rewind to "record written, backend never called, request died holding the lease".
    let mut record = w.instance("i1");
    record["operation"]["backend"] = Value::Null;
    record["operation"]["lease_until"] = json!(T0 + 30);
    record["operation"]
        .as_object_mut()
        .unwrap()
        .remove("retry_after");
    record["operation"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    w.write_record(&instance_key("i1"), &record);

    // While the dead request's lease runs, polls report progress and change nothing.
    w.env.advance(20);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(header(&r, "Retry-After").is_some());
    assert_eq!(w.instance("i1"), record);

    // Once it expired, the next poll takes the first backend step...
    w.env.advance(11);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "in progress");
    assert!(w.instance("i1")["operation"]["backend"]["ready_at"].is_u64());
    // ...and the operation completes as usual.
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
    expect(w.fetch("i1"), 200);
}

#[test]
fn a_sync_provision_that_crashed_holding_its_lease_is_finished_by_the_resent_request() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    let done = w.instance("i1");
    let mut record = done.clone();
    record["status"] = json!("creating");
    record["operation"]["state"] = json!("in_progress");
    record["operation"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    record["operation"]["lease_until"] = json!(T0 + 30);
    w.write_record(&instance_key("i1"), &record);

    expect(w.fetch("i1"), 404);
    expect_422(w.provision("i1", SYNC), "ConcurrencyError");
    w.env.advance(31);
    let r = expect(w.provision("i1", SYNC), 201);
    assert_eq!(
        body(&r)["dashboard_url"],
        "https://dash.example.com/sync/i1"
    );
    assert_eq!(w.instance("i1")["status"], "ready");
    assert_eq!(w.instance("i1")["operation"]["id"], done["operation"]["id"]);
    expect(w.provision("i1", SYNC), 200);
}

#[test]
fn a_crash_during_an_async_bind_is_resumed_by_a_poll_after_the_lease_expires() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let op = operation_of(&expect(w.bind("i1", "b1", ASYNC), 202));
    let mut record = w.binding("i1", "b1");
    record["operation"]["backend"] = Value::Null;
    let now = w.env.now.load(Ordering::SeqCst);
    record["operation"]["lease_until"] = json!(now + 30);
    w.write_record(&binding_key("i1", "b1"), &record);
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&op)), 200)),
        "in progress"
    );
    w.env.advance(21);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&op)), 200)),
        "in progress"
    );
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.binding_last_op("i1", "b1", Some(&op)), 200)),
        "succeeded"
    );
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert!(f.json_body().unwrap()["credentials"]["password"].is_string());
}

#[test]
fn a_creation_claim_left_by_a_crashed_request_is_taken_over() {
    let w = world();
    // A request claimed the id and died before writing the record.
    w.kv.increment(&format!("{}/claim/g0", instance_key("i1")), 1)
        .unwrap();
    expect(w.provision("i1", SYNC), 201);
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    expect(w.fetch("i1"), 200);
}

#[test]
fn finished_lifecycles_leave_small_tombstones_that_expire_after_a_day() {
    let w = world();
    let lifecycles = 1_000;
    let lifecycle = |iid: &str| {
        let mut body = provision_body(SYNC);
        body["parameters"] = json!({ "size": 2 });
        expect(w.put(iid, body, false), 201);
        expect(w.bind(iid, "binding-1", SYNC), 201);
        expect(w.unbind(iid, "binding-1", SYNC), 200);
        expect(w.deprovision(iid, SYNC), 200);
    };
    let bytes_of = |prefix: &str| -> usize {
        w.kv.keys()
            .iter()
            .filter(|k| k.contains(prefix) || (prefix.is_empty()))
            .map(|k| k.len() + w.kv.get(k).unwrap().map_or(0, |v| v.len()))
            .sum()
    };
    for i in 0..lifecycles {
        lifecycle(&format!("old-{i:05}"));
    }
    let per_lifecycle = bytes_of("") / lifecycles;
    println!("{per_lifecycle} bytes stored per finished lifecycle before expiry");
    assert!(
        per_lifecycle <= 1_600,
        "{per_lifecycle} bytes stored per finished provision/bind/unbind/deprovision"
    );
    let tombstone = |key: &str| -> Value {
        serde_json::from_slice(&w.kv.get(key).unwrap().expect("a tombstone")).unwrap()
    };
    let instance = tombstone(&instance_key("old-00000"));
    assert_eq!(instance["status"], "deleted", "{instance}");
    for secret_or_private in ["seed", "parameters", "context", "backend", "dashboard_url"] {
        let value = &instance[secret_or_private];
        assert!(
            value.is_null() || value == "" || value == &json!({}),
            "the tombstone keeps {secret_or_private}: {instance}"
        );
    }
    let binding = tombstone(&binding_key("old-00000", "binding-1"));
    for secret_or_private in [
        "credentials",
        "parameters",
        "context",
        "bind_resource",
        "backend",
    ] {
        let value = &binding[secret_or_private];
        assert!(
            value.is_null() || value == &json!({}),
            "the binding tombstone keeps {secret_or_private}: {binding}"
        );
    }
    // A late poll and a repeated deletion still get their 410.
    expect(w.deprovision("old-00000", SYNC), 410);
    expect(w.unbind("old-00000", "binding-1", SYNC), 410);

    // A day later, the deletions of a new day expire the old tombstones as they go.
    w.env
        .advance(spin_osb_core::expiry::TOMBSTONE_TTL_SECONDS + 3_600);
    for i in 0..lifecycles {
        lifecycle(&format!("new-{i:05}"));
    }
    assert!(
        w.kv.get(&instance_key("old-00000")).unwrap().is_none()
            && w.kv.get(&instance_key("old-00999")).unwrap().is_none()
            && w.kv
                .get(&binding_key("old-00999", "binding-1"))
                .unwrap()
                .is_none(),
        "old tombstones expired"
    );
    let left = bytes_of("/old-") / lifecycles;
    println!("{left} bytes left per expired lifecycle (claim counters)");
    assert!(left <= 300, "{left} bytes left per expired lifecycle");
    let ledger =
        w.kv.keys()
            .iter()
            .filter(|k| k.starts_with("osb/v1/expiry/"))
            .count();
    assert!(
        ledger <= 2 * lifecycles + 4,
        "only this day's ledger is left: {ledger} keys"
    );
    // The expired ids are free again, without waiting for their old claims.
    expect(w.provision("old-00000", SYNC), 201);
    expect(w.bind("old-00000", "binding-1", SYNC), 201);
}

#[test]
fn a_tombstone_being_expired_is_not_replaced_by_a_new_provision() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    expect(w.deprovision("i1", SYNC), 200);
    let key = instance_key("i1");
    let mut tombstone: Value = serde_json::from_slice(&w.kv.get(&key).unwrap().unwrap()).unwrap();
    tombstone["expiring"] = json!(true);
    w.write_record(&key, &tombstone);
    let refused = expect(w.provision("i1", SYNC), 422);
    assert_eq!(error_of(&refused), Some("ConcurrencyError"));
    let still: Value = serde_json::from_slice(&w.kv.get(&key).unwrap().unwrap()).unwrap();
    assert_eq!(still["status"], "deleted", "{still}");
}

#[test]
fn claims_left_by_any_number_of_crashed_requests_never_block_creation_for_good() {
    let w = world();
    // Six requests claimed the id one after another and died before writing.
    for generation in 0..6 {
        w.kv.increment(&format!("{}/claim/g{generation}", instance_key("i1")), 1)
            .unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..4 {
        let r = w.provision("i1", SYNC);
        answers.push(r.status);
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 503, "{}", body_text(&r));
    }
    assert_eq!(answers.last(), Some(&201), "answers: {answers:?}");
    expect(w.fetch("i1"), 200);
    // Later creators of other ids are not slowed down by this id's history.
    expect(w.provision("i2", SYNC), 201);
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

#[test]
fn a_creation_claim_owner_too_slow_to_write_never_overwrites_the_record_of_the_taker_over() {
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let w = World {
        catalog: catalog(),
        kv: StallingKv {
            inner: MemoryKv::default(),
            stall_key: format!("{}/claim/g0", instance_key("i1")),
            stalled: AtomicBool::new(false),
            entered: entered_tx,
            release: std::sync::Mutex::new(release_rx),
        },
        env: TestEnv::at(T0),
    };
    let with_size = |size: u64| {
        let mut body = provision_body(SYNC);
        body["parameters"] = json!({ "size": size });
        body
    };
    std::thread::scope(|scope| {
        // A claims the id, then stalls before it learns that it did.
        let slow = scope.spawn(|| w.put("i1", with_size(1), false));
        entered.recv().unwrap();
        w.env.advance(2);
        // B finds the claim taken, waits it out and creates the instance: 201.
        let taker = w.put("i1", with_size(2), false);
        assert_eq!(taker.status, 201, "{}", body_text(&taker));
        release_tx.send(()).unwrap();
        // A's window to write has closed: it must not write over B's instance.
        let slow = slow.join().unwrap();
        assert_eq!(slow.status, 503, "{}", body_text(&slow));
    });
    let stored = w.kv.get(&instance_key("i1")).unwrap().unwrap();
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["parameters"], json!({ "size": 2 }), "{stored}");
    let fetched = expect(w.fetch("i1"), 200);
    assert_eq!(body(&fetched)["parameters"], json!({ "size": 2 }));
}

#[test]
fn a_deprovision_exceeding_maximum_polling_duration_fails_and_leaves_the_instance_usable() {
    let w = world();
    w.ready_instance_with("i1", SHORT, json!({"size": 1}));
    let op = operation_of(&expect(w.deprovision("i1", SHORT), 202));
    w.env.advance(SHORT_LIMIT);
    let r = expect(w.last_op("i1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert_eq!(body(&r)["instance_usable"], true);
    assert!(
        body(&r).get("update_repeatable").is_none(),
        "only for updates"
    );
    expect(w.fetch("i1"), 200);
    // The platform may try again.
    let again = operation_of(&expect(w.deprovision("i1", SHORT), 202));
    assert_ne!(again, op);
    w.env.advance(SHORT_DELAY);
    let _ = w.last_op("i1", Some(&again));
    expect(w.last_op("i1", Some(&again)), 410);
}

#[test]
fn a_sync_update_with_accepts_incomplete_still_answers_200() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let r = expect(
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), true),
        200,
    );
    assert!(body(&r).get("operation").is_none());
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

#[test]
fn a_store_outage_at_any_step_of_a_sync_deprovision_or_unbind_is_recovered_by_retrying() {
    let setup = |w: &World<FlakyKv>| {
        expect(w.provision("i1", SYNC), 201);
        expect(w.bind("i1", "b1", SYNC), 201);
    };
    let (start, end) = store_operations(setup, |w| {
        expect(w.unbind("i1", "b1", SYNC), 200);
        expect(w.deprovision("i1", SYNC), 200);
    });
    for fail_from in start..end {
        let w = flaky_world(usize::MAX);
        setup(&w);
        let w = World {
            kv: FlakyKv { fail_from, ..w.kv },
            ..w
        };
        let unbound = w.unbind("i1", "b1", SYNC);
        let deprovisioned = if unbound.status == 200 {
            w.deprovision("i1", SYNC)
        } else {
            unbound.clone()
        };
        assert_eq!(deprovisioned.status, 503, "fail_from {fail_from}");
        w.kv.armed.store(false, Ordering::SeqCst);
        if unbound.status != 200 {
            let r = retry_until_settled(&w, || w.unbind("i1", "b1", SYNC));
            assert!(
                r.status == 200 || r.status == 410,
                "fail_from {fail_from}: {} {}",
                r.status,
                body_text(&r)
            );
        }
        let r = retry_until_settled(&w, || w.deprovision("i1", SYNC));
        assert!(
            r.status == 200 || r.status == 410,
            "fail_from {fail_from}: {} {}",
            r.status,
            body_text(&r)
        );
        expect(w.unbind("i1", "b1", SYNC), 410);
        expect(w.deprovision("i1", SYNC), 410);
        expect(w.fetch("i1"), 404);
    }
}

#[test]
fn a_store_outage_at_any_step_of_a_sync_update_is_recovered_by_retrying() {
    let setup = |w: &World<FlakyKv>| {
        expect(w.provision("i1", SYNC), 201);
    };
    let update = || update_body(json!({"parameters": {"size": 2}}));
    let (start, end) = store_operations(setup, |w| {
        expect(w.patch("i1", update(), false), 200);
    });
    for fail_from in start..end {
        let w = flaky_world(usize::MAX);
        setup(&w);
        let w = World {
            kv: FlakyKv { fail_from, ..w.kv },
            ..w
        };
        expect(w.patch("i1", update(), false), 503);
        w.kv.armed.store(false, Ordering::SeqCst);
        // The platform re-sends the PATCH, as it does after any 5xx.
        eprintln!("store outage from operation {fail_from} (the update's first is {start})");
        let r = retry_until_settled(&w, || w.patch("i1", update(), false));
        assert_eq!(r.status, 200, "fail_from {fail_from}: {}", body_text(&r));
        let f = expect(w.fetch("i1"), 200);
        assert_eq!(
            body(&f)["parameters"],
            json!({"size": 2}),
            "fail_from {fail_from}"
        );
    }
}

#[test]
fn concurrent_identical_async_provisions_over_a_tombstone_create_one_operation() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.deprovision("i1", SYNC), 200);
    let barrier = std::sync::Barrier::new(50);
    let responses: Vec<OsbResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    w.provision("i1", ASYNC)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let current = w.instance("i1")["operation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for r in &responses {
        // The spec allows a broker to refuse concurrent requests with ConcurrencyError.
        let ok = (r.status == 202 && operation_of(r) == current)
            || (r.status == 422 && error_of(r) == Some("ConcurrencyError"));
        assert!(ok, "{} {}", r.status, body_text(r));
    }
    assert!(responses.iter().any(|r| r.status == 202));
    assert_eq!(w.instance("i1")["plan_id"], ASYNC);
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
}

#[test]
fn fifty_concurrent_identical_async_binds_share_one_record_and_one_operation() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    let barrier = std::sync::Barrier::new(50);
    let responses: Vec<OsbResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    w.bind("i1", "b1", ASYNC)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ops: Vec<String> = responses
        .iter()
        .map(|r| operation_of(&expect(r.clone(), 202)))
        .collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(
        w.record_keys(),
        vec![binding_key("i1", "b1"), instance_key("i1")]
    );
}

#[test]
fn a_bind_with_the_deprecated_app_guid_is_identical_to_one_with_bind_resource_app_guid() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.bind("i1", "b1", SYNC), 201);
    let legacy = json!({"service_id": SVC, "plan_id": SYNC, "app_guid": "app-1"});
    expect(w.put_binding("i1", "b1", legacy, false), 200);
}

#[test]
fn absent_and_empty_parameters_are_the_same_provision() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    let mut b = provision_body(SYNC);
    b["parameters"] = json!({});
    expect(w.put("i1", b, false), 200);
}

#[test]
fn rotation_from_a_binding_of_another_instance_is_400() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_instance("i2", SYNC);
    w.ready_binding("i2", "theirs", SYNC, json!({}));
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("theirs");
    expect(w.put_binding("i1", "new", b, false), 400);
}

#[test]
fn a_resent_rotation_answers_200_after_the_predecessor_is_gone() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "old", SYNC, json!({"role": "read-only"}));
    let mut rotation = bind_body(SYNC);
    rotation["predecessor_binding_id"] = json!("old");
    let created = expect(w.put_binding("i1", "new", rotation.clone(), false), 201);
    // The platform completes the rotation by unbinding the predecessor...
    expect(w.unbind("i1", "old", SYNC), 200);
    // ...then re-sends the PUT of the successor (retry after a lost response, reconcile
    // loop): the binding exists with identical attributes, so the spec's answer is 200.
    let again = expect(w.put_binding("i1", "new", rotation.clone(), false), 200);
    assert_eq!(body(&again)["credentials"], body(&created)["credentials"]);
    // Likewise once the predecessor has expired.
    w.ready_binding("i1", "old2", SYNC, json!({}));
    let mut rotation2 = bind_body(SYNC);
    rotation2["predecessor_binding_id"] = json!("old2");
    expect(w.put_binding("i1", "new2", rotation2.clone(), false), 201);
    w.env.advance(3600);
    expect(w.put_binding("i1", "new2", rotation2, false), 200);
}

#[test]
fn an_instance_whose_plan_left_the_catalog_can_still_be_deprovisioned() {
    let mut w = world();
    assert_eq!(w.provision("i-orphan", SYNC).status, 201);
    let without = CATALOG.replace("id: plan-sync\n", "id: plan-sync-renamed\n");
    w.catalog = Catalog::from_yaml_documents(&[("catalog.yaml", without.as_str())])
        .expect("the changed catalog loads");
    let gone = w.deprovision("i-orphan", SYNC);
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_eq!(w.fetch("i-orphan").status, 404);
}

#[test]
fn a_binding_whose_plan_left_the_catalog_can_still_be_unbound() {
    let mut w = world();
    assert_eq!(w.provision("i-orphan-b", SYNC).status, 201);
    let bound = w.put_binding(
        "i-orphan-b",
        "b-1",
        json!({"service_id": SVC, "plan_id": SYNC}),
        false,
    );
    assert_eq!(bound.status, 201, "{:?}", bound.body);
    let without = CATALOG.replace("id: plan-sync\n", "id: plan-sync-renamed\n");
    w.catalog = Catalog::from_yaml_documents(&[("catalog.yaml", without.as_str())])
        .expect("the changed catalog loads");
    let unbound = w.unbind("i-orphan-b", "b-1", SYNC);
    assert_eq!(unbound.status, 200, "{:?}", unbound.body);
    assert_eq!(w.deprovision("i-orphan-b", SYNC).status, 200);
}

/// Spin's Redis store writes on compare-and-swap and then reports failure: every transition
/// must still happen exactly once, and nothing may be reported as a conflict.
#[test]
fn the_whole_lifecycle_works_on_a_store_whose_swaps_report_failure() {
    let w = world();
    w.kv.swap_reports_failure.store(true, Ordering::SeqCst);
    for plan in [SYNC, ASYNC] {
        let iid = format!("i-{plan}");
        w.ready_instance(&iid, plan);
        w.ready_binding(&iid, "b1", plan, json!({}));
        // Identical repeats are idempotent answers, not conflicts.
        let again = w.bind(&iid, "b1", plan);
        assert!(
            again.status == 200 || again.status == 202,
            "{}",
            body_text(&again)
        );
        let r = w.unbind(&iid, "b1", plan);
        if is_async(plan) {
            let op = operation_of(&expect(r, 202));
            w.env.advance(delay_of(plan));
            assert_eq!(
                state_of(&expect(w.binding_last_op(&iid, "b1", Some(&op)), 200)),
                "succeeded"
            );
        } else {
            expect(r, 200);
        }
        let r = w.deprovision(&iid, plan);
        if is_async(plan) {
            let op = operation_of(&expect(r, 202));
            w.env.advance(delay_of(plan));
            let r = w.last_op(&iid, Some(&op));
            assert!(r.status == 200 || r.status == 410, "{}", body_text(&r));
        } else {
            expect(r, 200);
        }
        expect(w.fetch(&iid), 404);
    }
}

/// The store round trips of one synchronous credentials lifecycle: each step is local to
/// its record (no lease), so every request writes what it decides once. A regression here
/// costs every request of the most common plans a store round trip.
#[test]
fn a_sync_credentials_lifecycle_makes_the_fewest_store_calls() {
    let w = World {
        catalog: catalog(),
        kv: FlakyKv::new(usize::MAX),
        env: TestEnv::at(T0),
    };
    let calls = |send: &dyn Fn() -> OsbResponse, status: u16| {
        let before = w.kv.calls.load(Ordering::SeqCst);
        expect(send(), status);
        w.kv.calls.load(Ordering::SeqCst) - before
    };
    let counts = [
        calls(&|| w.provision("i1", SYNC), 201),
        calls(&|| w.bind("i1", "b1", SYNC), 201),
        calls(&|| w.unbind("i1", "b1", SYNC), 200),
        calls(&|| w.deprovision("i1", SYNC), 200),
    ];
    assert_eq!(
        counts,
        [4, 5, 5, 4],
        "store calls of provision, bind, unbind, deprovision"
    );
}
