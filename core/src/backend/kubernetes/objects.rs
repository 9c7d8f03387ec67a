//! Turning rendered manifest documents into owned objects: identity checks, the broker's
//! labels and annotations, and the ownership rule (an existing object that another instance
//! or nobody owns is a conflict, never adopted).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::api::ObjectRef;

/// `app.kubernetes.io/managed-by: spin-osb` on every object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label with the instance id (hashed when it is not a valid label value).
pub const INSTANCE_LABEL: &str = "osb.spin-osb.dev/instance";
/// Label with the id of the broker that made the object ([`crate::state::broker_id`]).
pub const BROKER_LABEL: &str = "osb.spin-osb.dev/broker";
/// Label with the binding id, on per-binding objects.
pub const BINDING_LABEL: &str = "osb.spin-osb.dev/binding";
/// Annotation with the exact instance id: what ownership is judged by.
pub const INSTANCE_ANNOTATION: &str = "osb.spin-osb.dev/instance-id";
/// Annotation with the exact binding id.
pub const BINDING_ANNOTATION: &str = "osb.spin-osb.dev/binding-id";

/// Who an object belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The service instance.
    pub instance_id: &'a str,
    /// The binding, for per-binding objects.
    pub binding_id: Option<&'a str>,
}

impl<'a> Owner<'a> {
    /// The instance itself (its own objects, not a binding's).
    pub fn instance(instance_id: &'a str) -> Self {
        Owner {
            instance_id,
            binding_id: None,
        }
    }

    /// Adds the broker's labels and annotations to `object`'s metadata.
    pub fn mark(&self, object: &mut Value) {
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let labels = entry_map(metadata, "labels");
        labels.insert(MANAGED_BY.into(), json!("spin-osb"));
        labels.insert(INSTANCE_LABEL.into(), json!(label_value(self.instance_id)));
        if let Some(binding) = self.binding_id {
            labels.insert(BINDING_LABEL.into(), json!(label_value(binding)));
        }
        let annotations = entry_map(metadata, "annotations");
        annotations.insert(INSTANCE_ANNOTATION.into(), json!(self.instance_id));
        if let Some(binding) = self.binding_id {
            annotations.insert(BINDING_ANNOTATION.into(), json!(binding));
        }
    }

    /// The server-side apply field manager of this owner's objects: one per owner, so the
    /// API server itself refuses a second owner's create of the same object (its owner
    /// marks conflict with the first's).
    pub fn field_manager(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.instance_id.as_bytes());
        if let Some(binding) = self.binding_id {
            digest.update(b"/");
            digest.update(binding.as_bytes());
        }
        let hex: String = digest.finalize()[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("spin-osb-{hex}")
    }

    /// Whether a live object carries this owner's marks.
    pub fn owns(&self, live: &Value) -> bool {
        let annotation = |name: &str| {
            live.pointer("/metadata/annotations")
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
        };
        annotation(INSTANCE_ANNOTATION) == Some(self.instance_id)
            && annotation(BINDING_ANNOTATION) == self.binding_id
    }
}

fn entry_map<'m>(metadata: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = metadata
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// `id` if it is a valid label value, else a stable hash of it (the annotation keeps the
/// exact id).
pub fn label_value(id: &str) -> String {
    let valid = id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return id.to_string();
    }
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    format!("h-{hex}")
}

/// Whether `name` is a DNS label (what namespaces must be).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a DNS subdomain (RFC 1123), what the names of most kinds must be.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// The identity a manifest document declares: `(apiVersion, kind, name, namespace)`.
pub fn identity(
    document: &Value,
    index: usize,
) -> Result<(String, String, String, Option<String>), String> {
    let field = |pointer: &str| document.pointer(pointer).and_then(Value::as_str);
    if !document.is_object() {
        return Err(format!("document {} is not a mapping", index + 1));
    }
    let (Some(api_version), Some(kind), Some(name)) = (
        field("/apiVersion"),
        field("/kind"),
        field("/metadata/name"),
    ) else {
        return Err(format!(
            "document {} needs apiVersion, kind and metadata.name as strings",
            index + 1
        ));
    };
    if !is_dns_subdomain(name) {
        return Err(format!(
            "document {}: {name:?} is not a valid object name (lower-case letters, digits, '-' and '.', at most 253)",
            index + 1
        ));
    }
    Ok((
        api_version.to_string(),
        kind.to_string(),
        name.to_string(),
        field("/metadata/namespace").map(str::to_string),
    ))
}

