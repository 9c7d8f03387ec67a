//! The Kubernetes backend: an instance is the set of objects rendered from the plan's
//! manifest template, applied with server-side apply and judged ready by
//! [`readiness`]; deprovision deletes what the instance owns and reports success only
//! once it is gone.
//!
//! Each call is one step of a resumable state machine whose state is persisted by the
//! broker between polls (see [`crate::backend`]):
//!
//! * provision / update: **apply** (render, check ownership, apply every object, delete
//!   objects an update no longer renders) → **wait** (read each object, judge it) → done;
//! * deprovision / unbind: **delete** (owned objects, or the instance's namespace) →
//!   wait until every one answers 404 → done;
//! * bind: optional per-binding objects as above, then read the plan's `sources` and render
//!   the credentials from them.
//!
//! What the instance owns (its cluster, namespace and object references, never rendered
//! content, which may hold secrets) is kept in the instance record, so deprovision works
//! even when the plan has since left the catalog. The cluster is chosen before the record
//! exists ([`Backend::place`], see [`clusters`]) and never changes.

pub mod api;
mod binding;
pub mod clusters;
mod config;
pub mod inventory;
pub mod objects;
pub mod readiness;

pub use config::{
    parameters_in_commands, KubernetesBinding, KubernetesConfig, NamespaceConfig, ReadinessRule,
    SourceRef,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use self::api::{Api, ObjectRef};
use self::clusters::{ClusterChoice, DEFAULT_CLUSTER};
use self::objects::{default_list_keys, difference, identity, is_dns_label, union, Owner};
use self::readiness::Readiness;
use super::{resume, Backend, BackendError, Done, Services, Step, StepInput};
use crate::state::{InstanceRecord, OperationKind};
use crate::template::{self, TemplateContext};
/// Suggested seconds between polls while objects roll out.
const POLL_SECONDS: u64 = 3;

/// A plan's Kubernetes backend.
pub struct Kubernetes<'a> {
    config: &'a KubernetesConfig,
    services: Services<'a>,
    /// See [`Kubernetes::broker_id`].
    broker_id: std::cell::OnceCell<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    #[default]
    Apply,
    Wait,
    Delete,
}

/// The operation's state between polls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    #[serde(default)]
    phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default)]
    created_namespace: bool,
    /// Applied (wait) or being deleted (delete).
    #[serde(default)]
    objects: Vec<ObjectRef>,
    /// Objects an update no longer renders, being deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    prune: Vec<ObjectRef>,
}

/// What an instance (or binding) owns, kept in its record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Placement {
    /// The instance's cluster, chosen at provision; records made before there were several
    /// clusters have none: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default)]
    created_namespace: bool,
    #[serde(default)]
    objects: Vec<ObjectRef>,
}

impl Placement {
    fn from_record(value: &Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// The cluster of the instance whose record holds `value`.
    fn cluster_of(value: &Value) -> String {
        value
            .get("cluster")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_CLUSTER)
            .to_string()
    }

    fn to_value(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        value["type"] = json!("kubernetes");
        value
    }
}

/// What reading the applied objects concluded.
enum Verdict {
    Ready,
    Pending(String),
    /// An applied object is gone: apply again.
    Missing(String),
    Failed(String),
}

impl Backend for Kubernetes<'_> {
    /// Instances always roll out asynchronously; bindings only when they create objects.
    fn is_async(&self, kind: OperationKind) -> bool {
        match kind {
            OperationKind::Provision | OperationKind::Update | OperationKind::Deprovision => true,
            OperationKind::Bind | OperationKind::Unbind => self.config.binding.manifests.is_some(),
        }
    }

    /// The cluster: the plan's choice for this request, which must be a declared cluster
    /// with credentials.
    fn place(&self, instance: &InstanceRecord) -> Result<Value, String> {
        let cluster = ClusterChoice::choose(
            self.config.cluster.as_ref(),
            &instance.context,
            &instance.parameters,
        )?;
        clusters::access(self.services.config, &cluster).map_err(|e| e.to_string())?;
        Ok(Placement {
            cluster: Some(cluster),
            ..Placement::default()
        }
        .to_value())
    }

    async fn step(&self, input: &StepInput<'_>) -> Result<Step, BackendError> {
        let cluster = Placement::cluster_of(&input.instance.backend);
        let api = Self::connect(self.services, &cluster, input.now)?;
        let progress: Progress = resume(input.state)?;
        match input.kind {
            OperationKind::Provision | OperationKind::Update => {
                self.deploy(&api, input, progress).await
            }
            OperationKind::Deprovision => self.teardown(&api, input, progress).await,
            OperationKind::Bind => self.bind(&api, input, progress).await,
            OperationKind::Unbind => self.unbind(&api, input, progress).await,
        }
    }
}

