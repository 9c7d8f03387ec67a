//! `/operator/...` and `/metrics`: the operator API (instances, their history and
//! bindings, the fleet's metrics), with its own credentials; never the platform's OSB API.
//! See `spin_osb_core::operator`.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> Response {
    spin_osb_adapter::serve_operator(request).await
}
