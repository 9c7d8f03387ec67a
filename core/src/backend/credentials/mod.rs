//! The credentials backend: nothing external, credentials rendered from the plan's
//! templates. With `async: true` every operation stays in progress for `delay_seconds`
//! (counted from its first step, persisted in the operation), so platforms exercise their
//! real polling path against it.

use serde_json::{json, Value};

mod config;

pub use config::CredentialsConfig;

use super::{Backend, BackendError, Done, Step, StepInput};
use crate::state::OperationKind;

/// A plan's credentials backend.
pub struct Credentials<'a> {
    config: &'a CredentialsConfig,
}

impl Backend for Credentials<'_> {
    /// Every operation of an `async` plan is asynchronous.
    fn is_async(&self, _kind: OperationKind) -> bool {
        self.config.asynchronous
    }

    /// Waits out the delay (async plans), then completes the operation.
    async fn step(&self, input: &StepInput<'_>) -> Result<Step, BackendError> {
        if self.config.asynchronous {
            let ready_at = input
                .state
                .get("ready_at")
                .and_then(Value::as_u64)
                .unwrap_or(input.now + self.config.delay_seconds);
            if input.now < ready_at {
                return Ok(Step::InProgress {
                    state: json!({ "ready_at": ready_at }),
                    description: Some(format!("{} in progress", noun(input.kind))),
                    retry_after: Some((ready_at - input.now).max(1)),
                });
            }
        }
        let mut done = Done::default();
        if input.kind == OperationKind::Bind {
            let ctx = input.template_context()?;
            let credentials = self.config.render_credentials(&ctx).map_err(|e| {
                BackendError::Permanent(format!(
                    "cannot render the binding credentials: {}",
                    e.message()
                ))
            })?;
            done.credentials = Some(credentials);
        }
        Ok(Step::Done(done))
    }
}

fn noun(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Provision => "provisioning",
        OperationKind::Update => "update",
        OperationKind::Deprovision => "deprovisioning",
        OperationKind::Bind => "binding",
        OperationKind::Unbind => "unbinding",
    }
}
