//! `GET /v2/catalog`: the OSB fields of every service and plan, caching with `ETag`, and
//! nothing internal (such as a plan's `backend`) leaking out.

use std::collections::HashSet;

use spin_osb_e2e::{shared, Value};

fn non_empty_str(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.trim().is_empty())
}

#[test]
fn the_catalog_is_200_json_with_an_etag() {
    let b = shared();
    let resp = b.get("/v2/catalog").expect(200);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{:?}",
        resp.headers
    );
    let etag = resp.header("etag").unwrap_or_default();
    assert!(
        etag.len() > 2 && etag.ends_with('"'),
        "the catalog should carry a quoted ETag, got {etag:?}"
    );
    assert!(resp.json["services"].is_array(), "{}", resp.body);
}

#[test]
fn if_none_match_with_the_etag_is_304_and_anything_else_200() {
    let b = shared();
    let first = b.get("/v2/catalog").expect(200);
    let etag = first.header("etag").expect("ETag").to_string();
    let cached = b
        .request("GET", "/v2/catalog")
        .header("If-None-Match", &etag)
        .send()
        .expect(304);
    assert!(
        cached.body.is_empty(),
        "a 304 has no body: {:?}",
        cached.body
    );
    assert_eq!(
        cached.header("etag"),
        Some(etag.as_str()),
        "a 304 repeats the ETag"
    );
    // Several candidates, one of which matches.
    b.request("GET", "/v2/catalog")
        .header("If-None-Match", &format!("\"other\", {etag}"))
        .send()
        .expect(304);
    let fresh = b
        .request("GET", "/v2/catalog")
        .header("If-None-Match", "\"not-the-etag\"")
        .send()
        .expect(200);
    assert_eq!(fresh.json, first.json);
    assert_eq!(
        fresh.header("etag"),
        Some(etag.as_str()),
        "the ETag is stable"
    );
    // The check happens after authentication.
    b.request("GET", "/v2/catalog")
        .header("If-None-Match", &etag)
        .no_auth()
        .send()
        .expect_error(401);
}

#[test]
fn the_catalog_is_the_same_for_every_supported_api_version() {
    let b = shared();
    let reference = b.get("/v2/catalog").expect(200).json;
    for minor in 13..=16 {
        let resp = b
            .request("GET", "/v2/catalog")
            .version(Some(&format!("2.{minor}")))
            .send()
            .expect(200);
        assert_eq!(resp.json, reference, "2.{minor}");
    }
}

#[test]
fn every_service_and_plan_has_the_required_osb_fields() {
    let b = shared();
    let catalog = b.catalog();
    let services = catalog.json["services"].as_array().expect("services array");
    assert!(!services.is_empty(), "the default catalog has services");
    let mut service_ids = HashSet::new();
    let mut service_names = HashSet::new();
    let mut plan_ids = HashSet::new();
    for service in services {
        let name = service["name"].as_str().unwrap_or_default();
        for field in ["id", "name", "description"] {
            assert!(
                non_empty_str(&service[field]),
                "service {name}: {field} must be a non-empty string: {service}"
            );
        }
        assert!(
            service["bindable"].is_boolean(),
            "service {name}: bindable is required: {service}"
        );
        assert!(
            service_ids.insert(service["id"].clone()),
            "duplicate service id {}",
            service["id"]
        );
        assert!(
            service_names.insert(name.to_string()),
            "duplicate service name {name}"
        );
        for field in [
            "instances_retrievable",
            "bindings_retrievable",
            "allow_context_updates",
            "plan_updateable",
        ] {
            assert!(
                service.get(field).is_none_or(Value::is_boolean),
                "service {name}: {field} must be a boolean: {service}"
            );
        }
        if let Some(tags) = service.get("tags") {
            assert!(
                tags.as_array()
                    .is_some_and(|t| t.iter().all(Value::is_string)),
                "service {name}: tags must be strings: {tags}"
            );
        }
        if let Some(requires) = service.get("requires") {
            let ok = ["syslog_drain", "route_forwarding", "volume_mount"];
            assert!(
                requires.as_array().is_some_and(|r| r
                    .iter()
                    .all(|v| v.as_str().is_some_and(|s| ok.contains(&s)))),
                "service {name}: requires may only hold {ok:?}: {requires}"
            );
        }
        if let Some(metadata) = service.get("metadata") {
            assert!(
                metadata.is_object(),
                "service {name}: metadata must be an object"
            );
        }
        let plans = service["plans"].as_array().expect("plans array");
        assert!(
            !plans.is_empty(),
            "service {name} must have at least one plan"
        );
        let mut plan_names = HashSet::new();
        for plan in plans {
            let plan_name = plan["name"].as_str().unwrap_or_default();
            for field in ["id", "name", "description"] {
                assert!(
                    non_empty_str(&plan[field]),
                    "plan {plan_name}: {field} must be a non-empty string: {plan}"
                );
            }
            assert!(
                plan_ids.insert(plan["id"].clone()),
                "duplicate plan id {}",
                plan["id"]
            );
            assert!(
                plan_names.insert(plan_name.to_string()),
                "duplicate plan name {plan_name} in {name}"
            );
            for field in ["free", "bindable", "binding_rotatable", "plan_updateable"] {
                assert!(
                    plan.get(field).is_none_or(Value::is_boolean),
                    "plan {plan_name}: {field} must be a boolean: {plan}"
                );
            }
            if let Some(d) = plan.get("maximum_polling_duration") {
                assert!(
                    d.as_u64().is_some_and(|d| d > 0),
                    "plan {plan_name}: maximum_polling_duration: {d}"
                );
            }
            if let Some(mi) = plan.get("maintenance_info") {
                let version = mi["version"].as_str().unwrap_or_default();
                let core = version.split(['-', '+']).next().unwrap_or_default();
                assert!(
                    core.split('.').count() == 3
                        && core.split('.').all(|n| n.parse::<u64>().is_ok()),
                    "plan {plan_name}: maintenance_info.version must be semver: {mi}"
                );
            }
            if let Some(schemas) = plan.get("schemas") {
                for (section, action) in [
                    ("service_instance", "create"),
                    ("service_instance", "update"),
                    ("service_binding", "create"),
                ] {
                    let schema = &schemas[section][action]["parameters"];
                    if schema.is_null() {
                        continue;
                    }
                    assert!(
                        non_empty_str(&schema["$schema"]),
                        "plan {plan_name}: schemas.{section}.{action}.parameters needs $schema: {schema}"
                    );
                    assert!(
                        !schema.to_string().contains("\"$ref\":\"http"),
                        "plan {plan_name}: schemas must not reference external documents"
                    );
                }
            }
        }
    }
}

