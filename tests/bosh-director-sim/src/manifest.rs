//! The little of a deployment manifest the simulator understands: the
//! top-level `name` (validated the way `POST /deployments` does, A.3/A.4),
//! the instance groups that become instances, and the releases and
//! stemcells `GET /deployments` lists. Everything else in the manifest is
//! kept as text and ignored: no properties, networks, variables or links.

use serde_json::Value;

/// A validation failure answered synchronously with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestError {
    pub code: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceGroup {
    pub name: String,
    pub instances: u32,
    pub azs: Vec<String>,
    /// `lifecycle: errand`: runnable as an errand, no permanent VM.
    pub errand: bool,
    /// Names of the jobs (`jobs[].name`) colocated in the group.
    pub jobs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub name: String,
    pub groups: Vec<InstanceGroup>,
    pub releases: Vec<(String, String)>,
    pub stemcells: Vec<(String, String)>,
}

/// Validate and digest a manifest as `POST /deployments` does:
/// empty, unparsable or non-mapping → 440001; no `name` → 40001.
pub(crate) fn parse(text: &str) -> Result<Manifest, ManifestError> {
    if text.is_empty() {
        return Err(bad_manifest("Manifest should not be empty".to_string()));
    }
    // Psych (the director's YAML loader) reads `y`/`n` as strings; only
    // accept YAML 1.2 `true`/`false` spellings as booleans so that a
    // deployment called `y` keeps its name.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let doc: Value = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        bad_manifest(format!(
            "Incorrect YAML structure of the uploaded manifest: {e}"
        ))
    })?;
    let Value::Object(map) = &doc else {
        return Err(bad_manifest("Manifest should be a hash".to_string()));
    };
    let name = match map.get("name") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            return Err(ManifestError {
                code: 40001,
                message: "Deployment manifest must have a 'name' key".to_string(),
            })
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Ok(Manifest {
        name,
        groups: list(map.get("instance_groups"))
            .iter()
            .filter_map(instance_group)
            .collect(),
        releases: list(map.get("releases"))
            .iter()
            .map(|r| (text_field(r, &["name"]), text_field(r, &["version"])))
            .collect(),
        stemcells: list(map.get("stemcells"))
            .iter()
            .map(|s| (text_field(s, &["name", "os"]), text_field(s, &["version"])))
            .collect(),
    })
}

fn bad_manifest(message: String) -> ManifestError {
    ManifestError {
        code: 440001,
        message,
    }
}

fn list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// First present key of `keys`, rendered as text (`version: 1.2` is a number).
fn text_field(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| match v.get(*k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
        .unwrap_or_default()
}

fn instance_group(v: &Value) -> Option<InstanceGroup> {
    let name = v.get("name")?.as_str()?.to_string();
    let instances = v
        .get("instances")
        .and_then(Value::as_u64)
        .map_or(0, |n| n.min(u32::MAX as u64) as u32);
    let azs = list(v.get("azs"))
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let errand = v.get("lifecycle").and_then(Value::as_str) == Some("errand");
    let jobs = list(v.get("jobs"))
        .iter()
        .filter_map(|j| j.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    Some(InstanceGroup {
        name,
        instances,
        azs,
        errand,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_groups_releases_and_stemcells() {
        let m = parse(
            "name: d\nreleases:\n- {name: r, version: 1.2}\nstemcells:\n- {alias: default, os: ubuntu-jammy, version: latest}\n\
             instance_groups:\n- name: db\n  instances: 2\n  azs: [z1, z2]\n  jobs: [{name: pg}, {name: smoke}]\n\
             - name: tests\n  lifecycle: errand\n  instances: 1\n",
        )
        .unwrap();
        assert_eq!(m.name, "d");
        assert_eq!(m.releases, vec![("r".to_string(), "1.2".to_string())]);
        assert_eq!(
            m.stemcells,
            vec![("ubuntu-jammy".to_string(), "latest".to_string())]
        );
        assert_eq!(m.groups.len(), 2);
        assert_eq!(m.groups[0].instances, 2);
        assert_eq!(m.groups[0].jobs, vec!["pg", "smoke"]);
        assert!(!m.groups[0].errand);
        assert!(m.groups[1].errand);
    }

    #[test]
    fn rejects_what_the_director_rejects() {
        assert_eq!(parse("").unwrap_err().code, 440001);
        assert_eq!(parse("- a\n- b\n").unwrap_err().code, 440001);
        assert_eq!(parse("just text").unwrap_err().code, 440001);
        assert_eq!(parse("{unclosed: [").unwrap_err().code, 440001);
        assert_eq!(parse("releases: []\n").unwrap_err().code, 40001);
        assert_eq!(parse("name: ~\n").unwrap_err().code, 40001);
        assert_eq!(parse("name: y\n").unwrap().name, "y");
    }
}
