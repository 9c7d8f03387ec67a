//! `backend: {type: kubernetes}`: each instance is a set of Kubernetes objects rendered from
//! the plan's manifest template and applied through the API with server-side apply.
//!
//! ```yaml
//! backend:
//!   type: kubernetes
//!   cluster: east                      # optional: a declared cluster, or a rule reading the
//!                                      # request (see `clusters`); `default` when absent
//!   namespace:
//!     name: "osb-{{ instance_id }}"   # template (instance scope)
//!     create: true                     # the broker creates it, and deletes it on deprovision
//!   manifests: |                       # multi-document YAML template (instance scope);
//!     apiVersion: v1                   # `namespace` is the namespace above
//!     kind: Secret
//!     ...
//!   readiness:                         # for kinds without a built-in rule (custom resources)
//!     - apiVersion: example.com/v1
//!       kind: Cache
//!       ready: "status.phase == 'Running'"            # expressions over the live object
//!       failed: "condition('Failed').status == 'True'"
//!       message: "status.message"
//!   binding:
//!     sources:                         # live objects the credentials read
//!       secret: {apiVersion: v1, kind: Secret, name: "redis-{{ instance_id[:8] }}"}
//!     credentials:                     # string leaves are templates (binding scope + sources)
//!       password: "{{ sources.secret.data.password | b64decode }}"
//!     manifests: |                     # optional per-binding objects, deleted at unbind
//!       ...
//!   dashboard_url: "https://…/{{ instance_id }}"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::clusters::{ClusterChoice, CLUSTERS_VARIABLE};
use super::Kubernetes;
use crate::backend::{BackendConfig, Services};
use crate::catalog::{check_template_leaves, PlanView, Problems};
use crate::template::{self, Scope, TemplateError};

/// Binding templates also see the live objects named by `binding.sources`.
const BINDING_SCOPE: Scope = Scope::BINDING.with(&["sources"]);

/// Configuration of the Kubernetes backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Which cluster a new instance goes to; the cluster named `default` when absent.
    /// Chosen once, at provision, and kept by the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterChoice>,
    /// Where the instance's namespaced objects go.
    pub namespace: NamespaceConfig,
    /// The instance's objects: a multi-document YAML template.
    pub manifests: String,
    /// Readiness rules for kinds the broker has no built-in rule for.
    #[serde(default)]
    pub readiness: Vec<ReadinessRule>,
    /// How bindings are made.
    #[serde(default)]
    pub binding: KubernetesBinding,
    /// Template of the instance's `dashboard_url` (instance scope).
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

/// The instance's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Template of the name: `osb-{{ instance_id }}` (one per instance), a fixed name, or
    /// `{{ context.namespace }}` (the namespace of the Kubernetes platform's request).
    pub name: String,
    /// Whether the namespace belongs to the instance: created first, labelled, and deleted
    /// (with everything in it) on deprovision.
    #[serde(default)]
    pub create: bool,
}

/// When an object of a given kind is ready or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessRule {
    /// `group/version` (or `v1`) of the kind.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Expression, true once the object is ready.
    pub ready: String,
    /// Expression, true when the object has failed for good.
    #[serde(default)]
    pub failed: Option<String>,
    /// Expression giving a message for progress and failure descriptions.
    #[serde(default)]
    pub message: Option<String>,
}

/// The `binding:` part of a Kubernetes plan.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesBinding {
    /// Live objects read at bind time, by the alias credentials use (`sources.<alias>`).
    #[serde(default)]
    pub sources: BTreeMap<String, SourceRef>,
    /// The binding's `credentials`: string leaves are templates.
    #[serde(default)]
    pub credentials: Map<String, Value>,
    /// Per-binding objects (a user Secret, a user-creating Job), deleted at unbind. Makes
    /// bind and unbind asynchronous: the broker waits until they are ready or gone.
    #[serde(default)]
    pub manifests: Option<String>,
}

/// An object a binding reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    /// `group/version` (or `v1`).
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Template of the name (binding scope).
    pub name: String,
    /// Template of the namespace; the instance's namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl KubernetesConfig {
    /// The rule for `api_version`/`kind`, if the plan declares one.
    pub fn rule_for(&self, api_version: &str, kind: &str) -> Option<&ReadinessRule> {
        self.readiness
            .iter()
            .find(|r| r.api_version == api_version && r.kind == kind)
    }

    /// Template warnings: parameters in a container's `command` or `args`.
    fn command_warnings(&self) -> Vec<String> {
        let manifests = [
            ("manifests", Some(&self.manifests)),
            ("binding.manifests", self.binding.manifests.as_ref()),
        ];
        let mut warnings = Vec::new();
        for (field, source) in manifests {
            let Some(source) = source else { continue };
            for line in parameters_in_commands(source) {
                warnings.push(format!(
                    "backend.{field} line {line} puts a parameter into a container's command or args; pass it as an environment variable instead (`$(NAME)` in args), so no parameter can become an option or shell code"
                ));
            }
        }
        warnings
    }
}

