//! Instance and binding records in the key-value store, and the only ways to change them.
//!
//! Key layout (every id is validated by [`crate::http::validate_id`], so `/` cannot occur
//! inside one):
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `osb/v1/instance/{iid}`               | [`InstanceRecord`] as JSON              |
//! | `osb/v1/instance/{iid}/claim/g{n}`    | creation claim counter (generation n)   |
//! | `osb/v1/instance/{iid}/binding-index/{k}` | k-th binding id created ([`crate::expiry`]) |
//! | `osb/v1/binding/{iid}/{bid}`          | [`BindingRecord`] as JSON               |
//! | `osb/v1/binding/{iid}/{bid}/claim/g{n}` | creation claim counter                |
//!
//! Records carry `schema` (currently [`SCHEMA_VERSION`]). Every change after creation is
//! a compare-and-swap against the exact bytes read ([`replace`]), which is a true CAS on
//! every runtime because the key exists. Creation uses [`create`]: the first caller whose
//! atomic `increment` of the claim counter returns 1 owns the record; concurrent callers
//! wait for it to appear. If it never appears (the owner crashed between claim and write)
//! waiting callers move to the next claim generation, which again has exactly one winner.
//! Deleted resources stay as tombstones ([`Status::Deleted`]) so late polls get 410.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::env::{Env, RandomnessUnavailable};
use crate::error::OsbError;
use crate::kv::Kv;

/// Version of the record layout written by this build.
pub const SCHEMA_VERSION: u32 = 1;
/// How long the owner of a creation claim may take from claiming to writing its record.
/// An owner that finds this window closed does not write (503, the platform retries):
/// by then a waiter may take over.
const CLAIM_WRITE_MS: u64 = 1_000;
/// How long a caller that lost a creation claim waits for its owner's record before
/// taking over with the next claim generation: far past the owner's write window, so an
/// owner that was slow rather than dead never writes after a takeover.
const CLAIM_WAIT_MS: u64 = 3_000;
const CLAIM_POLL_MS: u64 = 50;
/// How long one creation may wait on claims in all before answering 503.
const CREATE_WAIT_MS: u64 = 12_000;
/// Operations kept per resource after they were superseded, for late polls.
const HISTORY: usize = 5;

/// Key of an instance record.
pub fn instance_key(instance_id: &str) -> String {
    format!("osb/v1/instance/{instance_id}")
}

