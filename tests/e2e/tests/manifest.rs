//! `spin.toml` against the backend registry: Spin manifests cannot share sections, so each
//! component that runs backend steps repeats the backends' variables and outbound hosts.
//! This keeps the repetition honest: every registered backend's variables and hosts are
//! where they must be, and nowhere else (no component holds a secret it does not use).

use std::collections::BTreeSet;

use spin_osb_core::backend::registry;
use spin_osb_e2e::repo_root;

/// The components that run backend steps: the operations, the polls that advance them, and
/// the operator API (fleet upgrades are ordinary updates).
const BACKEND_COMPONENTS: &[&str] = &[
    "osb-operator",
    "osb-provision",
    "osb-update",
    "osb-deprovision",
    "osb-bind",
    "osb-unbind",
    "osb-instance-last-operation",
    "osb-binding-last-operation",
];

fn manifest() -> toml::Table {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    text.parse().expect("spin.toml parses")
}

fn strings(value: Option<&toml::Value>) -> BTreeSet<String> {
    value
        .and_then(toml::Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_backend_component_has_every_backend_variable_and_host_and_no_other_component_does() {
    let manifest = manifest();
    let declared: BTreeSet<&str> = manifest["variables"]
        .as_table()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let variables = registry::variables();
    let hosts = registry::outbound_hosts();
    assert!(!variables.is_empty() && !hosts.is_empty());
    let mut problems = Vec::new();
    for variable in &variables {
        if !declared.contains(variable) {
            problems.push(format!("[variables] lacks {variable}"));
        }
    }
    let components = manifest["component"].as_table().unwrap();
    for (id, component) in components {
        let mapped: BTreeSet<String> = component
            .get("variables")
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let allowed = strings(component.get("allowed_outbound_hosts"));
        let runs_backends = BACKEND_COMPONENTS.contains(&id.as_str());
        for variable in &variables {
            let expected = format!("{{{{ {variable} }}}}");
            let value = component
                .get("variables")
                .and_then(|t| t.get(*variable))
                .and_then(toml::Value::as_str);
            match (runs_backends, value) {
                (true, Some(value)) if value == expected => {}
                (true, _) => problems.push(format!(
                    "[component.{id}.variables] needs {variable} = \"{expected}\""
                )),
                (false, Some(_)) => problems.push(format!(
                    "[component.{id}.variables] has {variable}, which only backend components need"
                )),
                (false, None) => {}
            }
        }
        for host in &hosts {
            match (runs_backends, allowed.contains(*host)) {
                (true, false) => problems.push(format!(
                    "[component.{id}] allowed_outbound_hosts needs \"{host}\""
                )),
                (false, true) => problems.push(format!(
                    "[component.{id}] allows \"{host}\", which only backend components call"
                )),
                _ => {}
            }
        }
        if runs_backends && mapped.is_empty() {
            problems.push(format!("[component.{id}] has no variables"));
        }
        // Components that write records count them (spin_osb_core::metrics), unless
        // the deployment turns counting off.
        let metrics = spin_osb_core::metrics::VARIABLE;
        if runs_backends && !mapped.contains(metrics) {
            problems.push(format!(
                "[component.{id}.variables] needs {metrics} = \"{{{{ {metrics} }}}}\""
            ));
        }
    }
    for id in BACKEND_COMPONENTS {
        if !components.contains_key(*id) {
            problems.push(format!("spin.toml has no component {id}"));
        }
    }
    assert!(problems.is_empty(), "spin.toml:\n{}", problems.join("\n"));
}

/// `spin-osb clusters ARGS -f MANIFEST`, which must succeed: its output.
fn clusters(args: &[&str], manifest: &std::path::Path) -> String {
    let output = std::process::Command::new(spin_osb_e2e::host_bin())
        .arg("clusters")
        .args(args)
        .arg("-f")
        .arg(manifest)
        .output()
        .expect("spin-osb clusters");
    assert!(
        output.status.success(),
        "spin-osb clusters {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every cluster `spin.toml` declares is reachable from every component that talks to
/// Kubernetes (what `spin-osb clusters add` writes, checked by `spin-osb clusters list`),
/// the command that declares one leaves a manifest that passes the same check, and the one
/// that removes it leaves the manifest as it was.
#[test]
fn the_declared_clusters_are_complete_before_and_after_adding_one() {
    let shipped = repo_root().join("spin.toml");
    assert_eq!(clusters(&["list"], &shipped).lines().count(), 1);

    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("spin.toml");
    std::fs::copy(&shipped, &copy).expect("copy spin.toml");
    clusters(&["add", "east"], &copy);
    let names: Vec<String> = clusters(&["list"], &copy)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["default", "east"]);

    // And `remove` gives back the shipped manifest, byte for byte.
    clusters(&["remove", "east"], &copy);
    assert_eq!(
        std::fs::read_to_string(&copy).expect("edited spin.toml"),
        std::fs::read_to_string(&shipped).expect("spin.toml")
    );
}
