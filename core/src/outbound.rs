//! What backends need to reach external systems: outbound HTTP and the deployment's
//! configuration (Spin variables). Both are traits so the core stays host-free: components
//! implement them over `spin-sdk`, native tests over whatever they like.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::env::Env;

/// The longest one outbound request may take, from sending it to its last response byte,
/// unless the step's budget has less left.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The whole exchange must be over within this; clients abandon the request after it
    /// (a transport error).
    pub timeout: Duration,
}

impl HttpRequest {
    /// A bodiless request.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: REQUEST_TIMEOUT,
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

/// Outbound HTTP for one backend step, which must end before its lease does (a step that
/// outlived its lease could be taken again by a concurrent poll: a second deploy for one
/// operation). Each request gets at most what is left of the step's budget, and none is
/// sent once the budget is spent: the step then fails transiently and the next poll goes on
/// from what is stored.
#[derive(Clone, Copy)]
pub struct Outbound<'a> {
    http: &'a dyn HttpClient,
    clock: &'a dyn Env,
    deadline_ms: u64,
}

impl<'a> Outbound<'a> {
    /// Requests through `http`, all over within `budget` from now.
    pub fn new(http: &'a dyn HttpClient, clock: &'a dyn Env, budget: Duration) -> Self {
        let budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        Self {
            http,
            clock,
            deadline_ms: clock.monotonic_ms().saturating_add(budget_ms),
        }
    }

    /// The clock and randomness of the request.
    pub fn env(&self) -> &'a dyn Env {
        self.clock
    }

    /// Writes a line to the operators' log: where the details of a backend call go that
    /// the short description shown to users leaves out.
    pub fn log(&self, line: &str) {
        self.clock.log(line);
    }

    /// Sends `request` with its timeout cut to what is left of the budget.
    pub async fn send(&self, mut request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let left =
            Duration::from_millis(self.deadline_ms.saturating_sub(self.clock.monotonic_ms()));
        if left < MIN_REQUEST_TIME {
            return Err(TransportError(format!(
                "the step's time for backend calls is used up; not sending {} {}",
                request.method,
                url_without_query(&request.url)
            )));
        }
        request.timeout = request.timeout.min(left);
        self.http.send(request).await
    }
}

/// Below this, a request is not worth starting.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(200);

/// `url` up to its query, for messages (queries may carry selectors, never needed there).
fn url_without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TestEnv;
    use std::cell::RefCell;

    /// Answers 200 and remembers the timeout of every request it was given.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<Duration>>);

    impl HttpClient for Recorder {
        fn send(
            &self,
            request: HttpRequest,
        ) -> LocalFuture<'_, Result<HttpResponse, TransportError>> {
            self.0.borrow_mut().push(request.timeout);
            Box::pin(async {
                Ok(HttpResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: Vec::new(),
                })
            })
        }
    }

    fn send(outbound: &Outbound<'_>) -> Result<HttpResponse, TransportError> {
        futures::executor::block_on(outbound.send(HttpRequest::new("GET", "http://api/x?s=1")))
    }

    #[test]
    fn requests_get_at_most_what_is_left_of_the_step_budget_and_none_once_it_is_spent() {
        let clock = TestEnv::at(1_000);
        let http = Recorder::default();
        let outbound = Outbound::new(&http, &clock, Duration::from_secs(20));
        send(&outbound).unwrap();
        clock.advance(15);
        send(&outbound).unwrap();
        assert_eq!(
            *http.0.borrow(),
            [REQUEST_TIMEOUT, Duration::from_secs(5)],
            "a full request timeout first, then only the 5 s left"
        );
        clock.advance(5);
        let refused = send(&outbound).unwrap_err();
        assert_eq!(
            http.0.borrow().len(),
            2,
            "nothing is sent once the budget is spent"
        );
        assert!(
            refused.0.contains("time for backend calls is used up"),
            "{refused}"
        );
        assert!(
            !refused.0.contains("s=1"),
            "no query in messages: {refused}"
        );
    }
}
