//! The BOSH backend: an instance is the deployment `service-instance_<instance_id>`.
//!
//! An operation is a sequence of director tasks, run one after the other across polls:
//! provision and update are `deploy, post-deploy errands…`; deprovision is `pre-delete
//! errands…, delete`. The operation's state is only `{step, task_id}`. Every task of an
//! operation carries the operation id as `X-Bosh-Context-Id`, so after a crash between
//! posting a task and persisting its id, the next poll finds the task by context id
//! instead of posting twice (the ODB recipe of the wire contract, A.11).
//!
//! Binding reads the instances' addresses (`GET /deployments/NAME/instances?format=full`,
//! a `vms` task whose result is NDJSON) and renders the plan's credentials with them.

mod config;
pub mod director;

pub use config::BoshConfig;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use self::director::{Director, Task};
use super::{resume, Backend, BackendError, Done, Services, Step, StepInput};
use crate::state::OperationKind;
use crate::template;

/// The Spin variable with the director's URL (`https://host:25555`).
pub const DIRECTOR_URL_VARIABLE: &str = "bosh_director_url";
/// The Spin variable with the director's UAA (`https://host:8443`): the only place the
/// client secret is ever sent for a token.
pub const UAA_URL_VARIABLE: &str = "bosh_uaa_url";
/// The Spin variable with the basic-auth user or UAA client id.
pub const CLIENT_VARIABLE: &str = "bosh_client";
/// The Spin variable with its password or client secret.
pub const CLIENT_SECRET_VARIABLE: &str = "bosh_client_secret";
/// Suggested seconds between polls while a task runs (deploys take minutes).
const POLL_SECONDS: u64 = 5;

/// The deployment of an instance.
pub fn deployment_name(instance_id: &str) -> String {
    format!("service-instance_{instance_id}")
}

/// A plan's BOSH backend.
pub struct Bosh<'a> {
    config: &'a BoshConfig,
    services: Services<'a>,
}

/// One task of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action<'c> {
    Deploy,
    Errand(&'c str),
    Delete,
}

impl Action<'_> {
    fn describe(&self) -> String {
        match self {
            Action::Deploy => "deploy".into(),
            Action::Errand(name) => format!("errand {name}"),
            Action::Delete => "delete".into(),
        }
    }
}

/// The operation's state between polls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// Index of the current action.
    #[serde(default)]
    step: usize,
    /// Its director task, once posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_id: Option<u64>,
}

impl Backend for Bosh<'_> {
    /// Everything but unbind waits on director tasks.
    fn is_async(&self, kind: OperationKind) -> bool {
        kind != OperationKind::Unbind
    }

    /// Refuses to start a deploy while a director task runs on the deployment (the
    /// director would accept it and fail it on the lock).
    async fn busy(&self, kind: OperationKind, instance_id: &str, now: u64) -> Option<String> {
        if !matches!(kind, OperationKind::Provision | OperationKind::Update) {
            return None;
        }
        let director = self.director(now).ok()?;
        let name = deployment_name(instance_id);
        let running = director
            .tasks(&name, Some("queued,processing,cancelling"), None)
            .await
            .ok()?;
        running.first().map(|task| {
            format!(
                "director task {} ({}) is running on deployment {name}; retry when it has finished",
                task.id, task.description
            )
        })
    }

    async fn step(&self, input: &StepInput<'_>) -> Result<Step, BackendError> {
        let director = self.director(input.now)?;
        let progress: Progress = resume(input.state)?;
        match input.kind {
            OperationKind::Unbind => Ok(Step::Done(Done::default())),
            OperationKind::Bind => self.bind(&director, input, progress).await,
            kind => {
                let actions: Vec<Action<'_>> = match kind {
                    OperationKind::Deprovision => self
                        .config
                        .pre_delete_errands
                        .iter()
                        .map(|e| Action::Errand(e))
                        .chain([Action::Delete])
                        .collect(),
                    _ => [Action::Deploy]
                        .into_iter()
                        .chain(
                            self.config
                                .post_deploy_errands
                                .iter()
                                .map(|e| Action::Errand(e)),
                        )
                        .collect(),
                };
                self.run(&director, input, &actions, progress).await
            }
        }
    }
}

/// The director the broker's variables name.
pub fn connect<'a>(services: Services<'a>, now: u64) -> Result<Director<'a>, BackendError> {
    let config = services.config;
    let missing = |name: &str| {
        BackendError::Permanent(format!(
            "the broker has no BOSH director settings: set the Spin variable {name}"
        ))
    };
    let url = config
        .get(DIRECTOR_URL_VARIABLE)
        .ok_or_else(|| missing(DIRECTOR_URL_VARIABLE))?;
    let client = config
        .get(CLIENT_VARIABLE)
        .ok_or_else(|| missing(CLIENT_VARIABLE))?;
    let secret = config
        .get(CLIENT_SECRET_VARIABLE)
        .ok_or_else(|| missing(CLIENT_SECRET_VARIABLE))?;
    Ok(
        Director::new(services.http, services.kv, &url, client, secret, now)
            .with_uaa(config.get(UAA_URL_VARIABLE)),
    )
}

