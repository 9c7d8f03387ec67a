//! The broker's only public component: authenticates every `/v2/...` request, checks the
//! OSB headers once, and forwards it to the private endpoint component that serves it.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request) -> Response {
    osb_spin::gateway(request).await
}
