//! A buffered request and response, independent of hyper, plus the response
//! shapes the director uses (contract A.3). Handlers are plain functions
//! from `Req` to `Resp`, which keeps routing testable and the server thin.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};
use serde_json::{json, Value};

/// Sinatra's default content type: the director sends JSON labelled like
/// this from every route that does not call `content_type(:json)` (all of
/// `/deployments`, and every error body).
pub(crate) const SINATRA_HTML: &str = "text/html;charset=utf-8";
pub(crate) const JSON: &str = "application/json";

pub(crate) struct Req {
    pub method: Method,
    pub version: Version,
    /// Raw path, without the query.
    pub path: String,
    /// Raw path and query as received.
    pub path_and_query: String,
    /// Percent-decoded path segments (a trailing `/` is ignored).
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `http` or `https`, for absolute `Location`s.
    pub scheme: &'static str,
    /// `127.0.0.1:<port>`, when the request has no `Host` header.
    pub local_authority: String,
}

impl Req {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of `Content-Type`, parameters after `;` stripped.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    pub fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

pub(crate) struct Resp {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Resp {
    pub fn new(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
        Resp {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.into(),
        }
    }

    pub fn empty(status: StatusCode) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn json(status: StatusCode, content_type: &str, value: &Value) -> Resp {
        Resp::new(status, content_type, value.to_string())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Resp {
        self.headers.push((name, value));
        self
    }

    /// A `DirectorError`: `{"code":N,"description":"..."}` with its status.
    pub fn director_error(status: StatusCode, code: u32, description: &str) -> Resp {
        Resp::json(
            status,
            SINATRA_HTML,
            &json!({"code": code, "description": description}),
        )
    }

    pub fn deployment_not_found(name: &str) -> Resp {
        Resp::director_error(
            StatusCode::NOT_FOUND,
            70000,
            &format!("Deployment '{name}' doesn't exist"),
        )
    }

    /// No route matched, or a route condition (e.g. `consumes`) failed.
    pub fn endpoint_not_found(path: &str) -> Resp {
        Resp::new(
            StatusCode::NOT_FOUND,
            SINATRA_HTML,
            format!("Endpoint '{path}' not found."),
        )
    }

    /// Missing or invalid credentials (`base_controller.rb` before filter).
    pub fn not_authorized(path: &str) -> Resp {
        Resp::new(
            StatusCode::UNAUTHORIZED,
            SINATRA_HTML,
            format!("Not authorized: '{path}'\n"),
        )
        .with_header(
            "www-authenticate",
            "Basic realm=\"BOSH Director\"".to_string(),
        )
    }
}

/// Decode `%XX` escapes (and `+` as space when `form` is set).
pub(crate) fn percent_decode(s: &str, form: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if form => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=x%20y` → pairs; keys without `=` get an empty value.
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

pub(crate) fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries_and_paths() {
        assert_eq!(
            parse_form("state=queued%2Cprocessing&x&y=a+b"),
            vec![
                ("state".to_string(), "queued,processing".to_string()),
                ("x".to_string(), String::new()),
                ("y".to_string(), "a b".to_string()),
            ]
        );
        assert_eq!(
            split_path("/deployments/a%20b/"),
            vec!["deployments", "a b"]
        );
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz", false), "%zz");
    }
}
