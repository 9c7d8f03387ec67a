//! The service catalog: what `GET /v2/catalog` serves, and how the broker fulfils each plan.
//!
//! The catalog is a directory of YAML files, loaded and checked once at start-up. Loading
//! either yields a [`Catalog`] that every later request can trust (ids unique, schemas
//! compiled, templates parsed), or a [`CatalogError`] listing every problem with its file,
//! field path and, where the parser knows it, line and column:
//!
//! ```text
//! catalog/services.yaml: services[0].plans[1].schemas.service_instance.create.parameters: invalid JSON Schema: ...
//! catalog/services.yaml:12:7: services[0].plans[0].backend.async: invalid boolean (strict mode expects true/false)
//! ```
//!
//! # Format
//!
//! Every `*.yaml` / `*.yml` file of the directory is read, in file-name order; each holds a
//! top-level `services:` list. Services and plans use the OSB field names unchanged
//! (OSB v2.17 "Service Offering Object" and "Service Plan Object"); unknown fields are
//! errors. Each plan adds a `backend:`, which is never part of `GET /v2/catalog`.
//!
//! ```yaml
//! services:
//!   - id: 5b3c2a3e-…            # required, globally unique (GUID recommended), never change it
//!     name: shared-credentials   # required, unique across services, CLI-friendly
//!     description: …             # required
//!     bindable: true             # required: default for the plans
//!     tags: [credentials]        # optional fields below are left out of the JSON when absent
//!     requires: []               # syslog_drain | route_forwarding | volume_mount
//!     instances_retrievable: true
//!     bindings_retrievable: true
//!     allow_context_updates: true
//!     plan_updateable: true      # default for the plans (OSB default false)
//!     metadata: {displayName: …} # free-form object
//!     dashboard_client: {id: …, secret: …, redirect_uri: …}
//!     plans:                     # at least one
//!       - id: 9f1c…              # required, unique across ALL services
//!         name: sync             # required, unique within the service
//!         description: …         # required
//!         free: true
//!         bindable: true         # overrides the service's
//!         plan_updateable: true  # overrides the service's
//!         binding_rotatable: true
//!         maximum_polling_duration: 60   # seconds, > 0
//!         maintenance_info: {version: 1.0.0, description: …}   # version: semver 2.0
//!         metadata: {bullets: […]}
//!         schemas:               # JSON Schemas; `$schema` required, no external $ref, ≤ 64 kB
//!           service_instance: {create: {parameters: {…}}, update: {parameters: {…}}}
//!           service_binding: {create: {parameters: {…}}}   # only on bindable plans
//!         backend:
//!           type: credentials    # write `type` first: errors inside then keep their line
//!           async: false         # true: provision/bind answer 202, finish on a later poll
//!           delay_seconds: 0     # with async: seconds an operation stays "in progress"
//!           credentials:         # the binding's credentials; string leaves are templates
//!             username: "u-{{ binding_id[:8] }}"
//!             password: "{{ secret('password') }}"
//!             uri: "redis://{{ parameters.host | default('localhost') }}:6379"
//!           dashboard_url: "https://dash.example.com/{{ instance_id }}"   # optional
//! ```
//!
//! Templates are MiniJinja (see [`crate::template`] for the variables and functions). They
//! are parsed at load time, and a variable that does not exist where the template is used
//! (e.g. `binding_id` in `dashboard_url`) is a load error. YAML 1.2 booleans only
//! (`true`/`false`; `yes` is a string).
//!
//! Checks besides syntax and types: non-empty ids, names and descriptions; unique service
//! ids and names, plan ids (across all services) and plan names (within a service); at least
//! one plan; schemas valid; `maintenance_info.version` semver; `maximum_polling_duration`
//! positive; on a non-bindable plan (own `bindable: false`, or inherited), no binding schema,
//! no `binding_rotatable: true` and no credentials; `delay_seconds` only with `async: true`
//! and below `maximum_polling_duration`.