impl<'a> Kubernetes<'a> {
    /// The backend of a plan with `config`, for one request.
    pub fn new(config: &'a KubernetesConfig, services: Services<'a>) -> Self {
        Kubernetes {
            config,
            services,
            broker_id: std::cell::OnceCell::new(),
        }
    }

    /// This broker's id, read once per request.
    fn broker_id(&self) -> Result<&str, BackendError> {
        if let Some(id) = self.broker_id.get() {
            return Ok(id);
        }
        let id = crate::state::broker_id(self.services.kv, self.services.http.env())
            .map_err(|e| BackendError::Transient(e.description))?;
        Ok(self.broker_id.get_or_init(|| id))
    }

    /// The API of the declared cluster `cluster`, with the broker's token there.
    fn connect(services: Services<'a>, cluster: &str, now: u64) -> Result<Api<'a>, BackendError> {
        let access = clusters::access(services.config, cluster)?;
        Ok(Api::new(services.http, services.kv, access, now))
    }

    async fn deploy(
        &self,
        api: &Api<'_>,
        input: &StepInput<'_>,
        mut progress: Progress,
    ) -> Result<Step, BackendError> {
        let owner = Owner::instance(&input.instance.instance_id);
        if progress.phase == Phase::Apply {
            let (ctx, namespace) = self.instance_context(input)?;
            if self.config.namespace.create {
                let reference = namespace_ref(&namespace);
                let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
                self.apply_owned(api, &reference, body, owner).await?;
            }
            let documents =
                template::render_yaml_documents(&self.config.manifests, &ctx).map_err(|e| {
                    BackendError::Permanent(format!("cannot render the plan's manifests: {e}"))
                })?;
            let objects = self
                .apply_documents(api, documents, &namespace, owner)
                .await?;
            let previous = Placement::from_record(&input.instance.backend);
            let prune = difference(&previous.objects, &objects);
            for object in &prune {
                self.delete_owned(api, object, owner).await?;
            }
            progress = Progress {
                phase: Phase::Wait,
                namespace: Some(namespace),
                created_namespace: self.config.namespace.create,
                objects,
                prune,
            };
        }
        Ok(
            match self
                .wait(api, &progress.objects, &progress.prune, owner)
                .await?
            {
                Verdict::Ready => Step::Done(Done {
                    instance_data: Some(
                        Placement {
                            cluster: Some(Placement::cluster_of(&input.instance.backend)),
                            namespace: progress.namespace.clone(),
                            created_namespace: progress.created_namespace,
                            objects: progress.objects.clone(),
                        }
                        .to_value(),
                    ),
                    description: Some(format!(
                        "{} Kubernetes objects ready in namespace {}",
                        progress.objects.len(),
                        progress.namespace.as_deref().unwrap_or("-")
                    )),
                    ..Done::default()
                }),
                Verdict::Pending(description) => in_progress(&progress, description),
                Verdict::Missing(description) => in_progress(&Progress::default(), description),
                Verdict::Failed(description) => Step::Failed { description },
            },
        )
    }

    async fn teardown(
        &self,
        api: &Api<'_>,
        input: &StepInput<'_>,
        mut progress: Progress,
    ) -> Result<Step, BackendError> {
        let owner = Owner::instance(&input.instance.instance_id);
        if progress.phase != Phase::Delete {
            let mut placement = Placement::from_record(&input.instance.backend);
            // Re-render when the plan still exists: an instance whose provision or update
            // failed half-way owns objects its record does not list yet.
            if let Ok((ctx, namespace)) = self.instance_context(input) {
                let rendered = self
                    .rendered_refs(api, &self.config.manifests, &ctx, &namespace)
                    .await;
                placement.objects = union(&placement.objects, &rendered);
                if placement.namespace.is_none() {
                    placement.namespace = Some(namespace);
                }
                placement.created_namespace |= self.config.namespace.create;
            }
            let mut targets: Vec<ObjectRef> = placement.objects.iter().rev().cloned().collect();
            if let (true, Some(namespace)) = (placement.created_namespace, &placement.namespace) {
                // The namespace takes its contents with it.
                targets.retain(|o| o.namespace.as_deref() != Some(namespace.as_str()));
                targets.push(namespace_ref(namespace));
            }
            progress = self.start_deleting(api, targets, owner).await?;
        }
        self.await_deletion(api, progress).await
    }

    /// Starts deleting, in order, the `targets` that exist and are `owner`'s; the
    /// progress that waits for them to be gone.
    async fn start_deleting(
        &self,
        api: &Api<'_>,
        targets: Vec<ObjectRef>,
        owner: Owner<'_>,
    ) -> Result<Progress, BackendError> {
        let mut deleting = Vec::new();
        for object in targets {
            if self.delete_owned(api, &object, owner).await? {
                deleting.push(object);
            }
        }
        Ok(Progress {
            phase: Phase::Delete,
            objects: deleting,
            ..Progress::default()
        })
    }

    /// Done once every object being deleted answers 404.
    async fn await_deletion(
        &self,
        api: &Api<'_>,
        progress: Progress,
    ) -> Result<Step, BackendError> {
        let mut remaining = Vec::new();
        for object in &progress.objects {
            if let Some(live) = api.get(object).await? {
                let phase = live
                    .pointer("/status/phase")
                    .and_then(Value::as_str)
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                remaining.push(format!("{}{phase}", object.describe()));
            }
        }
        if remaining.is_empty() {
            return Ok(Step::Done(Done {
                description: Some(format!(
                    "deleted {} Kubernetes objects",
                    progress.objects.len()
                )),
                ..Done::default()
            }));
        }
        Ok(in_progress(
            &progress,
            format!("waiting for deletion of {}", summarize(&remaining)),
        ))
    }

    /// Reads every applied object and judges it.
    async fn wait(
        &self,
        api: &Api<'_>,
        objects: &[ObjectRef],
        prune: &[ObjectRef],
        owner: Owner<'_>,
    ) -> Result<Verdict, BackendError> {
        let mut pending = Vec::new();
        for object in objects {
            let Some(live) = api.get(object).await? else {
                return Ok(Verdict::Missing(format!(
                    "{} disappeared; applying again",
                    object.describe()
                )));
            };
            if !owner.owns(&live) {
                return Ok(Verdict::Failed(format!(
                    "{} is no longer managed by {}",
                    object.describe(),
                    owner_label(owner)
                )));
            }
            match readiness::judge(
                &live,
                self.config.rule_for(&object.api_version, &object.kind),
            ) {
                Readiness::Ready => {}
                Readiness::Pending(why) => pending.push(format!("{}: {why}", object.describe())),
                Readiness::Failed(why) => {
                    return Ok(Verdict::Failed(format!(
                        "{} failed: {why}",
                        object.describe()
                    )))
                }
            }
        }
        for object in prune {
            if api.get(object).await?.is_some() {
                pending.push(format!("{}: being deleted", object.describe()));
            }
        }
        Ok(if pending.is_empty() {
            Verdict::Ready
        } else {
            Verdict::Pending(format!("waiting for {}", summarize(&pending)))
        })
    }

    /// Applies rendered documents in order, marked as `owner`'s.
    async fn apply_documents(
        &self,
        api: &Api<'_>,
        documents: Vec<Value>,
        namespace: &str,
        owner: Owner<'_>,
    ) -> Result<Vec<ObjectRef>, BackendError> {
        let mut applied: Vec<ObjectRef> = Vec::new();
        for (index, mut document) in documents.into_iter().enumerate() {
            let (api_version, kind, name, explicit_namespace) = identity(&document, index)
                .map_err(|e| BackendError::Permanent(format!("the plan's manifests: {e}")))?;
            let reference = api
                .object_ref(
                    &api_version,
                    &kind,
                    &name,
                    explicit_namespace.as_deref(),
                    namespace,
                )
                .await?;
            confine(&reference, namespace)
                .map_err(|e| BackendError::Permanent(format!("the plan's manifests: {e}")))?;
            if applied.iter().any(|a| a.same_object(&reference)) {
                return Err(BackendError::Permanent(format!(
                    "the plan's manifests declare {} twice",
                    reference.describe()
                )));
            }
            if let Some(ns) = &reference.namespace {
                document["metadata"]["namespace"] = json!(ns);
            }
            default_list_keys(&mut document);
            self.apply_owned(api, &reference, document, owner).await?;
            applied.push(reference);
        }
        Ok(applied)
    }

    /// Applies `body` unless the object exists and belongs to someone else.
    async fn apply_owned(
        &self,
        api: &Api<'_>,
        reference: &ObjectRef,
        mut body: Value,
        owner: Owner<'_>,
    ) -> Result<(), BackendError> {
        let taken = || {
            BackendError::Permanent(format!(
                "{} already exists and is not managed by {}: refusing to take it over",
                reference.describe(),
                owner_label(owner)
            ))
        };
        let manager = owner.field_manager();
        owner.mark(&mut body);
        if let Some(labels) = body
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.insert(objects::BROKER_LABEL.into(), json!(self.broker_id()?));
        }
        match api.get(reference).await? {
            Some(live) if !owner.owns(&live) => return Err(taken()),
            Some(_) => {}
            // Absent: create it exclusively, so of two owners rendering the same object
            // (both having just seen it absent) exactly one gets it.
            None => {
                if api.create(reference, &body, &manager).await? {
                    return Ok(());
                }
                match api.get(reference).await? {
                    Some(live) if owner.owns(&live) => {}
                    _ => return Err(taken()),
                }
            }
        }
        api.apply(reference, &body, &manager).await.map(|_| ())
    }

