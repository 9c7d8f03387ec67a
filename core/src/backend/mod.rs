//! The backend contract: how a plan's resources are created, changed and removed.
//!
//! The broker owns the OSB protocol and the state machine; a backend only answers "do
//! (or continue) this operation" with a [`Step`]. Each call gets the operation's previous
//! backend state (`null` on the first call) and returns the next one, which the broker
//! persists before answering — so an operation survives any crash, and each
//! `last_operation` poll advances it by one step.
//!
//! A backend is a module here with two parts: its configuration (the plan's `backend:`
//! mapping, implementing [`BackendConfig`]: how the catalog reads and checks it) and its
//! runtime (implementing [`Backend`]: the steps). [`registry`] lists the backends; it is
//! the only place that names them all.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::{PlanView, Problems};
use crate::kv::Kv;
use crate::outbound::{Config, Outbound};
use crate::state::{BindingRecord, InstanceRecord, OperationKind};
use crate::template::TemplateContext;

pub mod bosh;
pub mod credentials;
pub mod kubernetes;
pub mod registry;

pub use registry::{AnyBackend, PlanBackend};

/// A backend's operations for one request.
// Components are single-threaded and the core's tests drive futures on one thread: no
// caller needs the futures to be `Send`.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// Whether `kind` completes only asynchronously (requires `accepts_incomplete`).
    fn is_async(&self, kind: OperationKind) -> bool;

    /// Why a new operation of `kind` on the instance cannot start now (answered with 422
    /// ConcurrencyError before anything is stored), if the backend knows of a reason.
    async fn busy(&self, _kind: OperationKind, _instance_id: &str, _now: u64) -> Option<String> {
        None
    }

    /// The backend's part of a new instance's record ([`InstanceRecord::backend`]),
    /// decided from the provision request before anything is stored (e.g. the cluster it
    /// goes to); `Err` is why the request cannot be served, answered with 400.
    fn place(&self, _instance: &InstanceRecord) -> Result<Value, String> {
        Ok(Value::Null)
    }

    /// Starts or continues an operation.
    async fn step(&self, input: &StepInput<'_>) -> Result<Step, BackendError>;
}

/// A plan's `backend:` configuration of one backend type: what the catalog reads, checks
/// and compiles, and what makes the backend for a request.
pub trait BackendConfig:
    Debug + Clone + PartialEq + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The Spin variables the backend reads (API URLs, credentials): every component that
    /// runs backend steps declares them in `spin.toml` (checked by the e2e `manifest` suite).
    const VARIABLES: &'static [&'static str] = &[];
    /// What the backend calls, as `allowed_outbound_hosts` entries of those components
    /// (templates over its variables, e.g. `"{{ kubernetes_api_url }}"`).
    const OUTBOUND_HOSTS: &'static [&'static str] = &[];

    /// The backend this configures.
    type Backend<'a>: Backend
    where
        Self: 'a;

    /// The backend for one request. `Default::default()` is the configuration used to
    /// delete what an instance of a plan that has left the catalog still owns: the backend
    /// must then work from what the instance record kept.
    fn backend<'a>(&'a self, services: Services<'a>) -> Self::Backend<'a>;

    /// Checks at load time beyond the YAML's shape (templates, cross-field rules); `path`
    /// is the path of the plan's `backend` field.
    fn validate(&self, plan: &PlanView<'_>, path: &str, problems: &mut Problems<'_>);

    /// The plan's `dashboard_url` template (instance scope), if any.
    fn dashboard_url(&self) -> Option<&str> {
        None
    }

    /// Whether a step touches nothing outside the record it returns: its steps can then run
    /// without a lease (two at once compute the same kind of answer and only one
    /// compare-and-swap lands), which saves a store round trip per step.
    fn steps_are_local(&self) -> bool {
        false
    }

    /// How long an operation may run when the plan sets no `maximum_polling_duration`:
    /// backends that wait on an external system must still end every operation.
    fn default_deadline_seconds(&self) -> Option<u64> {
        None
    }

    /// What is valid but risky, for `catalog check` (one sentence each, naming the field).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What backends may use besides their plan's configuration: outbound HTTP, the
/// deployment's variables (API URLs, tokens) and the store (for caches).
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// Outbound HTTP, bounded by the step's time budget.
    pub http: Outbound<'a>,
    /// Spin variables.
    pub config: &'a dyn Config,
    /// The broker's store; backends keep only caches there (discovery, tokens).
    pub kv: &'a dyn Kv,
}

/// Everything a backend may look at for one step.
pub struct StepInput<'a> {
    /// What is being done.
    pub kind: OperationKind,
    /// The instance (for updates: as it is before the update).
    pub instance: &'a InstanceRecord,
    /// The template context of the step, built by the broker from the plan being applied
    /// (for updates: the target plan); `None` when the instance's plan has left the
    /// catalog, where only deletions run (on what the records kept).
    pub template: Option<TemplateContext>,
    /// Parameters the operation applies (for updates: merged new parameters).
    pub parameters: &'a Map<String, Value>,
    /// Context the operation applies.
    pub context: &'a Value,
    /// The binding, for bind/unbind.
    pub binding: Option<&'a BindingRecord>,
    /// The backend state from the previous step; `null` on the first call.
    pub state: &'a Value,
    /// The operation's id: unique, and already stored before the first step, so a backend
    /// can tag external work with it and find that work again after a crash.
    pub operation_id: &'a str,
    /// Unix seconds.
    pub now: u64,
}

impl StepInput<'_> {
    /// The template context of this step (see [`StepInput::template`]).
    pub fn template_context(&self) -> Result<TemplateContext, BackendError> {
        self.template.clone().ok_or_else(|| {
            BackendError::Permanent(format!(
                "the plan of service instance {} is no longer in the catalog",
                self.instance.instance_id
            ))
        })
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The operation finished successfully.
    Done(Done),
    /// Not finished; persist `state` and ask again on the next poll.
    InProgress {
        /// Backend state for the next step.
        state: Value,
        /// Progress message for the user.
        description: Option<String>,
        /// Suggested seconds until the next poll.
        retry_after: Option<u64>,
    },
    /// The operation failed for good.
    Failed {
        /// Why, for the user.
        description: String,
    },
}

pub use crate::state::Done;

/// A backend failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// Worth retrying on a later poll (network, 5xx, 429, locks): never fails the
    /// operation by itself, only its deadline does.
    #[error("{0}")]
    Transient(String),
    /// The operation cannot succeed (bad template, 403, 422 from the API).
    #[error("{0}")]
    Permanent(String),
}

/// The operation state a backend left in the previous step, `T::default()` on the first.
pub(crate) fn resume<T: DeserializeOwned + Default>(state: &Value) -> Result<T, BackendError> {
    if state.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(state.clone())
        .map_err(|e| BackendError::Permanent(format!("unreadable operation state: {e}")))
}
