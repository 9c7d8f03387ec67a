//! The one template engine of spin-osb (MiniJinja), used wherever the catalog turns a
//! request into data: binding credentials, dashboard URLs, and later the manifests of the
//! Kubernetes and BOSH backends.
//!
//! # Values are data, never structure
//!
//! Parameters come from platform users; a value like `"x\n  evil: true"` must not add a key
//! to anything. The engine therefore never lets an interpolated value be re-parsed:
//!
//! * [`render_str`] / [`render_value`] (leaf mode) render each template string on its own and
//!   put the result into a JSON string. Whatever the text, it stays one string.
//! * [`render_yaml_documents`] (manifest mode) renders a whole multi-document YAML template,
//!   but every `{{ … }}` that yields a string, list or map is written as an opaque placeholder
//!   token. The YAML is parsed with only the template's own text in it, and each placeholder
//!   is then replaced, inside the parsed tree, by its value: a placeholder that is a whole
//!   scalar becomes the value itself (a string stays a string, a map stays a map); inside a
//!   longer string (`name: redis-{{ instance_id }}`) it is spliced in as text. Numbers and
//!   booleans are written as YAML literals (`replicas: {{ n }}` is an integer, `"{{ n }}"` a
//!   string), which is safe because their text cannot contain YAML syntax.
//!
//! # What a template sees
//!
//! | name | value |
//! | --- | --- |
//! | `instance_id` | the service instance id |
//! | `binding_id` | the binding id (binding templates only) |
//! | `service`, `plan` | `{id, name}` of the catalog entries |
//! | `parameters` | the request's `parameters` object (`{}` when absent) |
//! | `instance_parameters` | binding templates only: the parameters the instance was provisioned (or last updated) with, `{}` when unknown |
//! | `context` | the OSB `context` object (`{}` when absent) |
//! | `organization_guid`, `space_guid`, `namespace` | copied from `context` when it has them |
//! | `secret(name, length=32)` | an alphanumeric secret, the same on every render for the same instance seed and name |
//! | `uuid(name)` | a UUID, likewise stable per seed and name |
//!
//! Filters are MiniJinja's built-ins (`default`, `lower`, `tojson`, `urlencode`, …) plus
//! `b64encode`. Block tags alone on a line (`{% if %}`) leave no blank line or indentation
//! behind, and a trailing newline is kept, so YAML stays aligned. Undefined variables are
//! errors (`parameters.x | default('y')` and `parameters.x is defined` still work), and there
//! is no loader: a template cannot include a file.
//!
//! ```
//! use spin_osb_core::template::{render_value, SecretSeed, TemplateContext};
//! use serde_json::json;
//!
//! let ctx = TemplateContext::new("inst-1", SecretSeed::new(b"per-instance random seed"))
//!     .with_binding("bind-1234567890")
//!     .with_parameters(json!({ "host": "db\n  evil: true" }));
//! let credentials = render_value(
//!     &json!({ "user": "u-{{ binding_id[:8] }}", "uri": "redis://{{ parameters.host }}:6379" }),
//!     &ctx,
//! )
//! .unwrap();
//! assert_eq!(credentials["user"], "u-bind-123");
//! assert_eq!(credentials["uri"], "redis://db\n  evil: true:6379");
//! ```

mod context;
mod environment;
mod manifest;
mod secrets;

pub use context::{SecretSeed, TemplateContext};
pub use environment::{check_expression, eval_expression};
pub use manifest::render_yaml_documents;

use std::collections::BTreeSet;

use minijinja::Environment;
use serde_json::Value;

use environment::{describe, manifest_env, text_env};
use manifest::refuse_marks;

/// Default length of `secret(name)`: 32 alphanumerics are about 190 bits.
pub const DEFAULT_SECRET_LENGTH: usize = 32;
/// Shortest `secret(name, length)` accepted; shorter ones are too easy to guess.
pub const MIN_SECRET_LENGTH: usize = 16;
/// Longest `secret(name, length)` accepted, to bound the work of one call.
pub const MAX_SECRET_LENGTH: usize = 256;

/// Why a template could not be checked or rendered. The message is written for the catalog
/// author (it names the variable, the line, or the YAML problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    message: String,
}

impl TemplateError {
    fn new(message: impl Into<String>) -> Self {
        TemplateError {
            message: message.into(),
        }
    }

