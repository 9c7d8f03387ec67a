//! Parameters are checked against the plan's JSON Schemas: a violation is a 400 whose
//! description names the field, and nothing is created or changed.

use spin_osb_e2e::{json, new_id, shared, Plan};

fn plans_with_schema(section: &str, action: &str) -> Vec<(Plan, String, serde_json::Value)> {
    let b = shared();
    b.plans()
        .catalog
        .plans()
        .into_iter()
        .filter_map(|p| {
            p.typed_property(section, action)
                .map(|(name, schema)| (p, name, schema))
        })
        .collect()
}

#[test]
fn provision_parameters_of_the_wrong_type_are_400_naming_the_field() {
    let b = shared();
    let cases = plans_with_schema("service_instance", "create");
    assert!(
        !cases.is_empty(),
        "the default catalog should have a plan with a typed service_instance.create schema"
    );
    for (plan, field, schema) in cases {
        let iid = new_id();
        let mut params = plan.provision_parameters();
        params[&field] = spin_osb_e2e::wrong_type_value(&schema).unwrap();
        let resp = b
            .provision(&iid, &plan.provision_body(params.clone()), true)
            .expect_error(400);
        assert!(
            resp.description().contains(&field),
            "plan {}: the description should name parameter {field:?}: {}",
            plan.name,
            resp.body
        );
        assert!(
            b.store_keys_mentioning(&iid).is_empty(),
            "an invalid provision must not be stored: {:?}",
            b.store_keys_mentioning(&iid)
        );
    }
}

#[test]
fn missing_required_provision_parameters_are_400_naming_the_field() {
    let b = shared();
    let mut checked = 0;
    for plan in b.plans().catalog.plans() {
        let Some(schema) = plan.schema("service_instance", "create") else {
            continue;
        };
        let Some(required) = schema["required"].as_array().and_then(|r| r.first()) else {
            continue;
        };
        let field = required.as_str().unwrap().to_string();
        let mut params = plan.provision_parameters();
        params.as_object_mut().unwrap().remove(&field);
        let iid = new_id();
        let resp = b
            .provision(&iid, &plan.provision_body(params), true)
            .expect_error(400);
        assert!(
            resp.description().contains(&field),
            "plan {}: the description should name the missing parameter {field:?}: {}",
            plan.name,
            resp.body
        );
        assert!(b.store_keys_mentioning(&iid).is_empty());
        checked += 1;
    }
    if checked == 0 {
        eprintln!("no plan requires a provision parameter; nothing to check");
    }
}

#[test]
fn out_of_range_provision_parameters_are_400_naming_the_field() {
    let b = shared();
    let mut checked = 0;
    for plan in b.plans().catalog.plans() {
        let Some(schema) = plan.schema("service_instance", "create") else {
            continue;
        };
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        for (field, sub) in properties {
            let bad = if let Some(max) = sub["maximum"].as_f64() {
                json!(max as i64 + 1000)
            } else if let Some(max) = sub["maxLength"].as_u64() {
                json!("z".repeat(max as usize + 1))
            } else if let Some(options) = sub["enum"].as_array() {
                if options.iter().all(|o| o.is_string()) {
                    json!("not-one-of-the-options-e2e")
                } else {
                    continue;
                }
            } else {
                continue;
            };
            let mut params = plan.provision_parameters();
            params[field.as_str()] = bad.clone();
            let iid = new_id();
            let resp = b
                .provision(&iid, &plan.provision_body(params), true)
                .expect_error(400);
            assert!(
                resp.description().contains(field.as_str()),
                "plan {}: {field} = {bad}: the description should name the field: {}",
                plan.name,
                resp.body
            );
            assert!(b.store_keys_mentioning(&iid).is_empty());
            checked += 1;
        }
    }
    if checked == 0 {
        eprintln!("no provision schema bounds a property; nothing to check");
    }
}

#[test]
fn update_parameters_that_violate_the_schema_are_400_and_change_nothing() {
    let b = shared();
    let plans = b.plans();
    let plan = &plans.sync;
    let Some((field, schema)) = plan
        .typed_property("service_instance", "update")
        .or_else(|| plan.typed_property("service_instance", "create"))
    else {
        eprintln!(
            "plan {} has no typed instance schema; nothing to check",
            plan.name
        );
        return;
    };
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    let before = b.fetch_instance(&iid).expect(200).json;
    let mut params = before["parameters"].clone();
    params[&field] = spin_osb_e2e::wrong_type_value(&schema).unwrap();
    let resp = b
        .update(
            &iid,
            &json!({"service_id": plan.service_id, "parameters": params}),
            true,
        )
        .expect_error(400);
    assert!(
        resp.description().contains(&field),
        "the description should name parameter {field:?}: {}",
        resp.body
    );
    assert_eq!(b.fetch_instance(&iid).expect(200).json, before);
}

#[test]
fn bind_parameters_that_violate_the_schema_are_400_naming_the_field() {
    let b = shared();
    let cases: Vec<_> = plans_with_schema("service_binding", "create")
        .into_iter()
        .filter(|(p, _, _)| p.bindable())
        .collect();
    if cases.is_empty() {
        eprintln!("no plan has a typed service_binding.create schema; nothing to check");
        return;
    }
    for (plan, field, schema) in cases {
        let iid = new_id();
        let resp = b.provision(
            &iid,
            &plan.provision_body(plan.provision_parameters()),
            true,
        );
        if resp.status == 202 {
            b.wait_instance_operation(&iid, &resp.operation())
                .expect(200);
        } else {
            resp.expect(201);
        }
        let bid = new_id();
        let mut params = plan.bind_parameters();
        params[&field] = spin_osb_e2e::wrong_type_value(&schema).unwrap();
        let resp = b
            .bind(&iid, &bid, &plan.bind_body(params), true)
            .expect_error(400);
        assert!(
            resp.description().contains(&field),
            "plan {}: the description should name parameter {field:?}: {}",
            plan.name,
            resp.body
        );
        assert!(b
            .store_json(&spin_osb_e2e::binding_key(&iid, &bid))
            .is_none());
    }
}

