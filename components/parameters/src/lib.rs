//! Checks request parameters against a plan's JSON Schema for the provision, update and bind
//! components, which reach it through service chaining only when a request has parameters:
//! the JSON Schema validator lives here alone, so they stay small and fast to start.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    spin_osb_adapter::serve_parameter_check(request)
}
