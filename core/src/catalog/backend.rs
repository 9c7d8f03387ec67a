//! A plan's `backend:`: how the broker fulfils it. Internally tagged by `type`; each type's
//! configuration lives in its own module (`credentials`, `kubernetes`, `bosh`).

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bosh::BoshBackend;
use super::credentials::CredentialsBackend;
use super::error::Problems;
use super::kubernetes::KubernetesBackend;
use super::PlanView;

/// The backend of a plan. Serialised with `type` first, so that the compiled catalog reads
/// back through the same deserialiser as the YAML.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Backend {
    /// Generates binding credentials from templates; needs no external system.
    Credentials(CredentialsBackend),
    /// Objects applied to a Kubernetes cluster through its API.
    Kubernetes(KubernetesBackend),
    /// A BOSH deployment per instance, through a BOSH director's API.
    Bosh(BoshBackend),
}

impl Backend {
    /// The `type` as written in the catalog, for logs and messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Backend::Credentials(_) => "credentials",
            Backend::Kubernetes(_) => "kubernetes",
            Backend::Bosh(_) => "bosh",
        }
    }

    /// Whether a step of this backend touches nothing outside the record it returns: its
    /// steps can then run without a lease (two at once compute the same kind of answer and
    /// only one compare-and-swap lands), which saves a store round trip per step.
    pub fn steps_are_local(&self) -> bool {
        matches!(self, Backend::Credentials(_))
    }

    /// The plan's `dashboard_url` template (instance scope), whatever the backend.
    pub fn dashboard_url(&self) -> Option<&str> {
        match self {
            Backend::Credentials(c) => c.dashboard_url.as_deref(),
            Backend::Kubernetes(c) => c.dashboard_url.as_deref(),
            Backend::Bosh(c) => c.dashboard_url.as_deref(),
        }
    }

    /// Renders the dashboard URL, if the plan has one.
    pub fn render_dashboard_url(
        &self,
        ctx: &crate::template::TemplateContext,
    ) -> Result<Option<String>, crate::template::TemplateError> {
        self.dashboard_url()
            .map(|source| crate::template::render_str(source, ctx))
            .transpose()
    }

    /// A backend of type `type_name` with an empty configuration, for deleting what an
    /// instance of a plan that has left the catalog still owns: the Kubernetes backend then
    /// works from the object references kept in the instance record, the BOSH backend from
    /// the deployment name (errands are skipped), the credentials backend has nothing to do.
    pub fn remnant(type_name: &str) -> Option<&'static Backend> {
        static REMNANTS: std::sync::OnceLock<[Backend; 3]> = std::sync::OnceLock::new();
        let remnants = REMNANTS.get_or_init(|| {
            [
                Backend::Credentials(CredentialsBackend::default()),
                Backend::Kubernetes(KubernetesBackend::default()),
                Backend::Bosh(BoshBackend::default()),
            ]
        });
        remnants.iter().find(|b| b.type_name() == type_name)
    }

    /// How long an operation may run when the plan sets no `maximum_polling_duration`:
    /// backends that wait on an external system must still end every operation.
    pub fn default_deadline_seconds(&self) -> Option<u64> {
        match self {
            Backend::Credentials(_) => None,
            Backend::Kubernetes(_) => Some(3_600),
            // Deploys take minutes to hours; the director's own task timeouts apply too.
            Backend::Bosh(_) => Some(86_400),
        }
    }

    /// Backend-specific checks at load time; `path` is the path of the `backend` field.
    pub(crate) fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
        match self {
            Backend::Credentials(config) => config.validate(plan, path, problems),
            Backend::Kubernetes(config) => config.validate(plan, path, problems),
            Backend::Bosh(config) => config.validate(plan, path, problems),
        }
    }
}

/// The known values of `type`; an unknown one is a deserialisation error listing these.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BackendType {
    Credentials,
    Kubernetes,
    Bosh,
}

impl BackendType {
    fn read<'de, D: Deserializer<'de>>(self, config: D) -> Result<Backend, D::Error> {
        match self {
            BackendType::Credentials => {
                CredentialsBackend::deserialize(config).map(Backend::Credentials)
            }
            BackendType::Kubernetes => {
                KubernetesBackend::deserialize(config).map(Backend::Kubernetes)
            }
            BackendType::Bosh => BoshBackend::deserialize(config).map(Backend::Bosh),
        }
    }
}

/// Hand-written instead of `#[serde(tag = "type")]`: serde buffers internally tagged enums,
/// which loses the field path and line of errors inside the backend. When `type` is the
/// first key (as documented), the rest of the mapping streams straight into the variant's
/// struct, so `backend.async: invalid type…` keeps its path and position.
impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BackendVisitor)
    }
}

struct BackendVisitor;

impl<'de> Visitor<'de> for BackendVisitor {
    type Value = Backend;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a backend mapping with a `type` key")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Backend, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field("type"));
        };
        if first == "type" {
            let kind: BackendType = map.next_value()?;
            return kind.read(MapAccessDeserializer::new(map));
        }
        // `type` is not first: buffer the mapping. Errors then carry the backend's path only.
        let mut rest = serde_json::Map::new();
        rest.insert(first, map.next_value::<Value>()?);
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            rest.insert(key, value);
        }
        let kind = rest
            .remove("type")
            .ok_or_else(|| de::Error::missing_field("type"))?;
        let kind =
            BackendType::deserialize(kind).map_err(|e| de::Error::custom(format!("type: {e}")))?;
        kind.read(Value::Object(rest)).map_err(de::Error::custom)
    }
}
