//! The gateway's checks, done once per request before any endpoint component runs:
//! basic auth (401), `X-Broker-API-Version` (412), the originating identity (400 when
//! malformed), the body size, and which endpoint component serves the path (404/405).

use crate::error::OsbError;
use crate::http::{resolve, Endpoint, OsbRequest};
use crate::protocol::{check_api_version, check_basic_auth, ApiVersion, OriginatingIdentity};

/// OSB bodies are small JSON documents; anything larger is refused with an OSB 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A request the gateway lets through.
#[derive(Debug)]
pub struct Admitted {
    /// The endpoint (and so the component) that serves it.
    pub endpoint: Endpoint,
    /// The platform's API version.
    pub version: ApiVersion,
    /// Who asked, when the platform said so.
    pub identity: Option<OriginatingIdentity>,
}

impl Admitted {
    /// One audit line: endpoint, version, platform user and request id (never secrets).
    pub fn audit_line(&self, request: &OsbRequest) -> String {
        let who = match &self.identity {
            Some(identity) => format!(
                "{} user {}",
                log_safe(&identity.platform),
                log_safe(&identity.user())
            ),
            None => "no originating identity".to_string(),
        };
        let request_id = log_safe(
            request
                .header("x-broker-api-request-identity")
                .unwrap_or("-"),
        );
        format!(
            "{} {} -> {} (api {}, {who}, request {request_id})",
            request.method,
            request.path,
            self.endpoint.component_id(),
            self.version
        )
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`...): what a client sends can
/// never start a new log line or drive a terminal.
pub fn log_safe(text: &str) -> String {
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            safe.extend(c.escape_default());
        } else {
            safe.push(c);
        }
    }
    safe
}

/// Runs every gateway check in the order that leaks least to unauthenticated callers.
pub fn admit(request: &OsbRequest, username: &str, password: &str) -> Result<Admitted, OsbError> {
    check_basic_auth(request.header("authorization"), username, password)?;
    let version = check_api_version(request.header("x-broker-api-version"))?;
    let identity = request
        .header("x-broker-api-originating-identity")
        .map(OriginatingIdentity::parse)
        .transpose()?;
    if request.body.len() > MAX_BODY_BYTES {
        return Err(OsbError::payload_too_large(format!(
            "the request body has {} bytes; at most {MAX_BODY_BYTES} are accepted",
            request.body.len()
        )));
    }
    let path = resolve(&request.method, &request.path)?;
    if matches!(
        path.endpoint,
        Endpoint::Provision | Endpoint::Update | Endpoint::Bind
    ) {
        let content_type = request.header("content-type").unwrap_or("application/json");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/json")
            && !request.body.is_empty()
        {
            return Err(OsbError::unsupported_media_type(format!(
                "Content-Type {content_type:?} is not supported; send application/json"
            )));
        }
    }
    Ok(Admitted {
        endpoint: path.endpoint,
        version,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn request(auth: Option<&str>, version: Option<&str>) -> OsbRequest {
        let mut headers = Vec::new();
        if let Some(a) = auth {
            headers.push((
                "authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(a)
                ),
            ));
        }
        if let Some(v) = version {
            headers.push(("x-broker-api-version".into(), v.into()));
        }
        OsbRequest {
            method: "GET".into(),
            path: "/v2/catalog".into(),
            headers,
            ..Default::default()
        }
    }

    #[test]
    fn auth_is_checked_before_the_version() {
        assert_eq!(
            admit(&request(None, None), "u", "password")
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            admit(&request(Some("u:password"), None), "u", "password")
                .unwrap_err()
                .status,
            412
        );
        assert_eq!(
            admit(&request(Some("u:password"), Some("2.15")), "u", "password")
                .unwrap()
                .endpoint,
            Endpoint::Catalog
        );
    }

    #[test]
    fn audit_lines_cannot_be_forged_by_the_client() {
        let identity = base64::engine::general_purpose::STANDARD
            .encode(r#"{"user_id":"eve\nGET /v2/catalog -> osb-catalog (api 2.17, cloudfoundry user admin"}"#);
        let mut r = request(Some("u:password"), Some("2.17"));
        r.headers.push((
            "x-broker-api-originating-identity".into(),
            format!("cloudfoundry {identity}"),
        ));
        r.headers
            .push(("x-broker-api-request-identity".into(), "id\u{1b}[2J".into()));
        let line = admit(&r, "u", "password").unwrap().audit_line(&r);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains(r"eve\nGET"), "{line}");
        assert!(line.contains(r"id\u{1b}[2J"), "{line}");
    }

    #[test]
    fn oversized_bodies_are_413() {
        let mut r = request(Some("u:password"), Some("2.17"));
        r.body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(admit(&r, "u", "password").unwrap_err().status, 413);
    }
}
