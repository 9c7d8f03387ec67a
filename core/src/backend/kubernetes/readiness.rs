//! When is an object ready? Built-in rules for the workload kinds (ported from
//! `kubectl rollout status`), and the plan's own expressions for everything else.

use serde_json::Value;

use super::ReadinessRule;
use crate::template;

/// The verdict on one live object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Done: the object serves.
    Ready,
    /// Not yet; the text says what is awaited.
    Pending(String),
    /// Will not become ready without intervention; the text says why.
    Failed(String),
}

/// Judges `object` by the plan's rule for its kind if there is one, else by the built-in
/// rule; kinds with neither (Secret, ConfigMap, ClusterIP Service, …) are ready once they
/// exist.
pub fn judge(object: &Value, rule: Option<&ReadinessRule>) -> Readiness {
    if let Some(rule) = rule {
        return by_rule(object, rule);
    }
    let kind = str_at(object, "/kind").unwrap_or_default();
    match kind {
        "Deployment" => deployment(object),
        "StatefulSet" => stateful_set(object),
        "DaemonSet" => daemon_set(object),
        "Job" => job(object),
        "PersistentVolumeClaim" => claim(object),
        "Pod" => pod(object),
        "Service" => service(object),
        _ => Readiness::Ready,
    }
}

fn by_rule(object: &Value, rule: &ReadinessRule) -> Readiness {
    let message = || {
        rule.message
            .as_deref()
            .and_then(|m| template::eval_expression(m, object).ok())
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string())
    };
    let truth = |source: &str| template::eval_expression(source, object).map(|v| v.is_true());
    if let Some(failed) = &rule.failed {
        match truth(failed) {
            Ok(true) => {
                return Readiness::Failed(message().unwrap_or_else(|| format!("`{failed}`")))
            }
            Ok(false) => {}
            Err(e) => return Readiness::Failed(format!("the readiness rule failed: {e}")),
        }
    }
    match truth(&rule.ready) {
        Ok(true) => Readiness::Ready,
        Ok(false) => {
            Readiness::Pending(message().unwrap_or_else(|| format!("waiting for `{}`", rule.ready)))
        }
        Err(e) => Readiness::Failed(format!("the readiness rule failed: {e}")),
    }
}

