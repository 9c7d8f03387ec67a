//! Service binding endpoints: bind (and rotate), unbind, fetch, last_operation.

use serde_json::{json, Value};

use crate::backend::{BackendError, Step, StepInput};
use crate::error::OsbError;
use crate::http::{validate_id, OsbRequest, OsbResponse};
use crate::state::{
    binding_key, fingerprint, instance_key, read, BindingRecord, Created, InstanceRecord,
    Operation, OperationKind, OperationState, Status, Stored, SCHEMA_VERSION,
};
use crate::types::{parse_body, require_non_empty, BindRequest};

use super::advance::{Deletion, Driven, StepError};
use super::instance::remnant_backend;
use super::plan::ParamsKind;
use super::{required_query, responses, Broker};

impl Broker<'_> {
    pub(super) async fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let accepts_incomplete = request.accepts_incomplete()?;
        let body: BindRequest = parse_body(&request.body)?;
        require_non_empty("service_id", &body.service_id)?;
        require_non_empty("plan_id", &body.plan_id)?;
        let instance = self.ready_instance(instance_id)?;
        if body.service_id != instance.service_id || body.plan_id != instance.plan_id {
            return Err(OsbError::bad_request(format!(
                "service_id/plan_id do not match service instance {instance_id} (service {:?}, plan {:?})",
                instance.service_id, instance.plan_id
            )));
        }
        let plan = self.plan(&body.service_id, &body.plan_id)?;
        if !plan.bindable {
            return Err(OsbError::bad_request(format!(
                "plan {} is not bindable",
                plan.plan_name
            )));
        }
        let key = binding_key(instance_id, binding_id);
        // Fingerprint of the request as sent: a re-sent rotation stays identical even after
        // its predecessor is gone.
        let mut bind_resource = body.bind_resource.clone().unwrap_or_default();
        if let Some(app_guid) = &body.app_guid {
            bind_resource
                .entry("app_guid")
                .or_insert_with(|| json!(app_guid));
        }
        let request_fingerprint = fingerprint(&json!({
            "service_id": body.service_id,
            "plan_id": body.plan_id,
            "parameters": body.parameters.clone().unwrap_or_default(),
            "bind_resource": bind_resource,
            "predecessor_binding_id": body.predecessor_binding_id,
        }));
        let backend = plan.backend.backend(self.services());
        let is_async = backend.is_async(OperationKind::Bind);
        if is_async && !accepts_incomplete {
            return Err(OsbError::async_required());
        }
        let asynchronous = is_async;
        let seen = match read::<BindingRecord>(self.kv, &key)? {
            Some(existing) if existing.value.status != Status::Deleted => {
                return self
                    .bind_again(&key, existing, &request_fingerprint, asynchronous)
                    .await;
            }
            seen => seen,
        };
        let mut parameters = body.parameters.clone();
        if let Some(predecessor_id) = &body.predecessor_binding_id {
            validate_id("predecessor_binding_id", predecessor_id)?;
            if !plan.binding_rotatable {
                return Err(OsbError::bad_request(format!(
                    "bindings of plan {} cannot be rotated",
                    plan.plan_name
                )));
            }
            let predecessor = read::<BindingRecord>(self.kv, &binding_key(instance_id, predecessor_id))?
                .filter(|p| p.value.status == Status::Ready)
                .ok_or_else(|| {
                    OsbError::bad_request(format!("predecessor binding {predecessor_id} does not exist for instance {instance_id}"))
                })?;
            if expired(&predecessor.value, self.env.now()) {
                return Err(OsbError::bad_request(format!(
                    "predecessor binding {predecessor_id} has expired"
                )));
            }
            // Rotation carries the predecessor's parameters over unless new ones are given.
            parameters.get_or_insert_with(|| predecessor.value.parameters.clone());
        }
        let parameters = parameters.unwrap_or_default();
        self.check_parameters(&plan, ParamsKind::Bind, &parameters)
            .await?;

        let record = BindingRecord {
            schema: SCHEMA_VERSION,
            instance_id: instance_id.to_string(),
            binding_id: binding_id.to_string(),
            service_id: body.service_id.clone(),
            plan_id: body.plan_id.clone(),
            parameters,
            context: body
                .context
                .clone()
                .map(Value::Object)
                .unwrap_or(Value::Null),
            bind_resource: Value::Object(bind_resource),
            predecessor_binding_id: body.predecessor_binding_id.clone(),
            credentials: None,
            metadata: plan.binding_metadata(self.env.now()),
            status: Status::Creating,
            operation: Operation::start(
                OperationKind::Bind,
                self.env,
                plan.maximum_polling_duration,
            )?,
            history: Vec::new(),
            backend: json!({}),
            request_fingerprint,
            expiring: false,
        };
        // A local synchronous bind is created already bound: one write.
        let mut known = Some(instance);
        let record = self
            .finish_locally(record, asynchronous, &mut known)
            .await?;
        if seen.is_none() {
            crate::expiry::note_binding(self.kv, instance_id, binding_id)?;
        }
        let stored = match self.create(&key, &record, seen)? {
            Created::New(stored) => stored,
            Created::Existing(existing) => {
                return self
                    .bind_again(&key, existing, &record.request_fingerprint, asynchronous)
                    .await;
            }
        };
        let stored = self.drive(&key, stored, asynchronous, known).await?;
        bind_response(&stored.value, asynchronous)
    }

    async fn bind_again(
        &self,
        key: &str,
        existing: Stored<BindingRecord>,
        request_fingerprint: &str,
        asynchronous: bool,
    ) -> Result<OsbResponse, OsbError> {
        let current = &existing.value;
        let id = &current.binding_id;
        if current.request_fingerprint != request_fingerprint {
            return Err(OsbError::conflict(format!(
                "service binding {id} already exists with different attributes"
            )));
        }
        match current.status {
            Status::Ready if current.operation.in_progress() => Err(OsbError::concurrency(
                format!("service binding {id} is being deleted"),
            )),
            Status::Ready => Ok(responses::binding(200, current, false)),
            Status::Creating if asynchronous => Ok(responses::accepted(&current.operation)),
            Status::Creating => {
                let crashed = super::instance::creator_is_gone(&current.operation, self.env.now());
                let stored = self.drive(key, existing, false, None).await?;
                let response = bind_response(&stored.value, false);
                if crashed {
                    response
                } else {
                    response.map(super::instance::already_existed)
                }
            }
            Status::Failed => Err(OsbError::conflict(format!(
                "service binding {id} exists but failed ({}); unbind it first",
                current
                    .operation
                    .description
                    .as_deref()
                    .unwrap_or("no details")
            ))),
            Status::Deleted => Err(OsbError::internal(
                "tombstones are replaced before this point",
            )),
        }
    }

    pub(super) async fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let accepts_incomplete = request.accepts_incomplete()?;
        let service_id = required_query(request, "service_id")?;
        let plan_id = required_query(request, "plan_id")?;
        let key = binding_key(instance_id, binding_id);
        let stored: Stored<BindingRecord> = match read::<BindingRecord>(self.kv, &key)? {
            Some(s) if s.value.status != Status::Deleted => s,
            _ => {
                return Err(OsbError::gone(format!(
                    "service binding {binding_id} does not exist"
                )))
            }
        };
        let current = &stored.value;
        // After a plan change the platform sends the instance's current plan.
        let instance =
            read::<InstanceRecord>(self.kv, &instance_key(instance_id))?.map(|s| s.value);
        let instance_plan = instance.as_ref().map(|i| i.plan_id.clone());
        let plan_matches = plan_id == current.plan_id || instance_plan.as_deref() == Some(plan_id);
        if service_id != current.service_id || !plan_matches {
            return Err(OsbError::bad_request(format!(
                "service_id/plan_id do not match service binding {binding_id} (service {:?}, plan {:?})",
                current.service_id, current.plan_id
            )));
        }
        // A plan that left the catalog: unbind with what the records say.
        let deleting =
            self.deleting_backend(&current.service_id, &current.plan_id, instance.as_ref())?;
        let backend = deleting.config().backend(self.services());
        let is_async = backend.is_async(OperationKind::Unbind);
        let deletion = Deletion {
            asynchronous_plan: is_async,
            accepts_incomplete,
            deadline_after: deleting.deadline(),
        };
        self.delete(&key, stored, deletion, instance).await
    }

    pub(super) fn fetch_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
        _request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let not_found =
            || OsbError::not_found(format!("service binding {binding_id} does not exist"));
        let stored: Stored<BindingRecord> =
            read(self.kv, &binding_key(instance_id, binding_id))?.ok_or_else(not_found)?;
        let record = &stored.value;
        if record.status != Status::Ready {
            return Err(not_found());
        }
        // A binding lives only as long as its instance: once the instance is deprovisioned
        // (or its creation failed), its bindings' credentials are not served any more.
        let instance: Option<Stored<InstanceRecord>> = read(self.kv, &instance_key(instance_id))?;
        let instance_usable = instance.is_some_and(|i| i.value.status == Status::Ready);
        if !instance_usable {
            return Err(not_found());
        }
        if let Some(plan) = self.known_plan(&record.service_id, &record.plan_id)? {
            if !plan.bindings_retrievable {
                return Err(OsbError::not_found(format!(
                    "bindings of service {} are not retrievable",
                    plan.service_name
                )));
            }
        }
        Ok(responses::binding(200, record, true))
    }

    pub(super) async fn binding_last_operation(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &OsbRequest,
    ) -> Result<OsbResponse, OsbError> {
        let label = format!("service binding {binding_id}");
        let operation_id = request.query("operation").filter(|o| !o.is_empty());
        let key = binding_key(instance_id, binding_id);
        self.poll::<BindingRecord>(&key, &label, operation_id).await
    }

    /// The instance a binding request targets; it must exist and be provisioned.
    fn ready_instance(&self, instance_id: &str) -> Result<InstanceRecord, OsbError> {
        let stored: Stored<InstanceRecord> =
            read::<InstanceRecord>(self.kv, &instance_key(instance_id))?
                .filter(|s| s.value.status != Status::Deleted)
                .ok_or_else(|| {
                    OsbError::bad_request(format!("service instance {instance_id} does not exist"))
                })?;
        let instance = stored.value;
        match instance.status {
            Status::Creating => Err(OsbError::concurrency(format!(
                "service instance {instance_id} is still being provisioned"
            ))),
            Status::Failed => Err(OsbError::unprocessable(format!(
                "service instance {instance_id} failed to provision"
            ))),
            _ if instance.operation.in_progress()
                && instance.operation.kind == OperationKind::Deprovision =>
            {
                Err(OsbError::concurrency(format!(
                    "service instance {instance_id} is being deprovisioned"
                )))
            }
            _ => Ok(instance),
        }
    }
}

