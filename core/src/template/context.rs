//! What a template sees: the per-request variables and the per-instance secret seed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::secrets::{derive_secret, derive_uuid};
use super::DEFAULT_SECRET_LENGTH;

/// The per-instance key from which `secret()` and `uuid()` derive their values.
///
/// The broker generates it (random, 32 bytes or more) when the instance is provisioned and
/// stores it with the instance; every later render with the same seed yields the same
/// secrets, so bindings and retries agree without storing each secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSeed(pub(super) Arc<[u8]>);

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

    pub(super) fn to_value(&self) -> minijinja::Value {
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

pub(super) fn null_to_object(value: Value) -> Value {
    if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    }
}
