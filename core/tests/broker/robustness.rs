//! Robustness: store outages, corrupt records.

use super::*;

#[test]
fn a_store_outage_is_503_on_every_endpoint_and_changes_nothing() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.ready_binding("i1", "b1", SYNC, json!({}));
    w.ready_instance("i2", ASYNC);
    expect(w.bind("i2", "b2", ASYNC), 202);
    let before = w.snapshot();
    w.kv.fail.store(true, Ordering::SeqCst);
    let responses = [
        w.provision("new", SYNC),
        w.provision("i1", SYNC),
        w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
        w.deprovision("i1", SYNC),
        w.fetch("i1"),
        w.last_op("i2", None),
        w.bind("i1", "new", SYNC),
        w.bind("i1", "b1", SYNC),
        w.unbind("i1", "b1", SYNC),
        w.fetch_binding("i1", "b1"),
        w.binding_last_op("i2", "b2", None),
    ];
    w.kv.fail.store(false, Ordering::SeqCst);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 503, "request {i}: {}", body_text(r));
        assert!(description_of(r).contains("retry"), "{}", description_of(r));
    }
    assert_eq!(w.snapshot(), before);
    // Everything works once the store is back.
    expect(w.fetch("i1"), 200);
    expect(w.provision("new", SYNC), 201);
}

#[test]
fn a_corrupt_instance_record_is_500_on_every_endpoint_not_a_panic() {
    let w = world();
    let raws: [&[u8]; 4] = [
        b"{not json",
        br#"{"schema": 1}"#,
        br#"{"schema": 99, "instance_id": "i1"}"#,
        b"\xff\xfe",
    ];
    for raw in raws {
        w.kv.set(&instance_key("i1"), raw).unwrap();
        let responses = [
            w.provision("i1", SYNC),
            w.patch("i1", update_body(json!({"parameters": {"size": 2}})), false),
            w.deprovision("i1", SYNC),
            w.fetch("i1"),
            w.last_op("i1", None),
            w.bind("i1", "b1", SYNC),
        ];
        for (i, r) in responses.iter().enumerate() {
            assert_eq!(r.status, 500, "{raw:?} request {i}: {}", body_text(r));
            assert!(
                description_of(r).contains(&instance_key("i1")),
                "names the key: {}",
                description_of(r)
            );
        }
        assert_eq!(
            w.kv.get(&instance_key("i1")).unwrap().unwrap(),
            raw,
            "not overwritten"
        );
    }
}

#[test]
fn a_record_with_a_newer_schema_is_500_asking_for_an_upgrade() {
    let w = world();
    w.ready_instance("i1", SYNC);
    let mut record = w.instance("i1");
    record["schema"] = json!(2);
    w.write_record(&instance_key("i1"), &record);
    let r = expect(w.fetch("i1"), 500);
    assert!(
        description_of(&r).contains("newer"),
        "{}",
        description_of(&r)
    );
}

#[test]
fn a_corrupt_binding_record_is_500_on_every_binding_endpoint_not_a_panic() {
    let w = world();
    w.ready_instance("i1", SYNC);
    w.kv.set(&binding_key("i1", "b1"), b"[1,2").unwrap();
    let responses = [
        w.bind("i1", "b1", SYNC),
        w.unbind("i1", "b1", SYNC),
        w.fetch_binding("i1", "b1"),
        w.binding_last_op("i1", "b1", None),
    ];
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 500, "request {i}: {}", body_text(r));
    }
    // A corrupt predecessor is 500 as well, not "does not exist".
    let mut b = bind_body(SYNC);
    b["predecessor_binding_id"] = json!("b1");
    expect(w.put_binding("i1", "b2", b, false), 500);
    assert_eq!(
        w.kv.get(&binding_key("i1", "b1")).unwrap().unwrap(),
        b"[1,2"
    );
}

#[test]
fn a_store_outage_at_any_step_of_a_sync_provision_and_bind_is_recovered_by_retrying() {
    for fail_from in 0..16 {
        let w = World {
            catalog: catalog(),
            kv: FlakyKv::new(fail_from),
            env: TestEnv::at(T0),
        };
        let first = w.provision("i1", SYNC);
        if first.status == 201 {
            // The outage came after the provision: it must hit the bind instead.
            let r = w.bind("i1", "b1", SYNC);
            w.kv.armed.store(false, Ordering::SeqCst);
            if r.status != 201 {
                assert_eq!(r.status, 503, "fail_from {fail_from}: {}", body_text(&r));
                let r = retry_until_settled(&w, || w.bind("i1", "b1", SYNC));
                assert!(
                    r.status == 201 || r.status == 200,
                    "fail_from {fail_from}: {} {}",
                    r.status,
                    body_text(&r)
                );
            }
        } else {
            assert_eq!(
                first.status,
                503,
                "fail_from {fail_from}: {}",
                body_text(&first)
            );
            w.kv.armed.store(false, Ordering::SeqCst);
            let r = retry_until_settled(&w, || w.provision("i1", SYNC));
            assert!(
                r.status == 201 || r.status == 200,
                "fail_from {fail_from}: {} {}",
                r.status,
                body_text(&r)
            );
            expect(w.bind("i1", "b1", SYNC), 201);
        }
        expect(w.fetch("i1"), 200);
        let f = expect(w.fetch_binding("i1", "b1"), 200);
        assert_eq!(body(&f)["credentials"]["instance_id"], "i1");
        let keys: Vec<String> =
            w.kv.inner
                .keys()
                .into_iter()
                .filter(|k| {
                    !k.contains("/claim/")
                        && !k.contains("/binding-index/")
                        && !k.starts_with("osb/v1/index/")
                        && !k.starts_with("osb/v1/metrics/")
                })
                .collect();
        assert_eq!(
            keys,
            vec![binding_key("i1", "b1"), instance_key("i1")],
            "fail_from {fail_from}"
        );
    }
}
