//! The Spin application manifest (`spin.toml`, manifest version 2).
//!
//! Parsing is strict (`deny_unknown_fields`), so a typo is an error with its line and
//! column instead of a silently ignored setting, and [`Manifest::validate`] checks what
//! the schema cannot (ids, routes, references between sections). Spin fields that this
//! host cannot honour (remote sources, SQLite databases, AI models, non-HTTP triggers) are
//! rejected by name rather than ignored.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::routes::validate_route;
use crate::template::Template;

/// A parsed `spin.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must be `2`.
    pub spin_manifest_version: u32,
    /// `[application]`.
    pub application: Application,
    /// Top-level `[variables]`: the app's inputs.
    #[serde(default)]
    pub variables: IndexMap<String, VariableDef>,
    /// `[[trigger.http]]` entries.
    #[serde(default)]
    pub trigger: Triggers,
    /// `[component.<id>]` tables, in file order.
    #[serde(default)]
    pub component: IndexMap<String, Component>,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The app's name, shown in logs.
    pub name: String,
    /// Informational.
    #[serde(default)]
    pub version: Option<String>,
    /// Informational.
    #[serde(default)]
    pub description: Option<String>,
    /// Informational.
    #[serde(default)]
    pub authors: Vec<String>,
    /// `[application.trigger.http] base = "/"`: only the root base is supported.
    #[serde(default)]
    pub trigger: Option<ApplicationTrigger>,
    /// Tool-specific settings, ignored.
    #[serde(default)]
    pub tool: Option<toml::Table>,
}

/// `[application.trigger]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTrigger {
    /// `[application.trigger.http]`.
    #[serde(default)]
    pub http: Option<ApplicationHttp>,
}

/// `[application.trigger.http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationHttp {
    /// Base path of all routes; Spin 2+ only accepts `/`.
    #[serde(default)]
    pub base: Option<String>,
}

/// One entry of top-level `[variables]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDef {
    /// Used when the environment provides no value.
    #[serde(default)]
    pub default: Option<String>,
    /// Start-up fails if no value is provided.
    #[serde(default)]
    pub required: bool,
    /// The value is never printed.
    #[serde(default)]
    pub secret: bool,
    /// Informational.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[trigger]`: only HTTP triggers exist in this host.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// `[[trigger.http]]`.
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    /// Optional trigger id.
    #[serde(default)]
    pub id: Option<String>,
    /// A path pattern, or `{ private = true }` for chaining-only components.
    pub route: RouteConfig,
    /// The component id this trigger runs.
    pub component: String,
    /// `{ type = "spin" }` is the only executor.
    #[serde(default)]
    pub executor: Option<Executor>,
}

/// `executor = { type = "spin" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Executor {
    /// Executor kind; only `spin` (the WASI HTTP executor) is supported.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `route = "/path"` or `route = { private = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteConfig {
    /// A public path pattern.
    Route(String),
    /// Reachable only through service chaining.
    Private(PrivateRoute),
}

/// `{ private = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    /// Must be `true`.
    pub private: bool,
}

/// `[component.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Informational.
    #[serde(default)]
    pub description: Option<String>,
    /// Path to the wasm component, relative to the manifest.
    pub source: Source,
    /// Files made visible (read-only) to the guest.
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Globs removed from `files` globs.
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Outbound HTTP allow-list (`scheme://host:port`, `*` wildcards, `{{ var }}`).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels this component may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Environment variables of the guest.
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// Component variables: literals or `{{ app_variable }}` templates.
    #[serde(default)]
    pub variables: IndexMap<String, String>,
    /// `[component.<id>.build]`.
    #[serde(default)]
    pub build: Option<Build>,
    /// Spin SQLite databases: not provided by this host.
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    /// Spin AI models: not provided by this host.
    #[serde(default)]
    pub ai_models: Vec<String>,
    /// Tool-specific settings, ignored.
    #[serde(default)]
    pub tool: Option<toml::Table>,
}

