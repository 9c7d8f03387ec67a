//! The deployment files of `infra/` against the real things they configure:
//!
//! * [`runtime_configs`]: `infra/spin/*.toml` (and the runtime config inside
//!   `infra/kubernetes/secrets.example.yaml`) start `spin-osb up`, with only machine-specific
//!   paths, hosts and the Redis address swapped for local ones, and the state lands where
//!   the file says;
//! * [`kubernetes`]: every manifest of `infra/kubernetes/` is server-side applied to the test
//!   kube-apiserver (with the SpinApp and ClusterServiceBroker CRDs of `tests/kube/crds/`)
//!   and stored exactly as written, so a misspelt field (which the API prunes) fails here
//!   ([`manifests`]); `rbac.yaml` is enough for the default catalog's Kubernetes plans, with
//!   the token the controller puts into `serviceaccount.yaml`'s Secret, and grants nothing
//!   beyond them;
//! * [`cloudfoundry`]: `infra/cloudfoundry/register.sh` drives a fake `cf` the way it would
//!   drive the real one;
//! * [`systemd`]: `infra/systemd/spin-osb.service` passes `systemd-analyze verify`, and its
//!   command line, with `spin-osb.env.example`, serves the broker.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use spin_osb_e2e::kube::{cluster, Kube, KUBE_COMPONENTS};
use spin_osb_e2e::{
    eventually, host_bin, instance_key, json, new_id, repo_root, Broker, Catalog, Options, Plan,
    Value, API_VERSION, START_TIMEOUT,
};
use spin_osb_test_support::files::write_file as write;
use spin_osb_test_support::process::ChildGuard;
use spin_osb_test_support::redis::RedisServer;

mod cloudfoundry;
mod kubernetes;
mod manifests;
mod runtime_configs;
mod systemd;

use manifests::*;

const WAIT: Duration = Duration::from_secs(90);
/// The field manager the tests apply with.
const MANAGER: &str = "spin-osb-infra-e2e";

fn infra(path: &str) -> PathBuf {
    repo_root().join("infra").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn tempdir() -> tempfile::TempDir {
    spin_osb_test_support::files::tempdir("spin-osb-infra-")
}

/// `text` with every `(from, to)` replaced; each `from` must occur (the files say what the
/// test replaces, so a renamed path fails loudly instead of being silently kept).
fn substitute(text: &str, replacements: &[(&str, &str)], what: &str) -> String {
    let mut out = text.to_string();
    for (from, to) in replacements {
        assert!(out.contains(from), "{what} no longer contains {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// The plan called `name` of the service called `service`.
fn plan_of(catalog: &Catalog, service: &str, name: &str) -> Plan {
    catalog
        .plans()
        .into_iter()
        .find(|p| p.name == name && p.service["name"] == service)
        .unwrap_or_else(|| panic!("{service}/{name} in the catalog"))
}

/// Provisions an instance of the default catalog's synchronous credentials plan and
/// returns its id.
fn provision_sync(b: &Broker) -> String {
    let plan = plan_of(&b.catalog(), "shared-credentials", "sync");
    let iid = new_id();
    b.provision(&iid, &plan.provision_body(json!({})), false)
        .expect(201);
    b.fetch_instance(&iid).expect(200);
    iid
}

/// Whether the SQLite store file at `db` holds `key`.
fn sqlite_has_key(db: &Path, key: &str) -> bool {
    let conn = rusqlite::Connection::open(db)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM spin_key_value WHERE key = ?1",
        [key],
        |row| row.get::<_, i64>(0),
    )
    .unwrap_or_else(|e| panic!("cannot query {}: {e}", db.display()))
        > 0
}
