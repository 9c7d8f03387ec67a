//! Increments, batches and compare-and-swap, alone and racing in one process.

use super::*;

#[test]
fn increment_starts_from_zero_and_stores_decimal_text() {
    let host = &shared_kv();
    let key = unique("incr");
    assert_eq!(
        kv(host, &[("op", "kv-increment"), ("key", &key)])["value"],
        1
    );
    assert_eq!(
        kv(
            host,
            &[("op", "kv-increment"), ("key", &key), ("delta", "1")]
        )["value"],
        2
    );
    assert_eq!(
        kv(
            host,
            &[("op", "kv-increment"), ("key", &key), ("delta", "5")]
        )["value"],
        7
    );
    assert_eq!(
        kv(
            host,
            &[("op", "kv-increment"), ("key", &key), ("delta", "-10")]
        )["value"],
        -3
    );
    for iface in IFACES {
        let v = kv(host, &[("op", "kv-get"), ("iface", iface), ("key", &key)]);
        assert_eq!(v["value"], "-3", "{iface}");
    }
    // Incrementing a decimal value written by set works too.
    let key2 = unique("incr-set");
    kv(host, &[("op", "kv-set"), ("key", &key2), ("value", "100")]);
    assert_eq!(
        kv(
            host,
            &[("op", "kv-increment"), ("key", &key2), ("delta", "5")]
        )["value"],
        105
    );
}

#[test]
fn increment_of_a_non_numeric_value_is_an_error() {
    let host = &shared_kv();
    let key = unique("incr-bad");
    kv(
        host,
        &[("op", "kv-set"), ("key", &key), ("value", "not a number")],
    );
    let r = host.get(&format!(
        "/kv/x?{}",
        query(&[("op", "kv-increment"), ("key", &key)])
    ));
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.json["error"].is_string(), "{}", r.body);
    // The value is untouched.
    assert_eq!(
        kv(host, &[("op", "kv-get"), ("key", &key)])["value"],
        "not a number"
    );
}

#[test]
fn fifty_concurrent_increments_count_exactly_fifty() {
    let host = shared_kv();
    let key = unique("incr-many");
    let base = host.base.clone();
    let results = concurrently(50, move |_| {
        let url = format!(
            "{base}/kv/x?{}",
            query(&[("op", "kv-increment"), ("key", &key)])
        );
        client().get(url).send().unwrap().json::<Value>().unwrap()
    });
    let mut values: Vec<i64> = results
        .iter()
        .map(|v| v["value"].as_i64().unwrap_or_else(|| panic!("{v}")))
        .collect();
    values.sort();
    assert_eq!(
        values,
        (1..=50).collect::<Vec<_>>(),
        "each increment returns a distinct new value"
    );
}

#[test]
fn batch_set_get_and_delete() {
    let host = &shared_kv();
    let (a, b, c) = (unique("ba"), unique("bb"), unique("bc"));
    let body = json!({ a.clone(): "one", b.clone(): "two", c.clone(): "three" }).to_string();
    let v = host.probe_post("/kv/x", &[("op", "kv-batch-set")], body);
    assert_eq!(v["ok"], true);
    let missing = unique("missing");
    let keys = format!("{a},{b},{missing}");
    let v = kv(host, &[("op", "kv-batch-get"), ("keys", &keys)]);
    assert_eq!(v["values"][&a], "one", "{v}");
    assert_eq!(v["values"][&b], "two", "{v}");
    // A missing key is either reported as null or left out.
    assert!(v["values"][&missing].is_null(), "{v}");
    // Visible through the single-key interfaces too.
    assert_eq!(
        kv(host, &[("op", "kv-get"), ("iface", "spin"), ("key", &c)])["value"],
        "three"
    );
    let keys = format!("{a},{c},{missing}");
    assert_eq!(
        kv(host, &[("op", "kv-batch-delete"), ("keys", &keys)])["ok"],
        true
    );
    let keys = format!("{a},{b},{c}");
    let v = kv(host, &[("op", "kv-batch-get"), ("keys", &keys)]);
    assert!(v["values"][&a].is_null(), "{v}");
    assert_eq!(v["values"][&b], "two", "{v}");
    assert!(v["values"][&c].is_null(), "{v}");
}