fn deployment(d: &Value) -> Readiness {
    if let Some(pending) = generation_pending(d, false) {
        return pending;
    }
    if let Some(c) = condition(d, "Progressing") {
        if str_at(c, "/reason") == Some("ProgressDeadlineExceeded") {
            return Readiness::Failed(
                str_at(c, "/message")
                    .unwrap_or("progress deadline exceeded")
                    .to_string(),
            );
        }
    }
    let wanted = int_at(d, "/spec/replicas").unwrap_or(1);
    let updated = int_at(d, "/status/updatedReplicas").unwrap_or(0);
    let replicas = int_at(d, "/status/replicas").unwrap_or(0);
    let available = int_at(d, "/status/availableReplicas").unwrap_or(0);
    if updated < wanted {
        return Readiness::Pending(format!("{updated} of {wanted} replicas updated"));
    }
    if replicas > updated {
        return Readiness::Pending(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Readiness::Pending(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Readiness::Ready
}

fn stateful_set(s: &Value) -> Readiness {
    if let Some(pending) = generation_pending(s, true) {
        return pending;
    }
    let wanted = int_at(s, "/spec/replicas").unwrap_or(1);
    let ready = int_at(s, "/status/readyReplicas").unwrap_or(0);
    if ready < wanted {
        return Readiness::Pending(format!("{ready} of {wanted} replicas ready"));
    }
    if str_at(s, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Readiness::Ready;
    }
    if let Some(partition) = int_at(s, "/spec/updateStrategy/rollingUpdate/partition") {
        let updated = int_at(s, "/status/updatedReplicas").unwrap_or(0);
        let needed = (wanted - partition).max(0);
        if updated < needed {
            return Readiness::Pending(format!("{updated} of {needed} replicas updated"));
        }
        return Readiness::Ready;
    }
    if str_at(s, "/status/updateRevision") != str_at(s, "/status/currentRevision") {
        return Readiness::Pending("rolling update in progress".into());
    }
    Readiness::Ready
}

fn daemon_set(d: &Value) -> Readiness {
    if let Some(pending) = generation_pending(d, false) {
        return pending;
    }
    let desired = int_at(d, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int_at(d, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int_at(d, "/status/numberAvailable").unwrap_or(0);
    if updated < desired {
        return Readiness::Pending(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return Readiness::Pending(format!("{available} of {desired} pods available"));
    }
    Readiness::Ready
}

fn job(j: &Value) -> Readiness {
    if let Some(c) = condition(j, "Failed").filter(|c| is_true(c)) {
        return Readiness::Failed(
            str_at(c, "/message")
                .or_else(|| str_at(c, "/reason"))
                .unwrap_or("the job failed")
                .to_string(),
        );
    }
    let complete = condition(j, "Complete").is_some_and(is_true);
    if complete || int_at(j, "/status/succeeded").unwrap_or(0) >= 1 {
        return Readiness::Ready;
    }
    Readiness::Pending("the job has not completed".into())
}

fn claim(c: &Value) -> Readiness {
    match str_at(c, "/status/phase") {
        Some("Bound") => Readiness::Ready,
        Some("Lost") => Readiness::Failed("the volume claim lost its volume".into()),
        phase => Readiness::Pending(format!("volume claim is {}", phase.unwrap_or("Pending"))),
    }
}

fn pod(p: &Value) -> Readiness {
    if str_at(p, "/status/phase") == Some("Failed") {
        return Readiness::Failed(
            str_at(p, "/status/message")
                .unwrap_or("the pod failed")
                .to_string(),
        );
    }
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        if str_at(status, "/state/waiting/reason") == Some("CrashLoopBackOff") {
            let name = str_at(status, "/name").unwrap_or("?");
            return Readiness::Failed(format!("container {name} is in CrashLoopBackOff"));
        }
    }
    if str_at(p, "/status/phase") == Some("Succeeded") || condition(p, "Ready").is_some_and(is_true)
    {
        return Readiness::Ready;
    }
    Readiness::Pending("the pod is not ready".into())
}

fn service(s: &Value) -> Readiness {
    if str_at(s, "/spec/type") != Some("LoadBalancer") {
        return Readiness::Ready;
    }
    let ingress = s
        .pointer("/status/loadBalancer/ingress/0")
        .filter(|i| str_at(i, "/ip").is_some() || str_at(i, "/hostname").is_some());
    match ingress {
        Some(_) => Readiness::Ready,
        None => Readiness::Pending("waiting for a load balancer address".into()),
    }
}

/// The controller has not seen the latest spec yet.
fn generation_pending(object: &Value, require_observed: bool) -> Option<Readiness> {
    let generation = int_at(object, "/metadata/generation").unwrap_or(0);
    let observed = int_at(object, "/status/observedGeneration").unwrap_or(0);
    if generation > observed || (require_observed && observed == 0) {
        return Some(Readiness::Pending(
            "waiting for the controller to observe the new spec".into(),
        ));
    }
    None
}

fn condition<'v>(object: &'v Value, kind: &str) -> Option<&'v Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| str_at(c, "/type") == Some(kind))
}

fn is_true(condition: &Value) -> bool {
    str_at(condition, "/status") == Some("True")
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn int_at(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(spec: i64, status: Value) -> Value {
        json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": spec}, "status": status})
    }

    #[test]
    fn deployments_follow_rollout_status() {
        let unobserved = deploy(1, json!({"observedGeneration": 1}));
        assert!(matches!(judge(&unobserved, None), Readiness::Pending(_)));
        let rolling = deploy(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            judge(&rolling, None),
            Readiness::Pending("1 old replicas are pending termination".into())
        );
        let unavailable = deploy(
            2,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
        );
        assert!(matches!(judge(&unavailable, None), Readiness::Pending(m) if m.contains("1 of 2")));
        let ready = deploy(
            2,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(judge(&ready, None), Readiness::Ready);
        let stuck = deploy(
            1,
            json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"x\" has timed out progressing."}]}),
        );
        assert_eq!(
            judge(&stuck, None),
            Readiness::Failed("ReplicaSet \"x\" has timed out progressing.".into())
        );
    }

    #[test]
    fn stateful_sets_need_observation_ready_replicas_and_one_revision() {
        let fresh = json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {}});
        assert!(matches!(judge(&fresh, None), Readiness::Pending(_)));
        let rolling = json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"}});
        assert!(matches!(judge(&rolling, None), Readiness::Pending(_)));
        let ready = json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "b", "updateRevision": "b"}});
        assert_eq!(judge(&ready, None), Readiness::Ready);
    }

    #[test]
    fn jobs_claims_pods_and_load_balancers() {
        let failed = json!({"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        assert_eq!(
            judge(&failed, None),
            Readiness::Failed("BackoffLimitExceeded".into())
        );
        assert_eq!(
            judge(&json!({"kind": "Job", "status": {"succeeded": 1}}), None),
            Readiness::Ready
        );
        assert_eq!(
            judge(
                &json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}}),
                None
            ),
            Readiness::Ready
        );
        let crashing = json!({"kind": "Pod", "status": {"phase": "Running", "containerStatuses": [
            {"name": "db", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert!(matches!(judge(&crashing, None), Readiness::Failed(_)));
        let lb = json!({"kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}});
        assert!(matches!(judge(&lb, None), Readiness::Pending(_)));
        assert_eq!(
            judge(
                &json!({"kind": "Service", "spec": {"type": "ClusterIP"}}),
                None
            ),
            Readiness::Ready
        );
        assert_eq!(judge(&json!({"kind": "Secret"}), None), Readiness::Ready);
    }

    #[test]
    fn plan_rules_read_fields_and_conditions() {
        let rule = ReadinessRule {
            api_version: "example.com/v1".into(),
            kind: "Cache".into(),
            ready: "condition('Ready').status == 'True'".into(),
            failed: Some("status.phase == 'Failed'".into()),
            message: Some("status.message".into()),
        };
        let fresh = json!({"kind": "Cache", "spec": {}});
        assert_eq!(
            judge(&fresh, Some(&rule)),
            Readiness::Pending("waiting for `condition('Ready').status == 'True'`".into())
        );
        let ready = json!({"kind": "Cache", "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(judge(&ready, Some(&rule)), Readiness::Ready);
        let failed =
            json!({"kind": "Cache", "status": {"phase": "Failed", "message": "out of memory"}});
        assert_eq!(
            judge(&failed, Some(&rule)),
            Readiness::Failed("out of memory".into())
        );
    }
}