mod compiled;
mod error;
mod load;
mod model;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use crate::backend::registry::PlanBackend;
pub use compiled::{
    all_plans, etag_of, plan_file_name, CatalogDocument, CatalogLookup, CompiledCatalog,
    CompiledPlan, CompiledSchema, CompiledSchemas, LookupError, Manifest, Untrusted, FORMAT,
};
pub use error::{check_template_leaves, CatalogError, Problem, Problems};
pub use model::{
    BindingLifetime, DashboardClient, InputParameters, MaintenanceInfo, Permission, Schemas,
    ServiceBindingSchemas, ServiceInstanceSchemas, ServiceOffering, ServicePlan,
};

use crate::quota::{Limit, Quotas, Scope};
use crate::schema::ParameterSchema;
use crate::template::{SecretSeed, TemplateContext};

/// A loaded, valid catalog as written: the services, their compiled schemas, and the
/// [`CompiledCatalog`] requests read (see [`compiled`](self::CompiledCatalog) for why the
/// compiled form exists). Only native tools hold one: `spin-osb catalog check`, the
/// compiler, and tests, which serve it through the same compiled form components read.
#[derive(Debug, Clone)]
pub struct Catalog {
    services: Vec<ServiceOffering>,
    /// The top-level `quotas:` (limits on all the broker's instances).
    quotas: Option<Quotas>,
    /// `schemas[s][p]` belongs to `services[s].plans[p]`.
    schemas: Vec<Vec<PlanSchemas>>,
    compiled: CompiledCatalog,
    body: String,
    etag: String,
}

/// The compiled parameter schemas of one plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanSchemas {
    pub(crate) instance_create: Option<ParameterSchema>,
    pub(crate) instance_update: Option<ParameterSchema>,
    pub(crate) binding_create: Option<ParameterSchema>,
}

#[derive(Serialize)]
struct OsbCatalog<'a> {
    services: &'a [ServiceOffering],
}

impl Catalog {
    /// Loads every `*.yaml`/`*.yml` file in `dir` (sorted by name). The only I/O of the core.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let files = load::read_dir(dir.as_ref())?;
        load::load(&files)
    }

    /// Loads `(file name, YAML text)` pairs, for components that embed their catalog and for
    /// tests; the names only label problems.
    pub fn from_yaml_documents<N: AsRef<str>, T: AsRef<str>>(
        files: &[(N, T)],
    ) -> Result<Catalog, CatalogError> {
        load::load(files)
    }

    fn new(
        services: Vec<ServiceOffering>,
        schemas: Vec<Vec<PlanSchemas>>,
        sources: Vec<String>,
        quotas: Option<Quotas>,
    ) -> Catalog {
        // Serialising plain structs and JSON values cannot fail.
        let body = serde_json::to_string(&OsbCatalog {
            services: &services,
        })
        .unwrap_or_default();
        let etag = etag_of(body.as_bytes());
        let mut catalog = Catalog {
            services,
            quotas,
            schemas,
            compiled: CompiledCatalog::from_files(Default::default()),
            body,
            etag,
        };
        let plans = catalog.plans().map(|view| view.compile()).collect();
        catalog.compiled = CompiledCatalog::build(catalog.body.clone(), plans, sources);
        catalog
    }

    /// The compiled form of this catalog, in memory: what `spin-osb-catalog compile` writes
    /// and what components read.
    pub fn compiled(&self) -> &CompiledCatalog {
        &self.compiled
    }

    /// All services, in file order then document order.
    pub fn services(&self) -> &[ServiceOffering] {
        &self.services
    }

    /// The service with this id.
    pub fn service(&self, service_id: &str) -> Option<&ServiceOffering> {
        self.services.iter().find(|s| s.id == service_id)
    }

    /// The plan `plan_id` of service `service_id`; `None` also when the plan exists but
    /// belongs to another service, which a request must not mix up.
    pub fn plan(&self, service_id: &str, plan_id: &str) -> Option<PlanView<'_>> {
        self.plans()
            .find(|view| view.service.id == service_id && view.plan.id == plan_id)
    }

    /// The plan with this id, whatever its service (plan ids are unique across services).
    pub fn plan_by_id(&self, plan_id: &str) -> Option<PlanView<'_>> {
        self.plans().find(|view| view.plan.id == plan_id)
    }

    /// Every plan of every service.
    pub fn plans(&self) -> impl Iterator<Item = PlanView<'_>> {
        let broker_quotas = self.quotas.as_ref();
        self.services
            .iter()
            .zip(&self.schemas)
            .flat_map(move |(service, schemas)| {
                service
                    .plans
                    .iter()
                    .zip(schemas)
                    .map(move |(plan, schemas)| PlanView {
                        service,
                        plan,
                        schemas,
                        broker_quotas,
                    })
            })
    }

    /// The `GET /v2/catalog` body as JSON: OSB fields only, absent optional fields left out,
    /// never a `backend`.
    pub fn to_osb_json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The same body serialised, exactly the bytes [`Catalog::etag`] is computed from; serve
    /// these so that the ETag matches what the platform caches.
    pub fn osb_body(&self) -> &str {
        &self.body
    }

    /// A strong ETag (quoted) of the body: the first 128 bits of its SHA-256, so it changes
    /// whenever anything the platform sees changes, and only then.
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// A plan together with its service: the effective values of fields a plan inherits, and
/// the compiled schemas. What request handling works with.
#[derive(Debug, Clone, Copy)]
pub struct PlanView<'a> {
    service: &'a ServiceOffering,
    plan: &'a ServicePlan,
    schemas: &'a PlanSchemas,
    broker_quotas: Option<&'a Quotas>,
}

