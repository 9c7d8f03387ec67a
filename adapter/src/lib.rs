//! The glue between spin-osb-core and Spin, written once for every component.
//!
//! Endpoint components are one line each: `spin_osb_adapter::serve(Endpoint::X, request, ...)`. This
//! crate turns the Spin request into the core's host-free [`OsbRequest`], provides the
//! core's [`Kv`] over `wasi:keyvalue`, its [`Env`] over WASI clocks and randomness, its
//! outbound HTTP and variables over `spin-sdk`,
//! reads the compiled catalog from the component's files, and renders the [`OsbResponse`].

mod forward;
mod kv;
mod outbound;

pub use forward::gateway;
pub use kv::SpinKv;
pub use outbound::{SpinHttp, SpinVariables};
pub use spin_osb_core::http::Endpoint;

use spin_osb_core::broker::Broker;
use spin_osb_core::catalog::CompiledCatalog;
use spin_osb_core::env::{Env, RandomnessUnavailable};
use spin_osb_core::error::OsbError;
use spin_osb_core::http::{OsbRequest, OsbResponse};
use spin_osb_core::parameter_check::ChainedChecker;
use spin_sdk::http::{Request, Response};

/// Where `spin.toml` mounts the compiled catalog in every component.
pub const CATALOG_DIR: &str = "/catalog";
/// The key-value store label holding broker state.
pub const STATE_STORE: &str = "default";

/// Serves `GET /v2/catalog` from the compiled catalog: two file reads, no state.
pub fn serve_catalog(request: Request) -> Response {
    let osb_request = to_osb_request(&request);
    let response = match forward::admit_for(Endpoint::Catalog, &osb_request) {
        Ok(_) => {
            let catalog = CompiledCatalog::open(CATALOG_DIR);
            spin_osb_core::broker::serve_catalog(&catalog, &osb_request)
        }
        Err(response) => response,
    };
    to_spin_response(response, &osb_request)
}

/// Serves the private `osb-parameters` component: checks parameters against a schema for
/// the endpoint components, which do not carry a JSON Schema validator themselves.
pub fn serve_parameter_check(request: Request) -> Response {
    let osb_request = to_osb_request(&request);
    let response = spin_osb_core::parameter_check::serve_parameter_check(&osb_request);
    to_spin_response(response, &osb_request)
}

/// Serves the operator API (`/operator/...` and `/metrics`, its own credentials; see
/// `spin_osb_core::operator`).
pub async fn serve_operator(request: Request) -> Response {
    let osb_request = to_osb_request(&request);
    let response =
        with_broker(async |broker| spin_osb_core::operator::serve(broker, &osb_request).await)
            .await;
    to_spin_response(response, &osb_request)
}

/// Runs `serve` with a [`Broker`] over this component's catalog, state store, clock,
/// outbound HTTP and variables.
async fn with_broker(serve: impl AsyncFnOnce(&Broker<'_>) -> OsbResponse) -> OsbResponse {
    let catalog = CompiledCatalog::open(CATALOG_DIR);
    match SpinKv::open(STATE_STORE) {
        Ok(kv) => {
            let broker = Broker {
                catalog: &catalog,
                kv: &kv,
                env: &WasiEnv,
                http: &SpinHttp,
                config: &SpinVariables,
                parameters: &ChainedChecker::new(&SpinHttp),
            };
            serve(&broker).await
        }
        Err(error) => OsbError::from(error).into(),
    }
}

/// Serves one OSB endpoint that uses state, after admitting the request (whether it came
/// straight from the platform or through the gateway): `serve` is the [`Broker`]'s
/// `serve_*` method of `endpoint`, e.g.
/// `spin_osb_adapter::serve(Endpoint::Provision, request, async |b, r| b.serve_provision(r).await)`.
/// Generic rather than a switch on the endpoint so each component links only its own
/// endpoint's code.
pub async fn serve(
    endpoint: Endpoint,
    request: Request,
    serve: impl AsyncFnOnce(&Broker<'_>, &OsbRequest) -> OsbResponse,
) -> Response {
    let osb_request = to_osb_request(&request);
    if let Err(response) = forward::admit_for(endpoint, &osb_request) {
        return to_spin_response(response, &osb_request);
    }
    let response = with_broker(async |broker| serve(broker, &osb_request).await).await;
    to_spin_response(response, &osb_request)
}

/// The core's view of a Spin request.
pub fn to_osb_request(request: &Request) -> OsbRequest {
    let uri = request.uri();
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, q),
        None => (uri, ""),
    };
    // Spin gives the full URL; keep only the path.
    let path = match path.find("://") {
        Some(scheme_end) => path[scheme_end + 3..]
            .find('/')
            .map(|i| &path[scheme_end + 3 + i..])
            .unwrap_or("/"),
        None => path,
    };
    OsbRequest {
        method: request.method().to_string(),
        path: path.to_string(),
        query: OsbRequest::parse_query(query),
        headers: request
            .headers()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    value.as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: request.body().to_vec(),
    }
}

/// Renders a core response; `X-Broker-API-Request-Identity` is echoed as the spec asks.
pub fn to_spin_response(response: OsbResponse, request: &OsbRequest) -> Response {
    let mut builder = Response::builder();
    builder.status(response.status);
    for (name, value) in &response.headers {
        builder.header(name.as_str(), value.as_str());
    }
    if let Some(identity) = request.header("x-broker-api-request-identity") {
        builder.header("X-Broker-API-Request-Identity", identity);
    }
    match response.body_bytes() {
        Some(body) => {
            let typed = response
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            if !typed {
                builder.header("Content-Type", "application/json");
            }
            builder.body(body);
        }
        None => {
            builder.body(Vec::new());
        }
    }
    builder.build()
}

/// WASI clock and randomness.
pub struct WasiEnv;

impl Env for WasiEnv {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn monotonic_ms(&self) -> u64 {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let elapsed = ORIGIN.get_or_init(std::time::Instant::now).elapsed();
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    fn random_hex(&self, bytes: usize) -> Result<String, RandomnessUnavailable> {
        let mut buffer = vec![0u8; bytes];
        getrandom::fill(&mut buffer).map_err(|e| RandomnessUnavailable(e.to_string()))?;
        Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn sleep_ms(&self, millis: u64) {
        std::thread::sleep(std::time::Duration::from_millis(millis));
    }

    fn log(&self, line: &str) {
        eprintln!("{line}");
    }
}
