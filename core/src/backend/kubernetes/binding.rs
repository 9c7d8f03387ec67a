//! Bind and unbind: optional per-binding objects (applied and deleted like an instance's),
//! then the plan's `sources`, read live and checked to be the instance's or the binding's,
//! rendered into the credentials.

use serde_json::{json, Map, Value};

use super::api::{Api, ObjectRef};
use super::objects::{is_dns_subdomain, union, Owner};
use super::{confine, in_progress, owner_label, Kubernetes, Phase, Placement, Progress, Verdict};
use crate::backend::{Backend, BackendError, Done, Step, StepInput};
use crate::state::{BindingRecord, OperationKind};
use crate::template;

impl Kubernetes<'_> {
    pub(super) async fn bind(
        &self,
        api: &Api<'_>,
        input: &StepInput<'_>,
        mut progress: Progress,
    ) -> Result<Step, BackendError> {
        let (_, owner) = binding_owner(input)?;
        let namespace = match Placement::from_record(&input.instance.backend).namespace {
            Some(namespace) => namespace,
            None => self.instance_context(input)?.1,
        };
        let ctx = input
            .template_context()?
            .with_var("namespace", json!(namespace));
        if let Some(manifests) = &self.config.binding.manifests {
            if progress.phase == Phase::Apply {
                let documents = template::render_yaml_documents(manifests, &ctx).map_err(|e| {
                    BackendError::Permanent(format!(
                        "cannot render the plan's binding manifests: {e}"
                    ))
                })?;
                let objects = self
                    .apply_documents(api, documents, &namespace, owner)
                    .await?;
                progress = Progress {
                    phase: Phase::Wait,
                    objects,
                    ..Progress::default()
                };
            }
            match self.wait(api, &progress.objects, &[], owner).await? {
                Verdict::Ready => {}
                Verdict::Pending(description) => return Ok(in_progress(&progress, description)),
                Verdict::Missing(description) => {
                    return Ok(in_progress(&Progress::default(), description))
                }
                Verdict::Failed(description) => return Ok(Step::Failed { description }),
            }
        }
        let mut sources = Map::new();
        for (alias, source) in &self.config.binding.sources {
            let render = |text: &str| {
                template::render_str(text, &ctx)
                    .map_err(|e| BackendError::Permanent(format!("binding source `{alias}`: {e}")))
            };
            let name = render(&source.name)?;
            if !is_dns_subdomain(&name) {
                return Err(BackendError::Permanent(format!(
                    "binding source `{alias}`: {name:?} is not a valid object name"
                )));
            }
            let source_namespace = source.namespace.as_deref().map(render).transpose()?;
            let reference = api
                .object_ref(
                    &source.api_version,
                    &source.kind,
                    &name,
                    source_namespace.as_deref(),
                    &namespace,
                )
                .await?;
            confine(&reference, &namespace)
                .map_err(|e| BackendError::Permanent(format!("binding source `{alias}`: {e}")))?;
            let instance_owner = Owner {
                binding_id: None,
                ..owner
            };
            match api.get(&reference).await? {
                Some(object) if owner.owns(&object) || instance_owner.owns(&object) => {
                    sources.insert(alias.clone(), object);
                }
                Some(_) => {
                    return Err(BackendError::Permanent(format!(
                        "binding source `{alias}`: {} is not managed by {}: refusing to read it",
                        reference.describe(),
                        owner_label(instance_owner)
                    )))
                }
                None if self.is_async(OperationKind::Bind) => {
                    let description = format!("waiting for {}", reference.describe());
                    return Ok(in_progress(&progress, description));
                }
                None => {
                    return Err(BackendError::Permanent(format!(
                        "binding source `{alias}`: {} does not exist",
                        reference.describe()
                    )))
                }
            }
        }
        let ctx = ctx.with_var("sources", Value::Object(sources));
        let credentials = template::render_value(
            &Value::Object(self.config.binding.credentials.clone()),
            &ctx,
        )
        .map_err(|e| {
            BackendError::Permanent(format!("cannot render the binding credentials: {e}"))
        })?;
        Ok(Step::Done(Done {
            credentials: Some(credentials),
            instance_data: Some(json!({ "objects": progress.objects })),
            ..Done::default()
        }))
    }

    pub(super) async fn unbind(
        &self,
        api: &Api<'_>,
        input: &StepInput<'_>,
        mut progress: Progress,
    ) -> Result<Step, BackendError> {
        let (binding, owner) = binding_owner(input)?;
        if progress.phase != Phase::Delete {
            let mut targets = binding
                .backend
                .pointer("/data/objects")
                .and_then(|v| serde_json::from_value::<Vec<ObjectRef>>(v.clone()).ok())
                .unwrap_or_default();
            let namespace = Placement::from_record(&input.instance.backend).namespace;
            if let (Some(manifests), Some(namespace), Ok(ctx)) = (
                &self.config.binding.manifests,
                namespace,
                input.template_context(),
            ) {
                let ctx = ctx.with_var("namespace", json!(namespace));
                let rendered = self.rendered_refs(api, manifests, &ctx, &namespace).await;
                targets = union(&targets, &rendered);
            }
            targets.reverse();
            progress = self.start_deleting(api, targets, owner).await?;
        }
        self.await_deletion(api, progress).await
    }
}

/// The binding of a bind/unbind step, and the owner its objects carry.
fn binding_owner<'i>(
    input: &StepInput<'i>,
) -> Result<(&'i BindingRecord, Owner<'i>), BackendError> {
    let binding = input
        .binding
        .ok_or_else(|| BackendError::Permanent(format!("{:?} without a binding", input.kind)))?;
    let owner = Owner {
        instance_id: &input.instance.instance_id,
        binding_id: Some(&binding.binding_id),
    };
    Ok((binding, owner))
}
