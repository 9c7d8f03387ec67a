//! What backends need to reach external systems: outbound HTTP and the deployment's
//! configuration (Spin variables). Both are traits so the core stays host-free: components
//! implement them over `spin-sdk`, native tests over whatever they like.

use std::future::Future;
use std::pin::Pin;

/// An outbound HTTP request. Redirects are never followed by the client: backends read
/// `Location` themselves (the BOSH director answers task creation with one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PATCH`, …
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header names in any case.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for none).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A bodiless request.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body and its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("content-type".to_string(), content_type.to_string()));
        self.body = body.into();
        self
    }
}

/// An outbound HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Whole body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, lossily, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The request never got a response: refused, reset, timed out, TLS failure, or not allowed
/// by the component's `allowed_outbound_hosts`. Always worth retrying later, except the
/// last, which the message makes clear to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// A boxed future, as trait objects need (components are single-threaded: no `Send`).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Sends outbound HTTP requests.
pub trait HttpClient {
    /// Sends `request` and reads the whole response.
    fn send(&self, request: HttpRequest) -> LocalFuture<'_, Result<HttpResponse, TransportError>>;
}

/// The deployment's settings (Spin variables): API endpoints and their credentials.
pub trait Config {
    /// The value of variable `name`, `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// An [`HttpClient`] for brokers without outbound access (unit tests, the catalog
/// endpoint): every request fails as unreachable.
pub struct NoHttp;

impl HttpClient for NoHttp {
    fn send(&self, request: HttpRequest) -> LocalFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            Err(TransportError(format!(
                "outbound HTTP is not available here ({} {})",
                request.method, request.url
            )))
        })
    }
}

/// A [`Config`] from a fixed list, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapConfig(pub std::collections::BTreeMap<String, String>);

impl MapConfig {
    /// Sets a variable.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_string(), value.into());
        self
    }
}

impl Config for MapConfig {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }
}
