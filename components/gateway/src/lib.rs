//! The public entry point for the paths that several endpoints share by method
//! (`/v2/service_instances/:id` and its bindings): admits the request once and forwards it
//! to the private component of the endpoint that serves it.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> Response {
    spin_osb_adapter::gateway(request).await
}
