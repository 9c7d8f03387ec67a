//! The Kubernetes clusters a broker places instances on, and how a plan chooses one.
//!
//! Operators declare clusters with Spin variables (Spin variables are static: each one is
//! declared in `spin.toml`, which `spin-osb clusters add` edits):
//!
//! * `kubernetes_clusters`: the names, comma-separated (default `default`);
//! * cluster `default`: `kubernetes_api_url` and `kubernetes_token`;
//! * any other cluster `NAME`: `kubernetes_NAME_api_url` and `kubernetes_NAME_token`.
//!
//! A plan's `cluster:` is a cluster name, or a rule reading the provision request:
//!
//! ```yaml
//! cluster:
//!   from: context.clusterid       # or context.namespace, or parameters.<name>
//!   map: {"9f1c…": east}          # request value → cluster (absent: the value is the name)
//!   default: east                 # when the request carries no value, or one `map` lacks
//! ```
//!
//! The choice is made once, at provision, and kept in the instance record: every later
//! operation goes to that cluster, whatever the catalog says by then. Descriptions users
//! see name the cluster, never its URL or token.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::BackendError;
use crate::catalog::{PlanView, Problems};
use crate::outbound::Config;

/// The Spin variable listing the clusters' names.
pub const CLUSTERS_VARIABLE: &str = "kubernetes_clusters";
/// The cluster of plans that choose none, and of instances made before there were several.
pub const DEFAULT_CLUSTER: &str = "default";
/// Where cluster `default`'s API is when `kubernetes_api_url` is not set: the in-cluster
/// address, right for a broker running on SpinKube.
pub const DEFAULT_API_URL: &str = "https://kubernetes.default.svc";
/// Longest cluster name: variable names stay readable.
const MAX_NAME: usize = 30;

/// The Spin variable with cluster `name`'s API URL.
pub fn api_url_variable(name: &str) -> String {
    if name == DEFAULT_CLUSTER {
        "kubernetes_api_url".into()
    } else {
        format!("kubernetes_{name}_api_url")
    }
}

/// The Spin variable with cluster `name`'s bearer token (a ServiceAccount token).
pub fn token_variable(name: &str) -> String {
    if name == DEFAULT_CLUSTER {
        "kubernetes_token".into()
    } else {
        format!("kubernetes_{name}_token")
    }
}

/// Whether `name` can name a cluster: a lower-case letter, then lower-case letters and
/// digits (it becomes part of Spin variable names, which allow little else).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= MAX_NAME
}

/// The names of the clusters the broker declares, in the order given.
pub fn declared(config: &dyn Config) -> Vec<String> {
    let list = config
        .get(CLUSTERS_VARIABLE)
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// How to reach one declared cluster.
pub struct ClusterAccess {
    /// The cluster's name, for messages.
    pub name: String,
    /// Its API server.
    pub url: String,
    /// The broker's bearer token there.
    pub token: String,
}

impl fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The URL and token of cluster `name`, or why it cannot be used (naming the cluster and
/// the variable to set, never a value).
pub fn access(config: &dyn Config, name: &str) -> Result<ClusterAccess, BackendError> {
    let declared = declared(config);
    if !declared.iter().any(|n| n == name) {
        return Err(BackendError::Permanent(format!(
            "Kubernetes cluster {} is not one of this broker's clusters ({})",
            quoted(name),
            declared.join(", ")
        )));
    }
    let url = match config.get(&api_url_variable(name)) {
        Some(url) => url,
        None if name == DEFAULT_CLUSTER => DEFAULT_API_URL.to_string(),
        None => {
            return Err(BackendError::Permanent(format!(
                "Kubernetes cluster {} has no API URL: set the Spin variable {}",
                quoted(name),
                api_url_variable(name)
            )))
        }
    };
    let token = config.get(&token_variable(name)).ok_or_else(|| {
        BackendError::Permanent(format!(
            "the broker has no credentials for Kubernetes cluster {}: set the Spin variable {} (a ServiceAccount token)",
            quoted(name),
            token_variable(name)
        ))
    })?;
    Ok(ClusterAccess {
        name: name.to_string(),
        url,
        token,
    })
}

/// `'east'`: a name from a request, quoted and cut short for messages.
pub fn quoted(name: &str) -> String {
    let shown: String = name.chars().take(64).collect();
    let cut = if shown.len() < name.len() { "…" } else { "" };
    format!("'{}{cut}'", shown.escape_debug())
}

/// A plan's `cluster:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a cluster name, or a mapping with `from` (context.clusterid, context.namespace or parameters.<name>) and optional `map` and `default`"
)]
pub enum ClusterChoice {
    /// Every instance of the plan goes to this cluster.
    Fixed(String),
    /// The provision request says which.
    FromRequest(RequestRule),
}

