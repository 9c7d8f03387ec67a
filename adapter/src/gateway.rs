//! The public entry point: checks a request once and forwards it to the private endpoint
//! component over Spin's local service chaining (`http://<id>.spin.internal`).

use spin_osb_core::error::OsbError;
use spin_osb_core::gateway::admit;
use spin_osb_core::http::OsbResponse;
use spin_sdk::http::{Method, Request, Response};

use crate::{to_osb_request, to_spin_response};

/// Headers passed on to endpoint components (everything they may need, nothing else).
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "if-none-match",
    "x-broker-api-version",
    "x-broker-api-originating-identity",
    "x-broker-api-request-identity",
];

/// Serves every public `/v2/...` request.
pub async fn gateway(request: Request) -> Response {
    let osb_request = to_osb_request(&request);
    let credentials = spin_sdk::variables::get("broker_username")
        .and_then(|u| Ok((u, spin_sdk::variables::get("broker_password")?)));
    let (username, password) = match credentials {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("broker credentials are not configured: {e}");
            return to_spin_response(
                OsbError::internal("the broker's credentials are not configured").into(),
                &osb_request,
            );
        }
    };
    let admitted = match admit(&osb_request, &username, &password) {
        Ok(admitted) => admitted,
        Err(error) => {
            println!(
                "{} {} rejected: {} {}",
                osb_request.method, osb_request.path, error.status, error.description
            );
            return to_spin_response(error.into(), &osb_request);
        }
    };
    println!("{}", admitted.audit_line(&osb_request));

    let uri = format!(
        "http://{}.spin.internal{}",
        admitted.endpoint.component_id(),
        request.path_and_query().unwrap_or("/")
    );
    let mut forward = Request::builder();
    forward.method(request.method().clone()).uri(uri);
    for (name, value) in request.headers() {
        if FORWARDED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            forward.header(name, value.as_str().unwrap_or_default());
        }
    }
    if *request.method() != Method::Get && *request.method() != Method::Delete {
        forward.body(request.body().to_vec());
    }
    match spin_sdk::http::send::<_, Response>(forward.build()).await {
        Ok(response) => response,
        Err(e) => {
            eprintln!(
                "forwarding to {} failed: {e:?}",
                admitted.endpoint.component_id()
            );
            to_spin_response(
                OsbResponse::from(OsbError::internal(
                    "the broker could not reach its endpoint component",
                )),
                &osb_request,
            )
        }
    }
}
