//! The instance and binding records, their operations, and the one trait the broker
//! drives both through.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::env::{Env, RandomnessUnavailable};

/// Operations kept per resource after they were superseded, for late polls.
const HISTORY: usize = 5;

/// Lifecycle of an instance or binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being created; not usable yet.
    Creating,
    /// Created and usable (possibly with an update or deletion in progress).
    Ready,
    /// Creation failed; only deletion makes sense.
    Failed,
    /// Deleted; kept as a tombstone so late polls get 410.
    Deleted,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Instance creation.
    Provision,
    /// Instance update.
    Update,
    /// Instance deletion.
    Deprovision,
    /// Binding creation.
    Bind,
    /// Binding deletion.
    Unbind,
}

impl OperationKind {
    /// The prefix of operation ids of this kind (lets a poll for a forgotten deletion
    /// still answer 410).
    pub fn prefix(self) -> &'static str {
        match self {
            OperationKind::Provision => "provision",
            OperationKind::Update => "update",
            OperationKind::Deprovision => "deprovision",
            OperationKind::Bind => "bind",
            OperationKind::Unbind => "unbind",
        }
    }
}

/// OSB's `last_operation` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// `in progress`
    InProgress,
    /// `succeeded`
    Succeeded,
    /// `failed`
    Failed,
}

impl OperationState {
    /// The spelling OSB uses.
    pub fn as_osb(self) -> &'static str {
        match self {
            OperationState::InProgress => "in progress",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }
}

/// One operation on an instance or binding, with the backend's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Returned to the platform as `operation`.
    pub id: String,
    /// What it does.
    pub kind: OperationKind,
    /// Where it stands.
    pub state: OperationState,
    /// Shown to the user by `last_operation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unix seconds.
    pub started_at: u64,
    /// Unix milliseconds, for the duration metrics (absent in records written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Unix seconds after which an unfinished operation fails (`maximum_polling_duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// The backend's own progress state; `null` until the backend was first called.
    #[serde(default)]
    pub backend: Value,
    /// For updates: what the instance becomes when the update succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<PendingUpdate>,
    /// A poll that is currently calling the backend holds this until the given time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<u64>,
    /// Seconds the platform should wait before polling again (from the backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For failed updates/deprovisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    /// For failed updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
    /// Transient backend failures in a row (unreachable API, 5xx, 429): the suggested
    /// polling interval backs off with it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub transient_failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Operation {
    /// A new in-progress operation.
    pub fn start(
        kind: OperationKind,
        env: &dyn Env,
        deadline_after: Option<u64>,
    ) -> Result<Self, RandomnessUnavailable> {
        let now = env.now();
        Ok(Self {
            id: format!("{}-{}", kind.prefix(), env.random_hex(8)?),
            kind,
            state: OperationState::InProgress,
            description: None,
            started_at: now,
            started_ms: Some(env.now_ms()),
            deadline: deadline_after.map(|d| now + d),
            backend: Value::Null,
            update: None,
            lease_until: None,
            retry_after: None,
            instance_usable: None,
            update_repeatable: None,
            transient_failures: 0,
        })
    }

    /// Whether the operation is still running.
    pub fn in_progress(&self) -> bool {
        self.state == OperationState::InProgress
    }

    /// The record kept after the operation is superseded.
    pub fn summary(&self) -> OperationSummary {
        OperationSummary {
            id: self.id.clone(),
            kind: self.kind,
            state: self.state,
            description: self.description.clone(),
        }
    }
}

/// What remains of an operation after a newer one replaced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: OperationKind,
    /// Its final state.
    pub state: OperationState,
    /// Its last description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The target of an update, applied to the instance only when the update succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The plan after the update.
    pub plan_id: String,
    /// The parameters after the update.
    pub parameters: Map<String, Value>,
    /// The context after the update.
    #[serde(default)]
    pub context: Value,
    /// The maintenance_info version after the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info_version: Option<String>,
    /// What the platform sent (for idempotent repeats).
    pub request_fingerprint: String,
    /// A plan change's quota counters: all those the instance holds once it succeeds
    /// (`None`: no plan change, the instance keeps its own). Those it does not hold yet are
    /// taken when the update starts, held while it runs, and given back if it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Vec<String>>,
}