/// `source = "path.wasm"`; remote sources are rejected during validation.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A local file.
    Local(String),
    /// `{ url = ..., digest = ... }` or a registry reference.
    Remote(toml::Table),
}

/// One `files` entry.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    /// A glob relative to the manifest, mounted at the same relative path under `/`.
    Glob(String),
    /// A directory (or file) mounted at `destination`.
    Placement {
        /// Path relative to the manifest.
        source: String,
        /// Absolute path in the guest.
        destination: String,
    },
}

/// `[component.<id>.build]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// One command or a list, run by the shell.
    pub command: Commands,
    /// Directory to run in, relative to the manifest.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Used by `spin watch`; ignored.
    #[serde(default)]
    pub watch: Vec<String>,
}

/// A build command or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    /// `command = "cargo build"`.
    One(String),
    /// `command = ["a", "b"]`.
    Many(Vec<String>),
}

impl Commands {
    /// The commands in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            Commands::One(c) => std::slice::from_ref(c),
            Commands::Many(cs) => cs,
        };
        slice.iter().map(String::as_str)
    }
}

/// A manifest together with where it was loaded from.
#[derive(Debug)]
pub struct LoadedManifest {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory: the base of every relative path in it.
    pub dir: PathBuf,
}

impl LoadedManifest {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let manifest = Manifest::parse(&text)
            .with_context(|| format!("invalid manifest {}", path.display()))?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Self {
            manifest,
            path,
            dir,
        })
    }

    /// Resolves a manifest-relative path.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

impl Manifest {
    /// Parses and validates manifest text.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks what the schema cannot: versions, ids, routes and cross references.
    pub fn validate(&self) -> Result<()> {
        if self.spin_manifest_version != 2 {
            bail!(
                "`spin_manifest_version`: only version 2 is supported, found {}",
                self.spin_manifest_version
            );
        }
        if let Some(base) = self
            .application
            .trigger
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .and_then(|h| h.base.as_deref())
        {
            if base != "/" {
                bail!("`application.trigger.http.base`: only \"/\" is supported, found {base:?}");
            }
        }
        for name in self.variables.keys() {
            check_snake_id(name)
                .with_context(|| format!("`variables.{name}`: invalid variable name"))?;
        }
        for (name, def) in &self.variables {
            if def.required && def.default.is_some() {
                bail!(
                    "`variables.{name}`: a variable cannot be both `required` and have a `default`"
                );
            }
            if !def.required && def.default.is_none() {
                bail!(
                    "`variables.{name}`: a variable must be `required = true` or have a `default`"
                );
            }
        }
        for (id, component) in &self.component {
            let at = |field: &str| format!("`component.{id}.{field}`");
            check_kebab_id(id)
                .with_context(|| format!("`component.{id}`: invalid component id"))?;
            if let Source::Remote(_) = component.source {
                bail!(
                    "{}: only local file sources are supported by spin-osb",
                    at("source")
                );
            }
            if !component.sqlite_databases.is_empty() {
                bail!(
                    "{}: SQLite databases are not provided by spin-osb",
                    at("sqlite_databases")
                );
            }
            if !component.ai_models.is_empty() {
                bail!(
                    "{}: AI models are not provided by spin-osb",
                    at("ai_models")
                );
            }
            for label in &component.key_value_stores {
                if label.is_empty() {
                    bail!("{}: store labels must not be empty", at("key_value_stores"));
                }
            }
            for (name, value) in &component.variables {
                check_snake_id(name).with_context(|| {
                    format!(
                        "{}: invalid variable name",
                        at(&format!("variables.{name}"))
                    )
                })?;
                self.check_template(value)
                    .with_context(|| at(&format!("variables.{name}")))?;
            }
            for entry in &component.allowed_outbound_hosts {
                self.check_template(entry)
                    .with_context(|| at("allowed_outbound_hosts"))?;
            }
            for mount in &component.files {
                if let FileMount::Placement { destination, .. } = mount {
                    if !destination.starts_with('/') {
                        bail!(
                            "{}: destination {destination:?} must be an absolute path",
                            at("files")
                        );
                    }
                }
            }
        }
        for (index, trigger) in self.trigger.http.iter().enumerate() {
            let at = format!("`trigger.http[{index}]`");
            if !self.component.contains_key(&trigger.component) {
                bail!(
                    "{at}.component: no component named '{}' (define [component.{}])",
                    trigger.component,
                    trigger.component
                );
            }
            if let Some(executor) = &trigger.executor {
                if executor.kind != "spin" {
                    bail!(
                        "{at}.executor: only `{{ type = \"spin\" }}` is supported, found {:?}",
                        executor.kind
                    );
                }
            }
            match &trigger.route {
                RouteConfig::Route(route) => validate_route(route)
                    .map_err(|e| anyhow::anyhow!("{at}.route {route:?}: {e}"))?,
                RouteConfig::Private(p) if !p.private => {
                    bail!("{at}.route: must be a path pattern or `{{ private = true }}`")
                }
                RouteConfig::Private(_) => {}
            }
        }
        Ok(())
    }

