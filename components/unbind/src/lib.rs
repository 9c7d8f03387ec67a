//! `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`: a private component reached from the gateway through service chaining.

use spin_osb_adapter::Endpoint;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> Response {
    spin_osb_adapter::serve(Endpoint::Unbind, request, async |b, r| {
        b.serve_unbind(r).await
    })
    .await
}
