//! A plan as the broker uses it: parameter validation, template contexts and metadata over
//! the compiled plan (effective flags, schemas, backend).

use serde_json::{json, Map, Value};

use crate::catalog::CompiledPlan;
use crate::error::OsbError;
use crate::state::{BindingRecord, InstanceRecord};
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

impl super::Broker<'_> {
    /// Validates request parameters against the plan's JSON Schema; a violation is a 400
    /// naming the field (`parameters.size: 5 is greater than the maximum of 3`).
    pub(super) async fn check_parameters(
        &self,
        plan: &CompiledPlan,
        kind: ParamsKind,
        parameters: &Map<String, Value>,
    ) -> Result<(), OsbError> {
        let schema = match kind {
            ParamsKind::Provision => plan.schemas.instance_create.as_ref(),
            ParamsKind::Update => plan.schemas.instance_update.as_ref(),
            ParamsKind::Bind => plan.schemas.binding_create.as_ref(),
        };
        let Some(schema) = schema else {
            return Ok(());
        };
        // Most requests send no parameters: the compiler already knows what the schema says
        // about `{}`, so only requests with parameters pay for compiling the schema.
        let details: Vec<String> = if parameters.is_empty() {
            schema.empty_violations.clone()
        } else {
            let parameters = Value::Object(parameters.clone());
            self.parameters
                .check(&schema.schema, &parameters)
                .await
                .map_err(|e| {
                    OsbError::internal(format!(
                        "cannot check the parameters of plan {:?}: {e}",
                        plan.plan_name
                    ))
                })?
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        if details.is_empty() {
            Ok(())
        } else {
            Err(OsbError::bad_request(format!(
                "invalid parameters: {}",
                details.join("; ")
            )))
        }
    }
}

/// Request-time rules of a compiled plan: templates, metadata, maintenance.
impl CompiledPlan {
    /// A request's `maintenance_info` must name the plan's current version (the spec
    /// compares versions only): else 422 `MaintenanceInfoConflict`, so the platform fetches
    /// the catalog again.
    pub fn check_maintenance_info(
        &self,
        requested: Option<&crate::types::MaintenanceInfo>,
    ) -> Result<(), OsbError> {
        match requested {
            Some(requested) if self.maintenance_version.as_deref() != Some(requested.version.as_str()) => {
                Err(OsbError::maintenance_info_conflict(format!(
                    "maintenance_info.version {:?} does not match the plan's current version {}; fetch the catalog again",
                    requested.version,
                    self.maintenance_version
                        .as_deref()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_else(|| "(none)".into())
                )))
            }
            _ => Ok(()),
        }
    }

    /// The template context of an instance of this plan.
    pub fn template_context(
        &self,
        instance: &InstanceRecord,
        parameters: &Map<String, Value>,
        context: &Value,
    ) -> TemplateContext {
        TemplateContext::new(
            instance.instance_id.clone(),
            SecretSeed::new(instance.seed.as_bytes()),
        )
        .with_service(&self.service_id, &self.service_name)
        .with_plan(&self.plan_id, &self.plan_name)
        .with_parameters(Value::Object(parameters.clone()))
        .with_context(legacy_context(instance, context))
    }

    /// The template context of a backend step under this plan: the instance's, plus
    /// `binding_id` and `instance_parameters` when the step is for a binding.
    pub fn step_template_context(
        &self,
        instance: &InstanceRecord,
        parameters: &Map<String, Value>,
        context: &Value,
        binding: Option<&BindingRecord>,
    ) -> TemplateContext {
        let ctx = self.template_context(instance, parameters, context);
        match binding {
            Some(binding) => ctx
                .with_binding(&binding.binding_id)
                .with_instance_parameters(Value::Object(instance.parameters.clone())),
            None => ctx,
        }
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
        let lifetime = self.binding_lifetime.as_ref()?;
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