impl<'a> PlanView<'a> {
    /// The service as written.
    pub fn service(&self) -> &'a ServiceOffering {
        self.service
    }

    /// The plan as written.
    pub fn plan(&self) -> &'a ServicePlan {
        self.plan
    }

    /// The plan's `bindable`, else the service's.
    pub fn bindable(&self) -> bool {
        self.plan.bindable.unwrap_or(self.service.bindable)
    }

    /// The plan's `plan_updateable`, else the service's, else false.
    pub fn plan_updateable(&self) -> bool {
        self.plan
            .plan_updateable
            .or(self.service.plan_updateable)
            .unwrap_or(false)
    }

    /// Whether fetching an instance is supported (absent means false).
    pub fn instances_retrievable(&self) -> bool {
        self.service.instances_retrievable.unwrap_or(false)
    }

    /// Whether fetching a binding is supported (absent means false).
    pub fn bindings_retrievable(&self) -> bool {
        self.service.bindings_retrievable.unwrap_or(false)
    }

    /// Whether context-only updates are accepted (absent means false).
    pub fn allow_context_updates(&self) -> bool {
        self.service.allow_context_updates.unwrap_or(false)
    }

    /// Whether bindings can be rotated (absent means false).
    pub fn binding_rotatable(&self) -> bool {
        self.plan.binding_rotatable.unwrap_or(false)
    }

    /// Whether the plan is free (absent means true).
    pub fn free(&self) -> bool {
        self.plan.free.unwrap_or(true)
    }

    /// The plan's `maximum_polling_duration`, in seconds.
    pub fn maximum_polling_duration(&self) -> Option<u64> {
        self.plan.maximum_polling_duration
    }

    /// The plan's `maintenance_info`.
    pub fn maintenance_info(&self) -> Option<&'a MaintenanceInfo> {
        self.plan.maintenance_info.as_ref()
    }

    /// How the broker fulfils the plan.
    pub fn backend(&self) -> &'a PlanBackend {
        &self.plan.backend
    }

    /// Schema of provision parameters, if the plan declares one.
    pub fn instance_create_schema(&self) -> Option<&'a ParameterSchema> {
        self.schemas.instance_create.as_ref()
    }

    /// Whether the plan's provision schema declares the top-level parameter `name`.
    pub fn declares_parameter(&self, name: &str) -> bool {
        self.instance_create_schema()
            .and_then(|schema| schema.as_json().pointer("/properties"))
            .and_then(Value::as_object)
            .is_some_and(|properties| properties.contains_key(name))
    }

    /// Schema of update parameters, if the plan declares one.
    pub fn instance_update_schema(&self) -> Option<&'a ParameterSchema> {
        self.schemas.instance_update.as_ref()
    }

    /// Schema of binding parameters, if the plan declares one.
    pub fn binding_create_schema(&self) -> Option<&'a ParameterSchema> {
        self.schemas.binding_create.as_ref()
    }

    /// The plan as requests use it: effective flags, schemas (with their verdict on `{}`),
    /// backend.
    pub fn compile(&self) -> CompiledPlan {
        let schema = |compiled: Option<&ParameterSchema>| {
            compiled.map(|schema| {
                let empty_violations = match schema.validate(&Value::Object(Default::default())) {
                    Ok(()) => Vec::new(),
                    Err(violations) => violations.iter().map(ToString::to_string).collect(),
                };
                CompiledSchema::new(schema.as_json().clone(), empty_violations)
            })
        };
        CompiledPlan {
            service_id: self.service.id.clone(),
            service_name: self.service.name.clone(),
            plan_id: self.plan.id.clone(),
            plan_name: self.plan.name.clone(),
            bindable: self.bindable(),
            plan_updateable: self.plan_updateable(),
            instances_retrievable: self.instances_retrievable(),
            bindings_retrievable: self.bindings_retrievable(),
            allow_context_updates: self.allow_context_updates(),
            binding_rotatable: self.binding_rotatable(),
            maintenance_version: self.maintenance_info().map(|m| m.version.clone()),
            maximum_polling_duration: self
                .maximum_polling_duration()
                .or_else(|| self.backend().default_deadline_seconds()),
            binding_lifetime: self.plan.binding_lifetime.clone(),
            schemas: CompiledSchemas {
                instance_create: schema(self.instance_create_schema()),
                instance_update: schema(self.instance_update_schema()),
                binding_create: schema(self.binding_create_schema()),
            },
            backend: self.plan.backend.clone(),
            quotas: self.limits(),
        }
    }

    /// Every quota limit a provision of this plan checks: the broker's, the service's, the
    /// plan's.
    pub fn limits(&self) -> Vec<Limit> {
        let mut limits = Vec::new();
        if let Some(quotas) = self.broker_quotas {
            limits.extend(quotas.limits(Scope::Broker, ""));
        }
        if let Some(quotas) = &self.service.quotas {
            limits.extend(quotas.limits(Scope::Service, &self.service.id));
        }
        if let Some(quotas) = &self.plan.quotas {
            limits.extend(quotas.limits(Scope::Plan, &self.plan.id));
        }
        limits
    }

    /// A template context for an instance of this plan, with `service` and `plan` filled in;
    /// add the binding, parameters and OSB context with its `with_*` methods.
    pub fn template_context(
        &self,
        instance_id: impl Into<String>,
        seed: SecretSeed,
    ) -> TemplateContext {
        TemplateContext::new(instance_id, seed)
            .with_service(&self.service.id, &self.service.name)
            .with_plan(&self.plan.id, &self.plan.name)
    }
}

