//! A component that misbehaves on purpose, for the host's hostile-load tests:
//! * `/ok`: answers 200 `ok` (what a well-behaved component does);
//! * `/loop-after-head`: sends its response head and one chunk, then spins forever;
//! * `/loop`: spins forever before answering;
//! * `/alloc`: allocates (and touches) memory without bound.

use futures::SinkExt;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let path = request.path_with_query().unwrap_or_default();
    match path.as_str() {
        "/loop-after-head" => {
            let response = OutgoingResponse::new(Fields::new());
            let _ = response.set_status_code(200);
            let mut body = response.take_body();
            out.set(response);
            let _ = body.send(b"started\n".to_vec()).await;
            spin();
        }
        "/loop" => spin(),
        "/alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => {
            let response = OutgoingResponse::new(Fields::new());
            let _ = response.set_status_code(200);
            let _ = out.set_with_body(response, b"ok\n".to_vec()).await;
        }
    }
}

/// Burns CPU without ever yielding to the host.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
