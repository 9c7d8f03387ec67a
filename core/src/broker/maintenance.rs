//! What a fleet upgrade asks of one instance: its ordinary OSB update to the plan's current
//! `maintenance_info`, and its ordinary `last_operation`. Going through the same code as a
//! platform's `PATCH` means the backend re-renders and re-applies exactly as for a user's
//! upgrade, and a user's update while it runs gets the ordinary 422 ConcurrencyError.

use serde_json::json;

use crate::error::OsbError;
use crate::http::OsbRequest;
use crate::state::{InstanceRecord, OperationKind, OperationState, Status};

use super::Broker;

/// Where an instance stands against its plan's current `maintenance_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maintenance {
    /// It runs the plan's version (or the plan has none).
    Current,
    /// It runs an older version and nothing else runs on it: it can be upgraded to this one.
    Outdated(String),
    /// Its update to this version is running (an upgrade whose tracking was lost, e.g. by a
    /// crash between starting it and recording it).
    Upgrading(String),
    /// It is outdated but cannot be upgraded now (being created, failed, deleted, another
    /// operation running, or its plan left the catalog): the reason.
    Blocked(String),
}

/// An upgrade once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Asynchronous: the update's operation id, to poll.
    Running(String),
    /// The update finished in the request (a synchronous backend).
    Finished,
}

impl Broker<'_> {
    /// Where `record` stands against the catalog's current `maintenance_info` of its plan.
    pub fn maintenance(&self, record: &InstanceRecord) -> Result<Maintenance, OsbError> {
        let Some(plan) = self.known_plan(&record.service_id, &record.plan_id)? else {
            return Ok(Maintenance::Current);
        };
        let Some(version) = plan.maintenance_version.clone() else {
            return Ok(Maintenance::Current);
        };
        let operation = &record.operation;
        if operation.in_progress() {
            let ours = operation.kind == OperationKind::Update
                && operation.update.as_ref().is_some_and(|u| {
                    u.plan_id == record.plan_id
                        && u.maintenance_info_version.as_deref() == Some(version.as_str())
                });
            if ours && record.maintenance_info_version.as_deref() != Some(version.as_str()) {
                return Ok(Maintenance::Upgrading(operation.id.clone()));
            }
        }
        if record.maintenance_info_version.as_deref() == Some(version.as_str()) {
            return Ok(Maintenance::Current);
        }
        let blocked = match record.status {
            Status::Ready if operation.in_progress() => Some(format!(
                "another operation ({}) is in progress",
                operation.kind.prefix()
            )),
            Status::Ready => None,
            Status::Creating => Some("still being created".into()),
            Status::Failed => Some("its provision failed".into()),
            Status::Deleted => Some("deleted".into()),
        };
        Ok(match blocked {
            Some(reason) => Maintenance::Blocked(reason),
            None => Maintenance::Outdated(version),
        })
    }

    /// Starts the instance's update to `version`, as a platform's
    /// `PATCH /v2/service_instances/:id?accepts_incomplete=true` with `maintenance_info`.
    pub async fn upgrade(
        &self,
        record: &InstanceRecord,
        version: &str,
    ) -> Result<Started, OsbError> {
        let body = json!({
            "service_id": record.service_id,
            "plan_id": record.plan_id,
            "maintenance_info": { "version": version },
        });
        let request = OsbRequest {
            method: "PATCH".into(),
            path: format!("/v2/service_instances/{}", record.instance_id),
            query: vec![("accepts_incomplete".into(), "true".into())],
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        };
        let response = self.update(&record.instance_id, &request).await?;
        let operation = response.json_body().and_then(|b| {
            b.get("operation")
                .and_then(|o| o.as_str())
                .map(str::to_owned)
        });
        Ok(match (response.status, operation) {
            (202, Some(operation)) => Started::Running(operation),
            _ => Started::Finished,
        })
    }

    /// The instance's `last_operation` for `operation` (its current one when `None`),
    /// advancing it by one backend step as a platform's poll does: its state and
    /// description.
    pub async fn poll_instance(
        &self,
        instance_id: &str,
        operation: Option<&str>,
    ) -> Result<(OperationState, Option<String>), OsbError> {
        let request = OsbRequest {
            method: "GET".into(),
            path: format!("/v2/service_instances/{instance_id}/last_operation"),
            query: operation
                .map(|o| ("operation".to_string(), o.to_string()))
                .into_iter()
                .collect(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let response = self.instance_last_operation(instance_id, &request).await?;
        let body = response.json_body().unwrap_or_default();
        let state = match body["state"].as_str() {
            Some("succeeded") => OperationState::Succeeded,
            Some("failed") => OperationState::Failed,
            _ => OperationState::InProgress,
        };
        Ok((state, body["description"].as_str().map(str::to_owned)))
    }
}
