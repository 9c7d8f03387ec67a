//! Shared harness for the end-to-end tests of the `spin-osb` host.
//!
//! * [`guests`]: builds the `test-probe` guest once per test binary (the apps under
//!   `tests/apps/` reference it as `../../../target/wasm32-wasip2/release/test_probe.wasm`).
//! * [`host`]: [`Up`] starts `spin-osb up` on `127.0.0.1:0` with a private state dir,
//!   waits for `Serving http://...`, and hands back a [`Host`] that captures stdout/stderr
//!   (printed when the test panics) and is killed on drop.
//! * [`http_server`] and [`pki`]: local upstream servers, plain or TLS.
//! * Redis, ports, query strings and threads come from `spin-osb-test-support`.
//!
//! Everything here only ever talks to 127.0.0.1 / localhost.
#![allow(dead_code, unused_imports)]

pub mod guests;
pub mod host;
pub mod http_server;
pub mod pki;

use std::sync::{Arc, Mutex, OnceLock};

pub use guests::*;
pub use host::*;
pub use http_server::*;
pub use pki::*;
pub use serde_json::{json, Value};
pub use spin_osb_test_support::files::write_file;
pub use spin_osb_test_support::output::{Output, Stream};
pub use spin_osb_test_support::ports::{free_port, is_listening};
pub use spin_osb_test_support::process::signal;
pub use spin_osb_test_support::redis::RedisServer;
pub use spin_osb_test_support::{concurrently, enc, query};

/// A host shared by the tests of one binary that are running at the same
/// time: started on first use, killed when the last user drops its `Arc`
/// (so nothing outlives the test binary), restarted if needed again.
pub fn shared(key: &str, start: impl FnOnce() -> Host) -> Arc<Host> {
    static SHARED: OnceLock<Mutex<std::collections::HashMap<String, std::sync::Weak<Host>>>> =
        OnceLock::new();
    let map = SHARED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(host) = map.get(key).and_then(std::sync::Weak::upgrade) {
        return host;
    }
    let host = Arc::new(start());
    map.insert(key.to_string(), Arc::downgrade(&host));
    host
}

/// TOML string literal.
pub fn toml_str(s: &str) -> String {
    format!("{:?}", s)
}

/// A fresh temp dir.
pub fn tempdir() -> tempfile::TempDir {
    spin_osb_test_support::files::tempdir("spin-osb-test-")
}