/// The instance a deployment was made for, from its name (`service-instance_<id>`).
pub fn instance_of_deployment(name: &str) -> Option<&str> {
    name.strip_prefix("service-instance_")
        .filter(|id| !id.is_empty())
}

impl<'a> Bosh<'a> {
    fn director(&self, now: u64) -> Result<Director<'a>, BackendError> {
        connect(self.services, now)
    }

    /// Walks the operation's actions: each poll checks the current task and, once it is
    /// done, posts the next one.
    async fn run(
        &self,
        director: &Director<'_>,
        input: &StepInput<'_>,
        actions: &[Action<'_>],
        mut progress: Progress,
    ) -> Result<Step, BackendError> {
        let name = deployment_name(&input.instance.instance_id);
        let context_id = input.operation_id;
        loop {
            let Some(action) = actions.get(progress.step) else {
                return Ok(Step::Done(Done {
                    instance_data: Some(json!({"type": "bosh", "deployment": name})),
                    description: Some(match input.kind {
                        OperationKind::Deprovision => format!("deployment {name} deleted"),
                        _ => format!("deployment {name} is up to date"),
                    }),
                    ..Done::default()
                }));
            };
            let Some(task_id) = progress.task_id else {
                if input.kind == OperationKind::Deprovision
                    && progress.step == 0
                    && !director.deployment_exists(&name).await?
                {
                    return Ok(Step::Done(Done {
                        description: Some(format!("deployment {name} was already gone")),
                        ..Done::default()
                    }));
                }
                // A task of this operation that was posted but whose id was never persisted
                // (crash, lost response) is adopted, never posted again.
                let ours = director.tasks(&name, None, Some(context_id)).await?;
                let ours: Vec<&Task> = ours
                    .iter()
                    .filter(|t| t.context_id.as_deref() == Some(context_id))
                    .collect();
                if let Some(task) = ours.get(progress.step) {
                    progress.task_id = Some(task.id);
                    continue;
                }
                let running = director
                    .tasks(&name, Some("queued,processing,cancelling"), None)
                    .await?;
                if let Some(other) = running.first() {
                    return Ok(in_progress(
                        &progress,
                        format!(
                            "waiting for director task {} ({}) on {name} to finish",
                            other.id, other.description
                        ),
                    ));
                }
                let posted = match action {
                    Action::Deploy => {
                        let manifest = self.manifest(input, &name)?;
                        Some(director.deploy(&manifest, context_id).await?)
                    }
                    Action::Errand(errand) => {
                        Some(director.run_errand(&name, errand, context_id).await?)
                    }
                    Action::Delete => director.delete_deployment(&name, context_id).await?,
                };
                match posted {
                    Some(id) => {
                        progress.task_id = Some(id);
                        return Ok(in_progress(
                            &progress,
                            format!("{}: director task {id} started", action.describe()),
                        ));
                    }
                    None => {
                        progress.step += 1;
                        continue;
                    }
                }
            };
            let task = director.task(task_id).await?;
            if task.is_running() {
                return Ok(in_progress(
                    &progress,
                    format!(
                        "{}: director task {task_id} is {}",
                        action.describe(),
                        task.state
                    ),
                ));
            }
            if task.state != "done" {
                let result = task.result.as_deref().unwrap_or("no details");
                director.log(&format!(
                    "{}: director task {task_id} ended in state {}: {result}",
                    action.describe(),
                    task.state
                ));
                let description = if result.contains("Failed to acquire lock") {
                    format!(
                        "{} could not start: another director task holds the deployment's lock; retry the request",
                        action.describe()
                    )
                } else {
                    format!(
                        "{}: director task {task_id} ended in state {} (details in the broker's log)",
                        action.describe(),
                        task.state
                    )
                };
                return Ok(Step::Failed { description });
            }
            if let Action::Errand(errand) = action {
                // A failed errand still ends its task in `done`: judge the exit codes.
                let result = director.task_result(task_id).await?;
                if let Some((failure, output)) = errand_failure(&result) {
                    director.log(&format!("errand {errand} failed: {failure}: {output}"));
                    return Ok(Step::Failed {
                        description: format!("errand {errand} failed: {failure}"),
                    });
                }
            }
            progress.step += 1;
            progress.task_id = None;
        }
    }

    async fn bind(
        &self,
        director: &Director<'_>,
        input: &StepInput<'_>,
        mut progress: Progress,
    ) -> Result<Step, BackendError> {
        if input.binding.is_none() {
            return Err(BackendError::Permanent("bind without a binding".into()));
        }
        let name = deployment_name(&input.instance.instance_id);
        let Some(task_id) = progress.task_id else {
            // Read-only: posting it again after a crash is harmless.
            progress.task_id = Some(director.instances_task(&name).await?);
            return Ok(in_progress(
                &progress,
                format!("reading the instances of {name}"),
            ));
        };
        let task = director.task(task_id).await?;
        if task.is_running() {
            return Ok(in_progress(
                &progress,
                format!("reading the instances of {name}"),
            ));
        }
        if task.state != "done" {
            director.log(&format!(
                "listing the instances of {name}: director task {task_id} ended in state {}: {}",
                task.state,
                task.result.unwrap_or_default()
            ));
            return Ok(Step::Failed {
                description: format!(
                    "listing the instances of {name} failed (details in the broker's log)"
                ),
            });
        }
        let instances = instance_addresses(&director.task_result(task_id).await?);
        let ctx = input
            .template_context()?
            .with_var("deployment_name", json!(name))
            .with_var("instances", Value::Object(instances));
        let credentials =
            template::render_value(&Value::Object(self.config.credentials.clone()), &ctx).map_err(
                |e| BackendError::Permanent(format!("cannot render the binding credentials: {e}")),
            )?;
        Ok(Step::Done(Done {
            credentials: Some(credentials),
            ..Done::default()
        }))
    }

    /// The rendered manifest as the director gets it. JSON is YAML, and unlike hand-written
    /// YAML it cannot turn a `no` or `1.10` into a boolean or a number on the director side.
    fn manifest(&self, input: &StepInput<'_>, name: &str) -> Result<String, BackendError> {
        let ctx = input
            .template_context()?
            .with_var("deployment_name", json!(name));
        let mut documents =
            template::render_yaml_documents(&self.config.manifest, &ctx).map_err(|e| {
                BackendError::Permanent(format!("cannot render the plan's manifest: {e}"))
            })?;
        if documents.len() != 1 || !documents[0].is_object() {
            return Err(BackendError::Permanent(format!(
                "the plan's manifest must render to one YAML mapping, not {} document(s)",
                documents.len()
            )));
        }
        let mut manifest = documents.remove(0);
        match manifest.get("name").and_then(Value::as_str) {
            None => manifest["name"] = json!(name),
            Some(n) if n == name => {}
            Some(other) => {
                return Err(BackendError::Permanent(format!(
                    "the plan's manifest names the deployment {other:?}; it must be {name:?} (use {{{{ deployment_name }}}})"
                )))
            }
        }
        Ok(manifest.to_string())
    }
}