/// OSB instance `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceMetadata {
    /// Labels for platform users.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub labels: Map<String, Value>,
    /// Broker-generated attributes.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// A service instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Layout version.
    pub schema: u32,
    /// `:instance_id`.
    pub instance_id: String,
    /// Service offering id.
    pub service_id: String,
    /// Current plan id.
    pub plan_id: String,
    /// Current parameters.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Current OSB context.
    #[serde(default)]
    pub context: Value,
    /// Deprecated CF fields, kept for templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_guid: Option<String>,
    /// Deprecated CF fields, kept for templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_guid: Option<String>,
    /// Maintenance version the instance runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info_version: Option<String>,
    /// Rendered at provision time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// OSB metadata.
    #[serde(default)]
    pub metadata: InstanceMetadata,
    /// Per-instance secret seed: generated secrets derive from it, so they are stable
    /// across updates and re-renders without being stored in clear.
    pub seed: String,
    /// Lifecycle.
    pub status: Status,
    /// The current (or last) operation.
    pub operation: Operation,
    /// Older operations, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<OperationSummary>,
    /// Backend data that lives as long as the instance (object names, deployment name).
    #[serde(default)]
    pub backend: Value,
    /// What the platform sent at provision (for idempotent repeats).
    pub request_fingerprint: String,
    /// Set on a tombstone whose time to live has passed while it is being removed
    /// ([`crate::expiry`]): a creation of the same id waits instead of replacing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiring: bool,
    /// Its slot in [`crate::state::instance_index`], taken just before it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_slot: Option<u64>,
    /// The quota counters it holds a slot in ([`crate::quota`]), given back when it stops
    /// counting (its provision failed, or it was deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quota: Vec<String>,
}

impl InstanceRecord {
    /// What is left of a deprovisioned instance: enough to answer its late polls and
    /// repeated deletions (410) and to be replaced by a new provision of the same id;
    /// its secret seed, parameters, context and backend data go at once.
    pub fn become_tombstone(&mut self) {
        self.status = Status::Deleted;
        self.seed = String::new();
        self.parameters = Map::new();
        self.context = Value::Null;
        self.organization_guid = None;
        self.space_guid = None;
        self.dashboard_url = None;
        self.metadata = InstanceMetadata::default();
        self.backend = Value::Null;
        self.operation.backend = Value::Null;
        self.operation.update = None;
    }
}

impl BindingRecord {
    /// What is left of an unbound binding (see [`InstanceRecord::become_tombstone`]): its
    /// credentials, parameters, context and backend data go at once.
    pub fn become_tombstone(&mut self) {
        self.status = Status::Deleted;
        self.credentials = None;
        self.parameters = Map::new();
        self.context = Value::Null;
        self.bind_resource = Value::Null;
        self.metadata = None;
        self.backend = Value::Null;
        self.operation.backend = Value::Null;
    }
}

/// A service binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingRecord {
    /// Layout version.
    pub schema: u32,
    /// `:instance_id`.
    pub instance_id: String,
    /// `:binding_id`.
    pub binding_id: String,
    /// Service offering id.
    pub service_id: String,
    /// Plan id at bind time.
    pub plan_id: String,
    /// Binding parameters.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// OSB context.
    #[serde(default)]
    pub context: Value,
    /// `bind_resource` (app_guid, route, ...).
    #[serde(default)]
    pub bind_resource: Value,
    /// The binding this one rotates, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor_binding_id: Option<String>,
    /// Rendered credentials, once the binding is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Value>,
    /// `metadata` (`expires_at`, `renew_before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Lifecycle.
    pub status: Status,
    /// The current (or last) operation.
    pub operation: Operation,
    /// Older operations, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<OperationSummary>,
    /// Backend data for the binding's lifetime.
    #[serde(default)]
    pub backend: Value,
    /// What the platform sent (for idempotent repeats).
    pub request_fingerprint: String,
    /// See [`InstanceRecord::expiring`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiring: bool,
}

