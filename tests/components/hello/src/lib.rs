//! `test-hello`: the trivial component used by `spin-osb-bench`
//! (`tests/bench`). Every request answers 200 `text/plain` `hello, world\n`.
//! The native baseline in the bench serves exactly the same response.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello, world\n")
        .build())
}
