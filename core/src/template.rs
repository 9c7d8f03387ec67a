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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior};
use serde_json::Value;
use sha2::Sha256;

/// Default length of `secret(name)`: 32 alphanumerics are about 190 bits.
pub const DEFAULT_SECRET_LENGTH: usize = 32;
/// Shortest `secret(name, length)` accepted; shorter ones are too easy to guess.
pub const MIN_SECRET_LENGTH: usize = 16;
/// Longest `secret(name, length)` accepted, to bound the work of one call.
pub const MAX_SECRET_LENGTH: usize = 256;

/// Start and end of a manifest placeholder: private-use characters, valid inside any YAML
/// scalar, never produced by YAML syntax, and refused in template sources.
const MARK_START: char = '\u{E000}';
const MARK_END: char = '\u{E001}';

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

/// The per-instance key from which `secret()` and `uuid()` derive their values.
///
/// The broker generates it (random, 32 bytes or more) when the instance is provisioned and
/// stores it with the instance; every later render with the same seed yields the same
/// secrets, so bindings and retries agree without storing each secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSeed(Arc<[u8]>);

impl SecretSeed {
    /// Wraps the seed bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        SecretSeed(Arc::from(bytes.as_ref()))
    }
}

impl fmt::Debug for SecretSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSeed(<redacted>)")
    }
}

/// Everything a render can see (see the module documentation for the names).
#[derive(Debug, Clone)]
pub struct TemplateContext {
    instance_id: String,
    binding_id: Option<String>,
    instance_parameters: Value,
    service: Option<(String, String)>,
    plan: Option<(String, String)>,
    parameters: Value,
    context: Value,
    seed: SecretSeed,
    overrides: BTreeMap<String, Value>,
}

impl TemplateContext {
    /// A context for `instance_id` whose secrets derive from `seed`; the catalog's
    /// `PlanView::template_context` also fills in `service` and `plan`.
    pub fn new(instance_id: impl Into<String>, seed: SecretSeed) -> Self {
        TemplateContext {
            instance_id: instance_id.into(),
            binding_id: None,
            instance_parameters: Value::Object(Default::default()),
            service: None,
            plan: None,
            parameters: Value::Object(Default::default()),
            context: Value::Object(Default::default()),
            seed,
            overrides: BTreeMap::new(),
        }
    }

    /// Sets a variable that a backend provides, replacing any of the same name: the
    /// Kubernetes backend sets `namespace` to the instance's target namespace and, for
    /// binding credentials, `sources` to the live objects it read.
    pub fn with_var(mut self, name: &str, value: Value) -> Self {
        self.overrides.insert(name.to_string(), value);
        self
    }

    /// Makes `binding_id` available, for binding templates.
    pub fn with_binding(mut self, binding_id: impl Into<String>) -> Self {
        self.binding_id = Some(binding_id.into());
        self
    }

    /// Sets `instance_parameters` (seen by binding templates): the instance's own parameters,
    /// so that credentials can depend on how the instance was provisioned.
    pub fn with_instance_parameters(mut self, parameters: Value) -> Self {
        self.instance_parameters = null_to_object(parameters);
        self
    }

    /// Sets `service` to `{id, name}`.
    pub fn with_service(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.service = Some((id.into(), name.into()));
        self
    }

    /// Sets `plan` to `{id, name}`.
    pub fn with_plan(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.plan = Some((id.into(), name.into()));
        self
    }

    /// Sets `parameters`; `null` (no parameters in the request) becomes `{}` so that
    /// `parameters.x | default(…)` works either way.
    pub fn with_parameters(mut self, parameters: Value) -> Self {
        self.parameters = null_to_object(parameters);
        self
    }

    /// Sets `context` (the OSB context object) and the helper variables taken from it.
    pub fn with_context(mut self, context: Value) -> Self {
        self.context = null_to_object(context);
        self
    }

