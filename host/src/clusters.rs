//! `spin-osb clusters`: declares the Kubernetes clusters of a broker in its `spin.toml`.
//!
//! A cluster is a few Spin variables (see `spin_osb_core::backend::kubernetes::clusters`),
//! and Spin only gives a component the variables its manifest maps and lets it reach only
//! the hosts its `allowed_outbound_hosts` lists. So adding a cluster touches every
//! component that talks to Kubernetes: `add` does that edit (keeping the file's comments
//! and layout), `list` shows the declared clusters and says what a hand edit missed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use spin_osb_core::backend::kubernetes::clusters::{
    api_url_variable, is_valid_name, token_variable, CLUSTERS_VARIABLE, DEFAULT_CLUSTER,
};
use toml_edit::{value, Array, DocumentMut, InlineTable, Item, Table};

/// `spin-osb clusters add NAME`: declares cluster `NAME` in the manifest at `path`.
pub fn add(path: &Path, name: &str) -> Result<()> {
    if !is_valid_name(name) {
        bail!("{name:?} is not a cluster name: a lower-case letter, then lower-case letters and digits (it becomes part of Spin variable names)");
    }
    let mut manifest = Manifest::read(path)?;
    let mut names = manifest.declared();
    if names.iter().any(|n| n == name) {
        bail!("cluster {name:?} is already declared in {}", path.display());
    }
    let components = manifest.kubernetes_components();
    if components.is_empty() {
        bail!(
            "no component of {} maps the variable kubernetes_api_url: nothing talks to Kubernetes",
            path.display()
        );
    }
    let (url, token) = (api_url_variable(name), token_variable(name));
    let variables = manifest.variables()?;
    let mut required = InlineTable::new();
    required.insert("required", true.into());
    variables.insert(&url, value(required.clone()));
    required.insert("secret", true.into());
    variables.insert(&token, value(required));
    names.push(name.to_string());
    set_default(variables, CLUSTERS_VARIABLE, &names.join(","));
    for component in &components {
        let table = manifest.component(component)?;
        let mapped = table
            .entry("variables")
            .or_insert(Item::Table(Table::new()))
            .as_table_mut()
            .with_context(|| format!("component {component}: `variables` is not a table"))?;
        for variable in [&url, &token, &CLUSTERS_VARIABLE.to_string()] {
            mapped.insert(variable, value(format!("{{{{ {variable} }}}}")));
        }
        let hosts = table
            .entry("allowed_outbound_hosts")
            .or_insert(value(Array::new()))
            .as_array_mut()
            .with_context(|| {
                format!("component {component}: `allowed_outbound_hosts` is not a list")
            })?;
        // Beside the other clusters' entries, so the list reads in order.
        let entry = format!("{{{{ {url} }}}}");
        let last_cluster = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.as_str().is_some_and(|h| h.contains("_api_url }}")))
            .map(|(i, _)| i)
            .last();
        hosts.insert(last_cluster.map_or(hosts.len(), |i| i + 1), entry);
    }
    std::fs::write(path, manifest.doc.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Declared Kubernetes cluster {name:?} in {} ({} components). Next:",
        path.display(),
        components.len()
    );
    println!(
        "  - set SPIN_VARIABLE_{} (https://HOST:PORT) and SPIN_VARIABLE_{} (a ServiceAccount token);",
        url.to_uppercase(),
        token.to_uppercase()
    );
    println!("  - trust the cluster's CA in the runtime config (hosts take no port in Spin):");
    println!("      [[client_tls]]");
    println!("      component_ids = {components:?}");
    println!("      hosts = [\"HOST\"]");
    println!("      ca_roots_file = \"{name}-ca.pem\"");
    println!(
        "  - name it in a plan's `backend.cluster` (see the README's \"Kubernetes clusters\")."
    );
    Ok(())
}

