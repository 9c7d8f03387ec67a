//! The OSB endpoints over the catalog, the state records and the backends.
//!
//! [`Broker::handle`] is what every endpoint component calls: it parses the request,
//! applies the spec's rules for that endpoint and returns the response. Each endpoint
//! lives in its own module; shared rules (plan lookup, advancing an operation) live here
//! and in [`advance`].

mod advance;
mod binding;
mod catalog_endpoint;
mod instance;
mod plan;

pub use plan::{iso8601, ParamsKind};

use serde_json::{json, Value};

use crate::backend::Services;
use crate::catalog::{CatalogLookup, CompiledPlan, LookupError};
use crate::env::Env;
use crate::error::OsbError;
use crate::http::{resolve, Endpoint, OsbRequest, OsbResponse};
use crate::kv::Kv;
use crate::outbound::{Config, HttpClient};
use crate::state::{Operation, OperationState};

/// Seconds a poll may hold an operation while it calls the backend.
pub const LEASE_SECONDS: u64 = 30;
/// `Retry-After` when the backend suggests nothing.
pub const DEFAULT_RETRY_AFTER: u64 = 5;

/// One request's view of the broker.
pub struct Broker<'a> {
    /// The catalog: the compiled one in components, the YAML one (compiled in memory) in
    /// native tests.
    pub catalog: &'a dyn CatalogLookup,
    /// The state store.
    pub kv: &'a dyn Kv,
    /// Clock and randomness.
    pub env: &'a dyn Env,
    /// Outbound HTTP, for backends that call an API.
    pub http: &'a dyn HttpClient,
    /// The deployment's variables (API URLs, credentials).
    pub config: &'a dyn Config,
}

impl Broker<'_> {
    /// Serves `request` as `endpoint`; every failure becomes its OSB error response.
    pub async fn handle(&self, endpoint: Endpoint, request: &OsbRequest) -> OsbResponse {
        match self.dispatch(endpoint, request).await {
            Ok(response) => response,
            Err(error) => error.into(),
        }
    }

    async fn dispatch(
        &self,
        endpoint: Endpoint,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let path = resolve(&request.method, &request.path)?;
        if path.endpoint != endpoint {
            return Err(OsbError::not_found(format!(
                "{} {} is not served by this component",
                request.method, request.path
            )));
        }
        let iid = path.instance_id.as_deref().unwrap_or_default();
        let bid = path.binding_id.as_deref().unwrap_or_default();
        match endpoint {
            Endpoint::Catalog => self.catalog_endpoint(request),
            Endpoint::Provision => self.provision(iid, request).await,
            Endpoint::Update => self.update(iid, request).await,
            Endpoint::Deprovision => self.deprovision(iid, request).await,
            Endpoint::FetchInstance => self.fetch_instance(iid, request),
            Endpoint::InstanceLastOperation => self.instance_last_operation(iid, request).await,
            Endpoint::Bind => self.bind(iid, bid, request).await,
            Endpoint::Unbind => self.unbind(iid, bid, request).await,
            Endpoint::FetchBinding => self.fetch_binding(iid, bid, request),
            Endpoint::BindingLastOperation => self.binding_last_operation(iid, bid, request).await,
        }
    }

    /// What backends may use.
    pub fn services(&self) -> Services<'_> {
        Services {
            http: self.http,
            config: self.config,
            kv: self.kv,
        }
    }

    /// Looks up a plan of a service: unknown ids are a 400 naming them, an untrusted
    /// catalog a 500.
    pub fn plan(&self, service_id: &str, plan_id: &str) -> Result<CompiledPlan, OsbError> {
        Ok(self.catalog.plan(service_id, plan_id)?)
    }

    /// The plan if the catalog still has it (`None` for unknown ids: an existing instance's
    /// plan may have left the catalog); an untrusted catalog is still an error.
    pub fn known_plan(
        &self,
        service_id: &str,
        plan_id: &str,
    ) -> Result<Option<CompiledPlan>, OsbError> {
        match self.catalog.plan(service_id, plan_id) {
            Ok(plan) => Ok(Some(plan)),
            Err(LookupError::Untrusted(untrusted)) => Err(untrusted.into()),
            Err(_) => Ok(None),
        }
    }
}

/// `{"state": ..., "description": ...}` for a `last_operation` answer.
fn last_operation_response(operation: &Operation) -> OsbResponse {
    let mut body = json!({ "state": operation.state.as_osb() });
    if let Some(description) = operation.description.as_deref().filter(|d| !d.is_empty()) {
        body["description"] = json!(description);
    }
    if operation.state == OperationState::Failed {
        if let Some(usable) = operation.instance_usable {
            body["instance_usable"] = json!(usable);
        }
        if let Some(repeatable) = operation.update_repeatable {
            body["update_repeatable"] = json!(repeatable);
        }
    }
    let response = OsbResponse::json(200, body);
    if operation.state == OperationState::InProgress {
        let after = operation.retry_after.unwrap_or(DEFAULT_RETRY_AFTER).max(1);
        response.with_header("Retry-After", after.to_string())
    } else {
        response
    }
}

/// A required query parameter (deprovision/unbind take `service_id` and `plan_id`).
fn required_query<'r>(request: &'r OsbRequest, name: &str) -> Result<&'r str, OsbError> {
    match request.query(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OsbError::bad_request(format!(
            "the query parameter {name} is required"
        ))),
    }
}

/// `{}` — the body of bodiless successes.
fn empty() -> Value {
    json!({})
}
