//! Scale-out: several `spin-osb up` processes on different ports that share one
//! Redis as their `default` key-value store behave as one broker.
//!
//! * `three_hosts_sharing_redis_behave_as_one_broker` ([`three_hosts`]) spreads a few
//!   hundred OSB requests (the [`scenarios`]: identical repeats, conflicting bodies,
//!   provision/bind/unbind/deprovision sequences, `last_operation` polls) over three hosts
//!   from many threads (the [`fleet`]), kills one host with SIGKILL in the middle and brings
//!   it back later, then checks ([`verify`]) every instance and binding through every host,
//!   every record in Redis, and — for the Kubernetes plans — every object in the real
//!   kube-apiserver (exactly one of each, none after deletion).
//! * `an_unreachable_redis_gives_a_clear_503_and_writes_nothing_half_way` ([`redis_outage`])
//!   stops Redis under two hosts: every stateful endpoint answers a prompt 503 OSB error
//!   naming the state store, nothing is written, and once Redis is back the same requests
//!   succeed; Redis is also stopped while requests are in flight, and every interrupted
//!   request is then completed (or cleaned up) by retrying it, as a platform would.
//! * `a_deprovision_racing_a_kubernetes_provision_leaves_no_object_behind`
//!   ([`deprovision_race`]): a deprovision that overtakes a provision's first Kubernetes
//!   step waits for that step and then leaves none of the objects it applied.
//!
//! The harness gives every `Broker` its own random password and sets
//! `SPIN_VARIABLE_BROKER_PASSWORD` after `Options::env`, so a password cannot be passed in.
//! A platform, however, has one set of credentials for the broker. The password is a
//! public field that `Broker::restart` reuses, so the test copies host 0's password into
//! the other hosts and restarts them: all three then accept the same credentials, and
//! every request below is sent with them.
//!
//! Needs redis-server (Debian's `redis-server` package) and, for the first and the last test,
//! the Kubernetes control plane of `tests/kube/kube.sh`. Everything runs on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use spin_osb_e2e::kube::{cluster, rfc3339_now, Cluster, Kube, KUBE_COMPONENTS};
use spin_osb_e2e::{
    binding_key, binding_path, instance_key, instance_path, json, new_id, query, repo_root,
    with_ai, Broker, Options, Plan, Req, Resp, Value, USERNAME,
};
use spin_osb_test_support::redis::RedisServer;

mod deprovision_race;
mod fleet;
mod kube_objects;
mod metrics;
mod quotas;
mod redis_outage;
mod scenarios;
mod three_hosts;
mod verify;

use fleet::*;
use kube_objects::*;
use scenarios::*;
use verify::*;

/// The tests load the machine heavily; run them one after the other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Catalog and runtime config
// ---------------------------------------------------------------------------

/// A catalog dir with the default credentials service, plus the Kubernetes test service
/// when `kubernetes` (one catalog for all hosts: a host serves one catalog directory).
fn catalog_dir(dir: &Path, kubernetes: bool) -> PathBuf {
    let catalog = dir.join("catalog");
    std::fs::create_dir_all(&catalog).expect("catalog dir");
    std::fs::copy(
        repo_root().join("catalog/credentials.yaml"),
        catalog.join("credentials.yaml"),
    )
    .expect("copy credentials.yaml");
    if kubernetes {
        std::fs::copy(
            repo_root().join("tests/catalogs/kubernetes/kubernetes.yaml"),
            catalog.join("kubernetes.yaml"),
        )
        .expect("copy kubernetes.yaml");
    }
    catalog
}

/// `default` in Redis; with a cluster, its CA for the Kubernetes components too (what
/// `Cluster::broker_options` writes, plus the store).
fn runtime_config(dir: &Path, redis_url: &str, cluster: Option<&Cluster>) -> PathBuf {
    let mut text = format!("[key_value_store.default]\ntype = \"redis\"\nurl = {redis_url:?}\n");
    if let Some(c) = cluster {
        let ids = KUBE_COMPONENTS
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "\n[[client_tls]]\ncomponent_ids = [{ids}]\nhosts = [{:?}]\nca_roots_file = {:?}\n",
            c.api_url.trim_start_matches("https://"),
            c.ca_file.display().to_string()
        ));
    }
    let path = dir.join("runtime-config.toml");
    std::fs::write(&path, text).expect("runtime config");
    path
}

/// Starts `n` hosts with `options` and gives them all host 0's password (see the module
/// docs for why a restart is needed).
fn start_hosts(n: usize, options: &Options) -> Vec<Broker> {
    let mut hosts: Vec<Broker> = (0..n)
        .map(|_| Broker::start_with_options(options.clone()))
        .collect();
    let password = hosts[0].password.clone();
    for host in &mut hosts[1..] {
        host.password = password.clone();
        host.restart();
    }
    hosts
}

// ---------------------------------------------------------------------------
// A tiny PRNG (the suite has no `rand`)
// ---------------------------------------------------------------------------

fn random_below(n: usize) -> usize {
    let id = new_id().replace('-', "");
    (u64::from_str_radix(&id[..16], 16).unwrap_or(0) % n.max(1) as u64) as usize
}
