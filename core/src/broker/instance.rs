//! Service instance endpoints: provision, update, deprovision, fetch, last_operation.

use serde_json::{json, Value};

use super::advance::{Deletion, Driven, StepError};
use crate::backend::{BackendError, Step, StepInput};
use crate::error::OsbError;
use crate::http::OsbRequest;
use crate::http::OsbResponse;
use crate::quota::{self, Tenancy};
use crate::state::{
    fingerprint, instance_index, instance_key, read, Created, InstanceMetadata, InstanceRecord,
    Operation, OperationKind, OperationState, PendingUpdate, Record, Status, Stored,
    SCHEMA_VERSION,
};
use crate::types::{
    parse_body, require_non_empty, require_present, ProvisionRequest, UpdateRequest,
};

use super::plan::ParamsKind;
use super::{required_query, responses, Broker};

impl Broker<'_> {
    pub(super) async fn provision(
        &self,
        instance_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let accepts_incomplete = request.accepts_incomplete()?;
        let body: ProvisionRequest = parse_body(&request.body)?;
        require_non_empty("service_id", &body.service_id)?;
        require_non_empty("plan_id", &body.plan_id)?;
        let plan = self.plan(&body.service_id, &body.plan_id)?;
        // REQUIRED non-empty strings in every 2.x version (deprecated in favour of
        // `context`, but platforms send both and the spec makes the 400 a MUST).
        require_present("organization_guid", body.organization_guid.as_deref())?;
        require_present("space_guid", body.space_guid.as_deref())?;
        plan.check_maintenance_info(body.maintenance_info.as_ref())?;
        let parameters = body.parameters.clone().unwrap_or_default();
        self.check_parameters(&plan, ParamsKind::Provision, &parameters)
            .await?;
        let backend = plan.backend.backend(self.services());
        let is_async = backend.is_async(OperationKind::Provision);
        if is_async && !accepts_incomplete {
            return Err(OsbError::async_required());
        }
        let request_fingerprint = fingerprint(&json!({
            "service_id": body.service_id,
            "plan_id": body.plan_id,
            "parameters": parameters,
            "maintenance_info": body.maintenance_info.as_ref().map(|m| &m.version),
        }));
        let mut record = InstanceRecord {
            schema: SCHEMA_VERSION,
            instance_id: instance_id.to_string(),
            service_id: body.service_id.clone(),
            plan_id: body.plan_id.clone(),
            parameters,
            context: body
                .context
                .clone()
                .map(Value::Object)
                .unwrap_or(Value::Null),
            organization_guid: body.organization_guid.clone(),
            space_guid: body.space_guid.clone(),
            maintenance_info_version: plan.maintenance_version.clone(),
            dashboard_url: None,
            metadata: InstanceMetadata::default(),
            seed: self.env.random_hex(32)?,
            status: Status::Creating,
            operation: Operation::start(
                OperationKind::Provision,
                self.env,
                plan.maximum_polling_duration,
            )?,
            history: Vec::new(),
            backend: Value::Null,
            request_fingerprint,
            expiring: false,
            index_slot: None,
            quota: Vec::new(),
        };
        record.backend = backend.place(&record).map_err(OsbError::bad_request)?;
        record.dashboard_url = plan.render_dashboard_url(&record)?;
        record.metadata = plan.instance_metadata(&record);

        let key = instance_key(instance_id);
        // A local synchronous provision is created already provisioned: one write.
        let mut record = self
            .finish_locally(record, accepts_incomplete && is_async, &mut ())
            .await?;
        // An id used before and deprovisioned starts afresh over its tombstone.
        let seen = read(self.kv, &key)?;
        if seen
            .as_ref()
            .is_none_or(|s: &Stored<InstanceRecord>| s.value.status == Status::Deleted)
        {
            // Into the index before the record exists, so that no instance is ever missing
            // from it; of concurrent identical creators only the winner's slot counts.
            record.index_slot = Some(instance_index().append(self.kv, instance_id)?);
            // A slot in every quota limit of the plan, before the record can exist.
            let tenancy = Tenancy::of(
                body.organization_guid.as_deref(),
                body.space_guid.as_deref(),
                &record.context,
            );
            let names = (plan.service_name.as_str(), plan.plan_name.as_str());
            record.quota = quota::take(self.kv, &plan.quotas, &tenancy, names)?;
        }
        let stored = match self.create(&key, &record, seen) {
            Ok(Created::New(stored)) => stored,
            Ok(Created::Existing(existing)) => {
                // Another request created it: the slots were taken for nothing.
                quota::release(self.kv, &record.quota);
                return self
                    .provision_again(&key, existing, &record, accepts_incomplete, is_async)
                    .await;
            }
            Err(error) => {
                quota::release(self.kv, &record.quota);
                return Err(error);
            }
        };
        let stored = self
            .drive(&key, stored, accepts_incomplete && is_async, ())
            .await?;
        provision_response(&stored.value, accepts_incomplete && is_async)
    }

    /// A provision for an id that already exists: identical requests are idempotent,
    /// anything else conflicts.
    async fn provision_again(
        &self,
        key: &str,
        existing: Stored<InstanceRecord>,
        requested: &InstanceRecord,
        accepts_incomplete: bool,
        is_async: bool,
    ) -> Result<OsbResponse, OsbError> {
        let current = &existing.value;
        let id = &current.instance_id;
        if current.request_fingerprint != requested.request_fingerprint
            || current.service_id != requested.service_id
            || current.plan_id != requested.plan_id
        {
            return Err(OsbError::conflict(format!(
                "service instance {id} already exists with different attributes"
            )));
        }
        match (current.status, current.operation.kind, current.operation.state) {
            (_, OperationKind::Deprovision, OperationState::InProgress) => {
                Err(OsbError::concurrency(format!("service instance {id} is being deprovisioned")))
            }
            (Status::Ready, _, _) => Ok(responses::provisioned(200, current)),
            (Status::Creating, _, _) => {
                if accepts_incomplete && is_async {
                    Ok(responses::provisioned(202, current))
                } else {
                    // Created by another request: see it through. If that request is still
                    // running, this one is a duplicate and success is 200; if it died, this
                    // is the platform's retry and provisions the instance (201).
                    let crashed = creator_is_gone(&current.operation, self.env.now());
                    let stored = self.drive(key, existing, false, ()).await?;
                    let response = provision_response(&stored.value, false);
                    if crashed { response } else { response.map(already_existed) }
                }
            }
            (Status::Failed, _, _) => Err(OsbError::conflict(format!(
                "service instance {id} exists but its provisioning failed ({}); deprovision it first",
                current.operation.description.as_deref().unwrap_or("no details")
            ))),
            (Status::Deleted, _, _) => Err(OsbError::internal("tombstones are replaced before this point")),
        }
    }

    pub(super) async fn update(
        &self,
        instance_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let accepts_incomplete = request.accepts_incomplete()?;
        let body: UpdateRequest = parse_body(&request.body)?;
        require_non_empty("service_id", &body.service_id)?;
        if let Some(plan_id) = &body.plan_id {
            require_non_empty("plan_id", plan_id)?;
        }
        let key = instance_key(instance_id);
        let stored: Stored<InstanceRecord> = match read::<InstanceRecord>(self.kv, &key)? {
            Some(s) if s.value.status != Status::Deleted => s,
            _ => {
                return Err(OsbError::bad_request(format!(
                    "service instance {instance_id} does not exist"
                )))
            }
        };
        let current = &stored.value;
        if body.service_id != current.service_id {
            return Err(OsbError::bad_request(format!(
                "service_id {:?} does not match the instance's service {:?}",
                body.service_id, current.service_id
            )));
        }
        match current.status {
            Status::Creating => return Err(OsbError::concurrency(format!("service instance {instance_id} is still being provisioned"))),
            Status::Failed => {
                return Err(OsbError::unprocessable(format!(
                    "service instance {instance_id} failed to provision and cannot be updated; deprovision it"
                )))
            }
            _ => {}
        }
        let target_plan_id = body
            .plan_id
            .clone()
            .unwrap_or_else(|| current.plan_id.clone());
        if target_plan_id != current.plan_id {
            let current_plan = self.plan(&current.service_id, &current.plan_id)?;
            if !current_plan.plan_updateable {
                let mut error = OsbError::unprocessable(format!(
                    "plan {} does not support plan changes",
                    current_plan.plan_name
                ));
                error.update_repeatable = Some(false);
                return Err(error);
            }
        }
        let plan = self.plan(&current.service_id, &target_plan_id)?;
        plan.check_maintenance_info(body.maintenance_info.as_ref())?;
        let maintenance_info_version = match &body.maintenance_info {
            Some(requested) => Some(requested.version.clone()),
            None if target_plan_id != current.plan_id => plan.maintenance_version.clone(),
            None => current.maintenance_info_version.clone(),
        };
        let parameters = match &body.parameters {
            Some(new) => {
                let mut merged = current.parameters.clone();
                merged.extend(new.clone());
                merged
            }
            None => current.parameters.clone(),
        };
        // What the instance will run with is checked, not only what this request adds: the
        // stored parameters merged with the new ones, against the (possibly new) plan's
        // update schema.
        if body.parameters.is_some() || target_plan_id != current.plan_id {
            self.check_parameters(&plan, ParamsKind::Update, &parameters)
                .await?;
        }
        let context = body
            .context
            .clone()
            .map(Value::Object)
            .unwrap_or_else(|| current.context.clone());
        let request_fingerprint = fingerprint(&json!({
            "plan_id": target_plan_id, "parameters": parameters, "maintenance": maintenance_info_version,
        }));

        if current.operation.in_progress() {
            let same = current.operation.kind == OperationKind::Update
                && current
                    .operation
                    .update
                    .as_ref()
                    .is_some_and(|u| u.request_fingerprint == request_fingerprint);
            if same {
                let backend = plan.backend.backend(self.services());
                let asynchronous = accepts_incomplete && backend.is_async(OperationKind::Update);
                if asynchronous {
                    return Ok(responses::accepted(&current.operation));
                }
                // A synchronous update that was interrupted: finish it now.
                let stored = self.drive(&key, stored, false, ()).await?;
                return update_response(&stored.value.operation, false);
            }
            return Err(OsbError::concurrency(format!(
                "another operation ({}) is in progress for service instance {instance_id}",
                current.operation.kind.prefix()
            )));
        }

        let changes_resources = target_plan_id != current.plan_id
            || parameters != current.parameters
            || maintenance_info_version != current.maintenance_info_version;
        if !changes_resources {
            if context != current.context && plan.allow_context_updates {
                let mut next = current.clone();
                next.context = context;
                self.write(&key, &stored, &next)?.ok_or_else(|| {
                    OsbError::concurrency(format!(
                        "service instance {instance_id} changed concurrently; retry"
                    ))
                })?;
            }
            return Ok(responses::empty(200));
        }

        let backend = plan.backend.backend(self.services());
        let is_async = backend.is_async(OperationKind::Update);
        if is_async && !accepts_incomplete {
            return Err(OsbError::async_required());
        }
        if let Some(reason) = backend
            .busy(OperationKind::Update, instance_id, self.env.now())
            .await
        {
            return Err(OsbError::concurrency(reason));
        }
        let mut next = current.clone();
        let mut operation = Operation::start(
            OperationKind::Update,
            self.env,
            plan.maximum_polling_duration,
        )?;
        // A plan change counts against the target plan's limits from now on: its slots
        // the instance does not hold yet are taken before anything is stored.
        let change = if target_plan_id != current.plan_id {
            let tenancy = Tenancy::of(
                current.organization_guid.as_deref(),
                current.space_guid.as_deref(),
                &current.context,
            );
            let names = (plan.service_name.as_str(), plan.plan_name.as_str());
            Some(quota::take_for_plan_change(
                self.kv,
                &plan.quotas,
                &tenancy,
                names,
                &current.quota,
            )?)
        } else {
            None
        };
        let (all, taken) = change.map(|c| (Some(c.all), c.taken)).unwrap_or_default();
        operation.update = Some(PendingUpdate {
            plan_id: target_plan_id,
            parameters,
            context,
            maintenance_info_version,
            request_fingerprint,
            quota: all,
        });
        next.begin(operation);
        let stored = match self.write(&key, &stored, &next) {
            Ok(Some(stored)) => stored,
            lost => {
                quota::release(self.kv, &taken);
                lost?;
                return Err(OsbError::concurrency(format!(
                    "service instance {instance_id} changed concurrently; retry"
                )));
            }
        };
        let stored = self
            .drive(&key, stored, accepts_incomplete && is_async, ())
            .await?;
        update_response(&stored.value.operation, accepts_incomplete && is_async)
    }

    pub(super) async fn deprovision(
        &self,
        instance_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let accepts_incomplete = request.accepts_incomplete()?;
        let service_id = required_query(request, "service_id")?;
        let plan_id = required_query(request, "plan_id")?;
        let key = instance_key(instance_id);
        let stored: Stored<InstanceRecord> = match read::<InstanceRecord>(self.kv, &key)? {
            Some(s) if s.value.status != Status::Deleted => s,
            _ => {
                return Err(OsbError::gone(format!(
                    "service instance {instance_id} does not exist"
                )))
            }
        };
        let current = &stored.value;
        let pending_plan = current
            .operation
            .update
            .as_ref()
            .map(|u| u.plan_id.as_str());
        if service_id != current.service_id
            || (plan_id != current.plan_id && Some(plan_id) != pending_plan)
        {
            return Err(OsbError::bad_request(format!(
                "service_id/plan_id do not match service instance {instance_id} (service {:?}, plan {:?})",
                current.service_id, current.plan_id
            )));
        }
        let deleting =
            self.deleting_backend(&current.service_id, &current.plan_id, Some(current))?;
        let backend = deleting.config().backend(self.services());
        let is_async = backend.is_async(OperationKind::Deprovision);
        if current.operation.in_progress() {
            match current.operation.kind {
                OperationKind::Update if !backend.is_async(OperationKind::Update) => {
                    // An interrupted synchronous update: finish it, then decide again.
                    let stored = self.drive(&key, stored, false, ()).await?;
                    if stored.value.operation.in_progress() {
                        return Err(OsbError::concurrency(format!(
                            "service instance {instance_id} is being updated"
                        )));
                    }
                    return Box::pin(self.deprovision(instance_id, request)).await;
                }
                OperationKind::Update => {
                    return Err(OsbError::concurrency(format!(
                        "service instance {instance_id} is being updated"
                    )))
                }
                // Deprovision during provisioning: stop creating, start deleting.
                _ => {}
            }
        }
        let deletion = Deletion {
            asynchronous_plan: is_async,
            accepts_incomplete,
            deadline_after: deleting.deadline(),
        };
        self.delete(&key, stored, deletion, ()).await
    }

    pub(super) fn fetch_instance(
        &self,
        instance_id: &str,
        _request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let not_found =
            || OsbError::not_found(format!("service instance {instance_id} does not exist"));
        let stored: Stored<InstanceRecord> =
            read(self.kv, &instance_key(instance_id))?.ok_or_else(not_found)?;
        let record = &stored.value;
        if record.status != Status::Ready {
            return Err(not_found());
        }
        if let Some(plan) = self.known_plan(&record.service_id, &record.plan_id)? {
            if !plan.instances_retrievable {
                return Err(OsbError::not_found(format!(
                    "instances of service {} are not retrievable",
                    plan.service_name
                )));
            }
        }
        if record.operation.in_progress() {
            return Err(match record.operation.kind {
                OperationKind::Deprovision => not_found(),
                _ => OsbError::concurrency(format!(
                    "service instance {instance_id} is being updated"
                )),
            });
        }
        Ok(responses::instance(record))
    }

    pub(super) async fn instance_last_operation(
        &self,
        instance_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let label = format!("service instance {instance_id}");
        let operation_id = request.query("operation").filter(|o| !o.is_empty());
        self.poll::<InstanceRecord>(&instance_key(instance_id), &label, operation_id)
            .await
    }
}