/// How an operation ended.
pub enum Outcome {
    /// It succeeded with what the backend produced.
    Done(Done),
    /// It failed, with the description users see.
    Failed(String),
}

/// What a successful operation produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Done {
    /// Instance data kept for the instance's lifetime (replaces the previous value when set).
    pub instance_data: Option<Value>,
    /// Binding credentials (bind only).
    pub credentials: Option<Value>,
    /// Binding `endpoints` (bind only).
    pub endpoints: Option<Value>,
    /// Final message.
    pub description: Option<String>,
}

/// An instance or binding record: a resource with a current operation, its history, and
/// the state machine that ends operations. The broker drives both through it.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// What kind of record it is (`instance`, `binding`), for metrics.
    const NOUN: &'static str;
    /// "service instance X" / "service binding X", for messages.
    fn label(&self) -> String;
    /// The service and plan the record is counted under (its own, not an update's target).
    fn plan(&self) -> (&str, &str);
    /// The quota counters it holds a slot in.
    fn quota_slots(&self) -> &[String] {
        &[]
    }
    /// The counters an operation in progress holds besides (or as well as) its own: a plan
    /// change's.
    fn pending_quota_slots(&self) -> &[String] {
        &[]
    }
    /// Its lifecycle state.
    fn status(&self) -> Status;
    /// The current (or last) operation.
    fn operation(&self) -> &Operation;
    /// See [`Record::operation`].
    fn operation_mut(&mut self) -> &mut Operation;
    /// Older operations, newest last.
    fn history(&self) -> &[OperationSummary];
    /// See [`Record::history`].
    fn history_mut(&mut self) -> &mut Vec<OperationSummary>;
    /// The service and plan whose backend runs the current operation.
    fn operation_plan(&self) -> (&str, &str);
    /// Whether the record is a tombstone being expired (no creation may replace it).
    fn expiring(&self) -> bool;
    /// What the end of an operation of `kind` changes in the record itself (its status,
    /// data, credentials); the operation's own state is set by [`Record::conclude`].
    fn apply(&mut self, kind: OperationKind, outcome: Outcome);

    /// Ends the current operation with `outcome`.
    fn conclude(&mut self, outcome: Outcome) {
        let operation = self.operation_mut();
        let kind = operation.kind;
        match &outcome {
            Outcome::Done(done) => {
                operation.state = OperationState::Succeeded;
                operation.description = Some(
                    done.description
                        .clone()
                        .unwrap_or_else(|| default_done(kind).to_string()),
                );
            }
            Outcome::Failed(description) => {
                operation.state = OperationState::Failed;
                operation.description = Some(description.clone());
            }
        }
        operation.retry_after = None;
        self.apply(kind, outcome);
    }

    /// Replaces the current operation, keeping a summary of the old one.
    fn begin(&mut self, operation: Operation) {
        let old = std::mem::replace(self.operation_mut(), operation);
        let history = self.history_mut();
        history.push(old.summary());
        if history.len() > HISTORY {
            history.remove(0);
        }
    }
}

