//! Concurrency.

use super::*;

#[test]
fn fifty_concurrent_identical_async_provisions_share_one_record_and_one_operation() {
    let (w, responses) = concurrent_provisions(ASYNC, 50);
    let mut ops: Vec<String> = responses
        .iter()
        .map(|r| operation_of(&expect(r.clone(), 202)))
        .collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    assert_eq!(w.instance("i1")["operation"]["id"], ops[0].as_str());
    assert!(w.instance("i1")["history"]
        .as_array()
        .is_none_or(|h| h.is_empty()));
    w.env.advance(DELAY);
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&ops[0])), 200)),
        "succeeded"
    );
}

#[test]
fn fifty_concurrent_identical_sync_provisions_create_one_instance() {
    let (w, responses) = concurrent_provisions(SYNC, 50);
    let created = responses.iter().filter(|r| r.status == 201).count();
    assert!(created >= 1, "someone provisioned it");
    for r in &responses {
        let ok = r.status == 201
            || r.status == 200
            || (r.status == 422 && error_of(r) == Some("ConcurrencyError"));
        assert!(ok, "{} {}", r.status, body_text(r));
    }
    assert_eq!(w.record_keys(), vec![instance_key("i1")]);
    let record = w.instance("i1");
    assert_eq!(record["status"], "ready");
    assert!(
        record["history"].as_array().is_none_or(|h| h.is_empty()),
        "{record}"
    );
    expect(w.provision("i1", SYNC), 200);
}

/// Exactly one of N identical deletions deleted the resource (200); the others find it
/// gone (410): "200 … MUST be returned if the Service Instance was deleted as a result of
/// this request".
#[test]
fn twenty_concurrent_identical_sync_deletions_answer_one_200_and_410s() {
    for _ in 0..10 {
        let w = world();
        expect(w.provision("i1", SYNC), 201);
        expect(w.bind("i1", "b1", SYNC), 201);
        let unbinds = at_once(20, || w.unbind("i1", "b1", SYNC));
        assert_eq!(statuses(&unbinds), [(200, 1), (410, 19)].into(), "unbinds");
        let deprovisions = at_once(20, || w.deprovision("i1", SYNC));
        assert_eq!(
            statuses(&deprovisions),
            [(200, 1), (410, 19)].into(),
            "deprovisions"
        );
        for r in unbinds
            .iter()
            .chain(&deprovisions)
            .filter(|r| r.status == 410)
        {
            assert_eq!(error_of(r), None, "{}", body_text(r));
        }
    }
}

#[test]
fn concurrent_polls_of_one_operation_agree() {
    let w = world();
    let op = operation_of(&expect(w.provision("i1", ASYNC), 202));
    w.env.advance(DELAY);
    let states: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| w.last_op("i1", Some(&op))))
            .collect();
        handles
            .into_iter()
            .map(|h| state_of(&expect(h.join().unwrap(), 200)))
            .collect()
    });
    // A poll racing the one that holds the lease may still see "in progress".
    assert!(
        states
            .iter()
            .all(|s| s == "succeeded" || s == "in progress"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "succeeded"), "{states:?}");
    assert_eq!(
        state_of(&expect(w.last_op("i1", Some(&op)), 200)),
        "succeeded"
    );
}
