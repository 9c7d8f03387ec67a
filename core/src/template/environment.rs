//! The MiniJinja environments (text, manifest, expression) with spin-osb's filters and
//! functions, built once per process.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;

use super::manifest::manifest_formatter;
use super::TemplateError;

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Block tags on their own line leave no blank line or indentation behind (what a YAML
    // manifest needs), and a template without tags renders to exactly itself.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // Errors name the undefined variable only with debug info on; they are rare and small.
    env.set_debug(true);
    // `namespace` is a context variable here (the Kubernetes namespace). Jinja's
    // `namespace()` helper would otherwise print as a function when the context has none.
    env.remove_global("namespace");
    env.add_filter("b64encode", |value: &str| {
        base64::engine::general_purpose::STANDARD.encode(value)
    });
    // Kubernetes Secret `data` is base64: credentials decode it.
    env.add_filter("b64decode", |value: &str| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|e| {
                minijinja::Error::new(ErrorKind::InvalidOperation, format!("not base64: {e}"))
            })?;
        String::from_utf8(bytes).map_err(|_| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "decoded value is not UTF-8 text",
            )
        })
    });
    env
}

pub(super) fn expression_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = base_env();
        // Status fields are absent until a controller sets them: `status.phase == 'Running'`
        // must be false, not an error, on a fresh object.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env
    })
}

/// Checks that `source` is a valid expression (a readiness rule), for catalog validation.
pub fn check_expression(source: &str) -> Result<(), TemplateError> {
    expression_env()
        .compile_expression(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Evaluates an expression over a live object: its top-level fields (`metadata`, `spec`,
/// `status`, …) are variables, `object` is the whole object, and `condition('Ready')` is
/// the entry of `status.conditions` of that type (`{}` when absent), so a rule reads
/// `condition('Ready').status == 'True'`.
pub fn eval_expression(source: &str, object: &Value) -> Result<minijinja::Value, TemplateError> {
    let expression = expression_env()
        .compile_expression(source)
        .map_err(|e| describe(&e))?;
    let mut vars: BTreeMap<String, minijinja::Value> = BTreeMap::new();
    if let Value::Object(map) = object {
        for (key, value) in map {
            vars.insert(
                key.clone(),
                minijinja::Value::from(minijinja::value::Serde(value)),
            );
        }
    }
    vars.insert(
        "object".into(),
        minijinja::Value::from(minijinja::value::Serde(object)),
    );
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    vars.insert(
        "condition".into(),
        minijinja::Value::from_function(move |kind: &str| {
            let found = conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            minijinja::Value::from(minijinja::value::Serde(&found))
        }),
    );
    expression
        .eval(minijinja::Value::from(vars))
        .map_err(|e| describe(&e))
}

pub(super) fn text_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(base_env)
}

pub(super) fn manifest_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = base_env();
        env.set_formatter(manifest_formatter);
        env
    })
}

/// One line from a MiniJinja error: its kind and detail, the line, and for an undefined value
/// which expression it came from.
pub(super) fn describe(error: &minijinja::Error) -> TemplateError {
    let mut message = match error.kind() {
        ErrorKind::UndefinedError => "undefined value".to_owned(),
        ErrorKind::SyntaxError => "syntax error".to_owned(),
        ErrorKind::UnknownFunction => "unknown function".to_owned(),
        ErrorKind::UnknownFilter => "unknown filter".to_owned(),
        ErrorKind::UnknownTest => "unknown test".to_owned(),
        _ => String::new(),
    };
    if let Some(detail) = error.detail() {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(detail);
    } else if message.is_empty() {
        message = error.to_string();
    }
    if let Some(line) = error.line() {
        message.push_str(&format!(" (line {line})"));
    }
    TemplateError::new(message)
}