/// `catalog check` on a directory, worded once for every tool that checks a catalog
/// (`spin-osb catalog check`, `spin-osb-catalog check|compile`): the catalog and the line to
/// print, or every problem (one per line) and the closing line.
pub fn check_dir(dir: &Path) -> Result<(Catalog, String), (CatalogError, String)> {
    match Catalog::load_dir(dir) {
        Ok(catalog) => {
            let plans: usize = catalog.services().iter().map(|s| s.plans.len()).sum();
            let mut summary = format!(
                "{}: valid ({} services, {plans} plans, ETag {})",
                dir.display(),
                catalog.services().len(),
                catalog.etag()
            );
            for warning in catalog.warnings() {
                summary.push_str(&format!("\nwarning: {warning}"));
            }
            Ok((catalog, summary))
        }
        Err(errors) => {
            let summary = format!(
                "{}: {} problem(s) found",
                dir.display(),
                errors.problems().len()
            );
            Err((errors, summary))
        }
    }
}

impl Catalog {
    /// What is valid but risky (see [`crate::backend::BackendConfig::warnings`]), per plan.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for service in &self.services {
            for plan in &service.plans {
                for warning in plan.backend.warnings() {
                    warnings.push(format!(
                        "service {:?}, plan {:?}: {warning}",
                        service.name, plan.name
                    ));
                }
            }
        }
        warnings
    }
}

impl CatalogLookup for Catalog {
    fn document(&self) -> Result<CatalogDocument, Untrusted> {
        self.compiled.document()
    }

    fn plan(&self, service_id: &str, plan_id: &str) -> Result<Arc<CompiledPlan>, LookupError> {
        CatalogLookup::plan(&self.compiled, service_id, plan_id)
    }
}
