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

#[test]
fn orphan_deployments_are_reported_and_deleted_on_request_only() {
    let s = setup(uaa());
    let plain = plan(&s.broker, "plain");
    let live = new_id();
    provisioned(&s, &plain, &live);
    // A deployment of an instance the broker no longer has, and one that is not its own.
    let gone = deployment(&new_id());
    let manifest = |name: &str| {
        format!(
            "name: {name}\nreleases: [{{name: redis, version: \"15.3.3\"}}]\n\
             stemcells: [{{alias: default, os: ubuntu-jammy, version: \"1.404\"}}]\n\
             instance_groups:\n- name: redis\n  instances: 1\n  azs: [z1]\n  vm_type: default\n\
             \x20 stemcell: default\n  networks: [{{name: default}}]\n  jobs: [{{name: redis, release: redis}}]\n"
        )
    };
    s.sim
        .seed_deployment(&manifest(&gone))
        .expect("seeded orphan");
    s.sim
        .seed_deployment(&manifest("cf"))
        .expect("seeded foreign deployment");

    let (status, text) = s
        .broker
        .fleet(OPERATOR_PASSWORD, &["orphans"])
        .finish(Duration::from_secs(60), || {});
    assert!(status.success(), "{text}");
    assert!(text.contains(&format!("deployment {gone}")), "{text}");
    assert!(text.contains("bosh: 1 orphan(s)"), "{text}");
    assert!(
        !text.contains(&deployment(&live)) && !text.contains("deployment cf"),
        "{text}"
    );
    assert!(
        s.sim.deployment(&gone).is_some(),
        "reporting deletes nothing"
    );

    let (status, text) = s
        .broker
        .fleet(OPERATOR_PASSWORD, &["orphans", "--delete"])
        .finish(Duration::from_secs(60), || {});
    assert!(status.success(), "{text}");
    eventually(
        "the orphan deployment to be deleted",
        Duration::from_secs(60),
        || s.sim.deployment(&gone).is_none().then_some(()),
    );
    assert!(
        s.sim.deployment("cf").is_some(),
        "not the broker's: left alone"
    );
    assert!(
        s.sim.deployment(&deployment(&live)).is_some(),
        "alive: left alone"
    );
    deprovisioned(&s, &plain, &live);
}