#[test]
fn cas_swaps_when_the_value_is_unchanged() {
    let host = &shared_kv();
    let key = unique("cas");
    kv(host, &[("op", "kv-set"), ("key", &key), ("value", "v1")]);
    let v = kv(
        host,
        &[
            ("op", "kv-cas"),
            ("key", &key),
            ("expect", "v1"),
            ("value", "v2"),
        ],
    );
    assert_eq!(v["swapped"], true, "{v}");
    assert_eq!(kv(host, &[("op", "kv-get"), ("key", &key)])["value"], "v2");
    // Expecting a stale value does not swap (checked by the probe, not CAS).
    let v = kv(
        host,
        &[
            ("op", "kv-cas"),
            ("key", &key),
            ("expect", "v1"),
            ("value", "v3"),
        ],
    );
    assert_eq!(v["swapped"], false, "{v}");
    assert_eq!(v["current"], "v2", "{v}");
}

#[test]
fn cas_on_an_absent_key_creates_it() {
    let host = &shared_kv();
    let key = unique("cas-absent");
    let v = kv(
        host,
        &[
            ("op", "kv-cas"),
            ("key", &key),
            ("expect_absent", "1"),
            ("value", "created"),
        ],
    );
    assert_eq!(v["swapped"], true, "{v}");
    assert_eq!(
        kv(host, &[("op", "kv-get"), ("key", &key)])["value"],
        "created"
    );
}

#[test]
fn cas_fails_if_the_key_changed_after_cas_new() {
    let host = &shared_kv();
    let key = unique("cas-conflict");
    kv(
        host,
        &[("op", "kv-set"), ("key", &key), ("value", "original")],
    );
    let v = kv(
        host,
        &[("op", "kv-cas-conflict"), ("key", &key), ("value", "mine")],
    );
    assert_eq!(v["seen"], "original", "{v}");
    assert_eq!(
        v["swapped"], false,
        "strict CAS must fail after a concurrent write: {v}"
    );
    assert_eq!(v["reason"], "cas-failed", "{v}");
    assert_eq!(v["current"], "interloper", "{v}");
}

#[test]
fn cas_fails_if_an_absent_key_was_created_after_cas_new() {
    let host = &shared_kv();
    let key = unique("cas-conflict-absent");
    let v = kv(
        host,
        &[("op", "kv-cas-conflict"), ("key", &key), ("value", "mine")],
    );
    assert_eq!(v["seen"], Value::Null, "{v}");
    assert_eq!(v["swapped"], false, "absent must still be absent: {v}");
    assert_eq!(v["current"], "interloper", "{v}");
}

#[test]
fn fifty_concurrent_cas_increment_loops_in_one_process_count_exactly_fifty() {
    let host = shared_kv();
    let key = unique("cas-loop");
    let base = host.base.clone();
    let k = key.clone();
    let results = concurrently(50, move |_| cas_incr(&base, "/kv/x", &k));
    let attempts: u64 = results
        .iter()
        .map(|v| v["attempts"].as_u64().unwrap())
        .sum();
    let mut values: Vec<i64> = results
        .iter()
        .map(|v| v["value"].as_i64().unwrap())
        .collect();
    values.sort();
    assert_eq!(
        values,
        (1..=50).collect::<Vec<_>>(),
        "every successful swap saw a distinct count"
    );
    let doc = kv(&host, &[("op", "kv-get"), ("key", &key)]);
    let doc: Value = serde_json::from_str(doc["value"].as_str().unwrap()).unwrap();
    assert_eq!(doc["count"], 50);
    eprintln!("50 CAS increments took {attempts} attempts");
}

#[test]
fn a_create_if_absent_race_has_exactly_one_winner() {
    let host = shared_kv();
    let key = unique("create-race");
    let base = host.base.clone();
    let k = key.clone();
    let results = concurrently(20, move |i| {
        let url = format!(
            "{base}/kv/x?{}",
            query(&[
                ("op", "kv-create"),
                ("key", &k),
                ("value", &format!("writer-{i}"))
            ])
        );
        let v: Value = client().get(url).send().unwrap().json().unwrap();
        (i, v)
    });
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, v)| v["created"] == true)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:#?}");
    let stored = kv(&host, &[("op", "kv-get"), ("key", &key)]);
    assert_eq!(stored["value"], format!("writer-{}", winners[0]));
    for (_, v) in &results {
        assert!(
            v["created"] == true || v["existing"] == stored["value"],
            "{v}"
        );
    }
}