#[test]
fn no_service_or_plan_exposes_its_backend() {
    let b = shared();
    let catalog = b.catalog();
    for service in catalog.services() {
        assert!(
            service.get("backend").is_none(),
            "service {} has a backend field",
            service["name"]
        );
        for plan in service["plans"].as_array().unwrap() {
            assert!(
                plan.get("backend").is_none(),
                "plan {} exposes its backend: {plan}",
                plan["name"]
            );
        }
    }
    let text = catalog.json.to_string();
    for secret_ish in ["\"backend\"", "delay_seconds", "{{"] {
        assert!(
            !text.contains(secret_ish),
            "the catalog leaks broker internals ({secret_ish}): {text}"
        );
    }
}

#[test]
fn the_default_catalog_has_a_synchronous_and_an_asynchronous_bindable_plan() {
    let b = shared();
    let plans = b.plans();
    assert_ne!(plans.sync.plan_id, plans.asynchronous.plan_id);
    assert!(plans.sync.bindable() && plans.asynchronous.bindable());
}

/// The Service Offering Object's fields (OSB v2.17).
const SERVICE_FIELDS: &[&str] = &[
    "name",
    "id",
    "description",
    "tags",
    "requires",
    "bindable",
    "instances_retrievable",
    "bindings_retrievable",
    "allow_context_updates",
    "metadata",
    "dashboard_client",
    "plan_updateable",
    "plans",
];

/// The Service Plan Object's fields (OSB v2.17).
const PLAN_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "metadata",
    "free",
    "bindable",
    "binding_rotatable",
    "plan_updateable",
    "schemas",
    "maximum_polling_duration",
    "maintenance_info",
];

#[test]
fn only_osb_fields_are_served() {
    let b = shared();
    for service in b.catalog().services() {
        for key in service.as_object().unwrap().keys() {
            assert!(
                SERVICE_FIELDS.contains(&key.as_str()),
                "service {}: {key} is not an OSB field",
                service["name"]
            );
        }
        for plan in service["plans"].as_array().unwrap() {
            for key in plan.as_object().unwrap().keys() {
                assert!(
                    PLAN_FIELDS.contains(&key.as_str()),
                    "plan {}: {key} is not an OSB field",
                    plan["name"]
                );
            }
        }
    }
}

#[test]
fn every_osb_field_of_the_yaml_catalog_is_served_unchanged() {
    let b = shared();
    let served = b.catalog().json;
    let written = spin_osb_e2e::yaml_catalog();
    let served_services = served["services"].as_array().unwrap();
    let written_services = written["services"].as_array().unwrap();
    assert_eq!(
        served_services
            .iter()
            .map(|s| s["id"].clone())
            .collect::<Vec<_>>(),
        written_services
            .iter()
            .map(|s| s["id"].clone())
            .collect::<Vec<_>>(),
        "the catalog should serve the YAML's services in order"
    );
    let osb_keys = |v: &Value, fields: &[&str]| -> HashSet<String> {
        v.as_object()
            .unwrap()
            .keys()
            .filter(|k| fields.contains(&k.as_str()))
            .cloned()
            .collect()
    };
    for ys in written_services {
        let name = ys["name"].as_str().unwrap_or_default();
        let js = served_services
            .iter()
            .find(|s| s["id"] == ys["id"])
            .unwrap();
        assert_eq!(
            osb_keys(js, SERVICE_FIELDS),
            osb_keys(ys, SERVICE_FIELDS),
            "service {name}: the served OSB fields differ from the YAML's"
        );
        for key in osb_keys(ys, SERVICE_FIELDS) {
            if key != "plans" {
                assert_eq!(js[&key], ys[&key], "service {name}: field {key}");
            }
        }
        let written_plans = ys["plans"].as_array().unwrap();
        let served_plans = js["plans"].as_array().unwrap();
        assert_eq!(
            served_plans
                .iter()
                .map(|p| p["id"].clone())
                .collect::<Vec<_>>(),
            written_plans
                .iter()
                .map(|p| p["id"].clone())
                .collect::<Vec<_>>(),
            "service {name}: the plans should be served as written"
        );
        for yp in written_plans {
            let plan_name = yp["name"].as_str().unwrap_or_default();
            let jp = served_plans.iter().find(|p| p["id"] == yp["id"]).unwrap();
            assert_eq!(
                osb_keys(jp, PLAN_FIELDS),
                osb_keys(yp, PLAN_FIELDS),
                "plan {name}/{plan_name}: the served OSB fields differ from the YAML's"
            );
            for key in osb_keys(yp, PLAN_FIELDS) {
                assert_eq!(jp[&key], yp[&key], "plan {name}/{plan_name}: field {key}");
            }
        }
    }
}
