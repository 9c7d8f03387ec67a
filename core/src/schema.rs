//! JSON Schemas for OSB input parameters, compiled once when the catalog loads.
//!
//! A plan's `schemas.*.parameters` tell the platform what a user may pass; the broker checks
//! the same schema itself so that a bad request is answered `400` with the failing field named
//! ("parameters.size: 5 is greater than the maximum of 3") instead of reaching a backend.
//!
//! The OSB spec (v2.17, "Input Parameters Schema Object") adds rules of its own on top of
//! JSON Schema, and [`ParameterSchema::compile`] enforces them: the schema is an object, it
//! declares its draft with `$schema`, it has no external references (nothing is ever fetched:
//! the core has no network) and it is at most 64 kB.
//!
//! ```
//! use spin_osb_core::schema::ParameterSchema;
//! use serde_json::json;
//!
//! let schema = ParameterSchema::compile(&json!({
//!     "$schema": "http://json-schema.org/draft-04/schema#",
//!     "type": "object",
//!     "properties": { "size": { "type": "integer", "maximum": 3 } }
//! }))
//! .unwrap();
//! let violations = schema.validate(&json!({ "size": 5 })).unwrap_err();
//! assert_eq!(violations[0].to_string(), "parameters.size: 5 is greater than the maximum of 3");
//! ```

use std::fmt;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Retrieve, Uri, ValidationError, Validator};
use serde_json::Value;

/// The OSB spec's size limit for one schema ("Schemas MUST NOT be larger than 64kB").
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// How many violations one validation reports at most, so that a huge invalid request cannot
/// make a huge error response.
pub const MAX_VIOLATIONS: usize = 20;

/// A compiled parameters schema: the JSON as written (served back in `GET /v2/catalog`)
/// plus the validator built from it.
#[derive(Clone)]
pub struct ParameterSchema {
    raw: Value,
    validator: Validator,
}

impl fmt::Debug for ParameterSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParameterSchema").field(&self.raw).finish()
    }
}

impl PartialEq for ParameterSchema {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

/// Why a schema cannot be used; the message is written for the catalog author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(String);

impl SchemaError {
    /// A schema error with this message (e.g. one reported by another component).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// One way an instance fails its schema, named by the field at fault so that a `400` answer
/// tells the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaViolation {
    /// RFC 6901 JSON pointer to the failing value inside the parameters (`""` is the whole
    /// object; for a missing or unexpected property, the property itself).
    pub pointer: String,
    /// What is wrong, without the location (e.g. `5 is greater than the maximum of 3`).
    pub message: String,
}

impl SchemaViolation {
    /// The pointer as a field path rooted at `root`, e.g. `parameters.size` or
    /// `parameters.tags[0]`, which reads better in an error message than `/size`.
    pub fn field_path(&self, root: &str) -> String {
        let mut path = root.to_owned();
        if self.pointer.is_empty() {
            return path;
        }
        for raw in self.pointer.trim_start_matches('/').split('/') {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                path.push_str(&format!("[{segment}]"));
            } else if !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                path.push('.');
                path.push_str(&segment);
            } else {
                path.push_str(&format!("[{}]", Value::String(segment)));
            }
        }
        path
    }
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field_path("parameters"), self.message)
    }
}

/// Refuses every external reference: the spec forbids them, and resolving one would be I/O.
struct NoExternalReferences;

impl Retrieve for NoExternalReferences {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "external reference `{}` is not allowed (OSB: schemas MUST NOT contain external references)",
            uri.as_str()
        )
        .into())
    }
}

