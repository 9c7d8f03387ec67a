//! Admission and forwarding. Every request is admitted (basic auth, OSB headers, body
//! size, endpoint) by the component it reaches first: the public gateway for the routes
//! that several endpoints share (`/v2/service_instances/:id` is provision, update,
//! deprovision or fetch depending on the method), or the endpoint component itself where
//! `spin.toml` routes a path straight to it (catalog and both `last_operation`s, the
//! requests platforms send most). The gateway forwards over Spin's local service chaining
//! (`http://<id>.spin.internal`), and the endpoint component admits the forwarded request
//! again: a private component never trusts that its caller checked.

use spin_osb_core::admission::{admit, Admitted};
use spin_osb_core::error::OsbError;
use spin_osb_core::http::{Endpoint, OsbRequest, OsbResponse};
use spin_sdk::http::{Method, Request, Response};

use crate::{to_osb_request, to_spin_response};

/// Headers passed on to endpoint components (everything they may need, nothing else).
const FORWARDED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "if-none-match",
    "x-broker-api-version",
    "x-broker-api-originating-identity",
    "x-broker-api-request-identity",
];

/// Admits `request` with the broker's credentials (Spin variables). `Err` is the OSB
/// response to send instead: 401, 404, 405, 412, 413, 415 or 400, or a 500 when the
/// credentials are not configured.
pub(crate) fn admit_request(request: &OsbRequest) -> Result<Admitted, OsbResponse> {
    let credentials = spin_sdk::variables::get("broker_username")
        .and_then(|u| Ok((u, spin_sdk::variables::get("broker_password")?)));
    let (username, password) = credentials.map_err(|e| {
        eprintln!("broker credentials are not configured: {e}");
        OsbResponse::from(OsbError::internal(
            "the broker's credentials are not configured",
        ))
    })?;
    admit(request, &username, &password).map_err(|error| {
        println!(
            "{} {} rejected: {} {}",
            request.method, request.path, error.status, error.description
        );
        error.into()
    })
}

/// Admits a request that `spin.toml` routes to the component serving `endpoint` and logs
/// its audit line. A path the router sent here that resolves to another endpoint is a
/// manifest mistake; it answers 404 rather than serving the wrong endpoint.
pub(crate) fn admit_for(endpoint: Endpoint, request: &OsbRequest) -> Result<Admitted, OsbResponse> {
    let admitted = admit_request(request)?;
    if admitted.endpoint != endpoint {
        eprintln!(
            "{} {} reached {} but is served by {}: check the routes in spin.toml",
            request.method,
            request.path,
            endpoint.component_id(),
            admitted.endpoint.component_id()
        );
        return Err(OsbError::not_found(format!("no OSB endpoint at {}", request.path)).into());
    }
    println!("{}", admitted.audit_line(request));
    Ok(admitted)
}

/// Serves the public `/v2/...` requests that no endpoint component is routed to directly.
pub async fn gateway(request: Request) -> Response {
    let osb_request = to_osb_request(&request);
    let admitted = match admit_request(&osb_request) {
        Ok(admitted) => admitted,
        Err(response) => return to_spin_response(response, &osb_request),
    };
    let target = admitted.endpoint.component_id();
    let uri = format!(
        "http://{target}.spin.internal{}",
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
            eprintln!("forwarding to {target} failed: {e:?}");
            to_spin_response(
                OsbResponse::from(OsbError::internal(
                    "the broker could not reach its endpoint component",
                )),
                &osb_request,
            )
        }
    }
}
