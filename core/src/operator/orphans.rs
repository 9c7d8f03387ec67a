//! Orphans: what the backends hold for instances (or bindings) the broker no longer has —
//! Kubernetes objects and namespaces carrying the broker's labels (with this broker's id)
//! and owner annotations, BOSH deployments named `service-instance_<id>` (a director
//! serves one broker, as with Cloud Foundry's on-demand broker: names carry no broker id)
//! — found on request, never cleaned up by themselves. Cleaning up is the operator's explicit `POST /operator/orphans/cleanup`
//! naming each resource, and each is checked again first: a resource whose instance is
//! alive, or that does not carry the broker's marks, is left alone.
//!
//! Records stuck in progress past their deadline are the other kind of leftover: the
//! listing's `stuck=true` filter finds them, and `POST /operator/instances/:id/last_operation`
//! polls one as a platform would (which ends it, failed, past its deadline).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::bosh::{self, instance_of_deployment};
use crate::backend::kubernetes::inventory::{self, Owned};
use crate::backend::registry::PlanBackend;
use crate::broker::Broker;
use crate::error::OsbError;
use crate::http::{OsbRequest, OsbResponse};
use crate::kv::Kv;
use crate::state::{
    binding_key, broker_id, instance_key, read, BindingRecord, InstanceRecord, Status,
};

/// What the catalog's plans use, and so where orphans can be.
#[derive(Default)]
struct Backends {
    /// `(apiVersion, kind)` of everything the Kubernetes plans render.
    kubernetes_kinds: BTreeSet<(String, String)>,
    bosh: bool,
}

impl Backends {
    fn of(broker: &Broker<'_>) -> Result<Backends, OsbError> {
        let mut backends = Backends::default();
        for plan in crate::catalog::all_plans(broker.catalog)? {
            match &plan.backend {
                PlanBackend::Kubernetes(config) => {
                    backends
                        .kubernetes_kinds
                        .extend(inventory::kinds_of(config));
                }
                PlanBackend::Bosh(_) => backends.bosh = true,
                _ => {}
            }
        }
        Ok(backends)
    }
}

/// Whether the broker still has the instance (and binding) a resource was made for: a
/// record that is not a tombstone. Resources of records being created or deleted right
/// now are theirs, not orphans.
fn alive(kv: &dyn Kv, instance_id: &str, binding_id: Option<&str>) -> Result<bool, OsbError> {
    let instance = read::<InstanceRecord>(kv, &instance_key(instance_id))?;
    if !instance.is_some_and(|i| i.value.status != Status::Deleted) {
        return Ok(false);
    }
    match binding_id {
        None => Ok(true),
        Some(binding_id) => Ok(
            read::<BindingRecord>(kv, &binding_key(instance_id, binding_id))?
                .is_some_and(|b| b.value.status != Status::Deleted),
        ),
    }
}

/// `GET /operator/orphans`: per backend the catalog uses, its orphans, or why it could not
/// be asked.
pub(super) async fn report(broker: &Broker<'_>) -> Result<OsbResponse, OsbError> {
    let backends = Backends::of(broker)?;
    let broker_id = broker_id(broker.kv, broker.env)?;
    let mut body = json!({ "broker_id": broker_id });
    if !backends.kubernetes_kinds.is_empty() {
        let kinds = &backends.kubernetes_kinds;
        body["kubernetes"] = kubernetes_orphans(broker, kinds, &broker_id).await?;
    }
    if backends.bosh {
        body["bosh"] = match bosh_orphans(broker).await {
            Ok(orphans) => json!({ "orphans": orphans }),
            Err(error) => json!({ "error": error.description }),
        };
    }
    Ok(OsbResponse::json(200, body))
}

