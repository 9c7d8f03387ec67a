//! Digests of request attributes, for the spec's "identical request" rules.

use serde_json::Value;

/// Stable digest of request attributes, for "identical request" checks.
pub fn fingerprint(value: &Value) -> String {
    use sha2::Digest;
    let canonical = canonical_json(value);
    hex_encode(&sha2::Sha256::digest(canonical.as_bytes())[..16])
}

fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
