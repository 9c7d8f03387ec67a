//! Parameters from the plans' JSON Schemas: valid ones, ones that differ in one property,
//! and values of the wrong type.

use serde_json::{json, Value};

use crate::Plan;

/// A value that satisfies `schema` (defaults, `const`, `enum`, `examples` first; then the
/// smallest value of the declared type within its bounds).
pub fn example_value(schema: &Value) -> Value {
    for key in ["default", "const"] {
        if let Some(v) = schema.get(key) {
            return v.clone();
        }
    }
    for key in ["enum", "examples"] {
        if let Some(v) = schema[key].as_array().and_then(|a| a.first()) {
            return v.clone();
        }
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema.get("properties").is_some() => "object".to_string(),
        _ => "string".to_string(),
    };
    match ty.as_str() {
        "integer" | "number" => {
            let min = schema["minimum"]
                .as_f64()
                .or_else(|| schema["exclusiveMinimum"].as_f64().map(|m| m + 1.0));
            let max = schema["maximum"].as_f64();
            let v = min
                .unwrap_or_else(|| max.map(|m| m.min(1.0)).unwrap_or(1.0))
                .ceil();
            json!(v as i64)
        }
        "boolean" => json!(true),
        "null" => Value::Null,
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0) as usize;
            let item = example_value(&schema["items"]);
            Value::Array(vec![item; n])
        }
        "object" => valid_parameters(schema),
        _ => {
            if schema["format"] == "email" {
                return json!("e2e@example.com");
            }
            let min = schema["minLength"].as_u64().unwrap_or(1) as usize;
            let max = schema["maxLength"].as_u64().unwrap_or(64) as usize;
            let mut s = "e2e".to_string();
            while s.len() < min {
                s.push('x');
            }
            s.truncate(max.max(min));
            json!(s)
        }
    }
}

/// An object with every `required` property of an object schema filled in.
pub fn valid_parameters(schema: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for name in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str() {
            out.insert(name.to_string(), example_value(&schema["properties"][name]));
        }
    }
    Value::Object(out)
}

/// A value of the wrong JSON type for `schema` (`None` when the schema takes anything).
pub fn wrong_type_value(schema: &Value) -> Option<Value> {
    match schema["type"].as_str()? {
        "string" => Some(json!(12345)),
        "integer" | "number" => Some(json!("not-a-number")),
        "boolean" => Some(json!("not-a-boolean")),
        "object" => Some(json!(["not", "an", "object"])),
        "array" => Some(json!({"not": "an array"})),
        _ => None,
    }
}

impl Plan {
    /// Valid parameters for `section`/`action` (`{}` without a schema).
    pub fn valid_parameters(&self, section: &str, action: &str) -> Value {
        self.schema(section, action)
            .map(|s| valid_parameters(&s))
            .unwrap_or_else(|| json!({}))
    }

    /// Valid provision parameters.
    pub fn provision_parameters(&self) -> Value {
        self.valid_parameters("service_instance", "create")
    }

    /// Valid bind parameters.
    pub fn bind_parameters(&self) -> Value {
        self.valid_parameters("service_binding", "create")
    }

    /// A property of the `section`/`action` schema with a typed sub-schema:
    /// `(name, its schema)`; required properties first.
    pub fn typed_property(&self, section: &str, action: &str) -> Option<(String, Value)> {
        let schema = self.schema(section, action)?;
        let properties = schema["properties"].as_object()?.clone();
        let required: Vec<String> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort_by_key(|n| !required.contains(n));
        names
            .into_iter()
            .find(|n| wrong_type_value(&properties[n.as_str()]).is_some())
            .map(|n| (n.clone(), properties[n.as_str()].clone()))
    }
}

/// A valid value for `schema` that differs from `current` (`None` if none is found).
pub fn different_value(schema: &Value, current: &Value) -> Option<Value> {
    if schema.get("const").is_some() {
        return None;
    }
    if let Some(options) = schema["enum"].as_array() {
        return options.iter().find(|v| *v != current).cloned();
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    match ty {
        "integer" | "number" => {
            let min = schema["minimum"].as_f64().unwrap_or(f64::MIN);
            let max = schema["maximum"].as_f64().unwrap_or(f64::MAX);
            let now = current
                .as_f64()
                .unwrap_or_else(|| example_value(schema).as_f64().unwrap_or(1.0));
            [now + 1.0, now - 1.0, min, max]
                .into_iter()
                .find(|v| *v >= min && *v <= max && *v != now && v.is_finite() && v.abs() < 1e15)
                .map(|v| json!(v as i64))
        }
        "boolean" => Some(json!(!current.as_bool().unwrap_or(false))),
        "string" if schema.get("pattern").is_none() && schema.get("format").is_none() => {
            let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
            let max = schema["maxLength"].as_u64().unwrap_or(64) as usize;
            let mut s = "changed".to_string();
            while s.len() < min {
                s.push('y');
            }
            s.truncate(max.max(min));
            (json!(s) != *current).then(|| json!(s))
        }
        _ => None,
    }
}

impl Plan {
    /// Valid parameters for `section`/`action` that differ from `base` in one property.
    #[track_caller]
    pub fn changed_parameters(&self, section: &str, action: &str, base: &Value) -> Value {
        let mut out = base.clone();
        if !out.is_object() {
            out = json!({});
        }
        let Some(schema) = self.schema(section, action) else {
            out["e2e_extra"] = json!("changed");
            return out;
        };
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort();
        for name in names {
            let current = base.get(name.as_str()).cloned().unwrap_or(Value::Null);
            if let Some(v) = different_value(&properties[name.as_str()], &current) {
                out[name.as_str()] = v;
                return out;
            }
        }
        if schema["additionalProperties"] != json!(false) {
            out["e2e_extra"] = json!("changed");
            return out;
        }
        panic!(
            "cannot find different valid {section}.{action} parameters for plan {} from schema {schema}",
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_and_changed_parameters_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "required": ["size", "name"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 3},
                "name": {"type": "string", "minLength": 5},
                "role": {"type": "string", "enum": ["a", "b"]}
            }
        });
        let params = valid_parameters(&schema);
        assert_eq!(params, json!({"size": 1, "name": "e2exx"}));
        assert_eq!(
            different_value(&schema["properties"]["size"], &json!(3)),
            Some(json!(2))
        );
        assert_eq!(
            different_value(&schema["properties"]["role"], &json!("a")),
            Some(json!("b"))
        );
        assert_eq!(
            wrong_type_value(&schema["properties"]["size"]),
            Some(json!("not-a-number"))
        );
    }
}
