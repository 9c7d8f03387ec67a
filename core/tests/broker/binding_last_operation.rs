//! Binding last_operation.

use super::*;

#[test]
fn binding_last_operation_of_an_unknown_binding_is_404_and_of_an_unknown_operation_400() {
    let w = world();
    w.ready_instance("i1", ASYNC);
    expect(w.binding_last_op("i1", "nope", None), 404);
    expect(
        w.binding_last_op("i1", "nope", Some("bind-0000000000000001")),
        404,
    );
    // The binding record is gone altogether but the platform polls its unbind: 410.
    expect(
        w.binding_last_op("i1", "nope", Some("unbind-0000000000000001")),
        410,
    );
    expect(w.bind("i1", "b1", ASYNC), 202);
    expect(
        w.binding_last_op("i1", "b1", Some("bind-ffffffffffffffff")),
        400,
    );
}

#[test]
fn exceeding_maximum_polling_duration_fails_the_bind() {
    let w = world();
    w.ready_instance("i1", SHORT);
    let op = operation_of(&expect(w.bind("i1", "b1", SHORT), 202));
    w.env.advance(SHORT_LIMIT);
    let r = expect(w.binding_last_op("i1", "b1", Some(&op)), 200);
    assert_eq!(state_of(&r), "failed");
    assert!(description_of(&r).contains("maximum polling duration"));
    assert!(body(&r).get("instance_usable").is_none());
    expect(w.fetch_binding("i1", "b1"), 404);
    // Unbinding the failed binding cleans it up.
    let op = operation_of(&expect(w.unbind("i1", "b1", SHORT), 202));
    w.env.advance(SHORT_DELAY);
    let _ = w.binding_last_op("i1", "b1", Some(&op));
    expect(w.binding_last_op("i1", "b1", Some(&op)), 410);
}
