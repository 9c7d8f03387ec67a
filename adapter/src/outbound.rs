//! The core's outbound traits over Spin: HTTP through `spin_sdk::http::send` (subject to
//! the component's `allowed_outbound_hosts`; TLS roots and client certificates come from
//! the runtime config's `client_tls`), variables through `spin_sdk::variables`.

use spin_osb_core::outbound::{
    Config, HttpClient, HttpRequest, HttpResponse, LocalFuture, TransportError,
};
use spin_sdk::http::{Method, Request, Response};

/// Outbound HTTP from a Spin component.
pub struct SpinHttp;

impl HttpClient for SpinHttp {
    fn send(&self, request: HttpRequest) -> LocalFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            let method = match request.method.as_str() {
                "GET" => Method::Get,
                "POST" => Method::Post,
                "PUT" => Method::Put,
                "PATCH" => Method::Patch,
                "DELETE" => Method::Delete,
                "HEAD" => Method::Head,
                other => Method::Other(other.to_string()),
            };
            let mut builder = Request::builder();
            builder.method(method).uri(request.url.as_str());
            for (name, value) in &request.headers {
                builder.header(name.as_str(), value.as_str());
            }
            if !request.body.is_empty() {
                builder.body(request.body);
            }
            let response: Response = spin_sdk::http::send(builder.build())
                .await
                .map_err(|e| TransportError(describe(&e)))?;
            Ok(HttpResponse {
                status: *response.status(),
                headers: response
                    .headers()
                    .map(|(name, value)| {
                        (
                            name.to_ascii_lowercase(),
                            value.as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                body: response.into_body(),
            })
        })
    }
}

/// A readable reason for a failed send; a host refusing a destination that
/// `allowed_outbound_hosts` does not list says so, so operators know what to change.
fn describe(error: &spin_sdk::http::SendError) -> String {
    let text = format!("{error:?}");
    if text.contains("HttpRequestDenied") || text.contains("destination not allowed") {
        format!("{text} (is the host in the component's allowed_outbound_hosts?)")
    } else {
        text
    }
}

/// Spin variables; a variable the component does not declare reads as unset.
pub struct SpinVariables;

impl Config for SpinVariables {
    fn get(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(name)
            .ok()
            .filter(|value| !value.is_empty())
    }
}