/// Fills in `protocol: TCP` where server-side apply needs it as a list key: Service ports
/// and container ports are keyed by (port, protocol), and API servers before 1.21 refuse an
/// apply that omits it ("associative list with keys has an element that omits key field
/// protocol") although TCP is the default.
pub fn default_list_keys(document: &mut Value) {
    fn ports(list: Option<&mut Value>) {
        for port in list.and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(port) = port.as_object_mut() {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
            }
        }
    }
    fn pod_spec(spec: Option<&mut Value>) {
        let Some(spec) = spec else { return };
        for key in ["containers", "initContainers"] {
            for container in spec
                .get_mut(key)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                ports(container.get_mut("ports"));
            }
        }
    }
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "Service" => ports(document.pointer_mut("/spec/ports")),
        "Pod" => pod_spec(document.pointer_mut("/spec")),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            pod_spec(document.pointer_mut("/spec/template/spec"))
        }
        "CronJob" => pod_spec(document.pointer_mut("/spec/jobTemplate/spec/template/spec")),
        _ => {}
    }
}

/// `objects` without those also in `keep`.
pub fn difference(objects: &[ObjectRef], keep: &[ObjectRef]) -> Vec<ObjectRef> {
    objects
        .iter()
        .filter(|o| !keep.iter().any(|k| k.same_object(o)))
        .cloned()
        .collect()
}

/// `a` followed by the entries of `b` not already in it.
pub fn union(a: &[ObjectRef], b: &[ObjectRef]) -> Vec<ObjectRef> {
    let mut out = a.to_vec();
    out.extend(difference(b, a));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_must_be_dns_subdomains() {
        for good in ["a", "cache-1234abcd", "a.b-c.d", &"a".repeat(63)] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "a/b",
            "a?x=1",
            "-a",
            "a-",
            "a..b",
            ".a",
            &"a".repeat(64),
            "ü",
        ] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn ids_that_are_not_label_values_are_hashed() {
        assert_eq!(label_value("6b1c-AB_x.9"), "6b1c-AB_x.9");
        let long = "x".repeat(64);
        let hashed = label_value(&long);
        assert!(hashed.starts_with("h-") && hashed.len() <= 63, "{hashed}");
        assert_ne!(label_value("a b"), label_value("a  b"));
    }

    #[test]
    fn port_protocols_are_filled_in_for_apply() {
        let mut service = json!({"kind": "Service", "spec": {"ports": [{"port": 1}, {"port": 2, "protocol": "UDP"}]}});
        default_list_keys(&mut service);
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(service["spec"]["ports"][1]["protocol"], "UDP");
        let mut deployment = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 1}]}]}}}});
        default_list_keys(&mut deployment);
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
    }

    #[test]
    fn ownership_is_judged_by_exact_ids() {
        let owner = Owner {
            instance_id: "i-1",
            binding_id: None,
        };
        let mut object = json!({"metadata": {"name": "x", "labels": {"app": "redis"}}});
        owner.mark(&mut object);
        assert_eq!(object["metadata"]["labels"]["app"], "redis");
        assert!(owner.owns(&object));
        let other = Owner {
            instance_id: "i-2",
            binding_id: None,
        };
        assert!(!other.owns(&object));
        let binding = Owner {
            instance_id: "i-1",
            binding_id: Some("b-1"),
        };
        assert!(
            !binding.owns(&object),
            "instance objects are not the binding's"
        );
        assert!(!owner.owns(&json!({"metadata": {"name": "x"}})));
    }
}
