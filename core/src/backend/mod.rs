//! The backend contract: how a plan's resources are created, changed and removed.
//!
//! The broker owns the OSB protocol and the state machine; a backend only answers "do
//! (or continue) this operation" with a [`Step`]. Each call gets the operation's previous
//! backend state (`null` on the first call) and returns the next one, which the broker
//! persists before answering — so an operation survives any crash, and each
//! `last_operation` poll advances it by one step. Backends are selected per plan by
//! [`for_plan`]; a new backend is a variant there, not a change to the OSB layer.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::catalog::Backend;
use crate::kv::Kv;
use crate::outbound::{Config, Outbound};
use crate::state::{BindingRecord, InstanceRecord, OperationKind};
use crate::template::TemplateContext;

pub mod bosh;
pub mod credentials;
pub mod kubernetes;

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

/// The backend of one plan.
pub enum AnyBackend<'a> {
    /// No external system: credentials from templates.
    Credentials(credentials::Credentials<'a>),
    /// Objects in a Kubernetes cluster.
    Kubernetes(kubernetes::Kubernetes<'a>),
    /// A BOSH deployment.
    Bosh(bosh::Bosh<'a>),
}

/// Picks the backend declared by the plan's `backend.type`.
pub fn for_plan<'a>(config: &'a Backend, services: Services<'a>) -> AnyBackend<'a> {
    match config {
        Backend::Credentials(c) => AnyBackend::Credentials(credentials::Credentials::new(c)),
        Backend::Kubernetes(c) => AnyBackend::Kubernetes(kubernetes::Kubernetes::new(c, services)),
        Backend::Bosh(c) => AnyBackend::Bosh(bosh::Bosh::new(c, services)),
    }
}

impl AnyBackend<'_> {
    /// Whether `kind` completes only asynchronously (requires `accepts_incomplete`).
    pub fn is_async(&self, kind: OperationKind) -> bool {
        match self {
            AnyBackend::Credentials(b) => b.is_async(kind),
            AnyBackend::Kubernetes(b) => b.is_async(kind),
            AnyBackend::Bosh(b) => b.is_async(kind),
        }
    }

    /// Why a new operation on the instance cannot start now (answered with 422
    /// ConcurrencyError before anything is stored), if the backend knows of a reason.
    pub async fn busy(&self, kind: OperationKind, instance_id: &str, now: u64) -> Option<String> {
        match (self, kind) {
            (AnyBackend::Bosh(b), OperationKind::Provision | OperationKind::Update) => {
                b.busy(instance_id, now).await
            }
            _ => None,
        }
    }

    /// Starts or continues an operation.
    pub async fn step(&self, input: &StepInput<'_>) -> Result<Step, BackendError> {
        match self {
            AnyBackend::Credentials(b) => b.step(input),
            AnyBackend::Kubernetes(b) => b.step(input).await,
            AnyBackend::Bosh(b) => b.step(input).await,
        }
    }
}
