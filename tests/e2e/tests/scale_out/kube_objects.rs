//! The Kubernetes side: playing the kubelet, request bodies of the Kubernetes platform,
//! and the objects an instance owns (found by label) or must own.

use super::*;

/// Plays the kubelet like `Kube::make_pods_ready`, but tolerates pods that disappear
/// meanwhile (other scenarios delete theirs concurrently) and skips ready ones.
pub fn pods_ready(k: &Kube, namespace: &str) {
    let Some((200, list)) = k.raw("GET", &format!("/api/v1/namespaces/{namespace}/pods"), None)
    else {
        return;
    };
    let now = rfc3339_now();
    for pod in list["items"].as_array().into_iter().flatten() {
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready || pod["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let _ = k.raw(
            "PATCH",
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            Some((
                "application/merge-patch+json",
                json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}
                ]}}),
            )),
        );
    }
}

pub fn kube_body(plan: &Plan, namespace: Option<&str>, parameters: Value) -> Value {
    let context = match namespace {
        Some(ns) => json!({"platform": "kubernetes", "namespace": ns, "clusterid": "e2e"}),
        None => json!({"platform": "kubernetes", "clusterid": "e2e"}),
    };
    // Kubernetes platforms send the cluster id and the namespace as organization and space.
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "e2e", "space_guid": namespace.unwrap_or("default"),
        "context": context, "parameters": parameters})
}

/// Names of the objects at collection `path` matching `selector`, sorted.
pub fn names(k: &Kube, path: &str, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = k
        .list(path, selector)
        .iter()
        .filter(|o| !o["metadata"]["deletionTimestamp"].is_string())
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// What the broker created for an instance (not its bindings), by kind.
pub fn instance_objects(
    k: &Kube,
    iid: &str,
    info: &KubeInfo,
) -> BTreeMap<&'static str, Vec<String>> {
    let selector = format!("osb.spin-osb.dev/instance={iid},!osb.spin-osb.dev/binding");
    let ns = &info.namespace;
    let mut out = BTreeMap::new();
    out.insert("namespaces", names(k, "/api/v1/namespaces", &selector));
    for (kind, path) in [
        ("secrets", format!("/api/v1/namespaces/{ns}/secrets")),
        ("configmaps", format!("/api/v1/namespaces/{ns}/configmaps")),
        ("services", format!("/api/v1/namespaces/{ns}/services")),
        (
            "deployments",
            format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        ),
        (
            "statefulsets",
            format!("/apis/apps/v1/namespaces/{ns}/statefulsets"),
        ),
    ] {
        out.insert(kind, names(k, &path, &selector));
    }
    out
}

/// What a ready instance of `info.plan` must own: exactly one object of each name.
pub fn expected_instance_objects(
    iid: &str,
    info: &KubeInfo,
) -> BTreeMap<&'static str, Vec<String>> {
    let short = &iid[..8];
    let v = |names: &[String]| names.to_vec();
    let mut out = BTreeMap::new();
    match info.plan.as_str() {
        "cache" => {
            out.insert("namespaces", vec![]);
            out.insert("secrets", v(&[format!("cache-{short}")]));
            out.insert("configmaps", v(&[format!("cache-{short}-config")]));
            out.insert(
                "services",
                v(&[format!("cache-{short}"), format!("cache-{short}-metrics")]),
            );
            out.insert("deployments", v(&[format!("cache-{short}")]));
            out.insert("statefulsets", vec![]);
        }
        "database" => {
            out.insert("namespaces", v(&[format!("osb-{iid}")]));
            out.insert("secrets", vec![]);
            out.insert("configmaps", vec![]);
            out.insert("services", v(&["db".to_string()]));
            out.insert("deployments", vec![]);
            out.insert("statefulsets", v(&["db".to_string()]));
        }
        other => panic!("no expectations for plan {other}"),
    }
    out
}

pub fn no_objects() -> BTreeMap<&'static str, Vec<String>> {
    [
        "namespaces",
        "secrets",
        "configmaps",
        "services",
        "deployments",
        "statefulsets",
    ]
    .into_iter()
    .map(|k| (k, Vec::new()))
    .collect()
}
