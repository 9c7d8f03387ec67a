//! Harness for the broker's end-to-end suites (`tests/*.rs`, `tests/*/main.rs`).
//!
//! * [`Broker::start`] ([`broker`]) runs `spin-osb up -f <repo>/spin.toml --listen
//!   127.0.0.1:0` with a private state dir and a random password, waits for
//!   `Serving http://...`, and captures the host's output (printed when a test panics).
//!   [`Broker::kill9`], [`Broker::terminate`] and [`Broker::restart`] simulate crashes and
//!   restarts on the same state dir.
//! * [`shared()`] ([`mod@shared`]) is one broker per test binary for tests that do not
//!   interfere; it is killed when the test binary exits.
//! * [`Req`] ([`request`]) builds authenticated OSB requests (`X-Broker-API-Version: 2.17`),
//!   sent with reqwest or, for paths a URL parser would normalise (`..`), verbatim over TCP;
//!   [`Resp`] ([`response`]) is the answer with its assertions. [`osb`] has one method per
//!   OSB endpoint, [`wait`] polls operations and anything else until it is done.
//! * [`catalog`], [`parameters`] and [`plans`]: the catalog the broker serves, valid and
//!   invalid parameters from its schemas, and the synchronous and asynchronous plans.
//! * [`Broker::store_entries`] ([`store`]) reads the SQLite state file the way the broker
//!   wrote it.
//! * [`kube`]: the Kubernetes control plane of `tests/kube/kube.sh`.
//! * [`fleet`]: `spin-osb fleet …` run against a broker, as an operator runs it.
//!
//! Processes, Redis, ports and query strings come from `spin-osb-test-support`.
//!
//! The binary and the components must be built first (`scripts/test.sh` does it):
//! `cargo build --release -p spin-osb-host && target/release/spin-osb build -f spin.toml`.
//! Everything here only talks to 127.0.0.1.

use std::time::Duration;

pub mod broker;
pub mod catalog;
pub mod fleet;
pub mod ids;
pub mod kube;
pub mod metrics_text;
pub mod osb;
pub mod parameters;
pub mod paths;
pub mod plans;
pub mod request;
pub mod response;
pub mod shared;
pub mod store;
pub mod wait;

pub use broker::{compile_catalog, Broker, Options};
pub use catalog::{yaml_catalog, Catalog, Plan};
pub use ids::new_id;
pub use osb::{binding_key, binding_path, instance_key, instance_path, with_ai};
pub use parameters::{different_value, example_value, valid_parameters, wrong_type_value};
pub use paths::{check_components_built, host_bin, manifest, real_spin_bin, repo_root};
pub use plans::Plans;
pub use request::Req;
pub use response::{status_histogram, Resp};
pub use serde_json::{json, Value};
pub use shared::{shared, until_exit, Shared};
pub use spin_osb_test_support::output::Output;
pub use spin_osb_test_support::{concurrently, enc, query};
pub use wait::eventually;

/// How long `spin-osb up` may take to print `Serving ...` (a cold start compiles eleven
/// components with Cranelift on a slow 2-core machine; later starts hit the cache).
pub const START_TIMEOUT: Duration = Duration::from_secs(480);
/// The API version every helper sends.
pub const API_VERSION: &str = "2.17";
/// The broker's default basic-auth user (`broker_username` in spin.toml).
pub const USERNAME: &str = "broker";
/// How long the `wait_*` helpers poll an asynchronous operation.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
