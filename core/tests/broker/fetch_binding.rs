//! Fetch binding.

use super::*;

#[test]
fn fetching_a_binding_returns_credentials_and_parameters_or_404() {
    let w = world();
    w.ready_instance("i1", SYNC);
    expect(w.fetch_binding("i1", "b1"), 404);
    w.ready_binding("i1", "b1", SYNC, json!({"role": "read-only"}));
    let f = expect(w.fetch_binding("i1", "b1"), 200);
    assert_eq!(body(&f)["credentials"]["role"], "read-only");
    assert_eq!(body(&f)["parameters"], json!({"role": "read-only"}));
    // A binding id is scoped to its instance.
    w.ready_instance("i2", SYNC);
    expect(w.fetch_binding("i2", "b1"), 404);
    expect(w.unbind("i1", "b1", SYNC), 200);
    expect(w.fetch_binding("i1", "b1"), 404);
}

#[test]
fn fetching_a_binding_of_a_service_without_bindings_retrievable_is_404() {
    let w = world();
    w.ready_instance("i1", PLAIN);
    expect(w.bind("i1", "b1", PLAIN), 201);
    expect(w.fetch_binding("i1", "b1"), 404);
}
