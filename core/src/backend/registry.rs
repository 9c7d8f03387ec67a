//! The one place where backends are registered.
//!
//! Each line of the `registered_backends!` list below names a backend: the enum variant, its `type` in
//! the catalog, and its configuration type (which implements [`BackendConfig`] and so
//! leads to its runtime [`Backend`]). Everything that has to know the set of backends is
//! generated from that list: the plan's backend configuration ([`PlanBackend`], read from
//! the YAML and the compiled catalog), the per-request dispatch ([`AnyBackend`]), the
//! remnant configurations used to delete instances of plans that have left the catalog,
//! and the list of `type` names in error messages. Adding a backend is a module under
//! `backend/` and one line here.

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{bosh, credentials, kubernetes};
use super::{Backend, BackendConfig, BackendError, Services, Step, StepInput};
use crate::catalog::{PlanView, Problems};
use crate::state::OperationKind;

/// Generates [`PlanBackend`], [`AnyBackend`] and [`TYPES`] from the list of backends.
macro_rules! registered_backends {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $config:ty, )+) => {
        /// The backend of a plan: its `backend:` mapping, internally tagged by `type`.
        /// Serialised with `type` first, so that the compiled catalog reads back through the
        /// same deserialiser as the YAML.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "type")]
        pub enum PlanBackend {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($config), )+
        }

        /// A plan's backend for one request.
        pub enum AnyBackend<'a> {
            $( $(#[$doc])* $variant(<$config as BackendConfig>::Backend<'a>), )+
        }

        /// The values of `type` in the catalog.
        pub const TYPES: &[&str] = &[$($name),+];

        /// The Spin variables of every backend (see [`BackendConfig::VARIABLES`]).
        pub fn variables() -> Vec<&'static str> {
            [$(<$config as BackendConfig>::VARIABLES),+].concat()
        }

        /// The outbound hosts of every backend (see [`BackendConfig::OUTBOUND_HOSTS`]).
        pub fn outbound_hosts() -> Vec<&'static str> {
            [$(<$config as BackendConfig>::OUTBOUND_HOSTS),+].concat()
        }

        impl PlanBackend {
            /// The `type` as written in the catalog, for logs and messages.
            pub fn type_name(&self) -> &'static str {
                match self { $(PlanBackend::$variant(_) => $name,)+ }
            }

            /// The backend that serves this configuration for one request.
            pub fn backend<'a>(&'a self, services: Services<'a>) -> AnyBackend<'a> {
                match self { $(PlanBackend::$variant(c) => AnyBackend::$variant(c.backend(services)),)+ }
            }

            /// See [`BackendConfig::steps_are_local`].
            pub fn steps_are_local(&self) -> bool {
                match self { $(PlanBackend::$variant(c) => c.steps_are_local(),)+ }
            }

            /// See [`BackendConfig::dashboard_url`].
            pub fn dashboard_url(&self) -> Option<&str> {
                match self { $(PlanBackend::$variant(c) => c.dashboard_url(),)+ }
            }

            /// See [`BackendConfig::default_deadline_seconds`].
            pub fn default_deadline_seconds(&self) -> Option<u64> {
                match self { $(PlanBackend::$variant(c) => c.default_deadline_seconds(),)+ }
            }

            /// See [`BackendConfig::warnings`].
            pub fn warnings(&self) -> Vec<String> {
                match self { $(PlanBackend::$variant(c) => c.warnings(),)+ }
            }

            /// Backend-specific checks at load time; `path` is the path of the `backend` field.
            pub(crate) fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>) {
                match self { $(PlanBackend::$variant(c) => c.validate(plan, path, problems),)+ }
            }

            /// Every backend with an empty configuration (see [`PlanBackend::remnant`]).
            fn remnants() -> Vec<PlanBackend> {
                vec![$(PlanBackend::$variant(<$config>::default()),)+]
            }
        }

        /// The known values of `type`; an unknown one is an error at its position, listing
        /// [`TYPES`].
        #[derive(Deserialize)]
        enum TypeName {
            $( #[serde(rename = $name)] $variant, )+
        }

        impl TypeName {
            /// Reads the configuration of the backend of this type.
            fn read<'de, D: Deserializer<'de>>(self, config: D) -> Result<PlanBackend, D::Error> {
                match self {
                    $(TypeName::$variant => <$config>::deserialize(config).map(PlanBackend::$variant),)+
                }
            }
        }

        impl AnyBackend<'_> {
            /// See [`Backend::is_async`].
            pub fn is_async(&self, kind: OperationKind) -> bool {
                match self { $(AnyBackend::$variant(b) => b.is_async(kind),)+ }
            }

            /// See [`Backend::busy`].
            pub async fn busy(&self, kind: OperationKind, instance_id: &str, now: u64) -> Option<String> {
                match self { $(AnyBackend::$variant(b) => b.busy(kind, instance_id, now).await,)+ }
            }

            /// See [`Backend::place`].
            pub fn place(&self, instance: &crate::state::InstanceRecord) -> Result<Value, String> {
                match self { $(AnyBackend::$variant(b) => b.place(instance),)+ }
            }

            /// See [`Backend::step`].
            pub async fn step(&self, input: &StepInput<'_>) -> Result<Step, BackendError> {
                match self { $(AnyBackend::$variant(b) => b.step(input).await,)+ }
            }
        }
    };
}

registered_backends! {
    /// Generates binding credentials from templates; needs no external system.
    Credentials = "credentials" => credentials::CredentialsConfig,
    /// Objects applied to a Kubernetes cluster through its API.
    Kubernetes = "kubernetes" => kubernetes::KubernetesConfig,
    /// A BOSH deployment per instance, through a BOSH director's API.
    Bosh = "bosh" => bosh::BoshConfig,
}

impl PlanBackend {
    /// A backend of type `type_name` with an empty configuration, for deleting what an
    /// instance of a plan that has left the catalog still owns: each backend then works from
    /// what the instance record kept (see its module).
    pub fn remnant(type_name: &str) -> Option<&'static PlanBackend> {
        static REMNANTS: std::sync::OnceLock<Vec<PlanBackend>> = std::sync::OnceLock::new();
        REMNANTS
            .get_or_init(PlanBackend::remnants)
            .iter()
            .find(|b| b.type_name() == type_name)
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
}

/// Hand-written instead of `#[serde(tag = "type")]`: serde buffers internally tagged enums,
/// which loses the field path and line of errors inside the backend. When `type` is the
/// first key (as documented), the rest of the mapping streams straight into the variant's
/// struct, so `backend.async: invalid type…` keeps its path and position.
impl<'de> Deserialize<'de> for PlanBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PlanBackendVisitor)
    }
}

struct PlanBackendVisitor;

impl<'de> Visitor<'de> for PlanBackendVisitor {
    type Value = PlanBackend;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a backend mapping with a `type` key")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PlanBackend, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field("type"));
        };
        if first == "type" {
            let kind: TypeName = map.next_value()?;
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
            TypeName::deserialize(kind).map_err(|e| de::Error::custom(format!("type: {e}")))?;
        kind.read(Value::Object(rest)).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_has_a_remnant_of_its_own_type() {
        for name in TYPES {
            assert_eq!(
                PlanBackend::remnant(name).map(PlanBackend::type_name),
                Some(*name)
            );
        }
    }
}
