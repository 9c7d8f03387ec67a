//! Host-free request/response values and the OSB route table.
//!
//! The gateway resolves `(method, path)` to an [`Endpoint`] (and so to the component that
//! serves it); endpoint components parse ids from the same path. Ids are validated once,
//! here: they become parts of key-value keys and backend object names.

use serde_json::Value;

use crate::error::OsbError;

/// An HTTP request as the core sees it.
#[derive(Debug, Clone, Default)]
pub struct OsbRequest {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Headers with lowercase names.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl OsbRequest {
    /// The first value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `accepts_incomplete`: absent is false; anything but `true`/`false` is a 400.
    pub fn accepts_incomplete(&self) -> Result<bool, OsbError> {
        match self.query("accepts_incomplete") {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(OsbError::bad_request(format!(
                "accepts_incomplete must be true or false, got {v:?}"
            ))),
        }
    }

    /// Parses a query string (`a=1&b=x%20y`).
    pub fn parse_query(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// An HTTP response as the core produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct OsbResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Retry-After`, `ETag`, ...).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// A response body. Every body the broker sends is JSON; [`Body::Bytes`] is JSON already
/// serialised (the compiled catalog), sent as it is so its ETag stays true.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body (304).
    None,
    /// A JSON value, serialised when sent.
    Json(Value),
    /// Serialised JSON.
    Bytes(Vec<u8>),
}

impl OsbResponse {
    /// A JSON response.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Json(body),
        }
    }

    /// A response whose body is JSON serialised elsewhere (sent byte for byte).
    pub fn raw_json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Bytes(body),
        }
    }

    /// The body as JSON (`None` without a body or when the bytes are not JSON).
    pub fn json_body(&self) -> Option<Value> {
        match &self.body {
            Body::None => None,
            Body::Json(value) => Some(value.clone()),
            Body::Bytes(bytes) => serde_json::from_slice(bytes).ok(),
        }
    }

    /// The body as it goes on the wire (`None` without a body).
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match &self.body {
            Body::None => None,
            // Serialising a JSON value cannot fail.
            Body::Json(value) => Some(serde_json::to_vec(value).unwrap_or_default()),
            Body::Bytes(bytes) => Some(bytes.clone()),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

impl From<OsbError> for OsbResponse {
    fn from(e: OsbError) -> Self {
        OsbResponse {
            status: e.status,
            body: Body::Json(e.body()),
            headers: e.headers,
        }
    }
}

/// The OSB endpoints; each is served by its own component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/catalog`
    Catalog,
    /// `PUT /v2/service_instances/:instance_id`
    Provision,
    /// `PATCH /v2/service_instances/:instance_id`
    Update,
    /// `DELETE /v2/service_instances/:instance_id`
    Deprovision,
    /// `GET /v2/service_instances/:instance_id`
    FetchInstance,
    /// `GET /v2/service_instances/:instance_id/last_operation`
    InstanceLastOperation,
    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`
    Bind,
    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`
    Unbind,
    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id`
    FetchBinding,
    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id/last_operation`
    BindingLastOperation,
}

impl Endpoint {
    /// Every endpoint, in spec order.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Catalog,
        Endpoint::Provision,
        Endpoint::Update,
        Endpoint::Deprovision,
        Endpoint::FetchInstance,
        Endpoint::InstanceLastOperation,
        Endpoint::Bind,
        Endpoint::Unbind,
        Endpoint::FetchBinding,
        Endpoint::BindingLastOperation,
    ];

    /// The id of the Spin component that serves this endpoint (see `spin.toml`).
    pub fn component_id(self) -> &'static str {
        match self {
            Endpoint::Catalog => "osb-catalog",
            Endpoint::Provision => "osb-provision",
            Endpoint::Update => "osb-update",
            Endpoint::Deprovision => "osb-deprovision",
            Endpoint::FetchInstance => "osb-fetch-instance",
            Endpoint::InstanceLastOperation => "osb-instance-last-operation",
            Endpoint::Bind => "osb-bind",
            Endpoint::Unbind => "osb-unbind",
            Endpoint::FetchBinding => "osb-fetch-binding",
            Endpoint::BindingLastOperation => "osb-binding-last-operation",
        }
    }
}

/// A resolved OSB path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsbPath {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// `:instance_id`, decoded and validated.
    pub instance_id: Option<String>,
    /// `:binding_id`, decoded and validated.
    pub binding_id: Option<String>,
}

/// Longest id accepted; CF and Kubernetes use 36-character GUIDs.
pub const MAX_ID_LEN: usize = 200;

