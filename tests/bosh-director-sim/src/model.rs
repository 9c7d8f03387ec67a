//! Public value types: what tests read back from the simulator (snapshots of
//! tasks, deployments, requests) and what they hand it to steer it (holds,
//! injected failures, errand behaviour). Snapshots are plain clones so a
//! test can keep them without holding any lock.

use std::fmt;

/// Director task states (contract A.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    Queued,
    Processing,
    Cancelling,
    Done,
    Error,
    Cancelled,
    Timeout,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Processing => "processing",
            TaskState::Cancelling => "cancelling",
            TaskState::Done => "done",
            TaskState::Error => "error",
            TaskState::Cancelled => "cancelled",
            TaskState::Timeout => "timeout",
        }
    }

    /// `done`, `error`, `cancelled` and `timeout` never change again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            TaskState::Queued | TaskState::Processing | TaskState::Cancelling
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The task types the simulator creates (the director's `job_type`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `POST /deployments` and `PUT /deployments/:name/jobs/:job`.
    UpdateDeployment,
    /// `DELETE /deployments/:name`.
    DeleteDeployment,
    /// `POST /deployments/:name/errands/:errand/runs`.
    RunErrand,
    /// `GET /deployments/:name/{vms,instances}?format=full`.
    Vms,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::UpdateDeployment => "update_deployment",
            TaskKind::DeleteDeployment => "delete_deployment",
            TaskKind::RunErrand => "run_errand",
            TaskKind::Vms => "vms",
        }
    }

    /// Deployment-mutating jobs take `lock:deployment:<name>` (A.10).
    pub fn takes_deployment_lock(self) -> bool {
        !matches!(self, TaskKind::Vms)
    }
}

/// A snapshot of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: u64,
    pub kind: TaskKind,
    pub state: TaskState,
    pub description: String,
    pub deployment: Option<String>,
    /// `X-Bosh-Context-Id` of the creating request, `""` when absent.
    pub context_id: String,
    /// `None` until the task finishes (then the ≤128-character summary).
    pub result: Option<String>,
    pub user: String,
    /// NDJSON served by `GET /tasks/:id/output?type=result`.
    pub result_output: String,
    /// NDJSON served by `GET /tasks/:id/output?type=event`.
    pub event_output: String,
}

/// A snapshot of one deployment record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentInfo {
    pub name: String,
    /// Manifest text of the last successful deploy; `None` while the record
    /// exists only because a deploy was posted (A.4 find_or_create).
    pub manifest: Option<String>,
    /// How many times `POST /deployments` named this deployment (including
    /// ones whose task failed).
    pub post_count: u32,
    pub instances: Vec<InstanceInfo>,
    /// Id of the task holding `lock:deployment:<name>`, if any.
    pub locked_by: Option<u64>,
}

/// A snapshot of one instance of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    pub group: String,
    pub index: u32,
    /// Stable uuid-like id, kept across deploys while the instance exists.
    pub id: String,
    pub agent_id: String,
    pub vm_cid: String,
    /// A fake address in 10.244.0.0/16: data only, nothing listens there.
    pub ip: String,
    pub az: Option<String>,
    pub bootstrap: bool,
    /// `false` for instances of `lifecycle: errand` groups (no VM).
    pub expects_vm: bool,
    /// `job_state` reported by `format=full` (default `running`).
    pub job_state: String,
}

/// How the `Authorization` header of a request looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Basic,
    Bearer,
    /// Any other scheme (or an unparsable header).
    Other,
}

/// One request as the simulator received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Path and query as sent.
    pub path_and_query: String,
    pub content_type: Option<String>,
    /// The `X-Bosh-Context-Id` header, if sent.
    pub context_id: Option<String>,
    pub auth: AuthKind,
    /// Whether the credentials were valid (always `false` for `None`).
    pub authenticated: bool,
    /// Body as UTF-8 (lossy).
    pub body: String,
    /// Status answered; `None` when the request was dropped unanswered.
    pub status: Option<u16>,
}

/// Where held tasks stop (see `Simulator::hold_tasks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAt {
    /// Tasks stay `queued`: no worker picks them up.
    Queued,
    /// Tasks start (taking their deployment lock) but stay `processing`.
    Processing,
}

/// An injected task failure: the next `count` matching tasks (counted when
/// they are created) end in `state` with `result`, after their normal
/// queued/processing time. A failed deploy leaves the stored manifest as it
/// was; a failed delete leaves the deployment in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    pub count: u32,
    /// `Error` (default), `Timeout` or `Cancelled`.
    pub state: TaskState,
    pub result: String,
    pub deployment: Option<String>,
    pub kind: Option<TaskKind>,
}

impl TaskFailure {
    /// The next `count` tasks end in `error` with `result`.
    pub fn error(count: u32, result: &str) -> TaskFailure {
        TaskFailure {
            count,
            state: TaskState::Error,
            result: result.to_string(),
            deployment: None,
            kind: None,
        }
    }

    pub fn for_deployment(mut self, name: &str) -> TaskFailure {
        self.deployment = Some(name.to_string());
        self
    }

    pub fn for_kind(mut self, kind: TaskKind) -> TaskFailure {
        self.kind = Some(kind);
        self
    }

    pub fn with_state(mut self, state: TaskState) -> TaskFailure {
        self.state = state;
        self
    }
}

/// When an injected request drop happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropPoint {
    /// The request is read, then the connection is closed: nothing happens.
    BeforeProcessing,
    /// The request is fully handled (a deploy creates its task), then the
    /// connection is closed instead of answering: the "lost response" case.
    AfterProcessing,
}

/// What an errand does when run (default: exit 0, empty output).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ErrandBehaviour {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ErrandBehaviour {
    pub fn exit(code: i32) -> ErrandBehaviour {
        ErrandBehaviour {
            exit_code: code,
            ..ErrandBehaviour::default()
        }
    }
}
