//! What the store holds: store calls per request, creation claims, tombstones and their expiry.

use super::*;

#[test]
fn finished_lifecycles_leave_small_tombstones_that_expire_after_a_day() {
    let w = world();
    // The README's figure is for 10,000 (CI runs the release build); a debug build, for a
    // quick local run, checks a tenth.
    let lifecycles = if cfg!(debug_assertions) {
        1_000
    } else {
        10_000
    };
    let lifecycle = |iid: &str| {
        let mut body = provision_body(SYNC);
        body["parameters"] = json!({ "size": 2 });
        expect(w.put(iid, body, false), 201);
        expect(w.bind(iid, "binding-1", SYNC), 201);
        expect(w.unbind(iid, "binding-1", SYNC), 200);
        expect(w.deprovision(iid, SYNC), 200);
    };
    let bytes = || -> usize {
        w.kv.keys()
            .iter()
            .map(|k| k.len() + w.kv.get(k).unwrap().map_or(0, |v| v.len()))
            .sum()
    };
    for i in 0..lifecycles {
        lifecycle(&format!("old-{i:05}"));
    }
    let per_lifecycle = bytes() / lifecycles;
    println!("{per_lifecycle} bytes stored per finished lifecycle before expiry");
    assert!(
        per_lifecycle <= 1_700,
        "{per_lifecycle} bytes stored per finished provision/bind/unbind/deprovision"
    );
    let tombstone = |key: &str| -> Value {
        serde_json::from_slice(&w.kv.get(key).unwrap().expect("a tombstone")).unwrap()
    };
    let instance = tombstone(&instance_key("old-00000"));
    assert_eq!(instance["status"], "deleted", "{instance}");
    for secret_or_private in ["seed", "parameters", "context", "backend", "dashboard_url"] {
        let value = &instance[secret_or_private];
        assert!(
            value.is_null() || value == "" || value == &json!({}),
            "the tombstone keeps {secret_or_private}: {instance}"
        );
    }
    let binding = tombstone(&binding_key("old-00000", "binding-1"));
    for secret_or_private in [
        "credentials",
        "parameters",
        "context",
        "bind_resource",
        "backend",
    ] {
        let value = &binding[secret_or_private];
        assert!(
            value.is_null() || value == &json!({}),
            "the binding tombstone keeps {secret_or_private}: {binding}"
        );
    }
    // A late poll and a repeated deletion still get their 410.
    expect(w.deprovision("old-00000", SYNC), 410);
    expect(w.unbind("old-00000", "binding-1", SYNC), 410);

    // A day later, the deletions of a new day expire the old tombstones as they go: each
    // sweeps two ledger entries on average, so half as many lifecycles (and a margin)
    // expire all of them.
    w.env
        .advance(spin_osb_core::expiry::TOMBSTONE_TTL_SECONDS + 3_600);
    let new_lifecycles = lifecycles * 6 / 10;
    for i in 0..new_lifecycles {
        lifecycle(&format!("new-{i:05}"));
    }
    let last = format!("old-{:05}", lifecycles - 1);
    assert!(
        w.kv.get(&instance_key("old-00000")).unwrap().is_none()
            && w.kv.get(&instance_key(&last)).unwrap().is_none()
            && w.kv
                .get(&binding_key(&last, "binding-1"))
                .unwrap()
                .is_none(),
        "old tombstones expired"
    );
    let left: Vec<String> =
        w.kv.keys()
            .into_iter()
            .filter(|k| k.contains("/old-"))
            .collect();
    assert!(left.is_empty(), "left of expired lifecycles: {left:?}");
    let ledger =
        w.kv.keys()
            .iter()
            .filter(|k| k.starts_with("osb/v1/expiry/"))
            .count();
    assert!(
        ledger <= 2 * new_lifecycles + 4,
        "only this day's ledger is left: {ledger} keys"
    );
    // The expired ids are free again, and their creation starts afresh.
    expect(w.provision("old-00000", SYNC), 201);
    expect(w.bind("old-00000", "binding-1", SYNC), 201);
}

#[test]
fn bindings_never_unbound_are_deleted_with_their_instance() {
    let w = world();
    // A platform that deprovisions without unbinding first, one instance with more bindings
    // than one sweep deletes.
    expect(w.provision("i1", SYNC), 201);
    for b in 0..100 {
        expect(w.bind("i1", &format!("b{b:03}"), SYNC), 201);
    }
    expect(w.unbind("i1", "b000", SYNC), 200);
    expect(w.provision("i2", SYNC), 201);
    expect(w.bind("i2", "kept", SYNC), 201);
    expect(w.deprovision("i1", SYNC), 200);
    // No credentials of a deleted instance are served.
    expect(w.fetch_binding("i1", "b050"), 404);

    w.env
        .advance(spin_osb_core::expiry::TOMBSTONE_TTL_SECONDS + 3_600);
    // Deletions of the new day sweep the old ledger as they go.
    for i in 0..64 {
        let iid = format!("new-{i:03}");
        expect(w.provision(&iid, SYNC), 201);
        expect(w.deprovision(&iid, SYNC), 200);
    }
    let left: Vec<String> =
        w.kv.keys()
            .into_iter()
            .filter(|k| k.contains("/i1/"))
            .chain(w.kv.keys().into_iter().filter(|k| k == &instance_key("i1")))
            .collect();
    assert!(left.is_empty(), "left of i1: {left:?}");
    // The other instance and its binding are untouched.
    expect(w.fetch("i2"), 200);
    expect(w.fetch_binding("i2", "kept"), 200);
    // The ids are free again.
    expect(w.provision("i1", SYNC), 201);
    expect(w.bind("i1", "b050", SYNC), 201);
}

