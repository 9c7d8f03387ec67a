//! The compiled catalog as components read it: a directory they cannot trust (missing,
//! of another format, mixing two compilations, truncated) is a 500 naming the problem,
//! never stale data, and nothing is stored because of it.

use std::path::{Path, PathBuf};

use spin_osb_e2e::{json, repo_root, Broker, Options, Value};

fn start() -> (Broker, PathBuf) {
    let b = Broker::start_with_options(Options {
        catalog: Some(repo_root().join("catalog")),
        ..Options::default()
    });
    let compiled = b.state_dir.join("app/osb-catalog");
    assert!(compiled.join("manifest.json").is_file());
    (b, compiled)
}

/// Runs `f` with `file` replaced by `contents` (or removed with `None`), then restores it.
fn with_file(path: &Path, contents: Option<Vec<u8>>, f: impl FnOnce()) {
    let original = std::fs::read(path).expect("compiled file");
    match contents {
        Some(bytes) => std::fs::write(path, bytes).unwrap(),
        None => std::fs::remove_file(path).unwrap(),
    }
    f();
    std::fs::write(path, original).unwrap();
}

fn description(resp: &spin_osb_e2e::Resp) -> String {
    resp.json["description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_untrusted_compiled_catalog_is_a_500_naming_the_problem_and_stores_nothing() {
    let (b, compiled) = start();
    let plan = b.plans().sync;
    let body = plan.provision_body(json!({}));
    let manifest_path = compiled.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();

    // A manifest of another format: every endpoint refuses it.
    manifest["format"] = json!(999);
    with_file(
        &manifest_path,
        Some(manifest.to_string().into_bytes()),
        || {
            let resp = b.get("/v2/catalog").expect_error(500);
            assert!(description(&resp).contains("format 999"), "{}", resp.body);
            let resp = b.provision("untrusted-1", &body, false).expect_error(500);
            assert!(description(&resp).contains("rebuild"), "{}", resp.body);
        },
    );

    // A plan file of another compilation.
    let plan_file = compiled.join(spin_osb_core::catalog::plan_file_name(&plan.plan_id));
    let mut file: Value = serde_json::from_slice(&std::fs::read(&plan_file).unwrap()).unwrap();
    file["generation"] = json!("0000");
    with_file(&plan_file, Some(file.to_string().into_bytes()), || {
        let resp = b.provision("untrusted-1", &body, false).expect_error(500);
        assert!(
            description(&resp).contains("another compilation"),
            "{}",
            resp.body
        );
    });

    // A missing plan file and a truncated catalog body.
    with_file(&plan_file, None, || {
        let resp = b.provision("untrusted-1", &body, false).expect_error(500);
        assert!(description(&resp).contains("is missing"), "{}", resp.body);
    });
    let catalog_path = compiled.join("catalog.json");
    let catalog = std::fs::read(&catalog_path).unwrap();
    with_file(
        &catalog_path,
        Some(catalog[..catalog.len() / 2].to_vec()),
        || {
            let resp = b.get("/v2/catalog").expect_error(500);
            assert!(description(&resp).contains("bytes"), "{}", resp.body);
        },
    );

    // Nothing was stored by the refused requests: the first real provision creates.
    b.provision("untrusted-1", &body, false).expect(201);
    b.get("/v2/catalog").expect(200);
}
