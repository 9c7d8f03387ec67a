//! Malformed input: broken or mistyped bodies, unknown services and plans, hostile ids.
//! Each is a 400 (or 404/405 where the path does not match a route) with a JSON
//! `description`, and none of it changes or creates anything in the store.

use spin_osb_e2e::{binding_key, instance_key, json, new_id, shared, Broker, Plan, Resp, Value};

/// A short random token to find in store keys.
fn token() -> String {
    new_id().replace('-', "")[..16].to_string()
}

/// Bodies every create/update endpoint must refuse with 400: `(label, body, field the
/// description should name)`.
fn bad_bodies(plan: &Plan) -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let sid = plan.service_id.clone();
    let pid = plan.plan_id.clone();
    let j = |v: Value| serde_json::to_vec(&v).unwrap();
    vec![
        ("broken JSON", b"{\"service_id\": ".to_vec(), None),
        ("trailing comma", b"{\"service_id\": \"a\",}".to_vec(), None),
        ("an array", b"[]".to_vec(), None),
        ("a string", b"\"text\"".to_vec(), None),
        ("a number", b"5".to_vec(), None),
        ("null", b"null".to_vec(), None),
        ("an empty body", Vec::new(), None),
        (
            "invalid UTF-8",
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            None,
        ),
        (
            "plan_id as a number",
            j(json!({"service_id": sid, "plan_id": 5})),
            Some("plan_id"),
        ),
        (
            "service_id as a number",
            j(json!({"service_id": 5, "plan_id": pid})),
            Some("service_id"),
        ),
        (
            "service_id missing",
            j(json!({"plan_id": pid})),
            Some("service_id"),
        ),
        (
            "service_id empty",
            j(json!({"service_id": "", "plan_id": pid})),
            Some("service_id"),
        ),
        (
            "an unknown service",
            j(json!({"service_id": "no-such-service-e2e", "plan_id": pid})),
            None,
        ),
        (
            "an unknown plan",
            j(json!({"service_id": sid, "plan_id": "no-such-plan-e2e"})),
            None,
        ),
        (
            "parameters as an array",
            j(json!({"service_id": sid, "plan_id": pid, "parameters": [1]})),
            Some("parameters"),
        ),
        (
            "context as a string",
            j(json!({"service_id": sid, "plan_id": pid, "context": "ctx"})),
            Some("context"),
        ),
    ]
}

#[track_caller]
fn expect_refused(resp: Resp, label: &str, field: Option<&str>) {
    assert_eq!(
        resp.status, 400,
        "{label}: expected 400, got {}: {}",
        resp.status, resp.body
    );
    resp.assert_osb_error_body();
    if let Some(field) = field {
        assert!(
            resp.description().contains(field),
            "{label}: the description should name {field:?}: {}",
            resp.body
        );
    }
}

/// Hostile instance ids as they appear in the URL, each with a token to find in the store
/// (the id-less ones have none).
fn hostile_ids() -> Vec<(String, Option<String>)> {
    let mut ids = Vec::new();
    for pattern in [
        "{t}%2Fx",
        "%2F{t}",
        "{t}%2F..%2Fy",
        "{t}%00",
        "{t}%00x",
        "{t}%20x",
        "%20{t}",
        "{t}%FF",
        "{t}%C3%A9",
        "{t}%3F",
        "{t}%23",
        "{t}%25",
        "{t}%5C",
        "{t}%0Ax",
    ] {
        let t = token();
        ids.push((pattern.replace("{t}", &t), Some(t)));
    }
    let t = token();
    ids.push((format!("{t}{}", "a".repeat(201 - t.len())), Some(t)));
    for bare in ["..", ".", "%2E%2E", "%2e", "%2E"] {
        ids.push((bare.to_string(), None));
    }
    ids
}

fn is_path_refusal(resp: &Resp) -> bool {
    matches!(resp.status, 400 | 404 | 405)
}

fn provision_ready(b: &Broker, plan: &Plan) -> (String, Value) {
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    let snapshot = b.fetch_instance(&iid).expect(200).json;
    (iid, snapshot)
}