    fn to_value(&self) -> minijinja::Value {
        let mut vars: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
        vars.insert("instance_id", self.instance_id.as_str().into());
        if let Some(binding_id) = &self.binding_id {
            vars.insert("binding_id", binding_id.as_str().into());
            vars.insert(
                "instance_parameters",
                minijinja::Value::from(minijinja::value::Serde(&self.instance_parameters)),
            );
        }
        for (key, named) in [("service", &self.service), ("plan", &self.plan)] {
            if let Some((id, name)) = named {
                vars.insert(key, minijinja::context! { id => id, name => name });
            }
        }
        vars.insert(
            "parameters",
            minijinja::Value::from(minijinja::value::Serde(&self.parameters)),
        );
        vars.insert(
            "context",
            minijinja::Value::from(minijinja::value::Serde(&self.context)),
        );
        for key in ["organization_guid", "space_guid", "namespace"] {
            if let Some(Value::String(value)) = self.context.get(key) {
                vars.insert(key, value.as_str().into());
            }
        }
        for (name, value) in &self.overrides {
            vars.insert(
                name.as_str(),
                minijinja::Value::from(minijinja::value::Serde(value)),
            );
        }
        let seed = self.seed.clone();
        vars.insert(
            "secret",
            minijinja::Value::from_function(move |name: &str, length: Option<usize>| {
                derive_secret(&seed, name, length.unwrap_or(DEFAULT_SECRET_LENGTH))
            }),
        );
        let seed = self.seed.clone();
        vars.insert(
            "uuid",
            minijinja::Value::from_function(move |name: &str| derive_uuid(&seed, name)),
        );
        minijinja::Value::from_pairs(vars)
    }
}

fn null_to_object(value: Value) -> Value {
    if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
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

/// Renders a multi-document YAML template (a manifest) into its documents, with every
/// interpolated value inserted as data (see the module documentation). Documents that render
/// empty (e.g. wrapped in a false `{% if %}`) are dropped.
pub fn render_yaml_documents(
    source: &str,
    ctx: &TemplateContext,
) -> Result<Vec<Value>, TemplateError> {
    refuse_marks(source)?;
    let template = manifest_env()
        .template_from_str(source)
        .map_err(|e| describe(&e))?;
    let captured = template
        .render_captured(ctx.to_value())
        .map_err(|e| describe(&e))?;
    let values: Vec<minijinja::Value> = captured
        .state()
        .get_extension::<Placeholders>()
        .map(|p| p.0.clone())
        .unwrap_or_default();
    let text = captured.into_output();
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options)
        .map_err(|e| TemplateError::new(format!("rendered manifest is not valid YAML: {e}")))?;
    let splicer = Splicer { values: &values };
    documents
        .into_iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| splicer.value(doc))
        .collect()
}

fn refuse_marks(source: &str) -> Result<(), TemplateError> {
    if source.contains([MARK_START, MARK_END]) {
        return Err(TemplateError::new(
            "template contains the reserved characters U+E000/U+E001",
        ));
    }
    Ok(())
}

/// The values written as placeholders during one manifest render, in order.
#[derive(Default)]
struct Placeholders(Vec<minijinja::Value>);

/// Formatter of the manifest mode: literals for numbers, booleans and none; a placeholder
/// for anything that could carry YAML syntax.
fn manifest_formatter(
    out: &mut Output,
    state: &mut State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let literal = match value.kind() {
        ValueKind::Undefined => {
            return Err(minijinja::Error::new(
                ErrorKind::UndefinedError,
                "undefined value in output",
            ))
        }
        ValueKind::None => Some("null".to_owned()),
        ValueKind::Bool => Some(value.is_true().to_string()),
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(number) if !number.is_finite() => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "cannot write a non-finite number into a manifest",
                ))
            }
            _ => Some(value.to_string()),
        },
        _ => None,
    };
    let text = match literal {
        Some(text) => text,
        None => {
            let placeholders = state.get_or_insert_extension(Placeholders::default());
            placeholders.0.push(value.clone());
            format!("{MARK_START}{}{MARK_END}", placeholders.0.len() - 1)
        }
    };
    out.write_str(&text)
        .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// Replaces placeholders in a parsed manifest by their values.
struct Splicer<'a> {
    values: &'a [minijinja::Value],
}

enum Piece<'s> {
    Text(&'s str),
    Value(usize),
}