/// Orphans in every declared cluster: `{"orphans": [...]}`, with `"errors"` naming each
/// cluster that could not be asked, and `"error"` when none could.
async fn kubernetes_orphans(
    broker: &Broker<'_>,
    kinds: &BTreeSet<(String, String)>,
    broker_id: &str,
) -> Result<Value, OsbError> {
    let services = broker.services();
    let mut orphans = Vec::new();
    let mut errors = Vec::new();
    let clusters = inventory::clusters(services);
    for cluster in &clusters {
        let found = match inventory::connect(services, cluster, broker.env.now()) {
            Ok(api) => inventory::owned(&api, cluster, kinds, broker_id).await,
            Err(error) => Err(error),
        };
        match found {
            Ok(found) => {
                for owned in found {
                    if !alive(broker.kv, &owned.instance_id, owned.binding_id.as_deref())? {
                        orphans.push(owned);
                    }
                }
            }
            Err(error) => errors.push(json!({ "cluster": cluster, "error": error.to_string() })),
        }
    }
    let mut section = json!({ "orphans": orphans });
    if errors.len() == clusters.len() {
        let all: Vec<&str> = errors.iter().filter_map(|e| e["error"].as_str()).collect();
        section["error"] = json!(all.join("; "));
    }
    if !errors.is_empty() {
        section["errors"] = json!(errors);
    }
    Ok(section)
}

async fn bosh_orphans(broker: &Broker<'_>) -> Result<Vec<Value>, OsbError> {
    let director = bosh::connect(broker.services(), broker.env.now()).map_err(unavailable)?;
    let mut orphans = Vec::new();
    for name in director.deployments().await.map_err(unavailable)? {
        let Some(instance_id) = instance_of_deployment(&name) else {
            continue;
        };
        if !alive(broker.kv, instance_id, None)? {
            orphans.push(json!({ "deployment": name, "instance_id": instance_id }));
        }
    }
    Ok(orphans)
}

fn unavailable(error: crate::backend::BackendError) -> OsbError {
    OsbError::unavailable(error.to_string())
}

/// What an operator asks to delete: resources exactly as the report listed them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cleanup {
    #[serde(default)]
    kubernetes: Vec<Owned>,
    /// Deployment names.
    #[serde(default)]
    bosh: Vec<String>,
}

/// `POST /operator/orphans/cleanup`: deletes the named orphans that still are orphans.
pub(super) async fn clean(
    broker: &Broker<'_>,
    request: &OsbRequest,
) -> Result<OsbResponse, OsbError> {
    let cleanup: Cleanup = serde_json::from_slice(&request.body)
        .map_err(|e| OsbError::bad_request(format!("the cleanup request is invalid: {e}")))?;
    let mut results = Vec::new();
    if !cleanup.kubernetes.is_empty() {
        let broker_id = broker_id(broker.kv, broker.env)?;
        for owned in &cleanup.kubernetes {
            let api = inventory::connect(broker.services(), &owned.cluster, broker.env.now());
            let outcome = if alive(broker.kv, &owned.instance_id, owned.binding_id.as_deref())? {
                Err("its instance is alive".to_string())
            } else {
                let deleted = match &api {
                    Ok(api) => inventory::delete(api, owned, &broker_id).await,
                    Err(error) => Err(error.clone()),
                };
                match deleted {
                    Ok(true) => Ok("deleting"),
                    Ok(false) => Err("not found with the broker's marks for that instance".into()),
                    Err(error) => Err(error.to_string()),
                }
            };
            results.push(result(&owned.describe(), outcome));
        }
    }
    if !cleanup.bosh.is_empty() {
        let director = bosh::connect(broker.services(), broker.env.now()).map_err(unavailable)?;
        for name in &cleanup.bosh {
            let outcome = match instance_of_deployment(name) {
                None => Err("not a deployment of the broker (service-instance_<id>)".to_string()),
                Some(id) if alive(broker.kv, id, None)? => Err("its instance is alive".into()),
                Some(_) => match director
                    .delete_deployment(name, "spin-osb-orphan-cleanup")
                    .await
                {
                    Ok(Some(task)) => Ok(if task > 0 { "deleting" } else { "deleted" }),
                    Ok(None) => Err("not found".into()),
                    Err(error) => Err(error.to_string()),
                },
            };
            results.push(result(&format!("deployment {name}"), outcome));
        }
    }
    Ok(OsbResponse::json(200, json!({ "results": results })))
}

fn result(resource: &str, outcome: Result<&str, String>) -> Value {
    match outcome {
        Ok(state) => json!({ "resource": resource, "state": state }),
        Err(reason) => json!({ "resource": resource, "state": "left alone", "reason": reason }),
    }
}
