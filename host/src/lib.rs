//! The `spin-osb` host as a library: everything `spin-osb up` and `spin-osb build` use.
//!
//! It runs Spin HTTP apps (manifest v2) on wasmtime with the Spin interfaces this project
//! needs: `wasi:http` in and out (with `allowed_outbound_hosts`, client TLS and service
//! chaining), `fermyon:spin/key-value` and `wasi:keyvalue` over SQLite or Redis, and
//! `fermyon:spin/variables`. See `README.md` for how it maps to Spin.

pub mod allowed_hosts;
pub mod app;
pub mod bindings;
pub mod build_cmd;
pub mod client_tls;
pub mod clusters;
mod engine;
pub mod fleet;
pub mod guest_output;
pub mod kv_host;
pub mod manifest;
pub mod outbound_http;
pub mod routes;
pub mod runtime_config;
pub mod server;
pub mod template;
pub mod variables;