/// Maps `(method, path)` to an endpoint: 404 for unknown paths, 405 for a known path with
/// a method it does not have, 400 for an invalid id.
pub fn resolve(method: &str, path: &str) -> Result<OsbPath, OsbError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let not_found = || OsbError::not_found(format!("no OSB endpoint at {path}"));
    let (endpoint_by_method, instance, binding): (&[(&str, Endpoint)], Option<&str>, Option<&str>) =
        match segments.as_slice() {
            ["", "v2", "catalog"] => (&[("GET", Endpoint::Catalog)], None, None),
            ["", "v2", "service_instances", iid] => (
                &[
                    ("PUT", Endpoint::Provision),
                    ("PATCH", Endpoint::Update),
                    ("DELETE", Endpoint::Deprovision),
                    ("GET", Endpoint::FetchInstance),
                ],
                Some(*iid),
                None,
            ),
            ["", "v2", "service_instances", iid, "last_operation"] => (
                &[("GET", Endpoint::InstanceLastOperation)],
                Some(*iid),
                None,
            ),
            ["", "v2", "service_instances", iid, "service_bindings", bid] => (
                &[
                    ("PUT", Endpoint::Bind),
                    ("DELETE", Endpoint::Unbind),
                    ("GET", Endpoint::FetchBinding),
                ],
                Some(*iid),
                Some(*bid),
            ),
            ["", "v2", "service_instances", iid, "service_bindings", bid, "last_operation"] => (
                &[("GET", Endpoint::BindingLastOperation)],
                Some(*iid),
                Some(*bid),
            ),
            _ => return Err(not_found()),
        };
    let Some((_, endpoint)) = endpoint_by_method.iter().find(|(m, _)| *m == method) else {
        let allowed: Vec<&str> = endpoint_by_method.iter().map(|(m, _)| *m).collect();
        return Err(OsbError::method_not_allowed(
            format!(
                "{method} is not allowed on {path}; allowed: {}",
                allowed.join(", ")
            ),
            &allowed,
        ));
    };
    Ok(OsbPath {
        endpoint: *endpoint,
        instance_id: instance
            .map(|id| decode_id("instance_id", id))
            .transpose()?,
        binding_id: binding.map(|id| decode_id("binding_id", id)).transpose()?,
    })
}

/// Percent-decodes and validates an id: 1–200 of RFC 3986's unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`), and not `.` or `..`.
pub fn decode_id(name: &str, raw: &str) -> Result<String, OsbError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| OsbError::bad_request(format!("{name} is not valid UTF-8")))?;
    validate_id(name, &decoded)?;
    Ok(decoded.into_owned())
}

/// Validates an id from a body or query (see [`decode_id`]).
pub fn validate_id(name: &str, id: &str) -> Result<(), OsbError> {
    let bad = |why: &str| OsbError::bad_request(format!("{name} {}: {why}", shorten(id)));
    if id.is_empty() {
        return Err(OsbError::bad_request(format!("{name} must not be empty")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad(&format!("longer than {MAX_ID_LEN} characters")));
    }
    if id == "." || id == ".." {
        return Err(bad("not a valid id"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err(bad(
            "only letters, digits, '-', '.', '_' and '~' are allowed",
        ));
    }
    Ok(())
}

fn shorten(id: &str) -> String {
    let printable: String = id
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(40)
        .collect();
    if id.chars().count() > 40 {
        format!("{printable:?}…")
    } else {
        format!("{printable:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_resolves_from_its_method_and_path() {
        let cases = [
            ("GET", "/v2/catalog", Endpoint::Catalog),
            ("PUT", "/v2/service_instances/i1", Endpoint::Provision),
            ("PATCH", "/v2/service_instances/i1", Endpoint::Update),
            ("DELETE", "/v2/service_instances/i1", Endpoint::Deprovision),
            ("GET", "/v2/service_instances/i1", Endpoint::FetchInstance),
            (
                "GET",
                "/v2/service_instances/i1/last_operation",
                Endpoint::InstanceLastOperation,
            ),
            (
                "PUT",
                "/v2/service_instances/i1/service_bindings/b1",
                Endpoint::Bind,
            ),
            (
                "DELETE",
                "/v2/service_instances/i1/service_bindings/b1",
                Endpoint::Unbind,
            ),
            (
                "GET",
                "/v2/service_instances/i1/service_bindings/b1",
                Endpoint::FetchBinding,
            ),
            (
                "GET",
                "/v2/service_instances/i1/service_bindings/b1/last_operation",
                Endpoint::BindingLastOperation,
            ),
        ];
        for (method, path, endpoint) in cases {
            assert_eq!(
                resolve(method, path).unwrap().endpoint,
                endpoint,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(resolve("GET", "/v2/nope").unwrap_err().status, 404);
        assert_eq!(
            resolve("POST", "/v2/service_instances/x")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(resolve("DELETE", "/v2/catalog").unwrap_err().status, 405);
    }

    #[test]
    fn hostile_ids_are_400() {
        for id in [
            "%2F", "..", "%2E%2E", "a%00b", "a%2Fb", "%FF", "a b", "a%20b",
        ] {
            let err = resolve("PUT", &format!("/v2/service_instances/{id}")).unwrap_err();
            assert_eq!(err.status, 400, "{id}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            resolve("PUT", &format!("/v2/service_instances/{long}"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            resolve("PUT", "/v2/service_instances/a.b_c~d-1")
                .unwrap()
                .instance_id
                .unwrap(),
            "a.b_c~d-1"
        );
    }
}
