//! `spin-osb fleet upgrade` against the director simulator: the plan's new
//! `maintenance_info` comes with a new release version, and every deployment is redeployed
//! with it through the instances' ordinary updates.

use super::*;

/// The BOSH test catalog with the `plain` plan at `version`, deploying redis `release`.
fn catalog_at(dir: &std::path::Path, version: &str, release: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("tests/catalogs/bosh/bosh.yaml")).unwrap();
    let plain = "        description: One VM, no errands.\n";
    assert!(text.contains(plain));
    let text = text
        .replace(
            plain,
            &format!("{plain}        maintenance_info: {{version: {version}}}\n"),
        )
        .replace("version: \"15.3.3\"", &format!("version: \"{release}\""));
    let dir = dir.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bosh.yaml"), text).unwrap();
    dir
}

#[test]
fn a_fleet_upgrade_redeploys_every_deployment_with_the_new_release() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup_with(uaa(), catalog_at(tmp.path(), "1.0.0", "15.3.3"));
    let plain = plan(&s.broker, "plain");
    let ids: Vec<String> = (0..2).map(|_| new_id()).collect();
    for iid in &ids {
        provisioned(&s, &plain, iid);
    }
    spin_osb_e2e::compile_catalog(
        &catalog_at(tmp.path(), "2.0.0", "15.4.0"),
        &s.broker.state_dir.join("app").join("osb-catalog"),
    );
    s.broker.restart();
    let (status, text) = s
        .broker
        .fleet(
            OPERATOR_PASSWORD,
            &["upgrade", "--canaries", "1", "--max-in-flight", "2"],
        )
        .finish(Duration::from_secs(120), || {});
    assert!(status.success(), "{text}");
    assert!(text.contains("2 upgraded, 0 failed"), "{text}");
    assert!(text.contains("(canary)"), "{text}");
    for iid in &ids {
        let manifest = s
            .sim
            .deployment(&deployment(iid))
            .unwrap()
            .manifest
            .unwrap();
        assert!(
            manifest.contains("15.4.0") && !manifest.contains("15.3.3"),
            "{manifest}"
        );
        let fetched = s.broker.fetch_instance(iid).expect(200);
        assert_eq!(
            fetched.json["maintenance_info"]["version"], "2.0.0",
            "{}",
            fetched.body
        );
    }
    for iid in &ids {
        deprovisioned(&s, &plain, iid);
    }
}
