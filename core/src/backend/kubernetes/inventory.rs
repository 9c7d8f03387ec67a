//! What this broker created in its clusters, for the operator's orphan report: every object
//! of the kinds the catalog's plans render that carries the broker's labels (spin-osb's, and
//! this broker's id: other brokers sharing the cluster own theirs) and the annotation
//! naming its instance (and binding). Deleting one is an explicit operator action, and only
//! ever for an object that still carries all of them. Objects made before brokers labelled
//! them with their id are not found.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::{Api, ObjectRef};
use super::clusters::{quoted, DEFAULT_CLUSTER};
use super::objects::{BINDING_ANNOTATION, BROKER_LABEL, INSTANCE_ANNOTATION, MANAGED_BY};
use super::{Kubernetes, KubernetesConfig};
use crate::backend::{BackendError, Services};

/// An object the broker made, and whom it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// The cluster it is in.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// `group/version` or `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Its namespace (none for namespaces themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The instance it was made for.
    pub instance_id: String,
    /// The binding it was made for, for per-binding objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_id: Option<String>,
}

fn default_cluster() -> String {
    DEFAULT_CLUSTER.to_string()
}

impl Owned {
    fn of(cluster: &str, reference: &ObjectRef, object: &Value, broker_id: &str) -> Option<Owned> {
        let metadata = &object["metadata"];
        // Being deleted already (a namespace takes a while): going, not left behind.
        if metadata["labels"][MANAGED_BY] != "spin-osb"
            || metadata["labels"][BROKER_LABEL] != broker_id
            || metadata["deletionTimestamp"].is_string()
        {
            return None;
        }
        let annotations = &metadata["annotations"];
        Some(Owned {
            cluster: cluster.to_string(),
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            namespace: reference.namespace.clone(),
            name: reference.name.clone(),
            instance_id: annotations[INSTANCE_ANNOTATION].as_str()?.to_string(),
            binding_id: annotations[BINDING_ANNOTATION].as_str().map(str::to_owned),
        })
    }

    /// `Deployment ns/name in cluster 'east'`, for messages.
    pub fn describe(&self) -> String {
        let object = match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        };
        format!("{object} in cluster {}", quoted(&self.cluster))
    }
}

/// The `(apiVersion, kind)` pairs a plan's templates render (each document's top-level
/// `apiVersion:` and `kind:` lines), and `v1 Namespace`: what an orphan search lists.
pub fn kinds_of(config: &KubernetesConfig) -> BTreeSet<(String, String)> {
    let mut kinds = BTreeSet::from([("v1".to_string(), "Namespace".to_string())]);
    let templates = [Some(&config.manifests), config.binding.manifests.as_ref()];
    for template in templates.into_iter().flatten() {
        for document in template.split("\n---") {
            let field = |name: &str| {
                document.lines().find_map(|line| {
                    let value = line.strip_prefix(name)?.strip_prefix(':')?.trim();
                    (!value.is_empty() && !value.contains("{{"))
                        .then(|| value.trim_matches('"').to_string())
                })
            };
            if let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) {
                kinds.insert((api_version, kind));
            }
        }
    }
    kinds
}

/// The names of the clusters the broker declares.
pub fn clusters(services: Services<'_>) -> Vec<String> {
    super::clusters::declared(services.config)
}

/// The API of the declared cluster `cluster`.
pub fn connect<'a>(
    services: Services<'a>,
    cluster: &str,
    now: u64,
) -> Result<Api<'a>, BackendError> {
    Kubernetes::connect(services, cluster, now)
}

/// Every object of `kinds` the broker `broker_id` made in `cluster` (whose API is `api`).
pub async fn owned(
    api: &Api<'_>,
    cluster: &str,
    kinds: &BTreeSet<(String, String)>,
    broker_id: &str,
) -> Result<Vec<Owned>, BackendError> {
    let mut found = Vec::new();
    for (api_version, kind) in kinds {
        for (reference, object) in api.list_managed(api_version, kind, broker_id).await? {
            found.extend(Owned::of(cluster, &reference, &object, broker_id));
        }
    }
    Ok(found)
}

/// Deletes `wanted` (through `api`, its cluster's) if it still is an object the broker made for the same instance and
/// binding; `Ok(false)` when it is not (gone, or not spin-osb's), which is left alone.
pub async fn delete(api: &Api<'_>, wanted: &Owned, broker_id: &str) -> Result<bool, BackendError> {
    let reference = api
        .object_ref(
            &wanted.api_version,
            &wanted.kind,
            &wanted.name,
            wanted.namespace.as_deref(),
            "default",
        )
        .await?;
    let Some(object) = api.get(&reference).await? else {
        return Ok(false);
    };
    if Owned::of(&wanted.cluster, &reference, &object, broker_id).as_ref() != Some(wanted) {
        return Ok(false);
    }
    api.delete(&reference).await?;
    Ok(true)
}
