//! Routing.

use super::*;

#[test]
fn a_request_sent_to_the_wrong_endpoint_component_is_404() {
    let w = world();
    let r = request(
        Endpoint::Provision,
        "i1",
        "",
        &[],
        Some(&provision_body(SYNC)),
    );
    expect(w.send(&r, Endpoint::Bind), 404);
    assert!(w.kv.keys().is_empty());
}

#[test]
fn the_catalog_endpoint_serves_the_catalog_without_backends() {
    let w = world();
    let r = expect(w.call(Endpoint::Catalog, "", "", &[], None), 200);
    let text = body_text(&r);
    assert!(text.contains("plan-async"));
    assert!(!text.contains("backend"), "{text}");
    assert!(!text.contains("binding_lifetime"), "{text}");
}