#[test]
fn malformed_requests_are_400_and_leave_the_store_untouched() {
    let b = shared();
    let plan = b.plans().sync;
    let (valid, snapshot) = provision_ready(&b, &plan);
    let record_before = b.store_json(&instance_key(&valid)).unwrap();
    let mut tokens = Vec::new();

    for (label, body, field) in bad_bodies(&plan) {
        // Provisioning a new id.
        let t = token();
        let resp = b
            .request(
                "PUT",
                &format!("/v2/service_instances/{t}?accepts_incomplete=true"),
            )
            .body(body.clone())
            .send();
        expect_refused(resp, &format!("provision with {label}"), field);
        tokens.push(t);
        // Provisioning over the valid instance.
        let resp = b
            .request("PUT", &format!("/v2/service_instances/{valid}"))
            .body(body.clone())
            .send();
        expect_refused(
            resp,
            &format!("provision over an existing instance with {label}"),
            field,
        );
        // Updating the valid instance.
        let resp = b
            .request(
                "PATCH",
                &format!("/v2/service_instances/{valid}?accepts_incomplete=true"),
            )
            .body(body.clone())
            .send();
        expect_refused(resp, &format!("update with {label}"), field);
        // Binding to the valid instance.
        let t = token();
        let resp = b
            .request(
                "PUT",
                &format!("/v2/service_instances/{valid}/service_bindings/{t}"),
            )
            .body(body.clone())
            .send();
        expect_refused(resp, &format!("bind with {label}"), field);
        tokens.push(t);
    }

    // A body that is not declared as JSON.
    let t = token();
    let resp = b
        .request("PUT", &format!("/v2/service_instances/{t}"))
        .header("Content-Type", "text/plain")
        .body(serde_json::to_vec(&plan.provision_body(json!({}))).unwrap())
        .send();
    assert!(
        resp.status == 400 || resp.status == 415,
        "a text/plain body: expected 400 or 415, got {} {}",
        resp.status,
        resp.body
    );
    resp.assert_osb_error_body();
    tokens.push(t);

    // accepts_incomplete that is not a boolean.
    let t = token();
    let resp = b
        .request(
            "PUT",
            &format!("/v2/service_instances/{t}?accepts_incomplete=maybe"),
        )
        .json(&plan.provision_body(plan.provision_parameters()))
        .send();
    expect_refused(resp, "accepts_incomplete=maybe", Some("accepts_incomplete"));
    tokens.push(t);

    // Hostile ids on every endpoint.
    let good_body = serde_json::to_vec(&plan.provision_body(plan.provision_parameters())).unwrap();
    let bind_body = serde_json::to_vec(&plan.bind_body(plan.bind_parameters())).unwrap();
    let q = format!("service_id={}&plan_id={}", plan.service_id, plan.plan_id);
    let mut refusals = std::collections::BTreeMap::<u16, usize>::new();
    for (id, t) in hostile_ids() {
        let cases: Vec<(&str, String, Option<&Vec<u8>>)> = vec![
            (
                "PUT",
                format!("/v2/service_instances/{id}?accepts_incomplete=true"),
                Some(&good_body),
            ),
            (
                "PATCH",
                format!("/v2/service_instances/{id}"),
                Some(&good_body),
            ),
            ("GET", format!("/v2/service_instances/{id}"), None),
            ("DELETE", format!("/v2/service_instances/{id}?{q}"), None),
            (
                "GET",
                format!("/v2/service_instances/{id}/last_operation"),
                None,
            ),
            (
                "PUT",
                format!("/v2/service_instances/{valid}/service_bindings/{id}"),
                Some(&bind_body),
            ),
            (
                "GET",
                format!("/v2/service_instances/{valid}/service_bindings/{id}"),
                None,
            ),
            (
                "DELETE",
                format!("/v2/service_instances/{valid}/service_bindings/{id}?{q}"),
                None,
            ),
            (
                "GET",
                format!("/v2/service_instances/{valid}/service_bindings/{id}/last_operation"),
                None,
            ),
            (
                "PUT",
                format!("/v2/service_instances/{id}/service_bindings/{}", new_id()),
                Some(&bind_body),
            ),
        ];
        for (method, path, body) in cases {
            let mut req = b.request(method, &path);
            if let Some(body) = body {
                req = req.body(body.clone());
            }
            let resp = req.send_raw();
            assert!(
                is_path_refusal(&resp),
                "{method} {path}: a hostile id must be refused with 400 (or 404/405), got {}: {}",
                resp.status,
                resp.body
            );
            resp.assert_osb_error_body();
            *refusals.entry(resp.status).or_default() += 1;
        }
        tokens.extend(t);
    }
    eprintln!("hostile ids were refused with: {refusals:?}");

    // Nothing above changed the valid instance or created anything.
    assert_eq!(b.fetch_instance(&valid).expect(200).json, snapshot);
    assert_eq!(b.store_json(&instance_key(&valid)).unwrap(), record_before);
    let entries = b.store_entries();
    for t in &tokens {
        let hits: Vec<&String> = entries
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.contains(t.as_str()))
            .collect();
        assert!(
            hits.is_empty(),
            "a refused request left keys behind: {hits:?}"
        );
    }
    let dotted: Vec<&String> = entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| {
            k.ends_with("/.")
                || k.ends_with("/..")
                || k.contains("/./")
                || k.contains("/../")
                || k.contains('\0')
                || k.contains(' ')
        })
        .collect();
    assert!(
        dotted.is_empty(),
        "hostile ids reached the store: {dotted:?}"
    );
    let bindings: Vec<&String> = entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&format!("osb/v1/binding/{valid}/")))
        .collect();
    assert!(
        bindings.is_empty(),
        "refused binds left records: {bindings:?}"
    );
}