impl Driven for InstanceRecord {
    type Known = ();
    const DELETION: OperationKind = OperationKind::Deprovision;

    /// Advances the instance's operation with its plan's backend.
    async fn step(&self, broker: &Broker<'_>, _known: &mut ()) -> Result<Step, StepError> {
        let record = self;
        let operation = &record.operation;
        let plan_id = record.operation_plan().1;
        let (parameters, context) = match (&operation.update, operation.kind) {
            (Some(update), OperationKind::Update) => (&update.parameters, &update.context),
            _ => (&record.parameters, &record.context),
        };
        let plan = broker
            .known_plan(&record.service_id, plan_id)
            .map_err(StepError::Abort)?;
        let backend = match &plan {
            Some(plan) => &plan.backend,
            // Deleting what an instance of a removed plan still owns.
            None if operation.kind == OperationKind::Deprovision => remnant_backend(record)
                .ok_or_else(|| {
                    BackendError::Permanent("the instance's backend is unknown".into())
                })?,
            None => {
                return Err(BackendError::Permanent(format!(
                    "the plan is no longer in the catalog: plan_id {plan_id:?} is not a plan of service {:?}",
                    record.service_id
                ))
                .into())
            }
        };
        let input = StepInput {
            kind: operation.kind,
            instance: record,
            template: plan
                .as_deref()
                .map(|plan| plan.step_template_context(record, parameters, context, None)),
            parameters,
            context,
            binding: None,
            state: &operation.backend,
            operation_id: &operation.id,
            now: broker.env.now(),
        };
        Ok(backend.backend(broker.services()).step(&input).await?)
    }
}