    /// Deletes `object` if it exists and is `owner`'s; whether a deletion was started.
    async fn delete_owned(
        &self,
        api: &Api<'_>,
        object: &ObjectRef,
        owner: Owner<'_>,
    ) -> Result<bool, BackendError> {
        match api.get(object).await? {
            Some(live) if owner.owns(&live) => {
                api.delete(object).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The objects a template renders to, best effort (for cleanup only).
    async fn rendered_refs(
        &self,
        api: &Api<'_>,
        manifests: &str,
        ctx: &TemplateContext,
        namespace: &str,
    ) -> Vec<ObjectRef> {
        let Ok(documents) = template::render_yaml_documents(manifests, ctx) else {
            return Vec::new();
        };
        let mut refs = Vec::new();
        for (index, document) in documents.iter().enumerate() {
            let Ok((api_version, kind, name, ns)) = identity(document, index) else {
                continue;
            };
            if let Ok(reference) = api
                .object_ref(&api_version, &kind, &name, ns.as_deref(), namespace)
                .await
            {
                if confine(&reference, namespace).is_ok() {
                    refs.push(reference);
                }
            }
        }
        refs
    }

    /// The instance's template context with `namespace` set to its rendered namespace.
    fn instance_context(
        &self,
        input: &StepInput<'_>,
    ) -> Result<(TemplateContext, String), BackendError> {
        let ctx = input.template_context()?;
        let namespace = template::render_str(&self.config.namespace.name, &ctx)
            .map_err(|e| BackendError::Permanent(format!("cannot render the namespace: {e}")))?
            .trim()
            .to_string();
        if !is_dns_label(&namespace) {
            return Err(BackendError::Permanent(format!(
                "the namespace {namespace:?} is not a valid namespace name (lower-case letters, digits and '-', at most 63)"
            )));
        }
        Ok((ctx.with_var("namespace", json!(namespace)), namespace))
    }
}

/// Instances are confined to their namespace: an object of a cluster-scoped kind, or one
/// that names another namespace, is refused before anything is sent.
fn confine(reference: &ObjectRef, namespace: &str) -> Result<(), String> {
    match reference.namespace.as_deref() {
        Some(ns) if ns == namespace => Ok(()),
        Some(ns) => Err(format!(
            "{} is in namespace {ns:?}, but the instance's objects live in {namespace:?}",
            reference.describe()
        )),
        None => Err(format!(
            "{} is cluster-scoped; an instance's objects live in its namespace {namespace:?}",
            reference.describe()
        )),
    }
}

fn namespace_ref(name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        name: name.into(),
        namespace: None,
        plural: "namespaces".into(),
    }
}

fn owner_label(owner: Owner<'_>) -> String {
    match owner.binding_id {
        Some(binding) => format!("service binding {binding}"),
        None => format!("service instance {}", owner.instance_id),
    }
}

fn in_progress(progress: &Progress, description: String) -> Step {
    Step::InProgress {
        state: serde_json::to_value(progress).unwrap_or(Value::Null),
        description: Some(description),
        retry_after: Some(POLL_SECONDS),
    }
}

/// The first few items, and how many more.
fn summarize(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        text.push_str(&format!(" (and {} more)", items.len() - SHOWN));
    }
    text
}