impl Splicer<'_> {
    fn value(&self, value: Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(s) => self.string(&s)?,
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| self.value(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, item) in map {
                    let key = self.text(&key)?;
                    if out.contains_key(&key) {
                        return Err(TemplateError::new(format!(
                            "rendered manifest has the key `{key}` twice in one mapping"
                        )));
                    }
                    out.insert(key, self.value(item)?);
                }
                Value::Object(out)
            }
            other => other,
        })
    }

    /// A whole-scalar placeholder becomes the value with its type; otherwise text.
    fn string(&self, s: &str) -> Result<Value, TemplateError> {
        let pieces = self.pieces(s);
        if let [Piece::Value(index)] = pieces.as_slice() {
            return serde_json::to_value(&self.values[*index]).map_err(|e| {
                TemplateError::new(format!("a value cannot be written into a manifest: {e}"))
            });
        }
        self.join(&pieces).map(Value::String)
    }

    fn text(&self, s: &str) -> Result<String, TemplateError> {
        self.join(&self.pieces(s))
    }

    fn join(&self, pieces: &[Piece<'_>]) -> Result<String, TemplateError> {
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value(index) => {
                    let value = &self.values[*index];
                    match value.as_str() {
                        Some(text) => out.push_str(text),
                        None => out.push_str(&serde_json::to_string(value).map_err(|e| {
                            TemplateError::new(format!(
                                "a value cannot be written into a manifest: {e}"
                            ))
                        })?),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Splits `s` at well-formed placeholders whose index exists; anything else is text.
    fn pieces<'s>(&self, s: &'s str) -> Vec<Piece<'s>> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find(MARK_START) {
            let after = &rest[start + MARK_START.len_utf8()..];
            let Some(end) = after.find(MARK_END) else {
                break;
            };
            match after[..end].parse::<usize>() {
                Ok(index) if index < self.values.len() => {
                    if start > 0 {
                        pieces.push(Piece::Text(&rest[..start]));
                    }
                    pieces.push(Piece::Value(index));
                }
                _ => pieces.push(Piece::Text(
                    &rest[..start + MARK_START.len_utf8() + end + MARK_END.len_utf8()],
                )),
            }
            rest = &after[end + MARK_END.len_utf8()..];
        }
        if !rest.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Text(rest));
        }
        pieces
    }
}

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

fn expression_env() -> &'static Environment<'static> {
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

fn text_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(base_env)
}

fn manifest_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = base_env();
        env.set_formatter(manifest_formatter);
        env
    })
}

/// One line from a MiniJinja error: its kind and detail, the line, and for an undefined value
/// which expression it came from.
fn describe(error: &minijinja::Error) -> TemplateError {
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

type HmacSha256 = Hmac<Sha256>;

fn hmac(seed: &SecretSeed, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(&seed.0) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// HMAC-SHA256(seed, name, length, counter) blocks, mapped to alphanumerics by rejection
/// sampling (bytes ≥ 248 are skipped) so every character is uniform.
fn derive_secret(seed: &SecretSeed, name: &str, length: usize) -> Result<String, minijinja::Error> {
    if name.is_empty() {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "secret() needs a non-empty name",
        ));
    }
    if !(MIN_SECRET_LENGTH..=MAX_SECRET_LENGTH).contains(&length) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "secret() length must be {MIN_SECRET_LENGTH}..={MAX_SECRET_LENGTH}, not {length}"
            ),
        ));
    }
    let length_bytes = (length as u64).to_be_bytes();
    let mut out = String::with_capacity(length);
    for counter in 0u32.. {
        let block = hmac(
            seed,
            &[
                b"spin-osb secret v1",
                name.as_bytes(),
                &length_bytes,
                &counter.to_be_bytes(),
            ],
        );
        for byte in block {
            if byte < 248 {
                out.push(char::from(ALPHANUMERIC[usize::from(byte % 62)]));
                if out.len() == length {
                    return Ok(out);
                }
            }
        }
    }
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "secret() failed",
    ))
}