/// `spin-osb clusters remove NAME`: undoes `add`. Instances on the cluster stay in the
/// store, and every later operation of theirs fails naming the cluster: deprovision them
/// first.
pub fn remove(path: &Path, name: &str) -> Result<()> {
    if name == DEFAULT_CLUSTER {
        bail!("cluster \"default\" uses kubernetes_api_url and kubernetes_token, which the Kubernetes components need: leave it out of the variable {CLUSTERS_VARIABLE} instead");
    }
    let mut manifest = Manifest::read(path)?;
    let mut names = manifest.declared();
    if !names.iter().any(|n| n == name) {
        bail!("cluster {name:?} is not declared in {}", path.display());
    }
    names.retain(|n| n != name);
    let (url, token) = (api_url_variable(name), token_variable(name));
    let variables = manifest.variables()?;
    variables.remove(&url);
    variables.remove(&token);
    set_default(variables, CLUSTERS_VARIABLE, &names.join(","));
    for component in manifest.kubernetes_components() {
        let table = manifest.component(&component)?;
        if let Some(mapped) = table.get_mut("variables").and_then(Item::as_table_mut) {
            mapped.remove(&url);
            mapped.remove(&token);
        }
        if let Some(hosts) = table
            .get_mut("allowed_outbound_hosts")
            .and_then(Item::as_array_mut)
        {
            let entry = format!("{{{{ {url} }}}}");
            hosts.retain(|h| h.as_str().map(str::trim) != Some(entry.as_str()));
        }
    }
    std::fs::write(path, manifest.doc.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Removed Kubernetes cluster {name:?} from {}; also remove its [[client_tls]] entry from the runtime config.",
        path.display()
    );
    Ok(())
}