    fn check_template(&self, text: &str) -> Result<()> {
        let template = Template::parse(text)?;
        for name in template.variables() {
            if !self.variables.contains_key(name) {
                bail!("template {text:?} refers to undefined application variable '{name}'");
            }
        }
        Ok(())
    }

    /// `(component id, route)` for every public trigger.
    pub fn public_routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.trigger.http.iter().filter_map(|t| match &t.route {
            RouteConfig::Route(r) => Some((t.component.as_str(), r.as_str())),
            RouteConfig::Private(_) => None,
        })
    }
}

/// Spin's component ids: kebab-case (`a-z`, `0-9`, single `-` between words), starting with a letter.
pub fn check_kebab_id(id: &str) -> Result<()> {
    check_id(id, '-')
}

/// Spin's variable names: snake_case (`a-z`, `0-9`, single `_` between words), starting with a letter.
pub fn check_snake_id(id: &str) -> Result<()> {
    check_id(id, '_')
}

fn check_id(id: &str, separator: char) -> Result<()> {
    if id.is_empty() {
        bail!("must not be empty");
    }
    for word in id.split(separator) {
        if word.is_empty() {
            bail!("{id:?}: words must be separated by a single '{separator}'");
        }
        if !word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            bail!("{id:?}: only lowercase letters, digits and '{separator}' are allowed");
        }
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("{id:?}: must start with a letter");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
[variables]
password = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "web"
[[trigger.http]]
route = { private = true }
component = "inner"
[component.web]
source = "web.wasm"
allowed_outbound_hosts = ["http://inner.spin.internal"]
[component.web.variables]
password = "{{ password }}"
[component.inner]
source = "inner.wasm"
"#;

    #[test]
    fn a_minimal_manifest_parses() {
        let m = Manifest::parse(MINIMAL).unwrap();
        assert_eq!(m.public_routes().collect::<Vec<_>>(), vec![("web", "/...")]);
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_field() {
        let err = Manifest::parse(
            &MINIMAL.replace("source = \"web.wasm\"", "source = \"web.wasm\"\nsorce = 1"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("sorce"), "{err:#}");
    }

    #[test]
    fn trigger_for_a_missing_component_is_an_error() {
        let err =
            Manifest::parse(&MINIMAL.replace("component = \"inner\"", "component = \"nope\""))
                .unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn undefined_variable_in_template_is_an_error() {
        let err = Manifest::parse(&MINIMAL.replace("{{ password }}", "{{ nope }}")).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn ids_must_be_kebab_case() {
        assert!(check_kebab_id("osb-catalog").is_ok());
        assert!(check_kebab_id("Osb").is_err());
        assert!(check_kebab_id("a--b").is_err());
        assert!(check_kebab_id("1a").is_err());
        assert!(check_snake_id("broker_password").is_ok());
        assert!(check_snake_id("broker-password").is_err());
    }
}
