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
mod maintenance;
mod plan;
mod responses;

pub use maintenance::{Maintenance, Started};
pub use plan::{iso8601, ParamsKind};

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Services;
use crate::catalog::{CatalogLookup, CompiledPlan, LookupError, PlanBackend};
use crate::env::Env;
use crate::error::OsbError;
use crate::http::{resolve, Endpoint, OsbRequest, OsbResponse};
use crate::kv::Kv;
use crate::metrics::Metrics;
use crate::outbound::{Config, HttpClient, Outbound};
use crate::parameter_check::ParameterChecker;
use crate::state::{create_record, replace, Created, InstanceRecord, Record, Stored};

/// Seconds a poll may hold an operation while it calls the backend.
pub const LEASE_SECONDS: u64 = 30;

/// How long a step's backend calls may take in all: well inside [`LEASE_SECONDS`], so a
/// step has always ended, and written its outcome, before another poll may take its lease.
pub const STEP_BUDGET: Duration = Duration::from_secs(20);
const _: () = assert!(STEP_BUDGET.as_secs() + 5 < LEASE_SECONDS);
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
    /// Checks request parameters against a plan's schema: the `osb-parameters` component
    /// in Spin, in process in native tests.
    pub parameters: &'a dyn ParameterChecker,
}

/// The path's ids (decoded and validated), once the path is known to be the endpoint's.
struct Ids {
    instance: String,
    binding: String,
}

