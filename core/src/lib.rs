//! The Open Service Broker logic of spin-osb, free of any host: no spin-sdk, no wasmtime,
//! no I/O. Components adapt it to Spin; `cargo test` exercises it natively.
#![deny(missing_docs)]

pub mod admission;
pub mod backend;
pub mod broker;
pub mod catalog;
pub mod env;
pub mod error;
pub mod expiry;
pub mod http;
pub mod index;
pub mod kv;
pub mod metrics;
pub mod operator;
pub mod outbound;
pub mod parameter_check;
pub mod protocol;
pub mod quota;
pub mod schema;
pub mod state;
pub mod template;
pub mod types;
