//! Where SQLite stores live, and that their data survives restarts and kills.

use super::*;

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
