//! The catalog as written in YAML, which is also the shape of `GET /v2/catalog`: every OSB
//! field keeps its OSB name, optional fields stay `None` when absent (and are then left out
//! of the JSON), and `backend` is read but never serialised.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PlanBackend;
use crate::quota::Quotas;

/// One catalog file: a list of services, and (in at most one file) the broker's quotas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogFile {
    /// Limits on all the broker's instances ([`crate::quota`]).
    #[serde(default)]
    pub(crate) quotas: Option<Quotas>,
    pub(crate) services: Vec<ServiceOffering>,
}

/// A Service Offering object (OSB "Service Offering Object").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOffering {
    /// Globally unique, immutable id; platforms key everything on it (a GUID is recommended).
    pub id: String,
    /// Unique, CLI-friendly name users type.
    pub name: String,
    /// Short description shown to users.
    pub description: String,
    /// Classification tags (e.g. `redis`, `key-value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Permissions the service needs from the platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Permission>,
    /// Default `bindable` for plans that do not say.
    pub bindable: bool,
    /// Whether `GET /v2/service_instances/:id` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_retrievable: Option<bool>,
    /// Whether `GET /v2/service_instances/:id/service_bindings/:id` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings_retrievable: Option<bool>,
    /// Whether an update may change only the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_context_updates: Option<bool>,
    /// Opaque display metadata (`displayName`, `imageUrl`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Cloud Foundry dashboard SSO client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_client: Option<DashboardClient>,
    /// Default `plan_updateable` for plans that do not say (OSB default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    /// spin-osb extension, never part of `GET /v2/catalog`: limits on the service's
    /// instances ([`crate::quota`]).
    #[serde(default, skip_serializing)]
    pub quotas: Option<Quotas>,
    /// The plans; at least one.
    pub plans: Vec<ServicePlan>,
}

/// A permission a service can require (the only three the OSB spec knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Send logs to a syslog drain.
    SyslogDrain,
    /// Act as a route service.
    RouteForwarding,
    /// Provide volume mounts.
    VolumeMount,
}

/// A Service Plan object (OSB "Service Plan Object") plus the broker-only `backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePlan {
    /// Globally unique, immutable id (unique across all services, not only this one).
    pub id: String,
    /// Name, unique within the service.
    pub name: String,
    /// Short description shown to users.
    pub description: String,
    /// Opaque display metadata (`bullets`, `costs`, `displayName`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Whether instances cost money (OSB default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<bool>,
    /// Overrides the service's `bindable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindable: Option<bool>,
    /// Whether bindings can be rotated (`predecessor_binding_id`); OSB default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_rotatable: Option<bool>,
    /// Overrides the service's `plan_updateable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    /// JSON Schemas of the parameters, as written (compiled copies live in the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Schemas>,
    /// Seconds the platform should poll an asynchronous operation before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_polling_duration: Option<u64>,
    /// Version of what instances of this plan run, for maintenance updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    /// spin-osb extension, never part of `GET /v2/catalog`: bindings of this plan expire,
    /// and bind/fetch answers carry `metadata.expires_at` and `renew_before`.
    #[serde(default, skip_serializing)]
    pub binding_lifetime: Option<BindingLifetime>,
    /// spin-osb extension, never part of `GET /v2/catalog`: limits on the plan's instances
    /// ([`crate::quota`]).
    #[serde(default, skip_serializing)]
    pub quotas: Option<Quotas>,
    /// How the broker fulfils this plan; never part of `GET /v2/catalog`.
    #[serde(skip_serializing)]
    pub backend: PlanBackend,
}

/// How long bindings live (plan `binding_lifetime`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingLifetime {
    /// Seconds from creation until `expires_at`.
    pub expires_after_seconds: u64,
    /// Seconds before `expires_at` that `renew_before` falls (default: a tenth of the lifetime).
    #[serde(default)]
    pub renew_before_expiry_seconds: Option<u64>,
}

/// Cloud Foundry's dashboard SSO client (OSB profile, "Dashboard Client Object").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardClient {
    /// OAuth client id.
    pub id: String,
    /// OAuth client secret.
    pub secret: String,
    /// Redirect URI checked by the token server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// OSB "Maintenance Info Object": a platform offers an update when the version changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceInfo {
    /// A semantic version 2.0 string.
    pub version: String,
    /// What the update changes, shown to users before they trigger it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// OSB "Schemas Object".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schemas {
    /// Schemas for provisioning and updating instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_instance: Option<ServiceInstanceSchemas>,
    /// Schema for creating bindings (only meaningful on bindable plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_binding: Option<ServiceBindingSchemas>,
}

/// OSB "Service Instance Schema Object".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInstanceSchemas {
    /// Parameters of `PUT /v2/service_instances/:id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<InputParameters>,
    /// Parameters of `PATCH /v2/service_instances/:id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<InputParameters>,
}

/// OSB "Service Binding Schema Object".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBindingSchemas {
    /// Parameters of `PUT /v2/service_instances/:id/service_bindings/:id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<InputParameters>,
}

/// OSB "Input Parameters Schema Object".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputParameters {
    /// The JSON Schema of the request's `parameters` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}
