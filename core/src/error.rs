//! The one OSB error type: every failure of every endpoint ends up as an [`OsbError`],
//! rendered by [`OsbError::body`] as the spec's `{"error"?, "description"}` object.
//!
//! Constructors are named after the spec's failure cases (brokerapi's `errors.go` in
//! Rust), so an endpoint cannot invent a status code the spec does not list for it.

use serde_json::{json, Value};

/// An OSB failure: HTTP status, optional `error` code, and a description for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {description}", code.unwrap_or("-"))]
pub struct OsbError {
    /// HTTP status code.
    pub status: u16,
    /// The spec's machine-readable code (`AsyncRequired`, `ConcurrencyError`, ...).
    pub code: Option<&'static str>,
    /// Human-readable explanation; never empty.
    pub description: String,
    /// For failed updates/deprovisions: whether the instance is still usable.
    pub instance_usable: Option<bool>,
    /// For failed updates: whether repeating the update can succeed.
    pub update_repeatable: Option<bool>,
    /// Response headers the status requires (`Allow` on 405, `WWW-Authenticate` on 401).
    pub headers: Vec<(String, String)>,
}

impl OsbError {
    fn new(status: u16, code: Option<&'static str>, description: impl Into<String>) -> Self {
        let description = description.into();
        let description = if description.is_empty() {
            "request failed".to_string()
        } else {
            description
        };
        Self {
            status,
            code,
            description,
            instance_usable: None,
            update_repeatable: None,
            headers: Vec::new(),
        }
    }

    /// 400: malformed request or invalid data.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(400, None, description)
    }
    /// 401: missing or wrong credentials, with the Basic challenge.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            None,
            "authentication required: use the broker's basic-auth credentials",
        )
        .with_header("WWW-Authenticate", "Basic realm=\"spin-osb\"")
    }
    /// 403: the request is refused whoever sends it (a disabled API).
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(403, None, description)
    }
    /// 404: the resource does not exist (or is still being created).
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(404, None, description)
    }
    /// 405: the path exists but not with this method; `allowed` becomes the `Allow` header.
    pub fn method_not_allowed(description: impl Into<String>, allowed: &[&str]) -> Self {
        Self::new(405, None, description).with_header("Allow", allowed.join(", "))
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    /// 409: exists with different attributes.
    pub fn conflict(description: impl Into<String>) -> Self {
        Self::new(409, None, description)
    }
    /// 410: already gone (deprovision/unbind of an absent resource, finished deletion).
    pub fn gone(description: impl Into<String>) -> Self {
        Self::new(410, None, description)
    }
    /// 412: missing or unsupported `X-Broker-API-Version`.
    pub fn precondition_failed(description: impl Into<String>) -> Self {
        Self::new(412, None, description)
    }
    /// 413: request body over the limit.
    pub fn payload_too_large(description: impl Into<String>) -> Self {
        Self::new(413, None, description)
    }
    /// 415: a body that is not JSON.
    pub fn unsupported_media_type(description: impl Into<String>) -> Self {
        Self::new(415, None, description)
    }
    /// 422 `AsyncRequired`.
    pub fn async_required() -> Self {
        Self::new(
            422,
            Some("AsyncRequired"),
            "This Service Plan requires client support for asynchronous service operations (accepts_incomplete=true).",
        )
    }
    /// 422 `ConcurrencyError`.
    pub fn concurrency(description: impl Into<String>) -> Self {
        Self::new(422, Some("ConcurrencyError"), description)
    }
    /// 422 `MaintenanceInfoConflict`.
    pub fn maintenance_info_conflict(description: impl Into<String>) -> Self {
        Self::new(422, Some("MaintenanceInfoConflict"), description)
    }
    /// 422 without a code: the change is not supported.
    pub fn unprocessable(description: impl Into<String>) -> Self {
        Self::new(422, None, description)
    }
    /// 500: a broker fault; the description never contains secrets.
    pub fn internal(description: impl Into<String>) -> Self {
        Self::new(500, None, description)
    }
    /// 503: a dependency (the key-value store) is unavailable; nothing was changed.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::new(503, None, description)
    }

    /// The JSON response body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "description": self.description });
        if let Some(code) = self.code {
            body["error"] = json!(code);
        }
        if let Some(usable) = self.instance_usable {
            body["instance_usable"] = json!(usable);
        }
        if let Some(repeatable) = self.update_repeatable {
            body["update_repeatable"] = json!(repeatable);
        }
        body
    }
}

/// Unknown ids are the client's mistake (400); a catalog the component cannot trust is the
/// broker's (500), named so the operator knows to rebuild.
impl From<crate::catalog::LookupError> for OsbError {
    fn from(error: crate::catalog::LookupError) -> Self {
        match error {
            crate::catalog::LookupError::Untrusted(untrusted) => untrusted.into(),
            unknown => OsbError::bad_request(unknown.to_string()),
        }
    }
}

impl From<crate::env::RandomnessUnavailable> for OsbError {
    fn from(error: crate::env::RandomnessUnavailable) -> Self {
        OsbError::internal(error.to_string())
    }
}

impl From<crate::catalog::Untrusted> for OsbError {
    fn from(error: crate::catalog::Untrusted) -> Self {
        OsbError::internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_error_code_only_when_the_spec_defines_one() {
        assert_eq!(
            OsbError::bad_request("x").body(),
            json!({"description": "x"})
        );
        let body = OsbError::async_required().body();
        assert_eq!(body["error"], "AsyncRequired");
        assert!(body["description"]
            .as_str()
            .unwrap()
            .contains("asynchronous"));
    }

    #[test]
    fn descriptions_are_never_empty() {
        assert_eq!(OsbError::conflict("").description, "request failed");
    }
}
