//! `backend: {type: credentials}`: bindings get credentials rendered from templates, with
//! generated secrets stable per instance; no external system is involved. With `async: true`
//! provision and bind answer `202` and stay "in progress" for `delay_seconds`, so the
//! platform's polling path is exercised for real.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Credentials;
use crate::backend::{BackendConfig, Services};
use crate::catalog::{check_template_leaves, PlanView, Problems};
use crate::template::{self, Scope, TemplateContext, TemplateError};

/// Configuration of the credentials backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
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

impl CredentialsConfig {
    /// Renders the binding credentials; `ctx` needs `binding_id`.
    pub fn render_credentials(&self, ctx: &TemplateContext) -> Result<Value, TemplateError> {
        template::render_value(&Value::Object(self.credentials.clone()), ctx)
    }
}

impl BackendConfig for CredentialsConfig {
    type Backend<'a> = Credentials<'a>;

    fn backend<'a>(&'a self, _services: Services<'a>) -> Credentials<'a> {
        Credentials { config: self }
    }

    /// Nothing outside the record: steps need no lease.
    fn steps_are_local(&self) -> bool {
        true
    }

    fn dashboard_url(&self) -> Option<&str> {
        self.dashboard_url.as_deref()
    }

    fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
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
        check_template_leaves(
            &Value::Object(self.credentials.clone()),
            &mut format!("{path}.credentials"),
            Scope::BINDING,
            problems,
        );
        if let Some(source) = &self.dashboard_url {
            if let Err(error) = template::check_template(source, Scope::INSTANCE) {
                problems.push(
                    format!("{path}.dashboard_url"),
                    format!("invalid template: {error}"),
                );
            }
        }
    }
}
