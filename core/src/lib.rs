//! The Open Service Broker logic of spin-osb, free of any host: no spin-sdk, no wasmtime,
//! no I/O. Components adapt it to Spin; `cargo test` exercises it natively.
#![deny(missing_docs)]

pub mod catalog;