#[test]
fn a_tombstone_being_expired_is_not_replaced_by_a_new_provision() {
    let w = world();
    expect(w.provision("i1", SYNC), 201);
    expect(w.deprovision("i1", SYNC), 200);
    let key = instance_key("i1");
    let mut tombstone: Value = serde_json::from_slice(&w.kv.get(&key).unwrap().unwrap()).unwrap();
    tombstone["expiring"] = json!(true);
    w.write_record(&key, &tombstone);
    let refused = expect(w.provision("i1", SYNC), 422);
    assert_eq!(error_of(&refused), Some("ConcurrencyError"));
    let still: Value = serde_json::from_slice(&w.kv.get(&key).unwrap().unwrap()).unwrap();
    assert_eq!(still["status"], "deleted", "{still}");
}

#[test]
fn claims_left_by_any_number_of_crashed_requests_never_block_creation_for_good() {
    let w = world();
    // Six requests claimed the id one after another and died before writing.
    for generation in 0..6 {
        w.kv.increment(&format!("{}/claim/g{generation}", instance_key("i1")), 1)
            .unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..4 {
        let r = w.provision("i1", SYNC);
        answers.push(r.status);
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 503, "{}", body_text(&r));
    }
    assert_eq!(answers.last(), Some(&201), "answers: {answers:?}");
    expect(w.fetch("i1"), 200);
    // Later creators of other ids are not slowed down by this id's history.
    expect(w.provision("i2", SYNC), 201);
}

#[test]
fn a_creation_claim_owner_too_slow_to_write_never_overwrites_the_record_of_the_taker_over() {
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let w = World {
        catalog: catalog(),
        kv: StallingKv {
            inner: MemoryKv::default(),
            stall_key: format!("{}/claim/g0", instance_key("i1")),
            stalled: AtomicBool::new(false),
            entered: entered_tx,
            release: std::sync::Mutex::new(release_rx),
        },
        env: TestEnv::at(T0),
    };
    let with_size = |size: u64| {
        let mut body = provision_body(SYNC);
        body["parameters"] = json!({ "size": size });
        body
    };
    std::thread::scope(|scope| {
        // A claims the id, then stalls before it learns that it did.
        let slow = scope.spawn(|| w.put("i1", with_size(1), false));
        entered.recv().unwrap();
        w.env.advance(2);
        // B finds the claim taken, waits it out and creates the instance: 201.
        let taker = w.put("i1", with_size(2), false);
        assert_eq!(taker.status, 201, "{}", body_text(&taker));
        release_tx.send(()).unwrap();
        // A's window to write has closed: it must not write over B's instance.
        let slow = slow.join().unwrap();
        assert_eq!(slow.status, 503, "{}", body_text(&slow));
    });
    let stored = w.kv.get(&instance_key("i1")).unwrap().unwrap();
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["parameters"], json!({ "size": 2 }), "{stored}");
    let fetched = expect(w.fetch("i1"), 200);
    assert_eq!(body(&fetched)["parameters"], json!({ "size": 2 }));
}

/// The store round trips of one synchronous credentials lifecycle: each step is local to
/// its record (no lease), so every request writes what it decides once. A regression here
/// costs every request of the most common plans a store round trip.
#[test]
fn a_sync_credentials_lifecycle_makes_the_fewest_store_calls() {
    let w = World {
        catalog: catalog(),
        kv: FlakyKv::new(usize::MAX),
        env: TestEnv::at(T0),
    };
    let calls = |send: &dyn Fn() -> OsbResponse, status: u16| {
        let before = w.kv.all_calls.load(Ordering::SeqCst);
        expect(send(), status);
        w.kv.all_calls.load(Ordering::SeqCst) - before
    };
    // A first lifecycle registers the metrics' counters (once per counter, ever).
    expect(w.provision("i0", SYNC), 201);
    expect(w.bind("i0", "b0", SYNC), 201);
    expect(w.unbind("i0", "b0", SYNC), 200);
    expect(w.deprovision("i0", SYNC), 200);
    let counts = [
        calls(&|| w.provision("i1", SYNC), 201),
        calls(&|| w.bind("i1", "b1", SYNC), 201),
        calls(&|| w.unbind("i1", "b1", SYNC), 200),
        calls(&|| w.deprovision("i1", SYNC), 200),
    ];
    assert_eq!(
        counts,
        [6, 7, 6, 5],
        "store calls of provision, bind, unbind, deprovision (each with one metrics counter; \
         the duration sum is added only when not zero, which it is on this test's clock)"
    );
}
