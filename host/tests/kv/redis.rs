//! The same interfaces on Redis, and two hosts sharing one Redis.

use super::*;

fn redis_runtime_config(dir: &Path, redis: &RedisServer) -> PathBuf {
    write_file(
        dir,
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = {}\n\n[key_value_store.other]\ntype = \"redis\"\nurl = {}\n",
            toml_str(&redis.url()),
            toml_str(&format!("{}/1", redis.url())),
        ),
    )
}

#[test]
fn a_redis_store_supports_both_interfaces() {
    let redis = RedisServer::start();
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
    let redis = RedisServer::start();
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
    let redis = RedisServer::start();
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
