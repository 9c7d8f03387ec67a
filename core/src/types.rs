//! OSB request bodies. Unknown fields are ignored (the spec requires it); a field of the
//! wrong type is a 400 naming the field.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::OsbError;

/// `maintenance_info` in requests; only `version` matters.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MaintenanceInfo {
    /// Semantic version of the plan's maintenance state.
    pub version: String,
}

/// `PUT /v2/service_instances/:instance_id` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ProvisionRequest {
    /// Required.
    pub service_id: String,
    /// Required.
    pub plan_id: String,
    /// Platform context (`platform`, CF org/space, Kubernetes namespace...).
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Deprecated in favour of `context`, still REQUIRED (checked, not by serde, so a
    /// missing one gets a 400 that names it).
    #[serde(default)]
    pub organization_guid: Option<String>,
    /// Deprecated in favour of `context`, still REQUIRED.
    #[serde(default)]
    pub space_guid: Option<String>,
    /// User parameters, validated against the plan's schema.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Must match the plan's version when given.
    #[serde(default)]
    pub maintenance_info: Option<MaintenanceInfo>,
}

/// `previous_values` of an update.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PreviousValues {
    /// The plan before the update.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// Deprecated.
    #[serde(default)]
    pub service_id: Option<String>,
    /// The maintenance info before the update.
    #[serde(default)]
    pub maintenance_info: Option<MaintenanceInfo>,
}

/// `PATCH /v2/service_instances/:instance_id` body.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateRequest {
    /// Required.
    pub service_id: String,
    /// Absent: the plan does not change.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// New context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Absent: the parameters do not change.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Informational.
    #[serde(default)]
    pub previous_values: Option<PreviousValues>,
    /// Requested maintenance version.
    #[serde(default)]
    pub maintenance_info: Option<MaintenanceInfo>,
}

/// `PUT .../service_bindings/:binding_id` body.
#[derive(Debug, Clone, Deserialize)]
pub struct BindRequest {
    /// Required.
    pub service_id: String,
    /// Required.
    pub plan_id: String,
    /// Platform context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Deprecated in favour of `bind_resource.app_guid`.
    #[serde(default)]
    pub app_guid: Option<String>,
    /// `app_guid`, `route`, ...
    #[serde(default)]
    pub bind_resource: Option<Map<String, Value>>,
    /// User parameters, validated against the plan's binding schema.
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Set when rotating a binding.
    #[serde(default)]
    pub predecessor_binding_id: Option<String>,
}

/// Decodes a JSON body into `T`: broken JSON, a non-object, or a wrong field type is a
/// 400 whose description names the field (`plan_id: invalid type: integer ...`).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, OsbError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(OsbError::bad_request(
            "the request body is empty; a JSON object is required",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| OsbError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(OsbError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            OsbError::bad_request(format!("invalid request body: {inner}"))
        } else {
            OsbError::bad_request(format!("invalid request body: {path}: {inner}"))
        }
    })
}

/// Rejects empty required strings (`"service_id": ""`).
pub fn require_non_empty(name: &str, value: &str) -> Result<(), OsbError> {
    if value.trim().is_empty() {
        Err(OsbError::bad_request(format!(
            "{name} must be a non-empty string"
        )))
    } else {
        Ok(())
    }
}

/// A field the spec makes REQUIRED and non-empty, which the body may lack entirely.
pub fn require_present(name: &str, value: Option<&str>) -> Result<(), OsbError> {
    match value {
        Some(value) => require_non_empty(name, value),
        None => Err(OsbError::bad_request(format!(
            "{name} is required: a non-empty string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_fields_and_wrong_types_name_the_field() {
        let err = parse_body::<ProvisionRequest>(br#"{"service_id": "s"}"#).unwrap_err();
        assert!(err.description.contains("plan_id"), "{}", err.description);
        let err =
            parse_body::<ProvisionRequest>(br#"{"service_id": "s", "plan_id": 5}"#).unwrap_err();
        assert!(err.description.contains("plan_id"), "{}", err.description);
        let err = parse_body::<ProvisionRequest>(
            br#"{"service_id": "s", "plan_id": "p", "parameters": []}"#,
        )
        .unwrap_err();
        assert!(
            err.description.contains("parameters"),
            "{}",
            err.description
        );
    }

    #[test]
    fn broken_or_non_object_json_is_400() {
        for body in [&b"{"[..], b"[]", b"null", b"", b"  "] {
            assert_eq!(
                parse_body::<ProvisionRequest>(body).unwrap_err().status,
                400
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let req = parse_body::<ProvisionRequest>(
            br#"{"service_id": "s", "plan_id": "p", "x-vendor": {"a": 1}}"#,
        )
        .unwrap();
        assert_eq!(req.plan_id, "p");
    }
}