/// `cluster: {from: …, map: …, default: …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRule {
    /// `context.clusterid`, `context.namespace` or `parameters.<name>`.
    pub from: String,
    /// Request value → cluster name; without it, the value is the cluster's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, String>,
    /// The cluster when the request carries no value, or a value `map` does not list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Where in the provision request a [`RequestRule`] reads.
enum Source<'a> {
    Context(&'a str),
    Parameter(&'a str),
}

impl RequestRule {
    fn source(&self) -> Option<Source<'_>> {
        match self.from.split_once('.')? {
            ("context", field @ ("clusterid" | "namespace")) => Some(Source::Context(field)),
            ("parameters", name) if !name.is_empty() => Some(Source::Parameter(name)),
            _ => None,
        }
    }
}

impl ClusterChoice {
    /// The cluster of a new instance provisioned with `context` and `parameters`, or why
    /// the request cannot have one (the broker answers 400 with it; nothing is stored).
    /// The cluster must also be declared: see [`access`].
    pub fn choose(
        choice: Option<&ClusterChoice>,
        context: &Value,
        parameters: &Map<String, Value>,
    ) -> Result<String, String> {
        let rule = match choice {
            None => return Ok(DEFAULT_CLUSTER.to_string()),
            Some(ClusterChoice::Fixed(name)) => return Ok(name.clone()),
            Some(ClusterChoice::FromRequest(rule)) => rule,
        };
        let value = match rule.source() {
            Some(Source::Context(field)) => context.get(field),
            Some(Source::Parameter(name)) => parameters.get(name),
            None => None,
        };
        let value = match value {
            None | Some(Value::Null) => {
                return rule.default.clone().ok_or_else(|| {
                    format!(
                        "this plan places instances on the Kubernetes cluster named by {}, which the request does not carry",
                        rule.from
                    )
                })
            }
            Some(Value::String(text)) => text.as_str(),
            Some(_) => return Err(format!("{} must be a string naming a cluster", rule.from)),
        };
        if rule.map.is_empty() {
            return Ok(value.to_string());
        }
        rule.map
            .get(value)
            .or(rule.default.as_ref())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no Kubernetes cluster of this broker serves {} {}",
                    rule.from,
                    quoted(value)
                )
            })
    }

    /// Catalog checks: names that can be clusters, a known `from`, and a parameter the
    /// plan's schema declares (so the platform validates it before the broker sees it).
    pub fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
        let check_name = |name: &str, at: String, problems: &mut Problems<'_>| {
            if !is_valid_name(name) {
                problems.push(
                    at,
                    format!(
                        "{name:?} is not a cluster name (a lower-case letter, then lower-case letters and digits, at most {MAX_NAME})"
                    ),
                );
            }
        };
        match self {
            ClusterChoice::Fixed(name) => check_name(name, path.to_string(), problems),
            ClusterChoice::FromRequest(rule) => {
                match rule.source() {
                    None => problems.push(
                        format!("{path}.from"),
                        format!(
                            "{:?} is not context.clusterid, context.namespace or parameters.<name>",
                            rule.from
                        ),
                    ),
                    Some(Source::Parameter(name)) if !plan.declares_parameter(name) => problems
                        .push(
                            format!("{path}.from"),
                            format!(
                                "the plan's provision schema (schemas.service_instance.create.parameters) declares no property {name:?}: declare it, with the clusters as its enum, so platforms validate it"
                            ),
                        ),
                    Some(_) => {}
                }
                for (value, name) in &rule.map {
                    check_name(name, format!("{path}.map.{value}"), problems);
                }
                if let Some(name) = &rule.default {
                    check_name(name, format!("{path}.default"), problems);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::MapConfig;
    use serde_json::json;

    fn choose(choice: &str, context: Value, parameters: Value) -> Result<String, String> {
        let choice: ClusterChoice = serde_json::from_str(choice).unwrap();
        let Value::Object(parameters) = parameters else {
            panic!()
        };
        ClusterChoice::choose(Some(&choice), &context, &parameters)
    }

    #[test]
    fn a_plan_without_a_choice_uses_the_default_cluster() {
        let chosen = ClusterChoice::choose(None, &Value::Null, &Map::new());
        assert_eq!(chosen.as_deref(), Ok("default"));
    }

    #[test]
    fn fixed_context_parameter_and_mapped_choices() {
        assert_eq!(choose(r#""east""#, json!({}), json!({})).unwrap(), "east");
        let by_id = r#"{"from": "context.clusterid", "map": {"uid-1": "east"}, "default": "west"}"#;
        assert_eq!(
            choose(by_id, json!({"clusterid": "uid-1"}), json!({})).unwrap(),
            "east"
        );
        assert_eq!(choose(by_id, json!({}), json!({})).unwrap(), "west");
        assert_eq!(
            choose(by_id, json!({"clusterid": "uid-9"}), json!({})).unwrap(),
            "west"
        );
        let by_id = r#"{"from": "context.clusterid", "map": {"uid-1": "east"}}"#;
        let unknown = choose(by_id, json!({"clusterid": "uid-9"}), json!({})).unwrap_err();
        assert_eq!(
            unknown,
            "no Kubernetes cluster of this broker serves context.clusterid 'uid-9'"
        );
        let by_parameter = r#"{"from": "parameters.region"}"#;
        assert_eq!(
            choose(by_parameter, json!({}), json!({"region": "west"})).unwrap(),
            "west"
        );
        assert!(choose(by_parameter, json!({}), json!({}))
            .unwrap_err()
            .contains("parameters.region, which the request does not carry"));
        assert!(choose(by_parameter, json!({}), json!({"region": 3}))
            .unwrap_err()
            .contains("must be a string"));
        let by_namespace = r#"{"from": "context.namespace", "map": {"team-a": "east"}}"#;
        assert_eq!(
            choose(by_namespace, json!({"namespace": "team-a"}), json!({})).unwrap(),
            "east"
        );
    }

    #[test]
    fn access_names_the_cluster_and_the_variable_never_a_value() {
        let config = MapConfig::default()
            .with("kubernetes_clusters", "default, east")
            .with("kubernetes_token", "secret-default")
            .with("kubernetes_east_api_url", "https://east.example:6443");
        assert_eq!(declared(&config), ["default", "east"]);
        let default = access(&config, "default").unwrap();
        assert_eq!(default.url, DEFAULT_API_URL);
        assert_eq!(default.token, "secret-default");
        let east = access(&config, "east").unwrap_err().to_string();
        assert_eq!(
            east,
            "the broker has no credentials for Kubernetes cluster 'east': set the Spin variable kubernetes_east_token (a ServiceAccount token)"
        );
        let unknown = access(&config, "west").unwrap_err().to_string();
        assert_eq!(
            unknown,
            "Kubernetes cluster 'west' is not one of this broker's clusters (default, east)"
        );
        assert!(!format!("{:?}", access(&config, "default").unwrap()).contains("secret"));
    }

    #[test]
    fn cluster_names_fit_in_variable_names() {
        for good in ["default", "east", "eu1"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "East", "1eu", "eu-1", "eu_1", &"a".repeat(31)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