impl BackendConfig for KubernetesConfig {
    /// Cluster `default`'s; other clusters have variables of their own, named after them
    /// (see [`super::clusters`]), which `spin-osb clusters add` declares.
    const VARIABLES: &'static [&'static str] =
        &["kubernetes_api_url", "kubernetes_token", CLUSTERS_VARIABLE];
    const OUTBOUND_HOSTS: &'static [&'static str] = &["{{ kubernetes_api_url }}"];
    type Backend<'a> = Kubernetes<'a>;

    fn backend<'a>(&'a self, services: Services<'a>) -> Kubernetes<'a> {
        Kubernetes::new(self, services)
    }

    fn dashboard_url(&self) -> Option<&str> {
        self.dashboard_url.as_deref()
    }

    /// Rollouts must end: an hour unless the plan says otherwise.
    fn default_deadline_seconds(&self) -> Option<u64> {
        Some(3_600)
    }

    fn warnings(&self) -> Vec<String> {
        self.command_warnings()
    }

    fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
        if let Some(choice) = &self.cluster {
            choice.validate(plan, &format!("{path}.cluster"), problems);
        }
        let mut check = |field: String, result: Result<(), TemplateError>| {
            if let Err(error) = result {
                problems.push(field, format!("invalid template: {error}"));
            }
        };
        check(
            format!("{path}.namespace.name"),
            template::check_template(&self.namespace.name, Scope::INSTANCE),
        );
        check(
            format!("{path}.manifests"),
            template::check_manifest(&self.manifests, Scope::INSTANCE),
        );
        if let Some(source) = &self.dashboard_url {
            check(
                format!("{path}.dashboard_url"),
                template::check_template(source, Scope::INSTANCE),
            );
        }
        for (alias, source) in &self.binding.sources {
            let at = format!("{path}.binding.sources.{alias}");
            check(
                format!("{at}.name"),
                template::check_template(&source.name, Scope::BINDING),
            );
            if let Some(namespace) = &source.namespace {
                check(
                    format!("{at}.namespace"),
                    template::check_template(namespace, Scope::BINDING),
                );
            }
        }
        if let Some(manifests) = &self.binding.manifests {
            check(
                format!("{path}.binding.manifests"),
                template::check_manifest(manifests, Scope::BINDING),
            );
        }
        for (index, rule) in self.readiness.iter().enumerate() {
            let at = format!("{path}.readiness[{index}]");
            let expressions = [
                ("ready", Some(&rule.ready)),
                ("failed", rule.failed.as_ref()),
            ];
            let expressions = expressions
                .into_iter()
                .chain([("message", rule.message.as_ref())]);
            for (field, source) in expressions {
                if let Some(Err(error)) = source.map(|s| template::check_expression(s)) {
                    problems.push(
                        format!("{at}.{field}"),
                        format!("invalid expression: {error}"),
                    );
                }
            }
            if rule.api_version.is_empty() || rule.kind.is_empty() {
                problems.push(at, "needs `apiVersion` and `kind`");
            }
        }
        for (alias, source) in &self.binding.sources {
            let identifier = alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && alias.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if !identifier {
                problems.push(
                    format!("{path}.binding.sources.{alias}"),
                    "the alias must be an identifier (letters, digits, `_`) so templates can write `sources.<alias>`",
                );
            }
            if source.api_version.is_empty() || source.kind.is_empty() {
                problems.push(
                    format!("{path}.binding.sources.{alias}"),
                    "needs `apiVersion` and `kind`",
                );
            }
        }
        check_template_leaves(
            &Value::Object(self.binding.credentials.clone()),
            &mut format!("{path}.binding.credentials"),
            BINDING_SCOPE,
            problems,
        );
        let binding_used = !self.binding.credentials.is_empty()
            || !self.binding.sources.is_empty()
            || self.binding.manifests.is_some();
        if binding_used && !plan.bindable() {
            problems.push(
                format!("{path}.binding"),
                "is never used: the plan is not bindable",
            );
        }
        if self.binding.manifests.is_some() && !plan.bindings_retrievable() {
            problems.push(
                format!("{path}.binding.manifests"),
                "make bindings asynchronous, which OSB allows only when the service has `bindings_retrievable: true`",
            );
        }
    }
}

/// Lines (1-based) of a manifest template where a container's `command` or `args` uses
/// `parameters`: a parameter there can become a command-line option, or shell code under
/// `sh -c`, unless its schema is strict. `catalog check` warns about each; the safe way is
/// an environment variable (`$(NAME)` in `args` is expanded by Kubernetes, not a shell).
pub fn parameters_in_commands(source: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    // The indentation of the `command:`/`args:` key whose value is being read.
    let mut block: Option<usize> = None;
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(key_indent) = block {
            let inside = trimmed.is_empty()
                || indent > key_indent
                || (indent == key_indent && trimmed.starts_with('-') && !starts_key(trimmed));
            if !inside {
                block = None;
            }
        }
        let key = trimmed.trim_start_matches("- ");
        if key.starts_with("command:") || key.starts_with("args:") {
            block = Some(indent + (trimmed.len() - key.len()));
        }
        if block.is_some() && uses_parameters(line) {
            lines.push(index + 1);
        }
    }
    lines
}

/// `- name: …`: a list item that is a mapping, i.e. a sibling container, not an argument.
fn starts_key(trimmed: &str) -> bool {
    let item = trimmed.trim_start_matches('-').trim_start();
    item.split_once(':').is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Whether an expression (`{{ … }}`) on `line` mentions `parameters`.
fn uses_parameters(line: &str) -> bool {
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or(after.len());
        if after[..end].contains("parameters") {
            return true;
        }
        rest = &after[end..];
    }
    false
}

#[cfg(test)]
mod command_tests {
    use super::parameters_in_commands;

    #[test]
    fn parameters_in_command_and_args_are_found_and_environment_variables_are_not() {
        let source = r#"
spec:
  containers:
    - name: a
      command: [sh, -c]
      args:
        - |
          exec redis-server --policy "{{ parameters.policy }}"
      env:
        - name: POLICY
          value: "{{ parameters.policy }}"
    - name: b
      args: ["--x", "{{ parameters.x | default('1') }}"]
    - name: c
      command:
      - run
      - "{{ instance_id }}"
      - "{{ instance_parameters.size }}"
      image: "{{ parameters.image }}"
"#;
        assert_eq!(parameters_in_commands(source), vec![8, 13, 18]);
    }
}
