//! Catalog loading: golden cases under `tests/catalog/` and the default catalog of the repo.
//!
//! Golden cases: `x.yaml` (or a directory `x/` of files, loaded with `load_dir`) next to
//! either `x.json`, the exact `GET /v2/catalog` body, or `x.err`, one line per expected
//! problem, each a substring of that problem's line, in order.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use spin_osb_core::catalog::{Catalog, CatalogError, PlanBackend};
use spin_osb_core::template::SecretSeed;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/catalog")
}

fn default_catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog")
}

fn load_case(path: &Path) -> Result<Catalog, CatalogError> {
    if path.is_dir() {
        Catalog::load_dir(path)
    } else {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        Catalog::from_yaml_documents(&[(name, text)])
    }
}

#[test]
fn golden_cases_give_their_json_or_their_errors() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    assert!(entries.len() > 20, "golden cases missing: {entries:?}");
    let mut failures = Vec::new();
    for case in &entries {
        let stem = case.file_stem().unwrap().to_string_lossy().into_owned();
        let json = cases_dir().join(format!("{stem}.json"));
        let err = cases_dir().join(format!("{stem}.err"));
        let result = load_case(case);
        if json.exists() {
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            match result {
                Ok(catalog) if catalog.to_osb_json() == expected => {}
                Ok(catalog) => failures.push(format!(
                    "{stem}: JSON differs:\n{}",
                    serde_json::to_string_pretty(&catalog.to_osb_json()).unwrap()
                )),
                Err(error) => failures.push(format!("{stem}: expected to load, got:\n{error}")),
            }
        } else if err.exists() {
            let expected: Vec<String> = std::fs::read_to_string(&err)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect();
            match result {
                Ok(_) => failures.push(format!("{stem}: expected errors, but it loaded")),
                Err(error) => {
                    let got: Vec<String> = error.problems().iter().map(|p| p.to_string()).collect();
                    let matches = got.len() == expected.len()
                        && got
                            .iter()
                            .zip(&expected)
                            .all(|(g, e)| g.contains(e.as_str()));
                    if !matches {
                        failures.push(format!(
                            "{stem}: expected\n  {}\ngot\n  {}",
                            expected.join("\n  "),
                            got.join("\n  ")
                        ));
                    }
                }
            }
        } else {
            failures.push(format!("{stem}: has neither {stem}.json nor {stem}.err"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn the_default_catalog_loads() {
    let catalog = Catalog::load_dir(default_catalog_dir()).unwrap_or_else(|e| panic!("{e}"));
    let service = &catalog.services()[0];
    assert_eq!(service.name, "shared-credentials");
    let names: Vec<_> = service.plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sync", "async"]);

    let sync = catalog.plan(&service.id, &service.plans[0].id).unwrap();
    assert!(sync.bindable() && sync.plan_updateable() && sync.binding_rotatable());
    assert!(
        sync.instances_retrievable() && sync.bindings_retrievable() && sync.allow_context_updates()
    );
    assert_eq!(sync.maintenance_info().unwrap().version, "1.0.0");
    assert!(sync.instance_create_schema().is_some());
    assert!(sync.instance_update_schema().is_some());
    assert!(sync.binding_create_schema().is_some());

    let asynchronous = catalog.plan(&service.id, &service.plans[1].id).unwrap();
    let PlanBackend::Credentials(config) = asynchronous.backend() else {
        panic!("the async plan is a credentials plan")
    };
    assert!(config.asynchronous);
    assert_eq!(config.delay_seconds, 2);
    assert_eq!(asynchronous.maximum_polling_duration(), Some(60));
}

#[test]
fn the_default_catalog_renders_credentials_and_dashboard_url() {
    let catalog = Catalog::load_dir(default_catalog_dir()).unwrap();
    let service = &catalog.services()[0];
    let plan = catalog.plan(&service.id, &service.plans[0].id).unwrap();
    let PlanBackend::Credentials(config) = plan.backend() else {
        panic!("a credentials plan")
    };
    let seed = SecretSeed::new([7u8; 32]);
    let instance_id = "6a9d2c1e-0000-4000-8000-000000000001";
    let binding = |binding_id: &str| {
        plan.template_context(instance_id, seed.clone())
            .with_binding(binding_id)
            .with_instance_parameters(json!({ "username_prefix": "app", "size": 3 }))
            .with_parameters(json!({ "role": "read-only" }))
    };

    let first = config
        .render_credentials(&binding("b1c2d3e4-aaaa"))
        .unwrap();
    assert_eq!(first["username"], "app-b1c2d3e4");
    assert_eq!(first["role"], "read-only");
    assert_eq!(first["max_connections"], "30");
    assert_eq!(first["instance_id"], instance_id);
    let password = first["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);

    let again = config
        .render_credentials(&binding("b1c2d3e4-aaaa"))
        .unwrap();
    assert_eq!(
        first, again,
        "same seed and binding give the same credentials"
    );
    let rotated = config
        .render_credentials(&binding("f0e0d0c0-bbbb"))
        .unwrap();
    assert_ne!(
        rotated["password"], first["password"],
        "a new binding gets a new password"
    );

    let defaults = config
        .render_credentials(
            &plan
                .template_context(instance_id, seed.clone())
                .with_binding("12345678"),
        )
        .unwrap();
    assert_eq!(defaults["username"], "user-12345678");
    assert_eq!(defaults["role"], "read-write");
    assert_eq!(defaults["max_connections"], "10");

    let url = plan
        .backend()
        .render_dashboard_url(&plan.template_context(instance_id, seed))
        .unwrap();
    assert_eq!(
        url.as_deref(),
        Some("https://dashboard.example.com/instances/6a9d2c1e-0000-4000-8000-000000000001")
    );
}

#[test]
fn the_default_catalog_schemas_name_the_failing_parameter() {
    let catalog = Catalog::load_dir(default_catalog_dir()).unwrap();
    let plan = catalog.plans().next().unwrap();
    let schema = plan.instance_create_schema().unwrap();
    assert!(schema
        .validate(&json!({ "size": 2, "username_prefix": "app" }))
        .is_ok());
    let violations = schema.validate(&json!({ "size": 5 })).unwrap_err();
    assert_eq!(
        violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        ["parameters.size: 5 is greater than the maximum of 3"]
    );
    let violations = schema.validate(&json!({ "colour": "red" })).unwrap_err();
    assert_eq!(violations[0].field_path("parameters"), "parameters.colour");
    let violations = plan
        .binding_create_schema()
        .unwrap()
        .validate(&json!({ "role": "admin" }))
        .unwrap_err();
    assert!(
        violations[0].to_string().starts_with("parameters.role: "),
        "{violations:?}"
    );
}

fn contains_key(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k == key || contains_key(v, key)),
        Value::Array(items) => items.iter().any(|v| contains_key(v, key)),
        _ => false,
    }
}

#[test]
fn backend_never_appears_in_the_osb_json() {
    let catalog = Catalog::load_dir(default_catalog_dir()).unwrap();
    let json = catalog.to_osb_json();
    assert!(!contains_key(&json, "backend"));
    assert!(!contains_key(&json, "credentials"));
    assert!(!catalog.osb_body().contains("secret("));
    assert_eq!(json["services"][0]["plans"][1]["name"], "async");
}

#[test]
fn the_osb_body_is_the_osb_json() {
    let catalog = Catalog::load_dir(default_catalog_dir()).unwrap();
    let body: Value = serde_json::from_str(catalog.osb_body()).unwrap();
    assert_eq!(body, catalog.to_osb_json());
}

#[test]
fn the_etag_is_strong_quoted_and_stable_across_loads() {
    let a = Catalog::load_dir(default_catalog_dir()).unwrap();
    let b = Catalog::load_dir(default_catalog_dir()).unwrap();
    assert_eq!(a.etag(), b.etag());
    assert!(
        a.etag().starts_with('"') && a.etag().ends_with('"'),
        "{}",
        a.etag()
    );
    assert!(!a.etag().starts_with("W/"));
    assert_eq!(a.etag().len(), 34);
}

#[test]
fn the_etag_changes_when_a_description_changes() {
    let text = std::fs::read_to_string(default_catalog_dir().join("credentials.yaml")).unwrap();
    let original = Catalog::from_yaml_documents(&[("c.yaml", &text)]).unwrap();
    let edited = text.replacen(
        "description: Generated credentials",
        "description: Made-up credentials",
        1,
    );
    assert_ne!(edited, text);
    let edited = Catalog::from_yaml_documents(&[("c.yaml", &edited)]).unwrap();
    assert_ne!(original.etag(), edited.etag());
}

#[test]
fn the_etag_ignores_backend_changes_the_platform_cannot_see() {
    let text = std::fs::read_to_string(default_catalog_dir().join("credentials.yaml")).unwrap();
    let original = Catalog::from_yaml_documents(&[("c.yaml", &text)]).unwrap();
    let edited = text.replacen("delay_seconds: 2", "delay_seconds: 3", 1);
    assert_ne!(edited, text);
    let edited = Catalog::from_yaml_documents(&[("c.yaml", &edited)]).unwrap();
    assert_eq!(original.etag(), edited.etag());
}

#[test]
fn a_plan_is_found_only_under_its_own_service() {
    let text = std::fs::read_to_string(cases_dir().join("full.yaml")).unwrap();
    let catalog = Catalog::from_yaml_documents(&[("full.yaml", text)]).unwrap();
    assert!(catalog.plan("svc-full", "plan-full").is_some());
    assert!(catalog.plan("svc-other", "plan-full").is_none());
    assert!(catalog.plan("svc-full", "nope").is_none());
    assert_eq!(
        catalog.plan_by_id("plan-other-full").unwrap().service().id,
        "svc-other"
    );
    assert!(catalog.service("svc-other").is_some());
    assert!(catalog.service("nope").is_none());
}

#[test]
fn plan_fields_override_service_defaults() {
    let text = std::fs::read_to_string(cases_dir().join("full.yaml")).unwrap();
    let catalog = Catalog::from_yaml_documents(&[("full.yaml", text)]).unwrap();
    let full = catalog.plan("svc-full", "plan-full").unwrap();
    assert!(
        full.bindable(),
        "plan bindable: true beats service bindable: false"
    );
    assert!(
        full.plan_updateable(),
        "plan plan_updateable: true beats service false"
    );
    assert!(!full.free());
    let other = catalog.plan("svc-full", "plan-other").unwrap();
    assert!(!other.bindable(), "inherited from the service");
    assert!(!other.plan_updateable());
    assert!(other.free(), "OSB default");
    assert!(!other.binding_rotatable(), "OSB default");
    let inherited = catalog.plan("svc-other", "plan-other-full").unwrap();
    assert!(inherited.bindable());
    assert!(!inherited.instances_retrievable());
}

#[test]
fn problems_from_several_files_are_all_reported_one_per_line() {
    let good = std::fs::read_to_string(cases_dir().join("minimal.yaml")).unwrap();
    let error = Catalog::from_yaml_documents(&[
        ("a.yaml", good.as_str()),
        ("b.yaml", "services:\n  - id: x\n    bogus: 1\n"),
        ("c.yaml", good.as_str()),
    ])
    .unwrap_err();
    let text = error.to_string();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("b.yaml:3:5: services[0].bogus: unknown field `bogus`"),
        "{text}"
    );
    assert!(lines[1].starts_with("c.yaml: services[0].id: duplicate service id `svc-1` (first defined at a.yaml: services[0].id)"), "{text}");
    assert!(
        lines[2].starts_with("c.yaml: services[0].name: duplicate service name"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("c.yaml: services[0].plans[0].id: duplicate plan id `plan-1`"),
        "{text}"
    );
}

#[test]
fn load_dir_reads_only_yaml_files_in_name_order() {
    let dir = std::env::temp_dir().join(format!("spin-osb-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let service = |id: &str, plan: &str| {
        format!("services:\n  - {{id: {id}, name: {id}, description: d, bindable: false, plans: [{{id: {plan}, name: p, description: d, backend: {{type: credentials}}}}]}}\n")
    };
    std::fs::write(dir.join("b.yml"), service("second", "p2")).unwrap();
    std::fs::write(dir.join("a.yaml"), service("first", "p1")).unwrap();
    std::fs::write(dir.join("README.md"), "not: [yaml").unwrap();
    std::fs::write(dir.join("c.yaml.bak"), "not: [yaml").unwrap();
    let catalog = Catalog::load_dir(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let ids: Vec<_> = catalog
        .unwrap()
        .services()
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(ids, ["first", "second"]);
}

#[test]
fn load_dir_refuses_a_directory_without_catalog_files() {
    let dir = std::env::temp_dir().join(format!("spin-osb-empty-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let error = Catalog::load_dir(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(error.to_string().contains("no catalog files"), "{error}");
    let error = Catalog::load_dir(dir.join("missing")).unwrap_err();
    assert!(
        error.to_string().contains("cannot read directory"),
        "{error}"
    );
}

#[test]
fn the_catalog_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Catalog>();
}

#[test]
fn a_parameter_in_a_container_command_is_a_warning_and_the_default_catalog_has_none() {
    let default = Catalog::load_dir(default_catalog_dir()).unwrap();
    assert_eq!(default.warnings(), Vec::<String>::new());
    let risky = r#"
services:
  - id: svc-k
    name: risky
    description: d
    bindable: false
    plans:
      - id: plan-k
        name: shell
        description: d
        backend:
          type: kubernetes
          namespace: {name: "osb-{{ instance_id }}", create: true}
          manifests: |
            apiVersion: v1
            kind: Pod
            metadata:
              name: p
            spec:
              containers:
                - name: c
                  image: busybox
                  command: [sh, -c, "echo {{ parameters.greeting }}"]
"#;
    let catalog = Catalog::from_yaml_documents(&[("risky.yaml", risky)]).unwrap();
    let warnings = catalog.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("plan \"shell\"") && warnings[0].contains("line 9"),
        "{warnings:?}"
    );
}
