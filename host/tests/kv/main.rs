//! Key-value: `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2`
//! (store, atomics, batch) over the default SQLite store, a named SQLite
//! store from the runtime config, and Redis: [`interfaces`], [`persistence`], [`atomics`],
//! [`redis`].

mod atomics;
#[path = "../common/mod.rs"]
mod common;
mod interfaces;
mod persistence;
mod redis;

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