#[test]
fn ids_of_up_to_200_unreserved_characters_are_accepted() {
    let b = shared();
    let plan = b.plans().sync;
    let body = plan.provision_body(plan.provision_parameters());
    let t = token();
    let long = format!("{t}{}", "a".repeat(200 - t.len()));
    let dotted = format!("a.b_c~d-{t}");
    for iid in [long, dotted] {
        b.provision(&iid, &body, false).expect(201);
        b.fetch_instance(&iid).expect(200);
        assert!(b.store_json(&instance_key(&iid)).is_some());
        let bid = format!("{t}.bind~1_x");
        b.bind(&iid, &bid, &plan.bind_body(plan.bind_parameters()), false)
            .expect(201);
        assert!(b.store_json(&binding_key(&iid, &bid)).is_some());
        b.unbind(&iid, &bid, &plan, false).expect(200);
        b.deprovision(&iid, &plan, false).expect(200);
    }
}

#[test]
fn a_percent_encoded_unreserved_id_is_the_same_id() {
    let b = shared();
    let plan = b.plans().sync;
    let t = token();
    let iid = format!("{t}-x");
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    // %2D is '-': the same instance.
    let resp = b
        .request("GET", &format!("/v2/service_instances/{t}%2Dx"))
        .send_raw()
        .expect(200);
    assert_eq!(resp.json["plan_id"], json!(plan.plan_id));
}

#[test]
fn unknown_fields_in_bodies_are_ignored() {
    let b = shared();
    let plan = b.plans().sync;
    let iid = new_id();
    let mut body = plan.provision_body(plan.provision_parameters());
    body["x-vendor-extension"] = json!({"anything": [1, 2, 3]});
    body["maintenance_info_x"] = json!("ignored");
    b.provision(&iid, &body, false).expect(201);
    let bid = new_id();
    let mut bind = plan.bind_body(plan.bind_parameters());
    bind["x-vendor-extension"] = json!(true);
    b.bind(&iid, &bid, &bind, false).expect(201);
}

/// `organization_guid` and `space_guid` are REQUIRED non-empty strings of a provision (OSB
/// 2.17, and deprecated-but-required since 2.13): missing or empty, the answer is a 400
/// naming the field, and nothing is stored.
#[test]
fn a_provision_without_organization_or_space_guid_is_400_naming_it() {
    let b = shared();
    let plan = b.plans().sync;
    for (field, value) in [
        ("organization_guid", None),
        ("organization_guid", Some("")),
        ("space_guid", None),
        ("space_guid", Some("")),
        ("space_guid", Some("   ")),
    ] {
        let iid = new_id();
        let mut body = plan.provision_body(json!({}));
        match value {
            Some(v) => body[field] = json!(v),
            None => {
                body.as_object_mut().unwrap().remove(field);
            }
        }
        let resp = b.provision(&iid, &body, true).expect_error(400);
        assert!(
            resp.description().contains(field),
            "{field}={value:?}: {}",
            resp.body
        );
        assert!(
            b.store_keys_mentioning(&iid).is_empty(),
            "{field}={value:?}"
        );
    }
}

/// `{"deep": [[…]]}` with `levels` nested arrays.
fn nested_parameters(levels: usize) -> Value {
    let text = format!("{{\"deep\":{}{}}}", "[".repeat(levels), "]".repeat(levels));
    serde_json::from_str(&text).unwrap_or_else(|_| {
        // Deeper than serde_json builds a `Value` from: built by hand.
        let mut value = json!([]);
        for _ in 1..levels {
            value = json!([value]);
        }
        json!({ "deep": value })
    })
}

/// The components run on a small WebAssembly stack: parameters as deeply nested as a JSON
/// parser accepts (127 levels with the body around them) are parsed, forwarded and checked
/// like any others, and anything deeper is a malformed body. Neither is ever a 500.
#[test]
fn deeply_nested_parameters_are_answered_not_crashed_on() {
    let b = shared();
    let plan = b.plans().sync;
    let (iid, _) = provision_ready(&b, &plan);
    for levels in [124, 400] {
        let deep = nested_parameters(levels);
        let fresh = new_id();
        let resp = b.provision(&fresh, &plan.provision_body(deep.clone()), false);
        expect_refused(resp, &format!("provision, {levels} levels"), None);
        assert!(b.store_keys_mentioning(&fresh).is_empty());
        let mut update = json!({ "service_id": plan.service_id, "parameters": deep.clone() });
        update["plan_id"] = json!(plan.plan_id);
        let resp = b.update(&iid, &update, false);
        expect_refused(resp, &format!("update, {levels} levels"), None);
        let resp = b.bind(&iid, &new_id(), &plan.bind_body(deep), false);
        expect_refused(resp, &format!("bind, {levels} levels"), None);
    }
    b.fetch_instance(&iid).expect(200);
}