    /// The message, also what `Display` prints.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Which variables a template may use, so that the catalog can refuse at load time a
/// template that would fail on every request (a dashboard URL cannot use `binding_id`).
/// Backends add their own variables with [`Scope::with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    binding: bool,
    extra: &'static [&'static str],
}

impl Scope {
    /// Rendered for a service instance (provision, update, dashboard URL).
    pub const INSTANCE: Scope = Scope {
        binding: false,
        extra: &[],
    };
    /// Rendered for a service binding: everything of [`Scope::INSTANCE`] plus `binding_id`
    /// and `instance_parameters`.
    pub const BINDING: Scope = Scope {
        binding: true,
        extra: &[],
    };

    /// This scope plus the variables a backend puts into its templates' context.
    pub const fn with(self, extra: &'static [&'static str]) -> Scope {
        Scope { extra, ..self }
    }

    fn variables(self) -> Vec<&'static str> {
        /// What every template sees.
        const INSTANCE: &[&str] = &[
            "instance_id",
            "service",
            "plan",
            "parameters",
            "context",
            "organization_guid",
            "space_guid",
            "namespace",
            "secret",
            "uuid",
        ];
        const BINDING: &[&str] = &["binding_id", "instance_parameters"];
        let binding: &[&str] = if self.binding { BINDING } else { &[] };
        INSTANCE
            .iter()
            .chain(binding)
            .chain(self.extra)
            .copied()
            .collect()
    }
}

/// Checks that `source` parses and uses only variables of `scope`, for catalog validation.
pub fn check_template(source: &str, scope: Scope) -> Result<(), TemplateError> {
    check_with(text_env(), source, scope)
}

/// Like [`check_template`], for a template rendered with [`render_yaml_documents`].
pub fn check_manifest(source: &str, scope: Scope) -> Result<(), TemplateError> {
    refuse_marks(source)?;
    check_with(manifest_env(), source, scope)
}

fn check_with(env: &Environment<'static>, source: &str, scope: Scope) -> Result<(), TemplateError> {
    let template = env.template_from_str(source).map_err(|e| describe(&e))?;
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| {
            !scope.variables().contains(&name.as_str()) && !globals.contains(name.as_str())
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let names = unknown
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = if unknown.iter().any(|n| n == "binding_id") {
        " (`binding_id` exists only in binding templates)".to_owned()
    } else {
        format!(" (available: {})", scope.variables().join(", "))
    };
    Err(TemplateError::new(format!(
        "unknown variable{} {names}{hint}",
        if unknown.len() > 1 { "s" } else { "" }
    )))
}

/// Renders one template string to text. Used for single values (a dashboard URL); the text
/// is only ever used as a string, so no value in it can become structure.
pub fn render_str(source: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    if !has_template_syntax(source) {
        return Ok(source.to_owned());
    }
    text_env()
        .render_str(source, ctx.to_value())
        .map_err(|e| describe(&e))
}

/// Renders every string leaf of `template` (maps and lists of template strings, e.g. a
/// plan's `credentials`) separately; other leaves (numbers, booleans, null) and all keys are
/// kept as written. An error names the leaf, e.g. `password: unknown function …`.
pub fn render_value(template: &Value, ctx: &TemplateContext) -> Result<Value, TemplateError> {
    let vars = ctx.to_value();
    render_leaves(template, &vars, &mut String::new())
}

fn render_leaves(
    template: &Value,
    vars: &minijinja::Value,
    path: &mut String,
) -> Result<Value, TemplateError> {
    match template {
        // Text without template syntax renders to itself (`keep_trailing_newline` is on):
        // skipping the engine for it saves a parse per leaf on every request.
        Value::String(source) if !has_template_syntax(source) => Ok(template.clone()),
        Value::String(source) => text_env()
            .render_str(source, vars.clone())
            .map(Value::String)
            .map_err(|e| {
                let at = if path.is_empty() {
                    "value"
                } else {
                    path.as_str()
                };
                TemplateError::new(format!("{at}: {}", describe(&e).message))
            }),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                out.push(render_leaves(item, vars, path)?);
                path.truncate(len);
            }
            Ok(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                out.insert(key.clone(), render_leaves(item, vars, path)?);
                path.truncate(len);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Whether `source` has anything the template engine would act on.
fn has_template_syntax(source: &str) -> bool {
    ["{{", "{%", "{#"].iter().any(|open| source.contains(open))
}

#[cfg(test)]
mod tests;