/// `spin-osb clusters list`: the declared clusters, and anything a component lacks to
/// reach one. Fails when something is missing.
pub fn list(path: &Path) -> Result<()> {
    let manifest = Manifest::read(path)?;
    let components = manifest.kubernetes_components();
    let mut problems = Vec::new();
    for name in manifest.declared() {
        let (url, token) = (api_url_variable(&name), token_variable(&name));
        println!("{name}\t{url}, {token}");
        for variable in [&url, &token] {
            if !manifest.app_variable(variable) {
                problems.push(format!("[variables] does not declare {variable}"));
            }
        }
        for component in &components {
            let Some(table) = manifest.component_ref(component) else {
                continue;
            };
            for variable in [&url, &token] {
                if table
                    .get("variables")
                    .and_then(|v| v.get(variable))
                    .is_none()
                {
                    problems.push(format!("component {component} does not map {variable}"));
                }
            }
            let entry = format!("{{{{ {url} }}}}");
            let listed = table
                .get("allowed_outbound_hosts")
                .and_then(Item::as_array)
                .is_some_and(|hosts| {
                    hosts
                        .iter()
                        .any(|h| h.as_str().map(str::trim) == Some(entry.as_str()))
                });
            if !listed {
                problems.push(format!(
                    "component {component}: allowed_outbound_hosts does not list {entry:?}"
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        eprintln!("  ! {problem}");
    }
    bail!(
        "{} problem(s) in {}; `spin-osb clusters add` makes every entry a cluster needs",
        problems.len(),
        path.display()
    )
}

/// A `spin.toml` being read or edited.
struct Manifest {
    doc: DocumentMut,
}

impl Manifest {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let doc = text
            .parse::<DocumentMut>()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        Ok(Self { doc })
    }

    /// The names in `kubernetes_clusters`'s default (`default` when it is not declared).
    fn declared(&self) -> Vec<String> {
        let list = self
            .doc
            .get("variables")
            .and_then(|v| v.get(CLUSTERS_VARIABLE))
            .and_then(|v| v.get("default"))
            .and_then(|d| d.as_str())
            .unwrap_or(DEFAULT_CLUSTER);
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn app_variable(&self, name: &str) -> bool {
        self.doc
            .get("variables")
            .and_then(|v| v.get(name))
            .is_some()
    }

    fn variables(&mut self) -> Result<&mut Table> {
        self.doc
            .entry("variables")
            .or_insert(Item::Table(Table::new()))
            .as_table_mut()
            .context("[variables] is not a table")
    }

    /// The components that map `kubernetes_api_url`: those that talk to Kubernetes.
    fn kubernetes_components(&self) -> Vec<String> {
        let Some(components) = self.doc.get("component").and_then(Item::as_table) else {
            return Vec::new();
        };
        components
            .iter()
            .filter(|(_, c)| {
                c.get("variables")
                    .and_then(|v| v.get(api_url_variable(DEFAULT_CLUSTER)))
                    .is_some()
            })
            .map(|(id, _)| id.to_string())
            .collect()
    }

    fn component_ref(&self, id: &str) -> Option<&Table> {
        self.doc.get("component")?.get(id)?.as_table()
    }

    fn component(&mut self, id: &str) -> Result<&mut Table> {
        self.doc["component"][id]
            .as_table_mut()
            .with_context(|| format!("[component.{id}] is not a table"))
    }
}

/// Sets `name = { default = "…" }` in `[variables]`, keeping its other keys.
fn set_default(variables: &mut Table, name: &str, default: &str) {
    match variables.get_mut(name).and_then(Item::as_inline_table_mut) {
        Some(table) => {
            table.insert("default", default.into());
        }
        None => {
            let mut table = InlineTable::new();
            table.insert("default", default.into());
            variables.insert(name, value(table));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"spin_manifest_version = 2

[variables]
# The default cluster.
kubernetes_api_url = { default = "https://kubernetes.default.svc" }
kubernetes_token = { default = "", secret = true }
kubernetes_clusters = { default = "default" }

[component.osb-provision]
allowed_outbound_hosts = ["{{ kubernetes_api_url }}", "{{ bosh_director_url }}"]
[component.osb-provision.variables]
kubernetes_api_url = "{{ kubernetes_api_url }}"
kubernetes_token = "{{ kubernetes_token }}"
kubernetes_clusters = "{{ kubernetes_clusters }}"

[component.osb-catalog]
source = "catalog.wasm"
"#;

    #[test]
    fn add_declares_the_variables_and_hosts_of_every_kubernetes_component_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        std::fs::write(&path, MANIFEST).unwrap();
        add(&path, "east").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# The default cluster."),
            "comments kept:\n{text}"
        );
        let doc: toml::Table = text.parse().unwrap();
        assert_eq!(
            doc["variables"]["kubernetes_clusters"]["default"].as_str(),
            Some("default,east")
        );
        assert_eq!(
            doc["variables"]["kubernetes_east_token"]["secret"].as_bool(),
            Some(true)
        );
        let provision = &doc["component"]["osb-provision"];
        let hosts: Vec<&str> = provision["allowed_outbound_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            [
                "{{ kubernetes_api_url }}",
                "{{ kubernetes_east_api_url }}",
                "{{ bosh_director_url }}"
            ]
        );
        assert_eq!(
            provision["variables"]["kubernetes_east_token"].as_str(),
            Some("{{ kubernetes_east_token }}")
        );
        assert!(doc["component"]["osb-catalog"].get("variables").is_none());
        list(&path).unwrap();
        assert!(add(&path, "east").is_err(), "declared twice");
        assert!(add(&path, "East-1").is_err(), "not a cluster name");

        remove(&path, "east").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("kubernetes_east"), "{text}");
        assert!(
            text.contains(r#"kubernetes_clusters = { default = "default" }"#),
            "{text}"
        );
        list(&path).unwrap();
        assert!(remove(&path, "east").is_err(), "not declared any more");
        assert!(remove(&path, "default").is_err(), "default stays");
    }

    #[test]
    fn list_names_what_a_hand_edit_missed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        let edited = MANIFEST.replace(
            r#"kubernetes_clusters = { default = "default" }"#,
            r#"kubernetes_clusters = { default = "default,west" }"#,
        );
        std::fs::write(&path, edited).unwrap();
        let error = list(&path).unwrap_err().to_string();
        assert!(error.starts_with("5 problem(s)"), "{error}");
    }
}
