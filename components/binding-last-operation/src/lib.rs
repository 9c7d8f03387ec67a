//! `GET /v2/service_instances/:instance_id/service_bindings/:binding_id/last_operation`: routed here by spin.toml.

use spin_osb_adapter::Endpoint;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> Response {
    spin_osb_adapter::serve(Endpoint::BindingLastOperation, request, async |b, r| {
        b.serve_binding_last_operation(r).await
    })
    .await
}
