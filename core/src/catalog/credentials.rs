//! `backend: {type: credentials}`: bindings get credentials rendered from templates, with
//! generated secrets stable per instance; no external system is involved. With `async: true`
//! provision and bind answer `202` and stay "in progress" for `delay_seconds`, so the
//! platform's polling path is exercised for real.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::Problems;
use super::PlanView;
use crate::template::{self, Scope, TemplateContext, TemplateError};

/// Configuration of the credentials backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBackend {
    /// Whether provision and bind complete asynchronously (`202`, then `last_operation`).
    #[serde(default, rename = "async")]
    pub asynchronous: bool,
    /// With `async`, how long an operation stays "in progress".
    #[serde(default)]
    pub delay_seconds: u64,
    /// The binding's `credentials`: a map whose string leaves are templates (binding scope).
    #[serde(default)]
    pub credentials: Map<String, Value>,
    /// Template of the instance's `dashboard_url` (instance scope).
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

impl CredentialsBackend {
    /// Renders the binding credentials; `ctx` needs `binding_id`.
    pub fn render_credentials(&self, ctx: &TemplateContext) -> Result<Value, TemplateError> {
        template::render_value(&Value::Object(self.credentials.clone()), ctx)
    }

    pub(crate) fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
        if self.delay_seconds > 0 && !self.asynchronous {
            problems.push(
                format!("{path}.delay_seconds"),
                "has no effect unless `async: true`",
            );
        }
        if let Some(limit) = plan.plan().maximum_polling_duration {
            if self.asynchronous && self.delay_seconds >= limit {
                problems.push(
                    format!("{path}.delay_seconds"),
                    format!(
                        "{} seconds is not below maximum_polling_duration ({limit}): platforms would give up before the operation finishes",
                        self.delay_seconds
                    ),
                );
            }
        }
        if !plan.bindable() && !self.credentials.is_empty() {
            problems.push(
                format!("{path}.credentials"),
                "are never used: the plan is not bindable",
            );
        }
        check_leaves(
            &Value::Object(self.credentials.clone()),
            &mut format!("{path}.credentials"),
            Scope::Binding,
            problems,
        );
        if let Some(source) = &self.dashboard_url {
            if let Err(error) = template::check_template(source, Scope::Instance) {
                problems.push(
                    format!("{path}.dashboard_url"),
                    format!("invalid template: {error}"),
                );
            }
        }
    }
}

/// Checks every string leaf of a credentials map as a template of `scope`.
pub(super) fn check_leaves(
    value: &Value,
    path: &mut String,
    scope: Scope,
    problems: &mut Problems<'_>,
) {
    match value {
        Value::String(source) => {
            if let Err(error) = template::check_template(source, scope) {
                problems.push(path.clone(), format!("invalid template: {error}"));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                check_leaves(item, path, scope, problems);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            // Sorted, so that problems come in the same order whatever map type serde_json
            // was built with (`preserve_order` keeps document order).
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                check_leaves(item, path, scope, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