impl Driven for BindingRecord {
    /// The binding's instance as the request already read it, which the first step uses
    /// instead of reading it again.
    type Known = Option<InstanceRecord>;
    const DELETION: OperationKind = OperationKind::Unbind;

    async fn step(
        &self,
        broker: &Broker<'_>,
        known: &mut Option<InstanceRecord>,
    ) -> Result<Step, StepError> {
        let binding = self;
        let known = known
            .take()
            .filter(|i| i.instance_id == binding.instance_id);
        let instance = match known {
            Some(instance) => instance,
            None => {
                read::<InstanceRecord>(broker.kv, &instance_key(&binding.instance_id))
                    .map_err(|e| StepError::from(BackendError::Transient(e.description)))?
                    .ok_or_else(|| {
                        StepError::from(BackendError::Permanent(format!(
                            "service instance {} no longer exists",
                            binding.instance_id
                        )))
                    })?
                    .value
            }
        };
        let plan = broker
            .known_plan(&binding.service_id, &binding.plan_id)
            .map_err(StepError::Abort)?;
        let plan_backend = match &plan {
            Some(plan) => &plan.backend,
            None if binding.operation.kind == OperationKind::Unbind => remnant_backend(&instance)
                .ok_or_else(|| {
                BackendError::Permanent("the instance's backend is unknown".into())
            })?,
            None => {
                return Err(BackendError::Permanent(format!(
                "the plan is no longer in the catalog: plan_id {:?} is not a plan of service {:?}",
                binding.plan_id, binding.service_id
            ))
                .into())
            }
        };
        let input = StepInput {
            kind: binding.operation.kind,
            instance: &instance,
            template: plan.as_deref().map(|plan| {
                plan.step_template_context(
                    &instance,
                    &binding.parameters,
                    &binding.context,
                    Some(binding),
                )
            }),
            parameters: &binding.parameters,
            context: &binding.context,
            binding: Some(binding),
            state: &binding.operation.backend,
            operation_id: &binding.operation.id,
            now: broker.env.now(),
        };
        Ok(plan_backend.backend(broker.services()).step(&input).await?)
    }
}

fn expired(binding: &BindingRecord, now: u64) -> bool {
    binding
        .metadata
        .as_ref()
        .and_then(|m| m.get("expires_at_unix"))
        .and_then(Value::as_u64)
        .is_some_and(|at| at <= now)
}

/// The body of a ready binding (bind 200/201, fetch 200).
fn bind_response(record: &BindingRecord, asynchronous: bool) -> Result<OsbResponse, OsbError> {
    if asynchronous {
        return Ok(responses::accepted(&record.operation));
    }
    match record.operation.state {
        OperationState::Succeeded => Ok(responses::binding(201, record, false)),
        OperationState::InProgress => Err(OsbError::concurrency(format!(
            "service binding {} is being created by a concurrent request",
            record.binding_id
        ))),
        OperationState::Failed => Err(OsbError::internal(format!(
            "binding failed: {}",
            record
                .operation
                .description
                .as_deref()
                .unwrap_or("no details")
        ))),
    }
}
