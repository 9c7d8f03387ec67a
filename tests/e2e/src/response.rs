//! A response, fully read, and the assertions the suites make on it.

use serde_json::Value;
use spin_osb_test_support::http::{dechunk, find};

#[derive(Debug, Clone)]
pub struct Resp {
    /// `METHOD path` of the request, for messages.
    pub what: String,
    /// HTTP status.
    pub status: u16,
    /// Headers (names in lowercase).
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
}

impl Resp {
    pub(crate) fn new(
        what: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    ) -> Resp {
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        let headers = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        Resp {
            what,
            status,
            headers,
            body,
            json,
        }
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and returns the response.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.what, self.status, self.body
        );
        self
    }

    /// Asserts one of `statuses`.
    #[track_caller]
    pub fn expect_one_of(self, statuses: &[u16]) -> Resp {
        assert!(
            statuses.contains(&self.status),
            "{}: expected one of {statuses:?}, got {}: {}",
            self.what,
            self.status,
            self.body
        );
        self
    }

    /// Asserts an OSB error: this status, a JSON object body with a non-empty
    /// `description`, and a non-empty `error` when present.
    #[track_caller]
    pub fn expect_error(self, status: u16) -> Resp {
        let resp = self.expect(status);
        resp.assert_osb_error_body();
        resp
    }

    /// Asserts an OSB error with this status and `error` code.
    #[track_caller]
    pub fn expect_error_code(self, status: u16, code: &str) -> Resp {
        let resp = self.expect_error(status);
        assert_eq!(
            resp.json["error"], code,
            "{}: expected error code {code:?}: {}",
            resp.what, resp.body
        );
        resp
    }

    /// Asserts the body is an OSB error object (`description` non-empty).
    #[track_caller]
    pub fn assert_osb_error_body(&self) {
        assert!(
            self.json.is_object(),
            "{}: the {} error body is not a JSON object: {:?}",
            self.what,
            self.status,
            self.body
        );
        let description = self.json["description"].as_str().unwrap_or_default();
        assert!(
            !description.trim().is_empty(),
            "{}: the {} error has no non-empty description: {}",
            self.what,
            self.status,
            self.body
        );
        if let Some(error) = self.json.get("error") {
            assert!(
                error.as_str().is_some_and(|e| !e.is_empty()),
                "{}: `error` must be a non-empty string: {}",
                self.what,
                self.body
            );
        }
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{}: the {} error has Content-Type {content_type:?}, not application/json",
            self.what,
            self.status
        );
    }

    /// The `description` of an error body ("" when absent).
    pub fn description(&self) -> &str {
        self.json["description"].as_str().unwrap_or_default()
    }

    /// The `operation` of a 202 body.
    #[track_caller]
    pub fn operation(&self) -> String {
        self.json["operation"]
            .as_str()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "{}: expected an `operation` string in {}",
                    self.what, self.body
                )
            })
            .to_string()
    }

    /// `state` of a last_operation answer.
    pub fn state(&self) -> &str {
        self.json["state"].as_str().unwrap_or_default()
    }
}

/// Counts of each status in `responses`, for messages (`{201: 1, 200: 49}`).
pub fn status_histogram(responses: &[Resp]) -> std::collections::BTreeMap<u16, usize> {
    let mut map = std::collections::BTreeMap::new();
    for r in responses {
        *map.entry(r.status).or_insert(0) += 1;
    }
    map
}

pub(crate) fn parse_raw_response(what: String, raw: &[u8]) -> Resp {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        panic!(
            "{what}: no HTTP response head in {:?}",
            String::from_utf8_lossy(raw)
        );
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Resp::new(
        what,
        status,
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6; ext=1\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        let resp = parse_raw_response(
            "GET /".into(),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\ncontent-length: 17\r\n\r\n{\"description\":1}extra",
        );
        assert_eq!(resp.status, 404);
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert_eq!(resp.json["description"], 1);
    }
}
