//! The core's outbound traits over Spin: HTTP through `spin_sdk::http::send` (subject to
//! the component's `allowed_outbound_hosts`; TLS roots and client certificates come from
//! the runtime config's `client_tls`), variables through `spin_sdk::variables`.

use spin_osb_core::outbound::{
    Config, HttpClient, HttpRequest, HttpResponse, LocalFuture, TransportError,
};
use std::task::Poll;
use std::time::Duration;

use futures::future::{self, Either};
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{Method, Request, Response};
use wasi::clocks::monotonic_clock;

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
            let timeout = request.timeout;
            let send = std::pin::pin!(spin_sdk::http::send::<_, Response>(builder.build()));
            let response = match future::select(send, std::pin::pin!(sleep(timeout))).await {
                Either::Left((sent, _)) => sent.map_err(|e| TransportError(describe(&e)))?,
                // Dropping the unfinished send drops its wasi:http future and body: the
                // runtime abandons the request.
                Either::Right(_) => {
                    return Err(TransportError(format!(
                        "no complete answer within {} s",
                        timeout.as_secs_f32()
                    )))
                }
            };
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

/// Resolves once `duration` has passed, on the WASI monotonic clock: spin-sdk's executor
/// wakes it like any other pollable, so it can race an outbound request.
async fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let deadline = monotonic_clock::now().saturating_add(nanos);
    // The registration of the latest poll; replacing (or dropping) it cancels the earlier.
    let mut registration: Option<CancelOnDropToken> = None;
    future::poll_fn(move |context| {
        if monotonic_clock::now() >= deadline {
            return Poll::Ready(());
        }
        let token = spin_executor::push_waker_and_get_token(
            monotonic_clock::subscribe_instant(deadline),
            context.waker().clone(),
        );
        registration.replace(token.into());
        Poll::Pending
    })
    .await
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
