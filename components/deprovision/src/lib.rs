//! `DELETE /v2/service_instances/:instance_id`: a private component reached from the gateway through service chaining.

use osb_spin::Endpoint;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> Response {
    osb_spin::serve(Endpoint::Deprovision, request, async |b, r| {
        b.serve_deprovision(r).await
    })
    .await
}
