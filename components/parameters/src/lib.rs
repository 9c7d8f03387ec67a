//! Checks request parameters against a plan's JSON Schema for the provision, update and bind
//! components, which reach it through service chaining only when a request has parameters:
//! the JSON Schema validator lives here alone, so they stay small and fast to start.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    osb_spin::serve_parameter_check(request)
}