/// One public entry point per endpoint. Each component calls exactly one of them, so the
/// linker keeps only that endpoint's code (and its backends) in the component.
impl Broker<'_> {
    /// Serves `request` as `endpoint` (native tests and tools; components call the endpoint's
    /// own method so they link only what it uses).
    pub async fn handle(&self, endpoint: Endpoint, request: &OsbRequest) -> OsbResponse {
        match endpoint {
            Endpoint::Catalog => self.serve_catalog(request),
            Endpoint::Provision => self.serve_provision(request).await,
            Endpoint::Update => self.serve_update(request).await,
            Endpoint::Deprovision => self.serve_deprovision(request).await,
            Endpoint::FetchInstance => self.serve_fetch_instance(request),
            Endpoint::InstanceLastOperation => self.serve_instance_last_operation(request).await,
            Endpoint::Bind => self.serve_bind(request).await,
            Endpoint::Unbind => self.serve_unbind(request).await,
            Endpoint::FetchBinding => self.serve_fetch_binding(request),
            Endpoint::BindingLastOperation => self.serve_binding_last_operation(request).await,
        }
    }

    /// `GET /v2/catalog`.
    pub fn serve_catalog(&self, request: &OsbRequest) -> OsbResponse {
        serve_catalog(self.catalog, request)
    }

    /// `PUT /v2/service_instances/:instance_id`.
    pub async fn serve_provision(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::Provision, request) {
            Ok(ids) => respond(self.provision(&ids.instance, request).await),
            Err(error) => error.into(),
        }
    }

    /// `PATCH /v2/service_instances/:instance_id`.
    pub async fn serve_update(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::Update, request) {
            Ok(ids) => respond(self.update(&ids.instance, request).await),
            Err(error) => error.into(),
        }
    }

    /// `DELETE /v2/service_instances/:instance_id`.
    pub async fn serve_deprovision(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::Deprovision, request) {
            Ok(ids) => respond(self.deprovision(&ids.instance, request).await),
            Err(error) => error.into(),
        }
    }

    /// `GET /v2/service_instances/:instance_id`.
    pub fn serve_fetch_instance(&self, request: &OsbRequest) -> OsbResponse {
        respond(
            ids(Endpoint::FetchInstance, request)
                .and_then(|ids| self.fetch_instance(&ids.instance, request)),
        )
    }

    /// `GET /v2/service_instances/:instance_id/last_operation`.
    pub async fn serve_instance_last_operation(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::InstanceLastOperation, request) {
            Ok(ids) => respond(self.instance_last_operation(&ids.instance, request).await),
            Err(error) => error.into(),
        }
    }

    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn serve_bind(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::Bind, request) {
            Ok(ids) => respond(self.bind(&ids.instance, &ids.binding, request).await),
            Err(error) => error.into(),
        }
    }

    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn serve_unbind(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::Unbind, request) {
            Ok(ids) => respond(self.unbind(&ids.instance, &ids.binding, request).await),
            Err(error) => error.into(),
        }
    }

    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub fn serve_fetch_binding(&self, request: &OsbRequest) -> OsbResponse {
        respond(
            ids(Endpoint::FetchBinding, request)
                .and_then(|ids| self.fetch_binding(&ids.instance, &ids.binding, request)),
        )
    }

    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id/last_operation`.
    pub async fn serve_binding_last_operation(&self, request: &OsbRequest) -> OsbResponse {
        match ids(Endpoint::BindingLastOperation, request) {
            Ok(ids) => respond(
                self.binding_last_operation(&ids.instance, &ids.binding, request)
                    .await,
            ),
            Err(error) => error.into(),
        }
    }
}

/// `GET /v2/catalog` without a broker: the catalog component needs nothing else (no
/// state, no outbound HTTP), so it links nothing else.
pub fn serve_catalog(catalog: &dyn CatalogLookup, request: &OsbRequest) -> OsbResponse {
    respond(ids(Endpoint::Catalog, request).and_then(|_| {
        let document = catalog.document()?;
        Ok(catalog_endpoint::catalog_response(document, request))
    }))
}

/// The ids of `request`'s path, which must be `endpoint`'s (the gateway routed it here).
fn ids(endpoint: Endpoint, request: &OsbRequest) -> Result<Ids, OsbError> {
    let path = resolve(&request.method, &request.path)?;
    if path.endpoint != endpoint {
        return Err(OsbError::not_found(format!(
            "{} {} is not served by this component",
            request.method, request.path
        )));
    }
    Ok(Ids {
        instance: path.instance_id.unwrap_or_default(),
        binding: path.binding_id.unwrap_or_default(),
    })
}

fn respond(result: Result<OsbResponse, OsbError>) -> OsbResponse {
    result.unwrap_or_else(OsbResponse::from)
}

impl Broker<'_> {
    /// What backends may use.
    pub fn services(&self) -> Services<'_> {
        Services {
            http: Outbound::new(self.http, self.env, STEP_BUDGET),
            config: self.config,
            kv: self.kv,
        }
    }

    /// Looks up a plan of a service: unknown ids are a 400 naming them, an untrusted
    /// catalog a 500.
    pub fn plan(&self, service_id: &str, plan_id: &str) -> Result<Arc<CompiledPlan>, OsbError> {
        Ok(self.catalog.plan(service_id, plan_id)?)
    }

    /// The plan if the catalog still has it (`None` for unknown ids: an existing instance's
    /// plan may have left the catalog); an untrusted catalog is still an error.
    pub fn known_plan(
        &self,
        service_id: &str,
        plan_id: &str,
    ) -> Result<Option<Arc<CompiledPlan>>, OsbError> {
        match self.catalog.plan(service_id, plan_id) {
            Ok(plan) => Ok(Some(plan)),
            Err(LookupError::Untrusted(untrusted)) => Err(untrusted.into()),
            Err(_) => Ok(None),
        }
    }

    /// The backend that deletes a resource of `service_id`/`plan_id`: the plan's, or, when
    /// the plan has left the catalog, the remnant of the backend `instance` was provisioned
    /// with (see [`crate::catalog::PlanBackend::remnant`]).
    fn deleting_backend(
        &self,
        service_id: &str,
        plan_id: &str,
        instance: Option<&InstanceRecord>,
    ) -> Result<DeletingBackend, OsbError> {
        if let Some(plan) = self.known_plan(service_id, plan_id)? {
            return Ok(DeletingBackend::Plan(plan));
        }
        instance
            .and_then(instance::remnant_backend)
            .map(DeletingBackend::Remnant)
            .ok_or_else(|| {
                OsbError::bad_request(format!(
                    "plan_id {plan_id:?} is not a plan of service {service_id:?}"
                ))
            })
    }

    /// Counting for this request (see [`crate::metrics`]).
    pub(crate) fn metrics(&self) -> Metrics<'_> {
        Metrics::new(self.kv, self.env, self.config)
    }

    /// [`replace`] for instance and binding records: every change of one goes through here,
    /// so the metrics see every transition that landed, once.
    fn write<R: Record>(
        &self,
        key: &str,
        current: &Stored<R>,
        new: &R,
    ) -> Result<Option<Stored<R>>, OsbError> {
        let written = replace(self.kv, self.env, key, current, new)?;
        if written.is_some() {
            crate::quota::record_written(self.kv, Some(current.in_store()), new);
            self.metrics().record_written(Some(current.in_store()), new);
        }
        Ok(written)
    }

    /// [`create_record`], counted like [`Broker::write`].
    fn create<R: Record>(
        &self,
        key: &str,
        record: &R,
        seen: Option<Stored<R>>,
    ) -> Result<Created<R>, OsbError> {
        let tombstone = seen.as_ref().map(|s| s.in_store().clone());
        let created = create_record(self.kv, self.env, key, record, seen)?;
        if let Created::New(_) = &created {
            crate::quota::record_written(self.kv, tombstone.as_ref(), record);
            self.metrics().record_written(tombstone.as_ref(), record);
        }
        Ok(created)
    }

    /// Whether steps on the plan's backend may run without a lease (see
    /// [`crate::catalog::PlanBackend::steps_are_local`]); a plan that has left the catalog, or a
    /// catalog that cannot be read, takes the lease.
    pub(crate) fn steps_are_local(&self, service_id: &str, plan_id: &str) -> bool {
        self.known_plan(service_id, plan_id)
            .is_ok_and(|plan| plan.is_some_and(|plan| plan.backend.steps_are_local()))
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

/// See [`Broker::deleting_backend`].
enum DeletingBackend {
    Plan(Arc<CompiledPlan>),
    Remnant(&'static PlanBackend),
}

impl DeletingBackend {
    fn config(&self) -> &PlanBackend {
        match self {
            DeletingBackend::Plan(plan) => &plan.backend,
            DeletingBackend::Remnant(backend) => backend,
        }
    }

    /// The deletion's deadline: the plan's, else the backend's default.
    fn deadline(&self) -> Option<u64> {
        match self {
            DeletingBackend::Plan(plan) => plan.maximum_polling_duration,
            DeletingBackend::Remnant(backend) => backend.default_deadline_seconds(),
        }
    }
}
