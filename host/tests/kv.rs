//! Key-value: `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2`
//! (store, atomics, batch) over the default SQLite store, a named SQLite
//! store from the runtime config, and Redis.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const IFACES: [&str; 2] = ["spin", "wasi"];

/// Runtime config defining the `other` store (used by the `kv` app) as a
/// SQLite file next to the config.
fn sqlite_runtime_config(dir: &Path) -> PathBuf {
    write_file(
        dir,
        "runtime-config.toml",
        "[key_value_store.other]\ntype = \"spin\"\npath = \"other.db\"\n",
    )
}

/// A `kv` app with its own state dir and runtime config.
struct KvApp {
    host: Host,
    dir: tempfile::TempDir,
}

fn kv_app() -> KvApp {
    let dir = tempdir();
    let rc = sqlite_runtime_config(dir.path());
    let host = Up::app("kv")
        .runtime_config(rc)
        .state_dir(dir.path().join("state"))
        .start();
    KvApp { host, dir }
}

/// Shared `kv` app for tests that use distinct keys.
fn shared_kv() -> Arc<Host> {
    shared("kv", || {
        let dir = tempdir();
        let rc = sqlite_runtime_config(dir.path());
        Up::app("kv")
            .runtime_config(rc)
            .state_dir(dir.path().join("state"))
            .hold(dir)
            .start()
    })
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

#[track_caller]
fn kv(host: &Host, params: &[(&str, &str)]) -> Value {
    host.probe("/kv/x", params)
}

#[test]
fn set_get_exists_delete_round_trip_on_both_interfaces() {
    let host = &shared_kv();
    for iface in IFACES {
        let key = unique(&format!("rt-{iface}"));
        let p = |op: &'static str| vec![("op", op), ("iface", iface), ("key", key.as_str())];
        assert_eq!(kv(host, &p("kv-get"))["value"], Value::Null);
        assert_eq!(kv(host, &p("kv-exists"))["exists"], false);
        let mut set = p("kv-set");
        set.push(("value", "hello world"));
        assert_eq!(kv(host, &set)["ok"], true);
        assert_eq!(kv(host, &p("kv-get"))["value"], "hello world", "{iface}");
        assert_eq!(kv(host, &p("kv-exists"))["exists"], true, "{iface}");
        // Overwrite with a body value.
        let v = host.probe_post("/kv/x", &p("kv-set"), "second value");
        assert_eq!(v["ok"], true);
        assert_eq!(kv(host, &p("kv-get"))["value"], "second value", "{iface}");
        assert_eq!(kv(host, &p("kv-delete"))["ok"], true);
        assert_eq!(kv(host, &p("kv-get"))["value"], Value::Null, "{iface}");
        assert_eq!(kv(host, &p("kv-exists"))["exists"], false, "{iface}");
        // Deleting an absent key is not an error.
        assert_eq!(kv(host, &p("kv-delete"))["ok"], true, "{iface}");
    }
}

#[test]
fn both_interfaces_see_the_same_data() {
    let host = &shared_kv();
    let key = unique("cross");
    kv(
        host,
        &[
            ("op", "kv-set"),
            ("iface", "spin"),
            ("key", &key),
            ("value", "from spin"),
        ],
    );
    let v = kv(host, &[("op", "kv-get"), ("iface", "wasi"), ("key", &key)]);
    assert_eq!(v["value"], "from spin");
    kv(
        host,
        &[
            ("op", "kv-set"),
            ("iface", "wasi"),
            ("key", &key),
            ("value", "from wasi"),
        ],
    );
    let v = kv(host, &[("op", "kv-get"), ("iface", "spin"), ("key", &key)]);
    assert_eq!(v["value"], "from wasi");
}

#[test]
fn an_empty_value_is_present_not_absent() {
    let host = &shared_kv();
    let empty = unique("empty");
    host.probe_post(
        "/kv/x",
        &[("op", "kv-set"), ("key", &empty)],
        Vec::<u8>::new(),
    );
    let v = kv(host, &[("op", "kv-get"), ("key", &empty)]);
    assert_eq!(v["value"], "", "an empty value is present, not absent");
    assert_eq!(
        kv(host, &[("op", "kv-exists"), ("key", &empty)])["exists"],
        true
    );
}

#[test]
fn keys_lists_what_was_set_on_both_interfaces() {
    // Own app: `keys` sees the whole store.
    let app = kv_app();
    let host = &app.host;
    for k in ["b", "a", "c"] {
        kv(host, &[("op", "kv-set"), ("key", k), ("value", "1")]);
    }
    kv(host, &[("op", "kv-delete"), ("key", "c")]);
    for iface in IFACES {
        let v = kv(host, &[("op", "kv-keys"), ("iface", iface)]);
        assert_eq!(v["keys"], json!(["a", "b"]), "{iface}");
    }
}

#[test]
fn the_default_store_is_a_sqlite_file_in_the_state_dir() {
    let app = kv_app();
    kv(&app.host, &[("op", "kv-set"), ("key", "k"), ("value", "v")]);
    let db = app.dir.path().join("state/sqlite_key_value.db");
    assert!(db.exists(), "{} missing", db.display());
}

#[test]
fn a_named_spin_store_is_a_separate_sqlite_file_relative_to_the_runtime_config() {
    let app = kv_app();
    let host = &app.host;
    kv(
        host,
        &[
            ("op", "kv-set"),
            ("store", "other"),
            ("key", "k"),
            ("value", "in other"),
        ],
    );
    assert_eq!(
        kv(host, &[("op", "kv-get"), ("store", "other"), ("key", "k")])["value"],
        "in other"
    );
    assert_eq!(
        kv(host, &[("op", "kv-get"), ("key", "k")])["value"],
        Value::Null
    );
    assert_eq!(
        kv(
            host,
            &[
                ("op", "kv-get"),
                ("iface", "wasi"),
                ("store", "other"),
                ("key", "k")
            ]
        )["value"],
        "in other"
    );
    let db = app.dir.path().join("other.db");
    assert!(
        db.exists(),
        "{} missing (path is relative to the runtime config)",
        db.display()
    );
}

#[test]
fn data_survives_a_host_restart_with_the_same_state_dir() {
    let dir = tempdir();
    let rc = sqlite_runtime_config(dir.path());
    let state = dir.path().join("state");
    {
        let mut host = Up::app("kv").runtime_config(&rc).state_dir(&state).start();
        kv(
            &host,
            &[
                ("op", "kv-set"),
                ("key", "persist"),
                ("value", "still here"),
            ],
        );
        kv(
            &host,
            &[
                ("op", "kv-set"),
                ("store", "other"),
                ("key", "persist"),
                ("value", "other too"),
            ],
        );
        kv(
            &host,
            &[("op", "kv-increment"), ("key", "n"), ("delta", "41")],
        );
        host.terminate(Duration::from_secs(20));
    }
    let host = Up::app("kv").runtime_config(&rc).state_dir(&state).start();
    assert_eq!(
        kv(&host, &[("op", "kv-get"), ("key", "persist")])["value"],
        "still here"
    );
    assert_eq!(
        kv(
            &host,
            &[("op", "kv-get"), ("store", "other"), ("key", "persist")]
        )["value"],
        "other too"
    );
    assert_eq!(
        kv(&host, &[("op", "kv-increment"), ("key", "n")])["value"],
        42
    );
}

#[test]
fn data_survives_a_hard_kill() {
    let dir = tempdir();
    let rc = sqlite_runtime_config(dir.path());
    let state = dir.path().join("state");
    {
        let host = Up::app("kv").runtime_config(&rc).state_dir(&state).start();
        kv(
            &host,
            &[("op", "kv-set"), ("key", "durable"), ("value", "yes")],
        );
        // Dropping the Host SIGKILLs it.
    }
    let host = Up::app("kv").runtime_config(&rc).state_dir(&state).start();
    assert_eq!(
        kv(&host, &[("op", "kv-get"), ("key", "durable")])["value"],
        "yes"
    );
}

#[test]
fn opening_a_store_not_listed_for_the_component_is_access_denied() {
    let host = &shared_kv();
    for iface in IFACES {
        // `limited` lists only "default"; "other" exists in the app.
        let r = host.get(&format!(
            "/limited/x?{}",
            query(&[
                ("op", "kv-get"),
                ("iface", iface),
                ("store", "other"),
                ("key", "k")
            ])
        ));
        assert_eq!(r.status, 500, "{iface}: {}", r.body);
        assert_eq!(r.json["error"], "access-denied", "{iface}: {}", r.body);
        // `nokv` lists nothing, not even "default".
        let r = host.get(&format!(
            "/nokv/x?{}",
            query(&[("op", "kv-get"), ("iface", iface), ("key", "k")])
        ));
        assert_eq!(r.json["error"], "access-denied", "{iface}: {}", r.body);
        // A label nobody defines.
        let r = host.get(&format!(
            "/kv/x?{}",
            query(&[
                ("op", "kv-get"),
                ("iface", iface),
                ("store", "nowhere"),
                ("key", "k")
            ])
        ));
        assert_eq!(r.json["error"], "access-denied", "{iface}: {}", r.body);
    }
    // The allowed store still works for `limited`.
    let v = host.probe("/limited/x", &[("op", "kv-get"), ("key", "k")]);
    assert!(v.get("value").is_some(), "{v}");
}

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

fn cas_incr(base: &str, path: &str, key: &str) -> Value {
    let url = format!(
        "{base}{path}?{}",
        query(&[("op", "kv-cas-incr"), ("key", key)])
    );
    let resp = client().get(&url).send().unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
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

#[test]
fn a_store_listed_by_a_component_but_not_defined_fails_start_up() {
    // The `kv` app lists "other"; without a runtime config it is undefined.
    let f = Up::app("kv").start_expect_failure();
    assert!(f.status.map(|s| !s.success()).unwrap_or(true));
    assert!(
        f.stderr.contains("other"),
        "stderr should name the store:\n{}",
        f.text()
    );
}

#[test]
fn an_unknown_store_type_in_the_runtime_config_fails_start_up() {
    let dir = tempdir();
    let rc = write_file(
        dir.path(),
        "rc.toml",
        "[key_value_store.other]\ntype = \"carrier-pigeon\"\n",
    );
    let f = Up::app("kv").runtime_config(rc).start_expect_failure();
    assert!(f.status.map(|s| !s.success()).unwrap_or(true));
    assert!(f.stderr.contains("carrier-pigeon"), "{}", f.text());
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

fn redis_runtime_config(dir: &Path, redis: &Redis) -> PathBuf {
    write_file(
        dir,
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = {}\n\n[key_value_store.other]\ntype = \"redis\"\nurl = {}\n",
            toml_str(&redis.url),
            toml_str(&format!("{}/1", redis.url)),
        ),
    )
}

#[test]
fn a_redis_store_supports_both_interfaces() {
    let redis = Redis::start();
    let dir = tempdir();
    let rc = redis_runtime_config(dir.path(), &redis);
    let host = Up::app("kv").runtime_config(rc).start();
    let host = &host;
    for iface in IFACES {
        let key = format!("r-{iface}");
        kv(
            host,
            &[
                ("op", "kv-set"),
                ("iface", iface),
                ("key", &key),
                ("value", "in redis"),
            ],
        );
        assert_eq!(
            kv(host, &[("op", "kv-get"), ("iface", iface), ("key", &key)])["value"],
            "in redis"
        );
        assert_eq!(
            kv(
                host,
                &[("op", "kv-exists"), ("iface", iface), ("key", &key)]
            )["exists"],
            true
        );
    }
    let keys = kv(host, &[("op", "kv-keys")]);
    assert_eq!(keys["keys"], json!(["r-spin", "r-wasi"]));
    assert_eq!(
        kv(
            host,
            &[("op", "kv-increment"), ("key", "n"), ("delta", "3")]
        )["value"],
        3
    );
    assert_eq!(kv(host, &[("op", "kv-get"), ("key", "n")])["value"], "3");
    let body = json!({"x": "1", "y": "2"}).to_string();
    host.probe_post("/kv/x", &[("op", "kv-batch-set")], body);
    let v = kv(host, &[("op", "kv-batch-get"), ("keys", "x,y,z")]);
    assert_eq!(v["values"]["x"], "1");
    assert_eq!(v["values"]["y"], "2");
    kv(host, &[("op", "kv-batch-delete"), ("keys", "x,y")]);
    assert_eq!(
        kv(host, &[("op", "kv-get"), ("key", "x")])["value"],
        Value::Null
    );
    // Strict CAS on redis too.
    kv(
        host,
        &[("op", "kv-set"), ("key", "c"), ("value", "original")],
    );
    let v = kv(
        host,
        &[("op", "kv-cas-conflict"), ("key", "c"), ("value", "mine")],
    );
    assert_eq!(v["swapped"], false, "{v}");
    // The data really is in redis.
    let reply = redis.command("EXISTS r-spin");
    assert!(reply.starts_with(":1"), "redis says {reply:?}");
    // `other` is a different redis database: isolated from default.
    assert_eq!(
        kv(
            host,
            &[("op", "kv-get"), ("store", "other"), ("key", "r-spin")]
        )["value"],
        Value::Null
    );
}

#[test]
fn two_hosts_sharing_one_redis_count_exactly_the_total_with_cas() {
    let redis = Redis::start();
    let dir = tempdir();
    let rc = redis_runtime_config(dir.path(), &redis);
    let a = Arc::new(Up::app("kv").runtime_config(&rc).start());
    let b = Arc::new(Up::app("kv").runtime_config(&rc).start());
    assert_ne!(a.base, b.base);
    let (base_a, base_b) = (a.base.clone(), b.base.clone());
    let per_host = 30;
    let results = concurrently(2 * per_host, move |i| {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        cas_incr(base, "/kv/x", "shared-counter")
    });
    let mut values: Vec<i64> = results
        .iter()
        .map(|v| v["value"].as_i64().unwrap())
        .collect();
    values.sort();
    assert_eq!(values, (1..=(2 * per_host) as i64).collect::<Vec<_>>());
    let doc = kv(&a, &[("op", "kv-get"), ("key", "shared-counter")]);
    let doc: Value = serde_json::from_str(doc["value"].as_str().unwrap()).unwrap();
    assert_eq!(doc["count"], 2 * per_host);
    // Atomic increment across processes too.
    let (base_a, base_b) = (a.base.clone(), b.base.clone());
    concurrently(40, move |i| {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let url = format!(
            "{base}/kv/x?{}",
            query(&[("op", "kv-increment"), ("key", "shared-incr")])
        );
        assert_eq!(client().get(url).send().unwrap().status().as_u16(), 200);
    });
    assert_eq!(
        kv(&b, &[("op", "kv-get"), ("key", "shared-incr")])["value"],
        "40"
    );
}

#[test]
fn a_create_if_absent_race_across_two_hosts_has_one_winner() {
    let redis = Redis::start();
    let dir = tempdir();
    let rc = redis_runtime_config(dir.path(), &redis);
    let a = Up::app("kv").runtime_config(&rc).start();
    let b = Up::app("kv").runtime_config(&rc).start();
    let (base_a, base_b) = (a.base.clone(), b.base.clone());
    let results = concurrently(20, move |i| {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let url = format!(
            "{base}/kv/x?{}",
            query(&[
                ("op", "kv-create"),
                ("key", "claim"),
                ("value", &format!("w{i}"))
            ])
        );
        client().get(url).send().unwrap().json::<Value>().unwrap()
    });
    let winners = results.iter().filter(|v| v["created"] == true).count();
    assert_eq!(winners, 1, "{results:#?}");
}
