//! Both key-value interfaces on the default store, and which stores a component may
//! open.

use super::*;

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