#[test]
fn parameters_that_are_not_an_object_are_400() {
    let b = shared();
    let plan = b.plans().sync;
    for params in [json!([1, 2]), json!("text"), json!(5)] {
        let iid = new_id();
        let resp = b
            .provision(&iid, &plan.provision_body(params.clone()), false)
            .expect_error(400);
        assert!(
            resp.description().contains("parameters"),
            "parameters = {params}: the description should name the field: {}",
            resp.body
        );
        assert!(b.store_keys_mentioning(&iid).is_empty());
    }
}

#[test]
fn parameters_the_schema_does_not_allow_are_400_naming_them() {
    let b = shared();
    let mut checked = 0;
    for plan in b.plans().catalog.plans() {
        let Some(schema) = plan.schema("service_instance", "create") else {
            continue;
        };
        if schema["additionalProperties"] != json!(false) {
            continue;
        }
        let mut params = plan.provision_parameters();
        params["unknown_e2e_param"] = json!(1);
        let iid = new_id();
        let resp = b
            .provision(&iid, &plan.provision_body(params), true)
            .expect_error(400);
        assert!(
            resp.description().contains("unknown_e2e_param"),
            "plan {}: the description should name the unexpected parameter: {}",
            plan.name,
            resp.body
        );
        assert!(b.store_keys_mentioning(&iid).is_empty());
        checked += 1;
    }
    if checked == 0 {
        eprintln!("no schema forbids additional properties; nothing to check");
    }
}

#[test]
fn a_parameter_that_does_not_match_its_pattern_is_400_naming_it() {
    let b = shared();
    let mut checked = 0;
    for plan in b.plans().catalog.plans() {
        let Some(schema) = plan.schema("service_instance", "create") else {
            continue;
        };
        for (field, sub) in schema["properties"].as_object().into_iter().flatten() {
            if !sub["pattern"].is_string() {
                continue;
            }
            let mut params = plan.provision_parameters();
            params[field.as_str()] = json!("!! NOT-matching !!");
            let iid = new_id();
            let resp = b
                .provision(&iid, &plan.provision_body(params), true)
                .expect_error(400);
            assert!(
                resp.description().contains(field.as_str()),
                "plan {}: the description should name {field}: {}",
                plan.name,
                resp.body
            );
            assert!(b.store_keys_mentioning(&iid).is_empty());
            checked += 1;
        }
    }
    if checked == 0 {
        eprintln!("no schema has a pattern; nothing to check");
    }
}

#[test]
fn a_bind_parameter_outside_its_enum_is_400_naming_it() {
    let b = shared();
    let plan = b.plans().sync;
    let Some(schema) = plan.schema("service_binding", "create") else {
        eprintln!("plan {} has no binding schema", plan.name);
        return;
    };
    let Some((field, _)) = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, s)| s["enum"].is_array())
    else {
        eprintln!("the binding schema has no enum");
        return;
    };
    let iid = new_id();
    b.provision(
        &iid,
        &plan.provision_body(plan.provision_parameters()),
        false,
    )
    .expect(201);
    let bid = new_id();
    let mut params = plan.bind_parameters();
    params[field.as_str()] = json!("superuser-e2e");
    let resp = b
        .bind(&iid, &bid, &plan.bind_body(params), false)
        .expect_error(400);
    assert!(
        resp.description().contains(field.as_str()),
        "the description should name {field}: {}",
        resp.body
    );
    assert!(b
        .store_json(&spin_osb_e2e::binding_key(&iid, &bid))
        .is_none());
    // A value from the enum is accepted.
    let mut params = plan.bind_parameters();
    params[field.as_str()] = schema["properties"][field.as_str()]["enum"][0].clone();
    b.bind(&iid, &bid, &plan.bind_body(params), false)
        .expect(201);
}

/// The app without the provision component's permission to reach `osb-parameters`: what a
/// deployment that dropped the checker from `allowed_outbound_hosts` would run.
fn app_without_the_parameter_checker(dir: &std::path::Path) -> std::path::PathBuf {
    let root = spin_osb_e2e::repo_root();
    let text = std::fs::read_to_string(spin_osb_e2e::manifest()).unwrap();
    let cut = text.replace(", \"http://osb-parameters.spin.internal\"", "");
    assert_ne!(
        cut, text,
        "spin.toml should let the endpoints reach osb-parameters"
    );
    let cut = cut.replace(
        "source = \"target/",
        &format!("source = \"{}/target/", root.display()),
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, cut).unwrap();
    path
}

#[test]
fn parameters_that_cannot_be_checked_are_a_500_naming_the_checker_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = spin_osb_e2e::Broker::start_app(app_without_the_parameter_checker(dir.path()));
    let plan = b.plans().sync;
    // Valid for the default catalog's sync plan (`size`: 1 to 3).
    let params = json!({ "size": 2 });

    let iid = new_id();
    let resp = b
        .provision(&iid, &plan.provision_body(params), false)
        .expect_error(500);
    assert!(
        resp.description()
            .contains("parameter checker is unavailable"),
        "{}",
        resp.body
    );
    b.fetch_instance(&iid).expect_error(404);

    // Without parameters nothing needs the checker: the compiled catalog already knows
    // what the schema says about `{}`.
    b.provision(&iid, &plan.provision_body(json!({})), false)
        .expect(201);
}
