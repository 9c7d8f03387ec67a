//! The bodies of the broker's successful answers, one type per body the spec defines, so
//! each field is named and spelt in one place. Errors are [`crate::error::OsbError`].

use serde::Serialize;
use serde_json::{Map, Value};

use crate::http::OsbResponse;
use crate::state::{BindingRecord, InstanceMetadata, InstanceRecord, Operation, OperationState};

use super::DEFAULT_RETRY_AFTER;

/// `{"operation": id}`: what the platform polls `last_operation` with.
#[derive(Serialize)]
struct Accepted<'a> {
    operation: &'a str,
}

/// The body of provision answers (`201`/`200`, and `202` with `operation`).
#[derive(Serialize)]
struct Provisioned<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a InstanceMetadata>,
}

/// `GET /v2/service_instances/:id`.
#[derive(Serialize)]
struct Instance<'a> {
    service_id: &'a str,
    plan_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<&'a str>,
    parameters: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance_info: Option<MaintenanceVersion<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a InstanceMetadata>,
}

#[derive(Serialize)]
struct MaintenanceVersion<'a> {
    version: &'a str,
}

/// A binding, as bind answers it and (with `parameters`) as fetch does.
#[derive(Serialize)]
struct Binding<'a> {
    credentials: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoints: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Map<String, Value>>,
}

/// `last_operation`.
#[derive(Serialize)]
struct LastOperation<'a> {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_usable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_repeatable: Option<bool>,
}

/// `{}`: the body of answers with nothing to say.
#[derive(Serialize)]
struct Empty {}

fn json(status: u16, body: &impl Serialize) -> OsbResponse {
    // Serialising these types cannot fail: every map key is a string.
    OsbResponse::json(status, serde_json::to_value(body).unwrap_or_default())
}

/// `202 Accepted` with the id the platform polls `last_operation` with.
pub(super) fn accepted(operation: &Operation) -> OsbResponse {
    json(
        202,
        &Accepted {
            operation: &operation.id,
        },
    )
}

/// `status` with `{}`.
pub(super) fn empty(status: u16) -> OsbResponse {
    json(status, &Empty {})
}

/// A provision's answer: `201`/`200` with the dashboard URL and metadata, or `202` that
/// also carries the operation.
pub(super) fn provisioned(status: u16, record: &InstanceRecord) -> OsbResponse {
    json(
        status,
        &Provisioned {
            dashboard_url: record.dashboard_url.as_deref(),
            operation: (status == 202).then_some(record.operation.id.as_str()),
            metadata: public_metadata(record),
        },
    )
}

/// `GET /v2/service_instances/:id`.
pub(super) fn instance(record: &InstanceRecord) -> OsbResponse {
    json(
        200,
        &Instance {
            service_id: &record.service_id,
            plan_id: &record.plan_id,
            dashboard_url: record.dashboard_url.as_deref(),
            parameters: &record.parameters,
            maintenance_info: record
                .maintenance_info_version
                .as_deref()
                .map(|version| MaintenanceVersion { version }),
            metadata: public_metadata(record),
        },
    )
}

fn public_metadata(record: &InstanceRecord) -> Option<&InstanceMetadata> {
    (record.metadata != InstanceMetadata::default()).then_some(&record.metadata)
}

/// A binding with its credentials (and, when fetched, its parameters).
pub(super) fn binding(status: u16, record: &BindingRecord, with_parameters: bool) -> OsbResponse {
    let no_credentials = Value::Object(Map::new());
    // `expires_at_unix` is the broker's own; the spec's fields go out.
    let metadata = record.metadata.as_ref().and_then(|metadata| {
        let mut public = metadata.as_object()?.clone();
        public.remove("expires_at_unix");
        (!public.is_empty()).then_some(Value::Object(public))
    });
    json(
        status,
        &Binding {
            credentials: record.credentials.as_ref().unwrap_or(&no_credentials),
            metadata,
            endpoints: record.backend.get("endpoints"),
            parameters: with_parameters.then_some(&record.parameters),
        },
    )
}

/// `last_operation` of the current operation, with `Retry-After` while it runs.
pub(super) fn last_operation(operation: &Operation) -> OsbResponse {
    let failed = operation.state == OperationState::Failed;
    let response = json(
        200,
        &LastOperation {
            state: operation.state.as_osb(),
            description: operation.description.as_deref().filter(|d| !d.is_empty()),
            instance_usable: operation.instance_usable.filter(|_| failed),
            update_repeatable: operation.update_repeatable.filter(|_| failed),
        },
    );
    if operation.state == OperationState::InProgress {
        let after = operation.retry_after.unwrap_or(DEFAULT_RETRY_AFTER).max(1);
        response.with_header("Retry-After", after.to_string())
    } else {
        response
    }
}

/// `last_operation` of an operation that a newer one superseded.
pub(super) fn finished_operation(state: OperationState, description: Option<&str>) -> OsbResponse {
    json(
        200,
        &LastOperation {
            state: state.as_osb(),
            description,
            instance_usable: None,
            update_repeatable: None,
        },
    )
}
