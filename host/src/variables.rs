//! Application and component variables.
//!
//! Application variables get their values from the environment the way Spin's env
//! provider does (`SPIN_VARIABLE_<UPPER_NAME>`), falling back to the manifest default; a
//! `required` variable without a value stops start-up. Component variables are
//! `{{ template }}`s over them, resolved once at start-up so a bad configuration fails
//! before the first request. Values marked `secret` are never printed.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use wasmtime::component::HasData;

use crate::bindings::fermyon::spin::variables as wit;
use crate::manifest::Manifest;
use crate::template::Template;

/// Resolved application variables.
pub struct AppVariables {
    values: HashMap<String, String>,
}

impl AppVariables {
    /// Resolves every `[variables]` entry from `env` (usually the process environment).
    pub fn resolve(manifest: &Manifest, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, def) in &manifest.variables {
            let env_name = env_name(name);
            match env(&env_name).or_else(|| def.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None if def.required => missing.push(format!("'{name}' (set {env_name})")),
                None => {}
            }
        }
        if !missing.is_empty() {
            bail!(
                "required application variable(s) not set: {}",
                missing.join(", ")
            );
        }
        Ok(Self { values })
    }

    /// Refuses to serve the broker with an empty or very short `broker_password`: its
    /// components would admit no one (or, with an empty password, anyone who sends
    /// `broker:`), so the mistake is reported before the first request instead. Apps
    /// without that variable are not concerned.
    pub fn check_broker_password(&self) -> Result<()> {
        let min = spin_osb_core::protocol::MIN_PASSWORD_CHARS;
        match self.values.get("broker_password") {
            Some(password) if password.chars().count() < min => bail!(
                "the broker's password (variable broker_password, {}) is empty or shorter \
                 than {min} characters: set a long random one",
                env_name("broker_password")
            ),
            _ => Ok(()),
        }
    }

    /// Renders a `{{ variable }}` template; a variable with no value is an error.
    pub fn render(&self, text: &str) -> Result<String> {
        Template::parse(text)?.render(|name| match self.values.get(name) {
            Some(v) => Ok(v.clone()),
            None => bail!(
                "application variable '{name}' has no value (set {})",
                env_name(name)
            ),
        })
    }

    /// Resolves a component's `variables` table.
    pub fn component_variables(
        &self,
        table: &indexmap::IndexMap<String, String>,
    ) -> Result<ComponentVariables> {
        let mut resolved = HashMap::new();
        for (name, template) in table {
            let value = self
                .render(template)
                .map_err(|e| anyhow::anyhow!("component variable '{name}': {e}"))?;
            resolved.insert(name.clone(), value);
        }
        Ok(ComponentVariables(Arc::new(resolved)))
    }
}

/// Spin's env provider naming: `broker_password` → `SPIN_VARIABLE_BROKER_PASSWORD`.
pub fn env_name(variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase())
}

/// One component's resolved variables, shared by all its instances.
#[derive(Clone, Default)]
pub struct ComponentVariables(Arc<HashMap<String, String>>);

/// [`HasData`] marker for `add_to_linker`.
pub struct VariablesData;
impl HasData for VariablesData {
    type Data<'a> = &'a ComponentVariables;
}

impl wit::Host for &ComponentVariables {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, wit::Error>> {
        if crate::manifest::check_snake_id(&name).is_err() {
            return Ok(Err(wit::Error::InvalidName(name)));
        }
        Ok(match self.0.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(wit::Error::Undefined(format!(
                "no variable for component: {name}"
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(vars: &str) -> Manifest {
        Manifest::parse(&format!(
            "spin_manifest_version = 2\n[application]\nname = \"a\"\n[variables]\n{vars}"
        ))
        .unwrap()
    }

    #[test]
    fn environment_overrides_default() {
        let m = manifest("greeting = { default = \"hi\" }");
        let vars = AppVariables::resolve(&m, |n| {
            (n == "SPIN_VARIABLE_GREETING").then(|| "hello".to_string())
        })
        .unwrap();
        assert_eq!(vars.render("{{ greeting }}!").unwrap(), "hello!");
        let vars = AppVariables::resolve(&m, |_| None).unwrap();
        assert_eq!(vars.render("{{ greeting }}").unwrap(), "hi");
    }

    #[test]
    fn an_empty_or_short_broker_password_is_refused() {
        let m = manifest("broker_password = { required = true, secret = true }");
        for value in ["", "short"] {
            let vars = AppVariables::resolve(&m, |_| Some(value.to_string())).unwrap();
            let error = vars.check_broker_password().unwrap_err().to_string();
            assert!(error.contains("SPIN_VARIABLE_BROKER_PASSWORD"), "{error}");
        }
        let vars = AppVariables::resolve(&m, |_| Some("long-enough".to_string())).unwrap();
        vars.check_broker_password().unwrap();
        let other = manifest("password = { default = \"\" }");
        AppVariables::resolve(&other, |_| None)
            .unwrap()
            .check_broker_password()
            .unwrap();
    }

    #[test]
    fn missing_required_variable_names_the_env_var() {
        let m = manifest("password = { required = true, secret = true }");
        let err = AppVariables::resolve(&m, |_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("SPIN_VARIABLE_PASSWORD"), "{err}");
    }
}
