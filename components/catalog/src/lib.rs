//! `GET /v2/catalog`: routed here by spin.toml (the gateway forwards only odd spellings such as a trailing slash).
//! It serves the compiled catalog's bytes and links nothing else: no state, no schemas, no
//! backends.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    spin_osb_adapter::serve_catalog(request)
}