fn in_progress(progress: &Progress, description: String) -> Step {
    Step::InProgress {
        state: serde_json::to_value(progress).unwrap_or(Value::Null),
        description: Some(description),
        retry_after: Some(POLL_SECONDS),
    }
}

/// The first non-zero exit code of an errand's NDJSON result (`exit code N on group/id`),
/// and its output's tail (for the log only).
fn errand_failure(result: &str) -> Option<(String, String)> {
    for line in result.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(run) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let code = run["exit_code"].as_i64().unwrap_or(0);
        if code != 0 {
            let output = [run["stderr"].as_str(), run["stdout"].as_str()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .find(|s| !s.is_empty())
                .unwrap_or("");
            let tail: String = output
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let instance = format!(
                "{}/{}",
                run.pointer("/instance/group")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                run.pointer("/instance/id")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            );
            return Some((format!("exit code {code} on {instance}"), tail));
        }
    }
    None
}

/// `{group: [ip, …]}` from a `vms` task's NDJSON result, each group ordered by index.
fn instance_addresses(result: &str) -> Map<String, Value> {
    let mut groups: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    for line in result.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(vm) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(group) = vm["job_name"].as_str() else {
            continue;
        };
        let index = vm["index"].as_i64().unwrap_or(0);
        for ip in vm["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            groups
                .entry(group.to_string())
                .or_default()
                .push((index, ip.to_string()));
        }
    }
    groups
        .into_iter()
        .map(|(group, mut ips)| {
            ips.sort();
            (
                group,
                json!(ips.into_iter().map(|(_, ip)| ip).collect::<Vec<_>>()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errands_are_judged_by_exit_code() {
        let ok =
            r#"{"instance":{"group":"smoke","id":"a"},"exit_code":0,"stdout":"fine","stderr":""}"#;
        assert_eq!(errand_failure(ok), None);
        let bad = format!(
            "{ok}\n{}",
            r#"{"instance":{"group":"smoke","id":"b"},"exit_code":3,"stdout":"","stderr":"boom\n"}"#
        );
        assert_eq!(
            errand_failure(&bad),
            Some(("exit code 3 on smoke/b".to_string(), "boom".to_string()))
        );
    }

    #[test]
    fn addresses_are_grouped_and_ordered_by_index() {
        let result = r#"{"job_name":"redis","index":1,"ips":["10.0.0.2"]}
{"job_name":"redis","index":0,"ips":["10.0.0.1"]}
{"job_name":"sentinel","index":0,"ips":["10.0.1.1"]}"#;
        let groups = instance_addresses(result);
        assert_eq!(groups["redis"], json!(["10.0.0.1", "10.0.0.2"]));
        assert_eq!(groups["sentinel"], json!(["10.0.1.1"]));
    }
}