impl ParameterSchema {
    /// Checks `schema` against the OSB rules and its own meta-schema, and compiles it.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let Some(object) = schema.as_object() else {
            return Err(SchemaError(format!(
                "a parameters schema must be an object, not {}",
                json_type(schema)
            )));
        };
        match object.get("$schema") {
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(SchemaError(format!(
                    "`$schema` must be a string, not {}",
                    json_type(other)
                )))
            }
            None => {
                return Err(SchemaError(
                    "`$schema` is missing (OSB requires it to declare the JSON Schema version, e.g. \"http://json-schema.org/draft-04/schema#\")"
                        .to_owned(),
                ))
            }
        }
        let size = serde_json::to_vec(schema).map(|v| v.len()).unwrap_or(0);
        if size > MAX_SCHEMA_BYTES {
            return Err(SchemaError(format!(
                "schema is {size} bytes; OSB allows at most {MAX_SCHEMA_BYTES}"
            )));
        }
        let validator = jsonschema::options()
            .with_retriever(NoExternalReferences)
            .build(schema)
            .map_err(|e| SchemaError(describe_compile_error(&e)))?;
        Ok(ParameterSchema {
            raw: schema.clone(),
            validator,
        })
    }

    /// The schema as written in the catalog.
    pub fn as_json(&self) -> &Value {
        &self.raw
    }

    /// Checks `instance` (the request's `parameters`), reporting every violation (up to
    /// [`MAX_VIOLATIONS`]) so the user can fix them all at once.
    pub fn validate(&self, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
        let mut violations = Vec::new();
        for error in self.validator.iter_errors(instance) {
            push_violations(&mut violations, &error);
            if violations.len() >= MAX_VIOLATIONS {
                violations.truncate(MAX_VIOLATIONS);
                break;
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// Splits one jsonschema error into violations that point at the property concerned: a
/// missing or unexpected property is reported at its own path, not at its parent object.
fn push_violations(out: &mut Vec<SchemaViolation>, error: &ValidationError<'_>) {
    let pointer = error.instance_path().as_str().to_owned();
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| property.to_string());
            out.push(SchemaViolation {
                pointer: format!("{pointer}/{}", escape_pointer(&name)),
                message: "is required".to_owned(),
            });
        }
        ValidationErrorKind::AdditionalProperties { unexpected } if !unexpected.is_empty() => {
            for name in unexpected {
                out.push(SchemaViolation {
                    pointer: format!("{pointer}/{}", escape_pointer(name)),
                    message: "is not allowed (the schema allows no additional properties)"
                        .to_owned(),
                });
            }
        }
        _ => out.push(SchemaViolation {
            pointer,
            message: error.to_string(),
        }),
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A compile error names where in the schema it is, when that is not the root.
fn describe_compile_error(error: &ValidationError<'_>) -> String {
    let at = error.instance_path().as_str();
    if at.is_empty() {
        error.to_string()
    } else {
        format!("at {at}: {error}")
    }
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft4(body: Value) -> Value {
        let mut schema = json!({ "$schema": "http://json-schema.org/draft-04/schema#" });
        if let (Some(target), Some(source)) = (schema.as_object_mut(), body.as_object()) {
            target.extend(source.clone());
        }
        schema
    }

    #[test]
    fn a_violation_names_the_field_and_the_limit() {
        let schema = ParameterSchema::compile(&draft4(json!({
            "type": "object",
            "properties": { "size": { "type": "integer", "maximum": 3 } }
        })))
        .unwrap();
        let violations = schema.validate(&json!({ "size": 5 })).unwrap_err();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].pointer, "/size");
        assert_eq!(
            violations[0].to_string(),
            "parameters.size: 5 is greater than the maximum of 3"
        );
    }

    #[test]
    fn a_missing_required_property_is_reported_at_the_property() {
        let schema = ParameterSchema::compile(&draft4(json!({
            "type": "object",
            "required": ["name"]
        })))
        .unwrap();
        let violations = schema.validate(&json!({})).unwrap_err();
        assert_eq!(violations[0].to_string(), "parameters.name: is required");
    }

    #[test]
    fn each_unexpected_property_is_its_own_violation() {
        let schema = ParameterSchema::compile(&draft4(json!({
            "type": "object",
            "properties": { "a": {} },
            "additionalProperties": false
        })))
        .unwrap();
        let violations = schema
            .validate(&json!({ "a": 1, "b": 2, "c": 3 }))
            .unwrap_err();
        let paths: Vec<_> = violations
            .iter()
            .map(|v| v.field_path("parameters"))
            .collect();
        assert_eq!(paths, ["parameters.b", "parameters.c"]);
    }

    #[test]
    fn every_violation_is_reported_not_just_the_first() {
        let schema = ParameterSchema::compile(&draft4(json!({
            "type": "object",
            "properties": {
                "size": { "type": "integer", "minimum": 1 },
                "name": { "type": "string", "maxLength": 3 }
            }
        })))
        .unwrap();
        let violations = schema
            .validate(&json!({ "size": 0, "name": "toolong" }))
            .unwrap_err();
        assert_eq!(violations.len(), 2);
    }

    #[test]
    fn array_items_and_odd_keys_get_readable_paths() {
        let violation = SchemaViolation {
            pointer: "/tags/0/a~1b/c d".to_owned(),
            message: "x".to_owned(),
        };
        assert_eq!(
            violation.field_path("parameters"),
            "parameters.tags[0][\"a/b\"][\"c d\"]"
        );
        let root = SchemaViolation {
            pointer: String::new(),
            message: "x".to_owned(),
        };
        assert_eq!(root.field_path("parameters"), "parameters");
    }

    #[test]
    fn a_schema_without_dollar_schema_is_refused() {
        let error = ParameterSchema::compile(&json!({ "type": "object" })).unwrap_err();
        assert!(
            error.to_string().contains("`$schema` is missing"),
            "{error}"
        );
    }

    #[test]
    fn a_schema_that_breaks_its_meta_schema_is_refused() {
        let error = ParameterSchema::compile(&draft4(json!({ "type": "strin" }))).unwrap_err();
        assert!(error.to_string().contains("strin"), "{error}");
    }

    #[test]
    fn an_external_reference_is_refused_without_any_fetch() {
        let error = ParameterSchema::compile(&draft4(json!({
            "$ref": "https://example.com/schema.json"
        })))
        .unwrap_err();
        assert!(error.to_string().contains("example.com"), "{error}");
    }

    #[test]
    fn a_non_object_schema_is_refused() {
        let error = ParameterSchema::compile(&json!(true)).unwrap_err();
        assert!(error.to_string().contains("must be an object"), "{error}");
    }

    #[test]
    fn a_schema_over_64_kb_is_refused() {
        let big = "x".repeat(MAX_SCHEMA_BYTES);
        let error = ParameterSchema::compile(&draft4(json!({ "description": big }))).unwrap_err();
        assert!(error.to_string().contains("at most 65536"), "{error}");
    }

    #[test]
    fn later_drafts_are_understood() {
        let schema = ParameterSchema::compile(&json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "n": { "type": "integer", "exclusiveMaximum": 3 } }
        }))
        .unwrap();
        assert!(schema.validate(&json!({ "n": 2 })).is_ok());
        assert!(schema.validate(&json!({ "n": 3 })).is_err());
    }
}
