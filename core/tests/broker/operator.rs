//! The operator API over the same store: listing through the instance index (paged,
//! filtered, never reading the key list), one instance with its history and bindings, no
//! secrets, and its own credentials.

use super::*;
use spin_osb_core::outbound::MapConfig;

pub(crate) const PASSWORD: &str = "operator-secret-1";

fn config(pairs: &[(&str, &str)]) -> MapConfig {
    MapConfig(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

pub(crate) fn operator_config() -> MapConfig {
    config(&[
        ("operator_password", PASSWORD),
        ("broker_password", "platform-password"),
    ])
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl<K: Kv> World<K> {
    pub(crate) fn operator_as(
        &self,
        config: &MapConfig,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        authorization: Option<String>,
    ) -> OsbResponse {
        self.operator_request(config, method, path, query, authorization, Vec::new())
    }

    /// An operator request with a body, with the operator's credentials.
    pub(crate) fn operator_send(&self, method: &str, path: &str, body: &str) -> OsbResponse {
        let authorization = Some(basic("operator", PASSWORD));
        let body = body.as_bytes().to_vec();
        self.operator_request(&operator_config(), method, path, &[], authorization, body)
    }

    fn operator_request(
        &self,
        config: &MapConfig,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        authorization: Option<String>,
        body: Vec<u8>,
    ) -> OsbResponse {
        let request = OsbRequest {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: authorization
                .map(|a| vec![("authorization".to_string(), a)])
                .unwrap_or_default(),
            body,
        };
        let broker = Broker {
            config,
            ..self.broker()
        };
        block_on(spin_osb_core::operator::serve(&broker, &request))
    }

    pub(crate) fn operator(&self, path: &str, query: &[(&str, &str)]) -> OsbResponse {
        self.operator_as(
            &operator_config(),
            "GET",
            path,
            query,
            Some(basic("operator", PASSWORD)),
        )
    }
}

fn ids(response: &OsbResponse) -> Vec<String> {
    body(response)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn instances_are_listed_oldest_first_in_pages_and_filtered() {
    let w = world();
    for i in 0..5 {
        w.ready_instance(&format!("i{i}"), SYNC);
    }
    w.ready_instance("other", SYNC_B);
    expect(w.deprovision("i1", SYNC), 200);

    let all = expect(w.operator("/operator/instances", &[]), 200);
    assert_eq!(ids(&all), ["i0", "i1", "i2", "i3", "i4", "other"]);
    assert_eq!(body(&all)["next"], Value::Null);

    let first = expect(w.operator("/operator/instances", &[("limit", "2")]), 200);
    assert_eq!(ids(&first), ["i0", "i1"]);
    let next = body(&first)["next"].as_str().unwrap().to_string();
    let second = expect(
        w.operator("/operator/instances", &[("limit", "2"), ("after", &next)]),
        200,
    );
    assert_eq!(ids(&second), ["i2", "i3"]);

    let ready = expect(
        w.operator(
            "/operator/instances",
            &[("status", "ready"), ("plan_id", SYNC)],
        ),
        200,
    );
    assert_eq!(ids(&ready), ["i0", "i2", "i3", "i4"]);
    let deleted = expect(
        w.operator("/operator/instances", &[("status", "deleted")]),
        200,
    );
    assert_eq!(ids(&deleted), ["i1"]);
    let summary = &body(&ready)["instances"][0];
    assert_eq!(summary["service_id"], SVC);
    assert_eq!(summary["operation"]["kind"], "provision");
    assert_eq!(summary["operation"]["state"], "succeeded");
}

#[test]
fn identical_concurrent_provisions_are_listed_once() {
    let (w, _) = concurrent_provisions(SYNC, 20);
    let all = expect(w.operator("/operator/instances", &[]), 200);
    assert_eq!(ids(&all).len(), 1, "{}", body_text(&all));
}

#[test]
fn one_instance_shows_its_history_and_bindings_but_no_secret() {
    let w = world();
    w.ready_instance_with("i1", SYNC, json!({ "size": 2 }));
    w.ready_binding("i1", "b1", SYNC, json!({}));
    w.ready_binding("i1", "b2", SYNC, json!({}));
    expect(w.unbind("i1", "b2", SYNC), 200);
    let shown = expect(w.operator("/operator/instances/i1", &[]), 200);
    let shown = body(&shown);
    assert_eq!(shown["instance_id"], "i1");
    assert_eq!(shown["parameter_names"], json!(["size"]));
    let bindings = shown["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 2, "{shown}");
    assert_eq!(bindings[0]["binding_id"], "b1");
    assert_eq!(bindings[0]["status"], "ready");
    assert_eq!(bindings[1]["status"], "deleted");
    let text = shown.to_string();
    let seed = w.instance("i1")["seed"].as_str().unwrap().to_string();
    let credentials = w.binding("i1", "b1")["credentials"].to_string();
    assert!(!text.contains(&seed), "the seed leaks: {text}");
    assert!(!text.contains("credentials"), "{text}");
    assert!(
        !credentials.is_empty() && !text.contains(&credentials),
        "{text}"
    );
    expect(w.operator("/operator/instances/nope", &[]), 404);
}

#[test]
fn the_operator_api_has_its_own_credentials_and_is_off_without_them() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let disabled = w.operator_as(
        &config(&[("broker_password", "platform-password")]),
        "GET",
        "/operator/instances",
        &[],
        Some(basic("operator", "")),
    );
    assert_eq!(disabled.status, 403, "{}", body_text(&disabled));
    assert!(description_of(&disabled).contains("operator_password"));
    let platform = w.operator_as(
        &operator_config(),
        "GET",
        "/operator/instances",
        &[],
        Some(basic("broker", "platform-password")),
    );
    assert_eq!(platform.status, 401);
    let none = w.operator_as(&operator_config(), "GET", "/operator/instances", &[], None);
    assert_eq!(none.status, 401);
    let same = w.operator_as(
        &config(&[
            ("operator_password", "shared-password"),
            ("broker_password", "shared-password"),
        ]),
        "GET",
        "/operator/instances",
        &[],
        Some(basic("operator", "shared-password")),
    );
    assert_eq!(same.status, 500, "{}", body_text(&same));
    let post = w.operator_as(
        &operator_config(),
        "POST",
        "/operator/instances",
        &[],
        Some(basic("operator", PASSWORD)),
    );
    assert_eq!(post.status, 405);
}

#[test]
fn bad_listing_queries_are_400() {
    let w = world();
    for query in [
        [("limit", "0")],
        [("limit", "100000")],
        [("after", "x")],
        [("status", "sleeping")],
    ] {
        let r = w.operator("/operator/instances", &query);
        assert_eq!(r.status, 400, "{query:?}: {}", body_text(&r));
    }
}

#[test]
fn a_page_reads_a_bounded_number_of_slots_whatever_the_filter() {
    let w = World {
        catalog: catalog(),
        kv: FlakyKv::new(usize::MAX),
        env: TestEnv::at(T0),
    };
    for i in 0..1_200 {
        expect(w.provision(&format!("i{i:04}"), SYNC), 201);
    }
    let before = w.kv.calls.load(Ordering::SeqCst);
    // Nothing matches: the page stops after its scan budget and says where to go on.
    let page = expect(
        w.operator("/operator/instances", &[("plan_id", "no-such-plan")]),
        200,
    );
    let calls = w.kv.calls.load(Ordering::SeqCst) - before;
    assert!(ids(&page).is_empty());
    assert!(body(&page)["next"].is_string(), "{}", body_text(&page));
    assert!(calls <= 2 * 1_000 + 1, "{calls} store calls for one page");
}

#[test]
fn stuck_instances_are_listed_and_a_poll_ends_them_past_their_deadline() {
    let w = world();
    expect(w.provision("s1", SHORT), 202);
    expect(w.provision("s2", ASYNC), 202);
    let stuck = |w: &World| ids(&w.operator("/operator/instances", &[("stuck", "true")]));
    assert!(stuck(&w).is_empty(), "nothing is past its deadline yet");
    w.env.advance(SHORT_LIMIT + 1);
    assert_eq!(stuck(&w), ["s1"]);
    let polled = w.operator_send("POST", "/operator/instances/s1/last_operation", "");
    let polled = body(&expect(polled, 200));
    assert_eq!(polled["state"], "failed", "{polled}");
    assert!(stuck(&w).is_empty());
    expect(
        w.operator("/operator/instances", &[("stuck", "maybe")]),
        400,
    );
    expect(
        w.operator_send("POST", "/operator/instances/nope/last_operation", ""),
        404,
    );
}

#[test]
fn a_catalog_without_external_backends_has_no_orphans_to_look_for() {
    let w = world();
    let report = expect(w.operator("/operator/orphans", &[]), 200);
    let report = body(&report).as_object().unwrap();
    assert_eq!(
        report.keys().collect::<Vec<_>>(),
        ["broker_id"],
        "{report:?}"
    );
    assert_eq!(report["broker_id"].as_str().unwrap().len(), 16);
    let cleanup = w.operator_send("POST", "/operator/orphans/cleanup", r#"{"bosh": ["cf"]}"#);
    // Without BOSH variables the director cannot be asked: 503 naming the variable.
    let cleanup = expect(cleanup, 503);
    assert!(
        body_text(&cleanup).contains("bosh_director_url"),
        "{}",
        body_text(&cleanup)
    );
    expect(
        w.operator_send("POST", "/operator/orphans/cleanup", "{\"other\": 1}"),
        400,
    );
}