/// The backend an instance was provisioned with (recorded in its metadata), configured
/// only to delete: for instances whose plan has left the catalog.
pub(super) fn remnant_backend(
    record: &InstanceRecord,
) -> Option<&'static crate::catalog::PlanBackend> {
    let type_name = record
        .metadata
        .attributes
        .get("backend")
        .and_then(Value::as_str)
        .unwrap_or("credentials");
    crate::catalog::PlanBackend::remnant(type_name)
}

/// Whether the request that started `operation` can no longer be running: its lease has
/// expired, or it never took one although it started a lease's length ago.
pub(super) fn creator_is_gone(operation: &Operation, now: u64) -> bool {
    match operation.lease_until {
        Some(until) => until <= now,
        None => now >= operation.started_at + super::LEASE_SECONDS,
    }
}

/// A synchronous success for a request that found the resource already created by another
/// request: the spec's `200` ("already exists"), not `201`, so that N identical requests get
/// exactly one 201.
pub(super) fn already_existed(mut response: OsbResponse) -> OsbResponse {
    if response.status == 201 {
        response.status = 200;
    }
    response
}

fn provision_response(
    record: &InstanceRecord,
    asynchronous: bool,
) -> Result<OsbResponse, OsbError> {
    if asynchronous {
        return Ok(responses::provisioned(202, record));
    }
    match record.operation.state {
        OperationState::Succeeded => Ok(responses::provisioned(201, record)),
        OperationState::InProgress => Err(OsbError::concurrency(format!(
            "service instance {} is being provisioned by a concurrent request",
            record.instance_id
        ))),
        OperationState::Failed => Err(OsbError::internal(format!(
            "provisioning failed: {}",
            record
                .operation
                .description
                .as_deref()
                .unwrap_or("no details")
        ))),
    }
}

fn update_response(op: &Operation, asynchronous: bool) -> Result<OsbResponse, OsbError> {
    match op.state {
        _ if asynchronous => Ok(responses::accepted(op)),
        OperationState::Succeeded => Ok(responses::empty(200)),
        OperationState::InProgress => Err(OsbError::concurrency(
            "the update is still being applied by a concurrent request",
        )),
        OperationState::Failed => {
            let mut error = OsbError::internal(format!(
                "the update failed: {}",
                op.description.as_deref().unwrap_or("no details")
            ));
            error.instance_usable = Some(true);
            error.update_repeatable = Some(true);
            Err(error)
        }
    }
}