impl Record for InstanceRecord {
    const NOUN: &'static str = "instance";
    fn quota_slots(&self) -> &[String] {
        &self.quota
    }
    fn pending_quota_slots(&self) -> &[String] {
        match &self.operation.update {
            Some(update) if self.operation.in_progress() => update.quota.as_deref().unwrap_or(&[]),
            _ => &[],
        }
    }
    fn plan(&self) -> (&str, &str) {
        (&self.service_id, &self.plan_id)
    }
    fn label(&self) -> String {
        format!("service instance {}", self.instance_id)
    }
    fn status(&self) -> Status {
        self.status
    }
    fn history(&self) -> &[OperationSummary] {
        &self.history
    }
    fn operation(&self) -> &Operation {
        &self.operation
    }
    fn operation_mut(&mut self) -> &mut Operation {
        &mut self.operation
    }
    fn history_mut(&mut self) -> &mut Vec<OperationSummary> {
        &mut self.history
    }
    fn operation_plan(&self) -> (&str, &str) {
        let plan_id = match (&self.operation.update, self.operation.kind) {
            (Some(update), OperationKind::Update) => &update.plan_id,
            _ => &self.plan_id,
        };
        (&self.service_id, plan_id)
    }

    fn expiring(&self) -> bool {
        self.expiring
    }

    fn apply(&mut self, kind: OperationKind, outcome: Outcome) {
        match outcome {
            Outcome::Done(done) => {
                if let Some(data) = done.instance_data {
                    self.backend = data;
                }
                match kind {
                    OperationKind::Provision => self.status = Status::Ready,
                    OperationKind::Update => {
                        if let Some(update) = self.operation.update.clone() {
                            if let Some(quota) = update.quota {
                                self.quota = quota;
                            }
                            self.plan_id = update.plan_id;
                            self.parameters = update.parameters;
                            self.context = update.context;
                            self.maintenance_info_version = update.maintenance_info_version;
                        }
                    }
                    OperationKind::Deprovision => self.become_tombstone(),
                    OperationKind::Bind | OperationKind::Unbind => {}
                }
            }
            Outcome::Failed(_) => match kind {
                OperationKind::Provision => self.status = Status::Failed,
                OperationKind::Update => {
                    self.operation.instance_usable = Some(true);
                    self.operation.update_repeatable = Some(true);
                }
                OperationKind::Deprovision => {
                    self.operation.instance_usable = Some(self.status == Status::Ready)
                }
                OperationKind::Bind | OperationKind::Unbind => {}
            },
        }
    }
}

impl Record for BindingRecord {
    const NOUN: &'static str = "binding";
    fn plan(&self) -> (&str, &str) {
        (&self.service_id, &self.plan_id)
    }
    fn label(&self) -> String {
        format!("service binding {}", self.binding_id)
    }
    fn status(&self) -> Status {
        self.status
    }
    fn history(&self) -> &[OperationSummary] {
        &self.history
    }
    fn operation(&self) -> &Operation {
        &self.operation
    }
    fn operation_mut(&mut self) -> &mut Operation {
        &mut self.operation
    }
    fn history_mut(&mut self) -> &mut Vec<OperationSummary> {
        &mut self.history
    }
    fn operation_plan(&self) -> (&str, &str) {
        (&self.service_id, &self.plan_id)
    }

    fn expiring(&self) -> bool {
        self.expiring
    }

    fn apply(&mut self, kind: OperationKind, outcome: Outcome) {
        match (kind, outcome) {
            (OperationKind::Bind, Outcome::Done(done)) => {
                self.status = Status::Ready;
                self.credentials = done.credentials;
                if let Some(endpoints) = done.endpoints {
                    self.backend["endpoints"] = endpoints;
                }
                if let Some(data) = done.instance_data {
                    self.backend["data"] = data;
                }
            }
            (OperationKind::Unbind, Outcome::Done(_)) => self.become_tombstone(),
            (OperationKind::Bind, Outcome::Failed(_)) => self.status = Status::Failed,
            _ => {}
        }
    }
}

/// The description of a successful operation whose backend gave none.
fn default_done(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Provision => "provisioned",
        OperationKind::Update => "updated",
        OperationKind::Deprovision => "deprovisioned",
        OperationKind::Bind => "bound",
        OperationKind::Unbind => "unbound",
    }
}