/// Key of a binding record.
pub fn binding_key(instance_id: &str, binding_id: &str) -> String {
    format!("osb/v1/binding/{instance_id}/{binding_id}")
}

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
    /// "service instance X" / "service binding X", for messages.
    fn label(&self) -> String;
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
    /// Applies the end of the current operation to the record.
    fn conclude(&mut self, outcome: Outcome);

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

    fn conclude(&mut self, outcome: Outcome) {
        let kind = self.operation.kind;
        match outcome {
            Outcome::Done(done) => {
                self.operation.state = OperationState::Succeeded;
                self.operation.description = done
                    .description
                    .or_else(|| Some(default_done(kind).to_string()));
                if let Some(data) = done.instance_data {
                    self.backend = data;
                }
                match kind {
                    OperationKind::Provision => self.status = Status::Ready,
                    OperationKind::Update => {
                        if let Some(update) = self.operation.update.clone() {
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
            Outcome::Failed(description) => {
                self.operation.state = OperationState::Failed;
                self.operation.description = Some(description);
                match kind {
                    OperationKind::Provision => self.status = Status::Failed,
                    OperationKind::Update => {
                        self.operation.instance_usable = Some(true);
                        self.operation.update_repeatable = Some(true);
                    }
                    OperationKind::Deprovision => {
                        self.operation.instance_usable = Some(self.status == Status::Ready)
                    }
                    OperationKind::Bind | OperationKind::Unbind => {}
                }
            }
        }
        self.operation.retry_after = None;
    }
}

impl Record for BindingRecord {
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

    fn conclude(&mut self, outcome: Outcome) {
        let kind = self.operation.kind;
        match outcome {
            Outcome::Done(done) => {
                self.operation.state = OperationState::Succeeded;
                self.operation.description = done
                    .description
                    .or_else(|| Some(default_done(kind).to_string()));
                match kind {
                    OperationKind::Bind => {
                        self.status = Status::Ready;
                        self.credentials = done.credentials;
                        if let Some(endpoints) = done.endpoints {
                            self.backend["endpoints"] = endpoints;
                        }
                        if let Some(data) = done.instance_data {
                            self.backend["data"] = data;
                        }
                    }
                    OperationKind::Unbind => self.become_tombstone(),
                    _ => {}
                }
            }
            Outcome::Failed(description) => {
                self.operation.state = OperationState::Failed;
                self.operation.description = Some(description);
                if kind == OperationKind::Bind {
                    self.status = Status::Failed;
                }
            }
        }
        self.operation.retry_after = None;
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

/// A record together with the exact bytes it was read from (the CAS expectation).
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The decoded record.
    pub value: T,
    raw: Vec<u8>,
    stamp: WriteStamp,
}

impl<T> Stored<T> {
    /// `value` as a change of this record that is decided but not written: [`replace`]ing
    /// it later still compares against what was read, so the change and whatever follows
    /// from it land in one write, or not at all.
    pub fn unwritten(&self, value: T) -> Stored<T> {
        Stored {
            value,
            raw: self.raw.clone(),
            stamp: self.stamp.clone(),
        }
    }
}

/// How many earlier write tokens a record remembers (see [`WriteStamp`]).
const LINEAGE: usize = 8;

/// Every record write carries a fresh random token and the tokens of the writes it replaced,
/// so a writer can tell from the store whether its compare-and-swap took effect, whatever
/// the store reported: Spin's Redis store writes (conditionally, under `WATCH`) and then
/// reports `cas-failed`, every time. A write is ours if the record now holds our token, or
/// a later write that replaced ours (and so lists our token among its predecessors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WriteStamp {
    token: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    after: Vec<String>,
}

impl WriteStamp {
    fn fresh(env: &dyn Env) -> Result<Self, RandomnessUnavailable> {
        Ok(WriteStamp {
            token: env.random_hex(12)?,
            after: Vec::new(),
        })
    }

    /// The stamp of a write that replaces the one stamped `self`.
    fn successor(&self, env: &dyn Env) -> Result<Self, RandomnessUnavailable> {
        let mut after = Vec::with_capacity(LINEAGE);
        after.push(self.token.clone());
        after.extend(self.after.iter().take(LINEAGE - 1).cloned());
        Ok(WriteStamp {
            token: env.random_hex(12)?,
            after,
        })
    }

    fn includes(&self, token: &str) -> bool {
        self.token == token || self.after.iter().any(|t| t == token)
    }
}

/// The field of a stored record that holds its [`WriteStamp`].
const STAMP_FIELD: &str = "write";

/// Reads and decodes `key`. A record that does not decode (corruption, a newer schema)
/// is a 500 that names the key, never a panic or a silent overwrite.
pub fn read<T: DeserializeOwned>(kv: &dyn Kv, key: &str) -> Result<Option<Stored<T>>, OsbError> {
    let Some(raw) = kv.get(key)? else {
        return Ok(None);
    };
    let (value, stamp) = decode(key, &raw)?;
    Ok(Some(Stored { value, raw, stamp }))
}

fn decode<T: DeserializeOwned>(key: &str, raw: &[u8]) -> Result<(T, WriteStamp), OsbError> {
    let unreadable =
        |e: serde_json::Error| OsbError::internal(format!("record {key} is unreadable: {e}"));
    let mut json = serde_json::from_slice::<Value>(raw).map_err(unreadable)?;
    let schema = json.get("schema").and_then(Value::as_u64);
    if let Some(schema) = schema.filter(|s| *s > SCHEMA_VERSION as u64) {
        return Err(OsbError::internal(format!(
            "record {key} has schema {schema}, newer than this broker's {SCHEMA_VERSION}; upgrade the broker"
        )));
    }
    // Records written before stamps existed have none: an empty token never matches.
    let stamp = match json.as_object_mut().and_then(|o| o.remove(STAMP_FIELD)) {
        Some(stamp) => serde_json::from_value(stamp).map_err(unreadable)?,
        None => WriteStamp::default(),
    };
    Ok((serde_json::from_value(json).map_err(unreadable)?, stamp))
}

fn encode<T: Serialize>(value: &T, stamp: &WriteStamp) -> Result<Vec<u8>, OsbError> {
    let failed = |e: serde_json::Error| OsbError::internal(format!("cannot encode record: {e}"));
    let mut json = serde_json::to_value(value).map_err(failed)?;
    let Some(object) = json.as_object_mut() else {
        return Err(OsbError::internal("a record must encode as a JSON object"));
    };
    object.insert(
        STAMP_FIELD.into(),
        serde_json::to_value(stamp).map_err(failed)?,
    );
    serde_json::to_vec(&json).map_err(failed)
}

/// Writes `new` if the record still holds what `current` was read from. `Ok(None)` when
/// someone else changed it first (the caller re-reads and decides again).
///
/// A reported success is trusted; a reported failure is checked against the store (see
/// [`WriteStamp`]), so a store that reports failure after writing cannot make the broker
/// believe a transition it made did not happen.
pub fn replace<T: Serialize + Clone + DeserializeOwned>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    current: &Stored<T>,
    new: &T,
) -> Result<Option<Stored<T>>, OsbError> {
    let stamp = current.stamp.successor(env)?;
    let raw = encode(new, &stamp)?;
    let written = kv.compare_and_swap(key, &current.raw, &raw)?
        || match kv.get(key)? {
            Some(now) => now == raw || decode::<Value>(key, &now)?.1.includes(&stamp.token),
            None => false,
        };
    Ok(written.then(|| Stored {
        value: new.clone(),
        raw,
        stamp,
    }))
}

/// The outcome of [`create`].
pub enum Created<T> {
    /// This caller created the record.
    New(Stored<T>),
    /// A record was already there (possibly a tombstone); the caller applies its rules.
    Existing(Stored<T>),
}

/// Creates the record at `key` unless one exists, race-free on every runtime.
pub fn create<T: Serialize + DeserializeOwned + Clone>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    record: &T,
) -> Result<Created<T>, OsbError> {
    let seen = read(kv, key)?;
    create_after_read(kv, env, key, record, seen)
}

/// [`create`] for a caller that has just read `key` and found `seen`: a record found is the
/// existing one, and an absent one is claimed without reading again (a store call saved on
/// every bind, which must look before it validates).
pub fn create_after_read<T: Serialize + DeserializeOwned + Clone>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    record: &T,
    seen: Option<Stored<T>>,
) -> Result<Created<T>, OsbError> {
    if let Some(existing) = seen {
        return Ok(Created::Existing(existing));
    }
    // Everything that can fail is done before a claim is taken: a claim whose record is
    // never written costs the next creator a wait.
    let stamp = WriteStamp::fresh(env)?;
    let raw = encode(record, &stamp)?;
    let first_free = format!("{key}/claim/first-free");
    let mut generation: u64 = 0;
    let mut waited = 0;
    loop {
        let claim = format!("{key}/claim/g{generation}");
        let claimed_at = env.monotonic_ms();
        if kv.increment(&claim, 1)? == 1 {
            if env.monotonic_ms().saturating_sub(claimed_at) > CLAIM_WRITE_MS {
                return Err(OsbError::unavailable(format!(
                    "creating {key} took too long to claim; retry the request"
                )));
            }
            kv.set(key, &raw)?;
            return Ok(Created::New(Stored {
                value: record.clone(),
                raw,
                stamp,
            }));
        }
        // Someone else owns this generation. Generations before the first free one are
        // known to be stale: start past them.
        let first_free_generation = read_generation(kv, &first_free)?;
        if first_free_generation > generation {
            generation = first_free_generation;
            if let Some(existing) = read(kv, key)? {
                return Ok(Created::Existing(existing));
            }
            continue;
        }
        // Wait for the owner's record.
        let waited_from = waited;
        while waited - waited_from < CLAIM_WAIT_MS {
            if let Some(existing) = read(kv, key)? {
                return Ok(Created::Existing(existing));
            }
            if waited >= CREATE_WAIT_MS {
                return Err(OsbError::unavailable(format!(
                    "could not create {key}: concurrent creators did not finish; retry the request"
                )));
            }
            env.sleep_ms(CLAIM_POLL_MS);
            waited += CLAIM_POLL_MS;
        }
        // Its owner is gone (or too slow to write any more): the generation is stale. Say
        // so for later creators, which start past it instead of waiting again.
        if read_generation(kv, &first_free)? <= generation {
            kv.set(&first_free, (generation + 1).to_string().as_bytes())?;
        }
        generation += 1;
        if let Some(existing) = read(kv, key)? {
            return Ok(Created::Existing(existing));
        }
    }
}

