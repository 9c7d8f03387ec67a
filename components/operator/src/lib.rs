//! `/operator/...`: the operator API (instances, their history and bindings), with its own
//! credentials; never the platform's OSB API. See `spin_osb_core::operator`.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    spin_osb_adapter::serve_operator(request)
}
