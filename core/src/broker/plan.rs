//! A plan as the broker uses it: the effective flags (plan overrides service), schemas,
//! templates, and the one place where unknown service/plan ids become a 400.

use serde_json::{json, Map, Value};

use crate::catalog::{Backend, Catalog, PlanView};
use crate::error::OsbError;
use crate::schema::ParameterSchema;
use crate::state::InstanceRecord;
use crate::template::{SecretSeed, TemplateContext};

/// Which parameters are being validated.
#[derive(Debug, Clone, Copy)]
pub enum ParamsKind {
    /// `schemas.service_instance.create`
    Provision,
    /// `schemas.service_instance.update`
    Update,
    /// `schemas.service_binding.create`
    Bind,
}

/// The effective settings of one plan of one service.
pub struct PlanInfo<'c> {
    view: PlanView<'c>,
    /// Service name, for messages.
    pub service_name: &'c str,
    /// Plan name, for messages.
    pub plan_name: &'c str,
    /// Effective `bindable`.
    pub bindable: bool,
    /// Effective `plan_updateable`.
    pub plan_updateable: bool,
    /// Service `instances_retrievable`.
    pub instances_retrievable: bool,
    /// Service `bindings_retrievable`.
    pub bindings_retrievable: bool,
    /// Service `allow_context_updates`.
    pub allow_context_updates: bool,
    /// Plan `binding_rotatable`.
    pub binding_rotatable: bool,
    /// Plan `maintenance_info.version`.
    pub maintenance_version: Option<String>,
    /// Seconds after which an unfinished operation fails: the plan's
    /// `maximum_polling_duration`, else the backend's default.
    pub maximum_polling_duration: Option<u64>,
    /// The plan's backend.
    pub backend: &'c Backend,
}

impl<'c> PlanInfo<'c> {
    /// The plan `plan_id` of service `service_id`; unknown ids are a 400 naming them.
    pub fn lookup(catalog: &'c Catalog, service_id: &str, plan_id: &str) -> Result<Self, OsbError> {
        if catalog.service(service_id).is_none() {
            return Err(OsbError::bad_request(format!(
                "service_id {service_id:?} is not in the catalog"
            )));
        }
        let view = catalog.plan(service_id, plan_id).ok_or_else(|| {
            OsbError::bad_request(format!(
                "plan_id {plan_id:?} is not a plan of service {service_id:?}"
            ))
        })?;
        Ok(Self {
            service_name: &view.service().name,
            plan_name: &view.plan().name,
            bindable: view.bindable(),
            plan_updateable: view.plan_updateable(),
            instances_retrievable: view.instances_retrievable(),
            bindings_retrievable: view.bindings_retrievable(),
            allow_context_updates: view.allow_context_updates(),
            binding_rotatable: view.binding_rotatable(),
            maintenance_version: view.maintenance_info().map(|m| m.version.clone()),
            maximum_polling_duration: view
                .maximum_polling_duration()
                .or_else(|| view.backend().default_deadline_seconds()),
            backend: view.backend(),
            view,
        })
    }

    /// Validates request parameters against the plan's JSON Schema; a violation is a 400
    /// naming the field (`parameters.size: 5 is greater than the maximum of 3`).
    pub fn validate(
        &self,
        kind: ParamsKind,
        parameters: &Map<String, Value>,
    ) -> Result<(), OsbError> {
        let schema: Option<&ParameterSchema> = match kind {
            ParamsKind::Provision => self.view.instance_create_schema(),
            ParamsKind::Update => self.view.instance_update_schema(),
            ParamsKind::Bind => self.view.binding_create_schema(),
        };
        let Some(schema) = schema else {
            return Ok(());
        };
        schema
            .validate(&Value::Object(parameters.clone()))
            .map_err(|violations| {
                let details: Vec<String> = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field_path("parameters"), v.message))
                    .collect();
                OsbError::bad_request(format!("invalid parameters: {}", details.join("; ")))
            })
    }

    /// The template context of an instance of this plan.
    pub fn template_context(
        &self,
        instance: &InstanceRecord,
        parameters: &Map<String, Value>,
        context: &Value,
    ) -> TemplateContext {
        self.view
            .template_context(
                &instance.instance_id,
                SecretSeed::new(instance.seed.as_bytes()),
            )
            .with_parameters(Value::Object(parameters.clone()))
            .with_context(legacy_context(instance, context))
    }

    /// Renders the plan's dashboard URL template for a new instance.
    pub fn render_dashboard_url(
        &self,
        instance: &InstanceRecord,
    ) -> Result<Option<String>, OsbError> {
        let ctx = self.template_context(instance, &instance.parameters, &instance.context);
        self.backend.render_dashboard_url(&ctx).map_err(|e| {
            OsbError::bad_request(format!("cannot render the dashboard URL: {}", e.message()))
        })
    }

    /// Broker-generated instance metadata: the plan and service as labels.
    pub fn instance_metadata(&self, _instance: &InstanceRecord) -> crate::state::InstanceMetadata {
        let mut labels = Map::new();
        labels.insert("service".into(), json!(self.service_name));
        labels.insert("plan".into(), json!(self.plan_name));
        let mut attributes = Map::new();
        attributes.insert("broker".into(), json!("spin-osb"));
        attributes.insert("backend".into(), json!(self.backend.type_name()));
        crate::state::InstanceMetadata { labels, attributes }
    }

    /// Binding `metadata` (`expires_at`, `renew_before`) when the plan limits binding life.
    pub fn binding_metadata(&self, now: u64) -> Option<Value> {
        let lifetime = self.view.plan().binding_lifetime.as_ref()?;
        let expires = now + lifetime.expires_after_seconds;
        let renew_window = lifetime
            .renew_before_expiry_seconds
            .unwrap_or(lifetime.expires_after_seconds / 10);
        let renew = expires.saturating_sub(renew_window);
        Some(json!({
            "expires_at": iso8601(expires),
            "renew_before": iso8601(renew.max(now)),
            "expires_at_unix": expires,
        }))
    }
}

/// The OSB context, completed with the deprecated top-level CF fields when the platform sent
/// those instead (2.13-era clients), so templates can rely on `context.organization_guid`.
fn legacy_context(instance: &InstanceRecord, context: &Value) -> Value {
    let mut context = match context {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    if let Some(org) = &instance.organization_guid {
        context
            .entry("organization_guid")
            .or_insert_with(|| json!(org));
    }
    if let Some(space) = &instance.space_guid {
        context.entry("space_guid").or_insert_with(|| json!(space));
    }
    Value::Object(context)
}

/// `yyyy-mm-ddThh:mm:ss.0Z`, the format the spec prescribes for binding metadata.
pub fn iso8601(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.0Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.0Z");
        assert_eq!(super::iso8601(1_577_836_799), "2019-12-31T23:59:59.0Z");
        assert_eq!(super::iso8601(1_709_208_000), "2024-02-29T12:00:00.0Z");
    }
}
