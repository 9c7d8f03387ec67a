//! OSB requests as the suites send them: authenticated, with the API version header, sent
//! with reqwest or verbatim over TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::response::parse_raw_response;
use crate::{Broker, Resp, API_VERSION, USERNAME};

impl Broker {
    /// A request with basic auth and `X-Broker-API-Version: 2.17`.
    pub fn request(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            broker: self,
            method: method.to_string(),
            path: path.to_string(),
            auth: Some((USERNAME.to_string(), self.password.clone())),
            version: Some(API_VERSION.to_string()),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A request to the operator API (`/operator/...`, `/metrics`): the operator's basic
    /// auth with `password`, and no OSB version header (it is not an OSB endpoint).
    pub fn operator_request(&self, method: &str, path: &str, password: &str) -> Req<'_> {
        self.request(method, path)
            .auth("operator", password)
            .version(None)
    }
}

/// One request being built; [`Req::send`] or [`Req::send_raw`] sends it.
pub struct Req<'a> {
    broker: &'a Broker,
    method: String,
    path: String,
    auth: Option<(String, String)>,
    version: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    /// No `Authorization` header.
    pub fn no_auth(mut self) -> Self {
        self.auth = None;
        self
    }

    /// Basic auth with these credentials.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// `X-Broker-API-Version` (`None`: no header).
    pub fn version(mut self, version: Option<&str>) -> Self {
        self.version = version.map(str::to_string);
        self
    }

    /// An extra header (an `Authorization` here replaces the basic auth).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("authorization") {
            self.auth = None;
        }
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(self, body: &Value) -> Self {
        self.body(serde_json::to_vec(body).unwrap())
    }

    /// Raw body bytes, sent as `Content-Type: application/json` unless a content type was
    /// set with [`Req::header`].
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn all_headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some((user, password)) = &self.auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.push(("Authorization".to_string(), format!("Basic {token}")));
        }
        if let Some(version) = &self.version {
            headers.push(("X-Broker-API-Version".to_string(), version.clone()));
        }
        let has_content_type = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if self.body.is_some() && !has_content_type {
            headers.push(("Content-Type".to_string(), "application/json".to_string()));
        }
        headers.extend(self.headers.iter().cloned());
        headers
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Sends with reqwest (the path is parsed as a URL: `..` segments are normalised);
    /// panics if no response arrives.
    #[track_caller]
    pub fn send(self) -> Resp {
        let what = self.what();
        let broker = self.broker;
        self.try_send().unwrap_or_else(|e| {
            panic!(
                "{what} failed: {e}\n--- spin-osb output (last lines) ---\n{}",
                broker.output.since(0, 60)
            )
        })
    }

    /// Sends with reqwest; `Err` when no response arrives (connection reset, timeout).
    pub fn try_send(self) -> Result<Resp, String> {
        let url = format!("{}{}", self.broker.base(), self.path);
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("HTTP method");
        let mut request = self.broker.client.request(method, &url);
        for (name, value) in self.all_headers() {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let what = self.what();
        match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let body = response.text().unwrap_or_default();
                Ok(Resp::new(what, status, headers, body))
            }
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// Sends the request line exactly as given over a fresh TCP connection (for paths a
    /// URL parser would rewrite, such as `..`).
    #[track_caller]
    pub fn send_raw(self) -> Resp {
        let base = self.broker.base();
        let addr = base.trim_start_matches("http://").to_string();
        let what = self.what();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in self.all_headers() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.clone().unwrap_or_default();
        if self.body.is_some() || matches!(self.method.as_str(), "PUT" | "PATCH" | "POST") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let result = (|| -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect(&addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(120)))?;
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)?;
            stream.flush()?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw)?;
            Ok(raw)
        })();
        let raw = result.unwrap_or_else(|e| panic!("{what} (raw) failed: {e}"));
        parse_raw_response(what, &raw)
    }
}