/// A version-4-shaped UUID from HMAC-SHA256(seed, name): as unpredictable as a random one to
/// anyone without the seed, and stable across renders.
fn derive_uuid(seed: &SecretSeed, name: &str) -> Result<String, minijinja::Error> {
    if name.is_empty() {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "uuid() needs a non-empty name",
        ));
    }
    let mut b = hmac(seed, &[b"spin-osb uuid v1", name.as_bytes()]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b[..16].iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> TemplateContext {
        TemplateContext::new(
            "11111111-2222-3333-4444-555555555555",
            SecretSeed::new(b"seed-one"),
        )
        .with_service("svc-id", "svc")
        .with_plan("plan-id", "small")
    }

    const INJECTION: &str = "x\n  evil: true\n---\nkind: Secret";

    #[test]
    fn text_without_template_syntax_renders_to_itself() {
        let template = json!({
            "plain": "https://x.example/{id}/}}\n",
            "list": ["a } b", "%}", 3],
            "templated": "{{ instance_id }}",
            "comment": "a{# gone #}b",
        });
        let rendered = render_value(&template, &ctx()).unwrap();
        assert_eq!(rendered["plain"], json!("https://x.example/{id}/}}\n"));
        assert_eq!(rendered["list"], json!(["a } b", "%}", 3]));
        assert_eq!(
            rendered["templated"],
            json!("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(rendered["comment"], json!("ab"));
        assert_eq!(
            render_str("no { syntax }\n", &ctx()).unwrap(),
            "no { syntax }\n"
        );
    }

    #[test]
    fn an_injection_attempt_in_leaf_mode_stays_one_string() {
        let ctx = ctx().with_parameters(json!({ "name": INJECTION }));
        let out = render_value(&json!({ "a": { "b": ["{{ parameters.name }}"] } }), &ctx).unwrap();
        assert_eq!(out, json!({ "a": { "b": [INJECTION] } }));
    }

    #[test]
    fn an_injection_attempt_in_manifest_mode_is_the_literal_value() {
        let ctx = ctx().with_parameters(json!({ "name": INJECTION }));
        let docs = render_yaml_documents(
            "kind: ConfigMap\ndata:\n  plain: {{ parameters.name }}\n  quoted: \"{{ parameters.name }}\"\n  single: '{{ parameters.name }}'\n  inline: pre-{{ parameters.name }}-post\n  block: |\n    {{ parameters.name }}\n  {{ parameters.name }}: key\n",
            &ctx,
        )
        .unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        let data = &docs[0]["data"];
        assert_eq!(data["plain"], INJECTION);
        assert_eq!(data["quoted"], INJECTION);
        assert_eq!(data["single"], INJECTION);
        assert_eq!(data["inline"], format!("pre-{INJECTION}-post"));
        assert_eq!(data["block"], format!("{INJECTION}\n"));
        assert_eq!(data[INJECTION], "key");
        assert!(docs[0].get("evil").is_none() && data.get("evil").is_none());
        assert_eq!(data.as_object().unwrap().len(), 6);
    }

    #[test]
    fn manifest_values_keep_their_types() {
        let ctx = ctx().with_parameters(json!({
            "replicas": 3, "ratio": 0.5, "on": true, "labels": { "a": "b" }, "digits": "5"
        }));
        let docs = render_yaml_documents(
            "replicas: {{ parameters.replicas }}\nratio: {{ parameters.ratio }}\non: {{ parameters.on }}\nquoted: \"{{ parameters.replicas }}\"\nlabels: {{ parameters.labels }}\ndigits: {{ parameters.digits }}\nnothing: {{ none }}\nname: redis-{{ instance_id[:8] }}\n",
            &ctx,
        )
        .unwrap();
        assert_eq!(
            docs[0],
            json!({
                "replicas": 3, "ratio": 0.5, "on": true, "quoted": "3",
                "labels": { "a": "b" }, "digits": "5", "nothing": null,
                "name": "redis-11111111"
            })
        );
    }

    #[test]
    fn a_manifest_has_as_many_documents_as_it_renders() {
        let docs = render_yaml_documents(
            "a: 1\n---\n{% if false %}b: 2{% endif %}\n---\nc: {{ plan.name }}\n",
            &ctx(),
        )
        .unwrap();
        assert_eq!(docs, vec![json!({ "a": 1 }), json!({ "c": "small" })]);
    }

    #[test]
    fn a_manifest_that_renders_invalid_yaml_says_so() {
        let error = render_yaml_documents("a: [1\n", &ctx()).unwrap_err();
        assert!(error.to_string().contains("not valid YAML"), "{error}");
    }

    #[test]
    fn reserved_characters_in_a_manifest_source_are_refused() {
        let error = render_yaml_documents("a: \u{E000}0\u{E001}\n", &ctx()).unwrap_err();
        assert!(error.to_string().contains("reserved"), "{error}");
    }

    #[test]
    fn secret_is_stable_for_the_same_seed_and_name() {
        let a = render_str("{{ secret('password') }}", &ctx()).unwrap();
        let b = render_str("{{ secret('password') }}", &ctx()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), DEFAULT_SECRET_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
    }

    #[test]
    fn secret_differs_across_seeds_names_and_lengths() {
        let base = render_str("{{ secret('password') }}", &ctx()).unwrap();
        let other_name = render_str("{{ secret('admin') }}", &ctx()).unwrap();
        let other_seed = TemplateContext::new("x", SecretSeed::new(b"seed-two"));
        let other_seed = render_str("{{ secret('password') }}", &other_seed).unwrap();
        let longer = render_str("{{ secret('password', 48) }}", &ctx()).unwrap();
        assert_ne!(base, other_name);
        assert_ne!(base, other_seed);
        assert_eq!(longer.len(), 48);
        assert!(!longer.starts_with(&base));
    }

    #[test]
    fn secret_refuses_a_short_length() {
        let error = render_str("{{ secret('p', 4) }}", &ctx()).unwrap_err();
        assert!(error.to_string().contains("length must be"), "{error}");
    }

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let a = render_str("{{ uuid('db') }}", &ctx()).unwrap();
        assert_eq!(a, render_str("{{ uuid('db') }}", &ctx()).unwrap());
        assert_ne!(a, render_str("{{ uuid('other') }}", &ctx()).unwrap());
        let parts: Vec<_> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn the_seed_is_not_visible_to_templates() {
        let out = render_str("{{ secret }}", &ctx()).unwrap();
        assert!(!out.contains("seed-one"), "{out}");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it() {
        let error = render_str("x{{ binding_id }}", &ctx()).unwrap_err();
        assert!(error.to_string().contains("binding_id"), "{error}");
        let error = render_str("{{ parameters.missing.deeper }}", &ctx()).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }

    #[test]
    fn default_covers_a_missing_parameter() {
        let out = render_str("{{ parameters.host | default('localhost') }}", &ctx()).unwrap();
        assert_eq!(out, "localhost");
        let out = render_str(
            "{% if parameters.host is defined %}x{% else %}y{% endif %}",
            &ctx(),
        )
        .unwrap();
        assert_eq!(out, "y");
    }

    #[test]
    fn context_helpers_are_present_only_when_the_context_has_them() {
        let cf = ctx().with_context(json!({ "platform": "cloudfoundry", "organization_guid": "org", "space_guid": "space" }));
        assert_eq!(
            render_str("{{ organization_guid }}/{{ space_guid }}", &cf).unwrap(),
            "org/space"
        );
        let k8s = ctx().with_context(json!({ "platform": "kubernetes", "namespace": "ns" }));
        assert_eq!(
            render_str("{{ namespace }} {{ context.platform }}", &k8s).unwrap(),
            "ns kubernetes"
        );
        let error = render_str("{{ namespace }}", &cf).unwrap_err();
        assert!(
            error.to_string().contains("`namespace` is undefined"),
            "{error}"
        );
    }

    #[test]
    fn check_refuses_a_syntax_error_with_its_line() {
        let error = check_template("ok\n{{ unclosed", Scope::INSTANCE).unwrap_err();
        assert!(error.to_string().contains("syntax error"), "{error}");
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn check_refuses_variables_outside_the_scope() {
        let error = check_template("{{ binding_id }}", Scope::INSTANCE).unwrap_err();
        assert!(error.to_string().contains("`binding_id`"), "{error}");
        assert!(check_template("{{ binding_id }}", Scope::BINDING).is_ok());
        let error = check_template("{{ instance_idd }}", Scope::BINDING).unwrap_err();
        assert!(error.to_string().contains("`instance_idd`"), "{error}");
    }

    #[test]
    fn check_accepts_globals_loops_and_set() {
        let source = "{% set n = 1 %}{% for i in range(3) %}{{ i }}{% endfor %}{{ n }}{{ secret('a') | b64encode }}{{ uuid('b') | urlencode }}";
        check_template(source, Scope::INSTANCE).unwrap();
        check_manifest(source, Scope::INSTANCE).unwrap();
    }

    #[test]
    fn there_is_no_file_loader() {
        let error = render_str("{% include 'secrets.txt' %}", &ctx()).unwrap_err();
        assert!(error.to_string().contains("include"), "{error}");
    }

    #[test]
    fn a_leaf_error_names_the_leaf() {
        let error =
            render_value(&json!({ "db": { "password": "{{ nope() }}" } }), &ctx()).unwrap_err();
        assert!(error.to_string().starts_with("db.password: "), "{error}");
    }

    #[test]
    fn non_string_leaves_are_kept() {
        let out = render_value(&json!({ "port": 6379, "tls": false, "n": null }), &ctx()).unwrap();
        assert_eq!(out, json!({ "port": 6379, "tls": false, "n": null }));
    }
}