/// Deletes the creation claims of `key` while its record is a tombstone about to be deleted
/// for good (see [`crate::expiry`]), so the next creation of the id starts afresh at
/// generation 0. Safe only then: the record has existed for longer than any creation can
/// take, so no creator that found it absent is still running, and a creator that finds the
/// marked tombstone does not claim. (While a record is live its claim counters must stay:
/// on Spin's SQLite store a swap on a missing key is an upsert, so the counter is what makes
/// creation exclusive.)
pub fn delete_claims(kv: &dyn Kv, key: &str) -> Result<(), OsbError> {
    // Generations are claimed in order, so the used ones are g0, g1, … up to the first gap.
    let mut generation = 0;
    loop {
        let claim = format!("{key}/claim/g{generation}");
        if kv.get(&claim)?.is_none() {
            break;
        }
        kv.delete(&claim)?;
        generation += 1;
    }
    // Recorded after a takeover (also one whose request ended before claiming again).
    kv.delete(&format!("{key}/claim/first-free"))?;
    Ok(())
}

/// The claim generation recorded under `key` (0 when none or unreadable).
fn read_generation(kv: &dyn Kv, key: &str) -> Result<u64, OsbError> {
    Ok(kv
        .get(key)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0))
}

/// Stable digest of request attributes, for "identical request" checks.
pub fn fingerprint(value: &Value) -> String {
    use sha2::Digest;
    let canonical = canonical_json(value);
    hex_encode(&sha2::Sha256::digest(canonical.as_bytes())[..16])
}

fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TestEnv;
    use crate::kv::MemoryKv;
    use std::sync::Arc;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        schema: u32,
        owner: u32,
    }

    #[test]
    fn fingerprints_ignore_key_order() {
        let a = serde_json::json!({"a": 1, "b": {"x": 1, "y": [1, 2]}});
        let b = serde_json::json!({"b": {"y": [1, 2], "x": 1}, "a": 1});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&serde_json::json!({"a": 2})));
    }

    #[test]
    fn fifty_concurrent_creators_produce_one_record_on_spin_semantics() {
        // MemoryKv upserts on CAS of an absent key, like Spin's SQLite store.
        let kv = Arc::new(MemoryKv::default());
        let winners = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let threads: Vec<_> = (0..50)
            .map(|owner| {
                let kv = kv.clone();
                let winners = winners.clone();
                std::thread::spawn(move || {
                    let env = TestEnv::at(0);
                    match create(&*kv, &env, "k", &Rec { schema: 1, owner }).unwrap() {
                        Created::New(_) => {
                            winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Created::Existing(_) => {}
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(winners.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_crashed_claimer_is_taken_over_by_the_next_generation() {
        let kv = MemoryKv::default();
        let env = TestEnv::at(0);
        // A previous request claimed generation 0 and died before writing the record.
        kv.increment("k/claim/g0", 1).unwrap();
        match create(
            &kv,
            &env,
            "k",
            &Rec {
                schema: 1,
                owner: 7,
            },
        )
        .unwrap()
        {
            Created::New(stored) => assert_eq!(stored.value.owner, 7),
            Created::Existing(_) => panic!("nobody else wrote the record"),
        }
    }

    #[test]
    fn replace_fails_when_the_record_changed_meanwhile() {
        let kv = MemoryKv::default();
        let env = TestEnv::at(0);
        let Created::New(first) = create(
            &kv,
            &env,
            "k",
            &Rec {
                schema: 1,
                owner: 1,
            },
        )
        .unwrap() else {
            panic!()
        };
        let second = replace(
            &kv,
            &env,
            "k",
            &first,
            &Rec {
                schema: 1,
                owner: 2,
            },
        )
        .unwrap();
        assert!(second.is_some());
        assert!(replace(
            &kv,
            &env,
            "k",
            &first,
            &Rec {
                schema: 1,
                owner: 3
            }
        )
        .unwrap()
        .is_none());
        let now: Stored<Rec> = read(&kv, "k").unwrap().unwrap();
        assert_eq!(now.value.owner, 2);
    }

    fn rec(owner: u32) -> Rec {
        Rec { schema: 1, owner }
    }

    /// A store whose swaps report failure after writing, like Spin's Redis store.
    fn lying_store() -> MemoryKv {
        let kv = MemoryKv::default();
        kv.swap_reports_failure
            .store(true, std::sync::atomic::Ordering::SeqCst);
        kv
    }

    #[test]
    fn a_swap_reported_failed_that_wrote_is_a_success() {
        let (kv, env) = (lying_store(), TestEnv::at(0));
        let Created::New(first) = create(&kv, &env, "k", &rec(1)).unwrap() else {
            panic!()
        };
        let second = replace(&kv, &env, "k", &first, &rec(2)).unwrap();
        assert_eq!(second.map(|s| s.value.owner), Some(2));
        // And the transition after it too (its stamp chains to the first).
        let now: Stored<Rec> = read(&kv, "k").unwrap().unwrap();
        assert!(replace(&kv, &env, "k", &now, &rec(3)).unwrap().is_some());
        assert_eq!(read::<Rec>(&kv, "k").unwrap().unwrap().value.owner, 3);
    }

    #[test]
    fn a_swap_reported_failed_that_lost_is_a_failure() {
        let (kv, env) = (lying_store(), TestEnv::at(0));
        let Created::New(first) = create(&kv, &env, "k", &rec(1)).unwrap() else {
            panic!()
        };
        assert!(replace(&kv, &env, "k", &first, &rec(2)).unwrap().is_some());
        // A second writer that read the same version loses, although it sends the same bytes
        // a winner would: the tokens differ.
        assert!(replace(&kv, &env, "k", &first, &rec(2)).unwrap().is_none());
        assert!(replace(&kv, &env, "k", &first, &rec(9)).unwrap().is_none());
        assert_eq!(read::<Rec>(&kv, "k").unwrap().unwrap().value.owner, 2);
    }

    #[test]
    fn our_write_replaced_before_we_looked_is_still_ours() {
        let (kv, env) = (MemoryKv::default(), TestEnv::at(0));
        let Created::New(first) = create(&kv, &env, "k", &rec(1)).unwrap() else {
            panic!()
        };
        // Our swap wrote; then, before we read back, someone replaced our write.
        let ours = replace(&kv, &env, "k", &first, &rec(2)).unwrap().unwrap();
        let theirs = replace(&kv, &env, "k", &ours, &rec(3)).unwrap().unwrap();
        let (now, stamp) = decode::<Rec>("k", &theirs.raw).unwrap();
        assert_eq!(now.owner, 3);
        assert!(stamp.includes(&ours.stamp.token));
    }

    #[test]
    fn concurrent_transitions_on_a_lying_store_have_exactly_one_winner() {
        let (kv, env) = (lying_store(), TestEnv::at(0));
        let Created::New(first) = create(&kv, &env, "k", &rec(0)).unwrap() else {
            panic!()
        };
        let winners: Vec<u32> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=16)
                .map(|owner| {
                    let (kv, env, first) = (&kv, &env, &first);
                    scope.spawn(move || {
                        replace(kv, env, "k", first, &rec(owner))
                            .unwrap()
                            .map(|_| owner)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(
            read::<Rec>(&kv, "k").unwrap().unwrap().value.owner,
            winners[0]
        );
    }

    #[test]
    fn records_written_before_stamps_are_read_and_replaced() {
        let (kv, env) = (lying_store(), TestEnv::at(0));
        kv.set("old", br#"{"schema": 1, "owner": 1}"#).unwrap();
        let old: Stored<Rec> = read(&kv, "old").unwrap().unwrap();
        assert!(replace(&kv, &env, "old", &old, &rec(2)).unwrap().is_some());
        assert_eq!(read::<Rec>(&kv, "old").unwrap().unwrap().value.owner, 2);
    }

    #[test]
    fn corrupt_and_future_records_are_errors_not_panics() {
        let kv = MemoryKv::default();
        kv.set("bad", b"{not json").unwrap();
        assert_eq!(read::<Rec>(&kv, "bad").unwrap_err().status, 500);
        kv.set("future", br#"{"schema": 99, "owner": 1}"#).unwrap();
        assert!(read::<Rec>(&kv, "future")
            .unwrap_err()
            .description
            .contains("newer"));
    }

    #[test]
    fn store_failures_are_503() {
        let kv = MemoryKv::default();
        kv.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(read::<Rec>(&kv, "k").unwrap_err().status, 503);
    }
}
