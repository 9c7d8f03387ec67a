//! Scale-out: several `spin-osb up` processes on different ports that share one
//! Redis as their `default` key-value store behave as one broker.
//!
//! * `three_hosts_sharing_redis_behave_as_one_broker` spreads a few hundred OSB requests
//!   (identical repeats, conflicting bodies, provision/bind/unbind/deprovision sequences,
//!   `last_operation` polls) over three hosts from many threads, kills one host with
//!   SIGKILL in the middle and brings it back later, then checks every instance and
//!   binding through every host, every record in Redis, and — for the Kubernetes plans —
//!   every object in the real kube-apiserver (exactly one of each, none after deletion).
//! * `an_unreachable_redis_gives_a_clear_503_and_writes_nothing_half_way` stops Redis under
//!   two hosts: every stateful endpoint answers a prompt 503 OSB error naming the state
//!   store, nothing is written, and once Redis is back the same requests succeed; Redis is
//!   also stopped while requests are in flight, and every interrupted request is then
//!   completed (or cleaned up) by retrying it, as a platform would.
//! * `a_deprovision_racing_a_kubernetes_provision_leaves_no_object_behind` (ignored until
//!   the bug it reproduces is fixed): a deprovision that overtakes a provision's first
//!   Kubernetes step must not leave the objects that step applies afterwards.
//!
//! The harness gives every `Broker` its own random password and sets
//! `SPIN_VARIABLE_BROKER_PASSWORD` after `Options::env`, so a password cannot be passed in.
//! A platform, however, has one set of credentials for the broker. The password is a
//! public field that `Broker::restart` reuses, so the test copies host 0's password into
//! the other hosts and restarts them: all three then accept the same credentials, and
//! every request below is sent with them.
//!
//! Needs redis-server (Debian's `redis-server` package) and, for the first test, the
//! Kubernetes control plane of `tests/kube/kube.sh`. Everything runs on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use spin_osb_e2e::kube::{cluster, Cluster, Kube, KUBE_COMPONENTS};
use spin_osb_e2e::redis::RedisServer;
use spin_osb_e2e::{
    binding_key, binding_path, instance_key, instance_path, json, new_id, query, repo_root, Broker,
    Options, Plan, Req, Resp, Value, USERNAME,
};

/// The two tests load the machine heavily; run them one after the other.
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

// ---------------------------------------------------------------------------
// The fleet: requests spread over hosts, counted, surviving a killed host
// ---------------------------------------------------------------------------

/// A response together with the host that gave it.
struct Got {
    resp: Resp,
    host: usize,
    /// An earlier attempt of this request got no response (its host died): it may or
    /// may not have been carried out.
    uncertain: bool,
}

impl std::ops::Deref for Got {
    type Target = Resp;
    fn deref(&self) -> &Resp {
        &self.resp
    }
}

impl Got {
    #[track_caller]
    fn must(self, statuses: &[u16], what: &str) -> Got {
        assert!(
            statuses.contains(&self.resp.status),
            "{what}: {} on host {} answered {}, expected one of {statuses:?}: {}",
            self.resp.what,
            self.host,
            self.resp.status,
            self.resp.body
        );
        self
    }

    fn is_concurrency_error(&self) -> bool {
        self.resp.status == 422 && self.resp.json["error"] == "ConcurrencyError"
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Final {
    /// Exists, usable, with these parameters.
    Ready(Value),
    /// Deleted: 404 on fetch, 410 on last_operation and deletion.
    Gone,
}

#[derive(Debug, Clone)]
struct KubeInfo {
    plan: String,
    namespace: String,
}

#[derive(Debug, Clone)]
struct InstanceExpect {
    iid: String,
    plan: Plan,
    last: Final,
    kube: Option<KubeInfo>,
    scenario: &'static str,
}

#[derive(Debug, Clone)]
struct BindingExpect {
    iid: String,
    bid: String,
    last: Final,
    kube: Option<KubeInfo>,
    scenario: &'static str,
}

struct Fleet<'a> {
    hosts: &'a [Broker],
    alive: Vec<AtomicBool>,
    per_host: Vec<AtomicUsize>,
    in_flight: Vec<AtomicUsize>,
    total: AtomicUsize,
    mutating: AtomicUsize,
    transport_errors: AtomicUsize,
    concurrency_errors: AtomicUsize,
    statuses: Mutex<BTreeMap<u16, usize>>,
    notes: Mutex<Vec<String>>,
    instances: Mutex<Vec<InstanceExpect>>,
    bindings: Mutex<Vec<BindingExpect>>,
    kube: Option<Kube>,
    /// Stops counting into the workload figures (final checks are counted separately).
    counting: AtomicBool,
}

/// How long a request keeps retrying a `ConcurrencyError` (a killed host's lease lasts
/// 30 s; a synchronous request waits 5 s for a concurrent holder before answering 422).
const SETTLE: Duration = Duration::from_secs(90);
/// How long an asynchronous operation may take (lease expiry included).
const OPERATION: Duration = Duration::from_secs(180);

fn with_ai(path: &str, accepts_incomplete: bool) -> String {
    if !accepts_incomplete {
        return path.to_string();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}accepts_incomplete=true")
}

fn deletion_path(base: &str, plan: &Plan, accepts_incomplete: bool) -> String {
    with_ai(
        &format!(
            "{base}?{}",
            query(&[("service_id", &plan.service_id), ("plan_id", &plan.plan_id)])
        ),
        accepts_incomplete,
    )
}

impl<'a> Fleet<'a> {
    fn new(hosts: &'a [Broker], kube: Option<Kube>) -> Fleet<'a> {
        Fleet {
            hosts,
            alive: hosts.iter().map(|_| AtomicBool::new(true)).collect(),
            per_host: hosts.iter().map(|_| AtomicUsize::new(0)).collect(),
            in_flight: hosts.iter().map(|_| AtomicUsize::new(0)).collect(),
            total: AtomicUsize::new(0),
            mutating: AtomicUsize::new(0),
            transport_errors: AtomicUsize::new(0),
            concurrency_errors: AtomicUsize::new(0),
            statuses: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(Vec::new()),
            instances: Mutex::new(Vec::new()),
            bindings: Mutex::new(Vec::new()),
            kube,
            counting: AtomicBool::new(true),
        }
    }

    fn note(&self, text: String) {
        self.notes.lock().unwrap().push(text);
    }

    fn random_alive(&self) -> usize {
        loop {
            let alive: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| self.alive[i].load(Ordering::SeqCst))
                .collect();
            if !alive.is_empty() {
                return alive[random_below(alive.len())];
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends to `preferred` (if alive) or a random live host; a request that gets no
    /// response (its host was killed) is sent again to another live host.
    fn send(
        &self,
        preferred: Option<usize>,
        mutating: bool,
        build: &dyn for<'b> Fn(&'b Broker) -> Req<'b>,
    ) -> Got {
        let mut uncertain = false;
        for attempt in 0..30 {
            let host = match preferred.map(|p| p % self.hosts.len()) {
                Some(p) if attempt == 0 && self.alive[p].load(Ordering::SeqCst) => p,
                _ => self.random_alive(),
            };
            let broker = &self.hosts[host];
            let password = broker.password.clone();
            let req = build(broker).auth(USERNAME, &password);
            if self.counting.load(Ordering::SeqCst) {
                self.total.fetch_add(1, Ordering::SeqCst);
                self.per_host[host].fetch_add(1, Ordering::SeqCst);
                if mutating {
                    self.mutating.fetch_add(1, Ordering::SeqCst);
                }
            }
            self.in_flight[host].fetch_add(1, Ordering::SeqCst);
            let result = req.try_send();
            self.in_flight[host].fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(resp) => {
                    *self
                        .statuses
                        .lock()
                        .unwrap()
                        .entry(resp.status)
                        .or_insert(0) += 1;
                    if resp.status >= 500 {
                        self.note(format!(
                            "host {host}: {} answered {}: {}",
                            resp.what, resp.status, resp.body
                        ));
                    }
                    return Got {
                        resp,
                        host,
                        uncertain,
                    };
                }
                Err(e) => {
                    self.transport_errors.fetch_add(1, Ordering::SeqCst);
                    let short: String = e.chars().take(160).collect();
                    self.note(format!(
                        "no response from host {host} (alive flag {}): {short}; sent again elsewhere",
                        self.alive[host].load(Ordering::SeqCst)
                    ));
                    uncertain = true;
                    thread::sleep(Duration::from_millis(150));
                }
            }
        }
        panic!("no host answered after 30 attempts");
    }

    /// Repeats `f` while it answers 422 ConcurrencyError (another request, possibly on a
    /// killed host, holds the resource); OSB allows that answer for concurrent requests
    /// on one resource and platforms retry it.
    fn settle(&self, f: impl Fn() -> Got) -> Got {
        let deadline = Instant::now() + SETTLE;
        let mut uncertain = false;
        loop {
            let got = f();
            uncertain |= got.uncertain;
            if got.is_concurrency_error() && Instant::now() < deadline {
                self.concurrency_errors.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(400));
                continue;
            }
            return Got { uncertain, ..got };
        }
    }

    /// Runs `f(0..n)` on `n` threads at once (identical or conflicting requests racing).
    fn fan<T: Send>(&self, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        let barrier = std::sync::Barrier::new(n);
        thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let f = &f;
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        f(i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    // -- OSB requests ---------------------------------------------------------

    fn provision(&self, to: Option<usize>, iid: &str, body: &Value, ai: bool) -> Got {
        let path = with_ai(&instance_path(iid), ai);
        self.send(to, true, &|b| b.request("PUT", &path).json(body))
    }

    fn deprovision(&self, to: Option<usize>, iid: &str, plan: &Plan, ai: bool) -> Got {
        let path = deletion_path(&instance_path(iid), plan, ai);
        self.send(to, true, &|b| b.request("DELETE", &path))
    }

    fn bind(&self, to: Option<usize>, iid: &str, bid: &str, body: &Value, ai: bool) -> Got {
        let path = with_ai(&binding_path(iid, bid), ai);
        self.send(to, true, &|b| b.request("PUT", &path).json(body))
    }

    fn unbind(&self, to: Option<usize>, iid: &str, bid: &str, plan: &Plan, ai: bool) -> Got {
        let path = deletion_path(&binding_path(iid, bid), plan, ai);
        self.send(to, true, &|b| b.request("DELETE", &path))
    }

    fn fetch_instance(&self, to: Option<usize>, iid: &str) -> Got {
        let path = instance_path(iid);
        self.send(to, false, &|b| b.request("GET", &path))
    }

    fn fetch_binding(&self, to: Option<usize>, iid: &str, bid: &str) -> Got {
        let path = binding_path(iid, bid);
        self.send(to, false, &|b| b.request("GET", &path))
    }

    fn instance_last_op(&self, to: Option<usize>, iid: &str, op: Option<&str>) -> Got {
        let mut path = format!("{}/last_operation", instance_path(iid));
        if let Some(op) = op {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.send(to, false, &|b| b.request("GET", &path))
    }

    fn binding_last_op(&self, to: Option<usize>, iid: &str, bid: &str, op: Option<&str>) -> Got {
        let mut path = format!("{}/last_operation", binding_path(iid, bid));
        if let Some(op) = op {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.send(to, false, &|b| b.request("GET", &path))
    }

    /// Polls `poll` on random hosts (playing the kubelet in `namespace` first) until the
    /// operation is no longer in progress; returns that answer.
    fn wait(&self, what: &str, namespace: Option<&str>, poll: impl Fn() -> Got) -> Got {
        let deadline = Instant::now() + OPERATION;
        loop {
            if let (Some(ns), Some(k)) = (namespace, &self.kube) {
                pods_ready(k, ns);
            }
            let got = poll();
            if got.status != 200 || got.json["state"] != "in progress" {
                return got;
            }
            assert!(
                got.header("retry-after")
                    .is_some_and(|r| r.parse::<u64>().is_ok()),
                "{what}: `in progress` without a numeric Retry-After: {:?}",
                got.headers
            );
            assert!(
                Instant::now() < deadline,
                "{what}: still in progress after {OPERATION:?} (host {}): {}",
                got.host,
                got.body
            );
            thread::sleep(Duration::from_millis(300));
        }
    }

    fn wait_instance(&self, iid: &str, op: &str, namespace: Option<&str>) -> Got {
        self.wait(&format!("instance {iid} operation {op}"), namespace, || {
            self.instance_last_op(None, iid, Some(op))
        })
    }

    fn wait_binding(&self, iid: &str, bid: &str, op: &str, namespace: Option<&str>) -> Got {
        self.wait(&format!("binding {bid} operation {op}"), namespace, || {
            self.binding_last_op(None, iid, bid, Some(op))
        })
    }

    fn expect_instance(
        &self,
        scenario: &'static str,
        iid: &str,
        plan: &Plan,
        last: Final,
        kube: Option<KubeInfo>,
    ) {
        self.instances.lock().unwrap().push(InstanceExpect {
            iid: iid.to_string(),
            plan: plan.clone(),
            last,
            kube,
            scenario,
        });
    }

    fn expect_binding(
        &self,
        scenario: &'static str,
        iid: &str,
        bid: &str,
        last: Final,
        kube: Option<KubeInfo>,
    ) {
        self.bindings.lock().unwrap().push(BindingExpect {
            iid: iid.to_string(),
            bid: bid.to_string(),
            last,
            kube,
            scenario,
        });
    }
}

/// All 202 answers carry the same operation; returns it.
#[track_caller]
fn one_operation(got: &[Got], what: &str) -> String {
    let ops: BTreeSet<String> = got
        .iter()
        .filter(|g| g.status == 202)
        .map(|g| g.operation())
        .collect();
    assert_eq!(
        ops.len(),
        1,
        "{what}: identical requests must share one operation: {:?}",
        got.iter()
            .map(|g| format!("host {} {} {}", g.host, g.status, g.body))
            .collect::<Vec<_>>()
    );
    ops.into_iter().next().unwrap()
}

/// Identical creations: every answer in `ok`, and one of them created it (`created`)
/// unless an attempt was lost with a killed host.
#[track_caller]
fn identical_creations(got: &[Got], ok: &[u16], created: u16, what: &str) {
    for g in got {
        assert!(
            ok.contains(&g.status),
            "{what}: identical request on host {} answered {} (expected {ok:?}): {}",
            g.host,
            g.status,
            g.body
        );
    }
    assert!(
        got.iter().any(|g| g.status == created || g.uncertain),
        "{what}: nobody got {created}: {:?}",
        got.iter().map(|g| g.status).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// Kubernetes helpers
// ---------------------------------------------------------------------------

/// Plays the kubelet like `Kube::make_pods_ready`, but tolerates pods that disappear
/// meanwhile (other scenarios delete theirs concurrently) and skips ready ones.
fn pods_ready(k: &Kube, namespace: &str) {
    let Some((200, list)) = k.raw("GET", &format!("/api/v1/namespaces/{namespace}/pods"), None)
    else {
        return;
    };
    let now = rfc3339_now();
    for pod in list["items"].as_array().into_iter().flatten() {
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready || pod["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let _ = k.raw(
            "PATCH",
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            Some((
                "application/merge-patch+json",
                json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}
                ]}}),
            )),
        );
    }
}

fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn kube_body(plan: &Plan, namespace: Option<&str>, parameters: Value) -> Value {
    let context = match namespace {
        Some(ns) => json!({"platform": "kubernetes", "namespace": ns, "clusterid": "e2e"}),
        None => json!({"platform": "kubernetes", "clusterid": "e2e"}),
    };
    // Kubernetes platforms send the cluster id and the namespace as organization and space.
    json!({"service_id": plan.service_id, "plan_id": plan.plan_id,
        "organization_guid": "e2e", "space_guid": namespace.unwrap_or("default"),
        "context": context, "parameters": parameters})
}

/// Names of the objects at collection `path` matching `selector`, sorted.
fn names(k: &Kube, path: &str, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = k
        .list(path, selector)
        .iter()
        .filter(|o| !o["metadata"]["deletionTimestamp"].is_string())
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// What the broker created for an instance (not its bindings), by kind.
fn instance_objects(k: &Kube, iid: &str, info: &KubeInfo) -> BTreeMap<&'static str, Vec<String>> {
    let selector = format!("osb.spin-osb.dev/instance={iid},!osb.spin-osb.dev/binding");
    let ns = &info.namespace;
    let mut out = BTreeMap::new();
    out.insert("namespaces", names(k, "/api/v1/namespaces", &selector));
    for (kind, path) in [
        ("secrets", format!("/api/v1/namespaces/{ns}/secrets")),
        ("configmaps", format!("/api/v1/namespaces/{ns}/configmaps")),
        ("services", format!("/api/v1/namespaces/{ns}/services")),
        (
            "deployments",
            format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        ),
        (
            "statefulsets",
            format!("/apis/apps/v1/namespaces/{ns}/statefulsets"),
        ),
    ] {
        out.insert(kind, names(k, &path, &selector));
    }
    out
}

/// What a ready instance of `info.plan` must own: exactly one object of each name.
fn expected_instance_objects(iid: &str, info: &KubeInfo) -> BTreeMap<&'static str, Vec<String>> {
    let short = &iid[..8];
    let v = |names: &[String]| names.to_vec();
    let mut out = BTreeMap::new();
    match info.plan.as_str() {
        "cache" => {
            out.insert("namespaces", vec![]);
            out.insert("secrets", v(&[format!("cache-{short}")]));
            out.insert("configmaps", v(&[format!("cache-{short}-config")]));
            out.insert(
                "services",
                v(&[format!("cache-{short}"), format!("cache-{short}-metrics")]),
            );
            out.insert("deployments", v(&[format!("cache-{short}")]));
            out.insert("statefulsets", vec![]);
        }
        "database" => {
            out.insert("namespaces", v(&[format!("osb-{iid}")]));
            out.insert("secrets", vec![]);
            out.insert("configmaps", vec![]);
            out.insert("services", v(&["db".to_string()]));
            out.insert("deployments", vec![]);
            out.insert("statefulsets", v(&["db".to_string()]));
        }
        other => panic!("no expectations for plan {other}"),
    }
    out
}

fn no_objects() -> BTreeMap<&'static str, Vec<String>> {
    [
        "namespaces",
        "secrets",
        "configmaps",
        "services",
        "deployments",
        "statefulsets",
    ]
    .into_iter()
    .map(|k| (k, Vec::new()))
    .collect()
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

struct Plans {
    sync: Plan,
    asynchronous: Plan,
    cache: Plan,
    database: Plan,
}

/// Sync plan, full lifecycle: 3 identical provisions at once on 3 hosts, a conflicting
/// provision, 2 identical binds, a conflicting bind, 2 unbinds, 2 deprovisions, repeats.
fn sync_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "sync-lifecycle";
    let plan = &p.sync;
    let iid = new_id();
    let params = json!({"size": 1, "username_prefix": "life"});
    let body = plan.provision_body(params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, false)));
    identical_creations(&got, &[201, 200], 201, &format!("{S} provision {iid}"));
    f.provision(None, &iid, &plan.provision_body(json!({"size": 2})), false)
        .must(&[409], "a provision with different parameters conflicts");
    let fetched = f.fetch_instance(None, &iid).must(&[200], "fetch");
    assert_eq!(fetched.json["parameters"], params, "{}", fetched.body);

    let bid = new_id();
    let bind_body = plan.bind_body(json!({"role": "read-only"}));
    let binds = f.fan(2, |i| {
        f.settle(|| f.bind(Some(i + 1), &iid, &bid, &bind_body, false))
    });
    identical_creations(&binds, &[201, 200], 201, &format!("{S} bind {bid}"));
    let creds: BTreeSet<String> = binds
        .iter()
        .map(|g| g.json["credentials"].to_string())
        .collect();
    assert_eq!(
        creds.len(),
        1,
        "identical binds return one credential set: {creds:?}"
    );
    f.bind(
        None,
        &iid,
        &bid,
        &plan.bind_body(json!({"role": "read-write"})),
        false,
    )
    .must(&[409], "a bind with different parameters conflicts");
    let fetched = f
        .fetch_binding(None, &iid, &bid)
        .must(&[200], "fetch binding");
    assert!(creds.contains(&fetched.json["credentials"].to_string()));

    let unbinds = f.fan(2, |i| {
        f.settle(|| f.unbind(Some(i + 2), &iid, &bid, plan, false))
    });
    identical_creations(&unbinds, &[200, 410], 200, &format!("{S} unbind {bid}"));
    f.unbind(None, &iid, &bid, plan, false)
        .must(&[410], "a repeated unbind is 410 Gone");
    f.fetch_binding(None, &iid, &bid)
        .must(&[404], "an unbound binding is not found");

    let deletes = f.fan(2, |i| {
        f.settle(|| f.deprovision(Some(i), &iid, plan, false))
    });
    identical_creations(
        &deletes,
        &[200, 410],
        200,
        &format!("{S} deprovision {iid}"),
    );
    f.deprovision(None, &iid, plan, false)
        .must(&[410], "a repeated deprovision is 410 Gone");
    f.instance_last_op(None, &iid, None)
        .must(&[410], "last_operation of a deleted instance");
    f.expect_instance(S, &iid, plan, Final::Gone, None);
    f.expect_binding(S, &iid, &bid, Final::Gone, None);
}

/// Sync plan, kept: 2 identical provisions, 2 identical binds.
fn sync_kept(f: &Fleet, p: &Plans) {
    const S: &str = "sync-kept";
    let plan = &p.sync;
    let iid = new_id();
    let params = json!({"size": 3});
    let body = plan.provision_body(params.clone());
    let got = f.fan(2, |i| {
        f.settle(|| f.provision(Some(i + 1), &iid, &body, false))
    });
    identical_creations(&got, &[201, 200], 201, &format!("{S} provision {iid}"));
    let bid = new_id();
    let bind_body = plan.bind_body(json!({}));
    let binds = f.fan(2, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, false))
    });
    identical_creations(&binds, &[201, 200], 201, &format!("{S} bind {bid}"));
    f.expect_instance(S, &iid, plan, Final::Ready(params), None);
    f.expect_binding(S, &iid, &bid, Final::Ready(json!({})), None);
}

/// Async plan, full lifecycle with polls on any host.
fn async_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "async-lifecycle";
    let plan = &p.asynchronous;
    let iid = new_id();
    let params = json!({"size": 2});
    let body = plan.provision_body(params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, true)));
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "async provisions");
    let done = f.wait_instance(&iid, &op, None);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    f.provision(None, &iid, &body, true)
        .must(&[200], "a repeat after success is 200");
    f.provision(None, &iid, &plan.provision_body(json!({"size": 1})), true)
        .must(&[409], "conflicting provision");

    let bid = new_id();
    let bind_body = plan.bind_body(json!({"role": "read-write"}));
    let binds = f.fan(2, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, true))
    });
    identical_creations(&binds, &[202, 200], 202, &format!("{S} bind {bid}"));
    let bop = one_operation(&binds, "async binds");
    let bound = f.wait_binding(&iid, &bid, &bop, None);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    f.fetch_binding(None, &iid, &bid)
        .must(&[200], "fetch binding");

    let unbinds = f.fan(2, |i| {
        f.settle(|| f.unbind(Some(i + 1), &iid, &bid, plan, true))
    });
    identical_creations(&unbinds, &[202, 410], 202, &format!("{S} unbind {bid}"));
    let uop = one_operation(&unbinds, "async unbinds");
    let unbound = f.wait_binding(&iid, &bid, &uop, None);
    assert!(
        unbound.status == 410 || unbound.json["state"] == "succeeded",
        "{}",
        unbound.body
    );
    f.binding_last_op(None, &iid, &bid, Some(&uop))
        .must(&[410], "unbound → 410");

    let deletes = f.fan(2, |i| {
        f.settle(|| f.deprovision(Some(i + 2), &iid, plan, true))
    });
    identical_creations(
        &deletes,
        &[202, 410],
        202,
        &format!("{S} deprovision {iid}"),
    );
    let dop = one_operation(&deletes, "async deprovisions");
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    f.instance_last_op(None, &iid, Some(&dop))
        .must(&[410], "deprovisioned → 410");
    f.deprovision(None, &iid, plan, true)
        .must(&[410], "repeated deprovision");
    f.expect_instance(S, &iid, plan, Final::Gone, None);
    f.expect_binding(S, &iid, &bid, Final::Gone, None);
}

/// Async plan, kept.
fn async_kept(f: &Fleet, p: &Plans) {
    const S: &str = "async-kept";
    let plan = &p.asynchronous;
    let iid = new_id();
    let params = json!({"username_prefix": "kept"});
    let body = plan.provision_body(params.clone());
    let got = f.fan(2, |i| {
        f.settle(|| f.provision(Some(i + 1), &iid, &body, true))
    });
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "async provisions");
    let done = f.wait_instance(&iid, &op, None);
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let bid = new_id();
    let bind_body = plan.bind_body(json!({"role": "read-only"}));
    let bop = f
        .settle(|| f.bind(None, &iid, &bid, &bind_body, true))
        .must(&[202], "async bind")
        .operation();
    let bound = f.wait_binding(&iid, &bid, &bop, None);
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    f.expect_instance(S, &iid, plan, Final::Ready(params), None);
    f.expect_binding(
        S,
        &iid,
        &bid,
        Final::Ready(json!({"role": "read-only"})),
        None,
    );
}

/// Async plan: a deprovision on another host while the provision is still running
/// cancels it; the provision's operation then polls as failed.
fn deprovision_during_provision(f: &Fleet, p: &Plans) {
    const S: &str = "deprovision-during-provision";
    let plan = &p.asynchronous;
    let iid = new_id();
    let body = plan.provision_body(json!({}));
    let first = f
        .settle(|| f.provision(Some(0), &iid, &body, true))
        .must(&[202], "provision");
    let op = first.operation();
    let dop = f
        .settle(|| f.deprovision(Some(1), &iid, plan, true))
        .must(&[202], "deprovision during provisioning")
        .operation();
    let cancelled = f
        .instance_last_op(Some(2), &iid, Some(&op))
        .must(&[200], "old operation");
    assert!(
        cancelled.json["state"] == "failed" || cancelled.uncertain,
        "the cancelled provision polls as failed: {}",
        cancelled.body
    );
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    f.provision(None, &iid, &body, true)
        .must(&[202], "the id can be used again");
    // ... and deleted again at once (both answers are fine; the end state is gone).
    let dop = f
        .settle(|| f.deprovision(None, &iid, plan, true))
        .must(&[202], "second deprovision")
        .operation();
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    f.expect_instance(S, &iid, plan, Final::Gone, None);
}

/// Sync plan: two different bodies for one new id race on different hosts. Exactly one
/// body wins everywhere; every request with the other body gets 409.
fn conflicting_creators(f: &Fleet, p: &Plans) {
    const S: &str = "conflicting-creators";
    let plan = &p.sync;
    let iid = new_id();
    let bodies = [json!({"size": 1}), json!({"size": 3})];
    let got = f.fan(4, |i| {
        let body = plan.provision_body(bodies[i % 2].clone());
        (i % 2, f.settle(|| f.provision(Some(i), &iid, &body, false)))
    });
    let winners: BTreeSet<usize> = got
        .iter()
        .filter(|(_, g)| g.status == 201 || g.status == 200)
        .map(|(b, _)| *b)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one body wins: {:?}",
        got.iter()
            .map(|(b, g)| (b, g.status, g.body.clone()))
            .collect::<Vec<_>>()
    );
    let winner = *winners.iter().next().unwrap();
    for (b, g) in &got {
        let expected: &[u16] = if *b == winner { &[201, 200] } else { &[409] };
        assert!(
            expected.contains(&g.status),
            "{S}: body {b} (winner {winner}) on host {} got {}: {}",
            g.host,
            g.status,
            g.body
        );
    }
    let fetched = f.fetch_instance(None, &iid).must(&[200], "fetch");
    assert_eq!(
        fetched.json["parameters"], bodies[winner],
        "{}",
        fetched.body
    );
    f.expect_instance(S, &iid, plan, Final::Ready(bodies[winner].clone()), None);
}

/// Sync plan: an id is deprovisioned, then re-provisioned by 3 identical requests at once.
fn reprovision_deleted_id(f: &Fleet, p: &Plans) {
    const S: &str = "reprovision-deleted-id";
    let plan = &p.sync;
    let iid = new_id();
    f.settle(|| f.provision(None, &iid, &plan.provision_body(json!({"size": 1})), false))
        .must(&[201, 200], "first life");
    f.settle(|| f.deprovision(None, &iid, plan, false))
        .must(&[200, 410], "first death");
    let params = json!({"size": 2, "username_prefix": "again"});
    let body = plan.provision_body(params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, false)));
    identical_creations(&got, &[201, 200], 201, &format!("{S} provision {iid}"));
    let fetched = f.fetch_instance(None, &iid).must(&[200], "fetch");
    assert_eq!(fetched.json["parameters"], params);
    f.expect_instance(S, &iid, plan, Final::Ready(params), None);
}

/// Kubernetes `cache` (async provision and bind), kept: identical provisions on every
/// host, a conflict, polls on any host while playing the kubelet, identical binds.
fn kube_cache_kept(f: &Fleet, p: &Plans) {
    const S: &str = "kube-cache-kept";
    let k = f.kube.as_ref().expect("cluster");
    let plan = &p.cache;
    let ns = format!("e2e-so-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let iid = new_id();
    let params = json!({"replicas": 1, "note": "scale-out"});
    let body = kube_body(plan, Some(&ns), params.clone());
    let got = f.fan(3, |i| f.settle(|| f.provision(Some(i), &iid, &body, true)));
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "kube provisions");
    f.provision(
        None,
        &iid,
        &kube_body(plan, Some(&ns), json!({"replicas": 2})),
        true,
    )
    .must(&[409], "conflicting kube provision");
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let info = KubeInfo {
        plan: "cache".into(),
        namespace: ns.clone(),
    };
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let binds = f.fan(3, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, true))
    });
    identical_creations(&binds, &[202, 200], 202, &format!("{S} bind {bid}"));
    let bop = one_operation(&binds, "kube binds");
    let bound = f.wait_binding(&iid, &bid, &bop, Some(&ns));
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    f.expect_instance(S, &iid, plan, Final::Ready(params), Some(info.clone()));
    f.expect_binding(S, &iid, &bid, Final::Ready(json!({})), Some(info));
}

/// Kubernetes `cache`, full lifecycle; ends with no object left.
fn kube_cache_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "kube-cache-lifecycle";
    let k = f.kube.as_ref().expect("cluster");
    let plan = &p.cache;
    let ns = format!("e2e-so-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let iid = new_id();
    let body = kube_body(plan, Some(&ns), json!({}));
    let got = f.fan(2, |i| f.settle(|| f.provision(Some(i), &iid, &body, true)));
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "kube provisions");
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let bop = f
        .settle(|| f.bind(None, &iid, &bid, &bind_body, true))
        .must(&[202], "kube bind")
        .operation();
    let bound = f.wait_binding(&iid, &bid, &bop, Some(&ns));
    assert_eq!(bound.json["state"], "succeeded", "{}", bound.body);
    let unbinds = f.fan(2, |i| {
        f.settle(|| f.unbind(Some(i), &iid, &bid, plan, true))
    });
    identical_creations(&unbinds, &[202, 410], 202, &format!("{S} unbind {bid}"));
    let uop = one_operation(&unbinds, "kube unbinds");
    let unbound = f.wait_binding(&iid, &bid, &uop, Some(&ns));
    assert!(
        unbound.status == 410 || unbound.json["state"] == "succeeded",
        "{}",
        unbound.body
    );
    let deletes = f.fan(3, |i| f.settle(|| f.deprovision(Some(i), &iid, plan, true)));
    identical_creations(
        &deletes,
        &[202, 410],
        202,
        &format!("{S} deprovision {iid}"),
    );
    let dop = one_operation(&deletes, "kube deprovisions");
    let gone = f.wait_instance(&iid, &dop, Some(&ns));
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    let info = KubeInfo {
        plan: "cache".into(),
        namespace: ns,
    };
    f.expect_instance(S, &iid, plan, Final::Gone, Some(info.clone()));
    f.expect_binding(S, &iid, &bid, Final::Gone, Some(info));
}

/// Kubernetes `database` (a namespace of its own, synchronous bind), kept.
fn kube_database_kept(f: &Fleet, p: &Plans) {
    const S: &str = "kube-database-kept";
    let plan = &p.database;
    let iid = new_id();
    let ns = format!("osb-{iid}");
    let body = kube_body(plan, None, json!({}));
    let got = f.fan(2, |i| {
        f.settle(|| f.provision(Some(i + 1), &iid, &body, true))
    });
    identical_creations(&got, &[202, 200], 202, &format!("{S} provision {iid}"));
    let op = one_operation(&got, "kube provisions");
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let bid = new_id();
    let bind_body = json!({"service_id": plan.service_id, "plan_id": plan.plan_id});
    let binds = f.fan(3, |i| {
        f.settle(|| f.bind(Some(i), &iid, &bid, &bind_body, false))
    });
    identical_creations(&binds, &[201, 200], 201, &format!("{S} bind {bid}"));
    let info = KubeInfo {
        plan: "database".into(),
        namespace: ns,
    };
    f.expect_instance(S, &iid, plan, Final::Ready(json!({})), Some(info.clone()));
    f.expect_binding(S, &iid, &bid, Final::Ready(json!({})), Some(info));
}

/// Kubernetes `database`, provisioned then deprovisioned (its namespace goes too).
fn kube_database_lifecycle(f: &Fleet, p: &Plans) {
    const S: &str = "kube-database-lifecycle";
    let plan = &p.database;
    let iid = new_id();
    let ns = format!("osb-{iid}");
    let body = kube_body(plan, None, json!({}));
    let op = f
        .settle(|| f.provision(None, &iid, &body, true))
        .must(&[202], "kube provision")
        .operation();
    let done = f.wait_instance(&iid, &op, Some(&ns));
    assert_eq!(done.json["state"], "succeeded", "{}", done.body);
    let deletes = f.fan(2, |i| f.settle(|| f.deprovision(Some(i), &iid, plan, true)));
    identical_creations(
        &deletes,
        &[202, 410],
        202,
        &format!("{S} deprovision {iid}"),
    );
    let dop = one_operation(&deletes, "kube deprovisions");
    let gone = f.wait_instance(&iid, &dop, None);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );
    let info = KubeInfo {
        plan: "database".into(),
        namespace: ns,
    };
    f.expect_instance(S, &iid, plan, Final::Gone, Some(info));
}

type Scenario = fn(&Fleet, &Plans);

// ---------------------------------------------------------------------------
// Test 1
// ---------------------------------------------------------------------------

#[test]
fn three_hosts_sharing_redis_behave_as_one_broker() {
    let _serial = serial();
    let c = cluster();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), true)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), Some(c))),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_KUBERNETES_API_URL", &c.api_url)
    .env("SPIN_VARIABLE_KUBERNETES_TOKEN", &c.admin_token);
    let hosts = start_hosts(3, &options);
    for (i, h) in hosts.iter().enumerate() {
        eprintln!("host {i}: {} (pid {})", h.base(), h.pid());
    }
    let catalog = hosts[0].catalog();
    let plan = |name: &str| {
        catalog
            .plan_named(name)
            .unwrap_or_else(|| panic!("plan {name} in the combined catalog"))
    };
    let plans = Plans {
        sync: plan("sync"),
        asynchronous: plan("async"),
        cache: plan("cache"),
        database: plan("database"),
    };
    let fleet = Fleet::new(&hosts, Some(c.admin()));

    let mut scenarios: Vec<(&str, Scenario)> = Vec::new();
    for _ in 0..8 {
        scenarios.push(("sync-lifecycle", sync_lifecycle));
    }
    for _ in 0..6 {
        scenarios.push(("sync-kept", sync_kept));
    }
    for _ in 0..4 {
        scenarios.push(("async-lifecycle", async_lifecycle));
    }
    for _ in 0..3 {
        scenarios.push(("async-kept", async_kept));
    }
    for _ in 0..3 {
        scenarios.push(("deprovision-during-provision", deprovision_during_provision));
    }
    for _ in 0..4 {
        scenarios.push(("conflicting-creators", conflicting_creators));
    }
    for _ in 0..3 {
        scenarios.push(("reprovision-deleted-id", reprovision_deleted_id));
    }
    scenarios.push(("kube-cache-kept", kube_cache_kept));
    scenarios.push(("kube-cache-kept", kube_cache_kept));
    scenarios.push(("kube-cache-lifecycle", kube_cache_lifecycle));
    scenarios.push(("kube-database-kept", kube_database_kept));
    scenarios.push(("kube-database-lifecycle", kube_database_lifecycle));
    // Shuffle (Fisher-Yates), keeping the Kubernetes ones early so they overlap the kill.
    for i in (1..scenarios.len()).rev() {
        let j = random_below(i + 1);
        scenarios.swap(i, j);
    }
    scenarios.sort_by_key(|(name, _)| !name.starts_with("kube"));

    const WORKERS: usize = 8;
    const KILL_AT_MUTATING: usize = 90;
    const REJOIN_AFTER: usize = 150;
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let kill_log: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let started = Instant::now();
    thread::scope(|s| {
        // The chaos: SIGKILL host 2 mid-run, start it again later.
        s.spawn(|| {
            while fleet.mutating.load(Ordering::SeqCst) < KILL_AT_MUTATING
                && !done.load(Ordering::SeqCst)
            {
                thread::sleep(Duration::from_millis(10));
            }
            // Kill it while it is busy (up to 10 s of waiting for 2 requests in flight).
            let busy_deadline = Instant::now() + Duration::from_secs(10);
            while fleet.in_flight[2].load(Ordering::SeqCst) < 2
                && Instant::now() < busy_deadline
                && !done.load(Ordering::SeqCst)
            {
                thread::yield_now();
            }
            let in_flight = fleet.in_flight[2].load(Ordering::SeqCst);
            let at = fleet.total.load(Ordering::SeqCst);
            hosts[2].kill9();
            fleet.alive[2].store(false, Ordering::SeqCst);
            kill_log.lock().unwrap().push(format!(
                "host 2 killed (SIGKILL) at {:.1} s, after {at} requests, with {in_flight} in flight",
                started.elapsed().as_secs_f64()
            ));
            while fleet.total.load(Ordering::SeqCst) < at + REJOIN_AFTER
                && !done.load(Ordering::SeqCst)
            {
                thread::sleep(Duration::from_millis(10));
            }
            hosts[2].restart();
            fleet.alive[2].store(true, Ordering::SeqCst);
            kill_log.lock().unwrap().push(format!(
                "host 2 back on {} at {:.1} s, after {} requests",
                hosts[2].base(),
                started.elapsed().as_secs_f64(),
                fleet.total.load(Ordering::SeqCst)
            ));
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((name, scenario)) = scenarios.get(i) else {
                        break;
                    };
                    let result =
                        std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&fleet, &plans)));
                    if let Err(e) = result {
                        let message = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{name} #{i}: {message}"));
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        done.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed();
    fleet.counting.store(false, Ordering::SeqCst);

    let total = fleet.total.load(Ordering::SeqCst);
    let mutating = fleet.mutating.load(Ordering::SeqCst);
    let per_host: Vec<usize> = fleet
        .per_host
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    eprintln!(
        "scale-out run: {} scenarios, {total} requests ({mutating} provision/bind/unbind/deprovision) in {:.1} s ({:.1} req/s); per host {per_host:?}; statuses {:?}; {} requests without response (retried elsewhere); {} ConcurrencyError answers retried",
        scenarios.len(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        fleet.statuses.lock().unwrap(),
        fleet.transport_errors.load(Ordering::SeqCst),
        fleet.concurrency_errors.load(Ordering::SeqCst),
    );
    for line in kill_log.lock().unwrap().iter() {
        eprintln!("  {line}");
    }
    for note in fleet.notes.lock().unwrap().iter() {
        eprintln!("  note: {note}");
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        mutating >= 200,
        "at least 200 provision/bind/unbind/deprovision requests: {mutating}"
    );
    assert_eq!(
        kill_log.lock().unwrap().len(),
        2,
        "host 2 was killed and restarted"
    );
    assert!(
        per_host.iter().all(|&n| n > 20),
        "every host served: {per_host:?}"
    );
    assert!(hosts.iter().all(Broker::is_running));

    let instances = fleet.instances.lock().unwrap().clone();
    let bindings = fleet.bindings.lock().unwrap().clone();
    verify_through_every_host(&fleet, &instances, &bindings);
    verify_redis(&redis, &instances, &bindings);
    verify_kubernetes(fleet.kube.as_ref().unwrap(), &instances, &bindings);

    // Clean the cluster up: deprovision what was kept, drop the test namespaces.
    fleet.counting.store(false, Ordering::SeqCst);
    let k = fleet.kube.as_ref().unwrap();
    for inst in instances.iter().filter(|i| i.kube.is_some()) {
        if matches!(inst.last, Final::Ready(_)) {
            let resp = fleet.settle(|| fleet.deprovision(None, &inst.iid, &inst.plan, true));
            if resp.status == 202 {
                let op = resp.operation();
                let info = inst.kube.as_ref().unwrap();
                fleet.wait_instance(&inst.iid, &op, Some(&info.namespace));
            }
        }
        let info = inst.kube.as_ref().unwrap();
        if info.namespace.starts_with("e2e-so-") {
            k.delete(&format!("/api/v1/namespaces/{}", info.namespace));
        }
    }
}

/// Every instance and binding answers the same on every host, and as the scenario implies.
fn verify_through_every_host(f: &Fleet, instances: &[InstanceExpect], bindings: &[BindingExpect]) {
    let mut problems = Vec::new();
    let n = f.hosts.len();
    for inst in instances {
        let answers: Vec<(u16, u16, Value, Value)> = (0..n)
            .map(|h| {
                let fetched = f.fetch_instance(Some(h), &inst.iid);
                assert_eq!(fetched.host, h);
                let last = f.instance_last_op(Some(h), &inst.iid, None);
                (
                    fetched.status,
                    last.status,
                    fetched.json.clone(),
                    last.json.clone(),
                )
            })
            .collect();
        if answers.iter().any(|a| a != &answers[0]) {
            problems.push(format!(
                "instance {} ({}): hosts disagree: {answers:?}",
                inst.iid, inst.scenario
            ));
            continue;
        }
        let (fetch, last, body, last_body) = &answers[0];
        let ok = match &inst.last {
            Final::Ready(params) => {
                *fetch == 200
                    && *last == 200
                    && last_body["state"] == "succeeded"
                    && body["parameters"] == *params
            }
            Final::Gone => *fetch == 404 && *last == 410,
        };
        if !ok {
            problems.push(format!(
                "instance {} ({}): expected {:?}, got fetch {fetch} {body}, last_operation {last} {last_body}",
                inst.iid, inst.scenario, inst.last
            ));
        }
    }
    for b in bindings {
        let answers: Vec<(u16, u16, Value, Value)> = (0..n)
            .map(|h| {
                let fetched = f.fetch_binding(Some(h), &b.iid, &b.bid);
                let last = f.binding_last_op(Some(h), &b.iid, &b.bid, None);
                (
                    fetched.status,
                    last.status,
                    fetched.json.clone(),
                    last.json.clone(),
                )
            })
            .collect();
        if answers.iter().any(|a| a != &answers[0]) {
            problems.push(format!(
                "binding {} ({}): hosts disagree: {answers:?}",
                b.bid, b.scenario
            ));
            continue;
        }
        let (fetch, last, body, last_body) = &answers[0];
        let ok = match &b.last {
            Final::Ready(params) => {
                *fetch == 200
                    && *last == 200
                    && last_body["state"] == "succeeded"
                    && body["credentials"]
                        .as_object()
                        .is_some_and(|c| !c.is_empty())
                    && body["parameters"] == *params
            }
            Final::Gone => *fetch == 404 && *last == 410,
        };
        if !ok {
            problems.push(format!(
                "binding {} of {} ({}): expected {:?}, got fetch {fetch} {body}, last_operation {last} {last_body}",
                b.bid, b.iid, b.scenario, b.last
            ));
        }
    }
    eprintln!(
        "verified {} instances and {} bindings through each of the {n} hosts",
        instances.len(),
        bindings.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Redis holds exactly the expected records (plus their claim counters and the
/// Kubernetes discovery cache): nothing lost, nothing extra, no lease or operation left.
fn verify_redis(redis: &RedisServer, instances: &[InstanceExpect], bindings: &[BindingExpect]) {
    let store = redis.snapshot();
    let mut expected: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for i in instances {
        let status = if i.last == Final::Gone {
            "deleted"
        } else {
            "ready"
        };
        assert!(
            expected
                .insert(instance_key(&i.iid), (status, i.scenario))
                .is_none(),
            "instance ids are unique"
        );
    }
    for b in bindings {
        let status = if b.last == Final::Gone {
            "deleted"
        } else {
            "ready"
        };
        expected.insert(binding_key(&b.iid, &b.bid), (status, b.scenario));
    }
    let mut problems = Vec::new();
    let mut claims: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut caches = 0;
    // Binding keys named by the instances' binding indexes (see core/src/expiry.rs).
    let mut indexed: BTreeSet<String> = BTreeSet::new();
    for (key, value) in &store {
        if key.starts_with("osb/v1/expiry/") {
            // The tombstone expiry ledger and its cursor (see core/src/expiry.rs).
            continue;
        }
        if let Some((instance, entry)) = key.split_once("/binding-index/") {
            let iid = instance.trim_start_matches("osb/v1/instance/");
            if !expected.contains_key(instance) {
                problems.push(format!("binding index {key} of an unknown instance"));
            }
            if entry != "n" {
                indexed.insert(binding_key(iid, &String::from_utf8_lossy(value)));
            }
            continue;
        }
        if let Some((record, generation)) = key.split_once("/claim/") {
            if !expected.contains_key(record) {
                problems.push(format!("claim counter {key} of an unknown record"));
            }
            let n = String::from_utf8_lossy(value).parse::<i64>().unwrap_or(-1);
            claims
                .entry(record.to_string())
                .or_default()
                .push((generation.to_string(), n));
            continue;
        }
        if key.starts_with("osb/v1/cache/kubernetes/") {
            caches += 1;
            continue;
        }
        let Some((status, scenario)) = expected.get(key) else {
            problems.push(format!(
                "unexpected key {key}: {}",
                String::from_utf8_lossy(value)
            ));
            continue;
        };
        let record: Value = match serde_json::from_slice(value) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{key} ({scenario}) is not JSON: {e}"));
                continue;
            }
        };
        let op = &record["operation"];
        if record["schema"] != 1
            || record["status"] != *status
            || op["state"] == "in progress"
            || op.get("lease_until").is_some_and(|l| !l.is_null())
        {
            problems.push(format!(
                "{key} ({scenario}): expected status {status}, no running operation and no lease; got status {}, operation {op}",
                record["status"]
            ));
        }
    }
    for key in expected.keys() {
        if !store.contains_key(key) {
            problems.push(format!("lost record {key} ({})", expected[key].1));
        }
        if !claims.contains_key(key) {
            problems.push(format!("record {key} has no claim counter"));
        }
        if key.starts_with("osb/v1/binding/") && !indexed.contains(key) {
            problems.push(format!(
                "binding {key} is missing from its instance's index"
            ));
        }
    }
    let takeovers: Vec<String> = claims
        .iter()
        .filter(|(_, gens)| gens.len() > 1)
        .map(|(k, gens)| format!("{k}: {gens:?}"))
        .collect();
    let creators: usize = claims
        .values()
        .flat_map(|g| g.iter().map(|(_, n)| *n as usize))
        .sum();
    eprintln!(
        "redis: {} keys = {} records + {} claim counters (sum {creators} creation attempts) + {caches} discovery cache entries; claim takeovers: {takeovers:?}",
        store.len(),
        expected.len(),
        claims.values().map(Vec::len).sum::<usize>(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each Kubernetes instance owns exactly one object of each expected name while it
/// exists and none once deleted; each binding its one Secret (cache) or nothing.
fn verify_kubernetes(k: &Kube, instances: &[InstanceExpect], bindings: &[BindingExpect]) {
    let mut problems = Vec::new();
    let mut checked = 0;
    for inst in instances {
        let Some(info) = &inst.kube else { continue };
        let expected = match inst.last {
            Final::Ready(_) => expected_instance_objects(&inst.iid, info),
            Final::Gone => no_objects(),
        };
        // Namespace deletion finishes asynchronously in the controller-manager.
        let deadline = Instant::now() + Duration::from_secs(60);
        let found = loop {
            let found = instance_objects(k, &inst.iid, info);
            if found == expected || Instant::now() > deadline {
                break found;
            }
            thread::sleep(Duration::from_millis(500));
        };
        checked += found.values().map(Vec::len).sum::<usize>();
        if found != expected {
            problems.push(format!(
                "instance {} ({}): objects by label {found:?}, expected {expected:?}",
                inst.iid, inst.scenario
            ));
        }
    }
    for b in bindings {
        let Some(info) = &b.kube else { continue };
        let selector = format!("osb.spin-osb.dev/binding={}", b.bid);
        let found = names(
            k,
            &format!("/api/v1/namespaces/{}/secrets", info.namespace),
            &selector,
        );
        let expected: Vec<String> = match (&b.last, info.plan.as_str()) {
            (Final::Ready(_), "cache") => {
                vec![format!("cache-{}-user-{}", &b.iid[..8], &b.bid[..8])]
            }
            _ => vec![],
        };
        checked += found.len();
        if found != expected {
            problems.push(format!(
                "binding {} ({}): secrets by label {found:?}, expected {expected:?}",
                b.bid, b.scenario
            ));
        }
    }
    eprintln!("kubernetes: {checked} objects found by label, each exactly once as expected");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Test 2
// ---------------------------------------------------------------------------

/// A request to try while Redis is down, with its name.
type Check<'a> = (&'static str, Box<dyn Fn() -> Resp + 'a>);

const STORE_TIMEOUT: Duration = Duration::from_secs(20);

/// A prompt 503 OSB error that names the state store.
#[track_caller]
fn unavailable(resp: Resp, took: Duration) {
    assert_eq!(
        resp.status, 503,
        "{}: expected 503 while Redis is down, got {}: {}",
        resp.what, resp.status, resp.body
    );
    resp.assert_osb_error_body();
    assert!(
        resp.description().contains("state store"),
        "{}: the 503 must say the state store is unavailable: {}",
        resp.what,
        resp.body
    );
    assert!(took < STORE_TIMEOUT, "{}: the 503 took {took:?}", resp.what);
}

fn timed(f: impl FnOnce() -> Resp) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = f();
    (resp, started.elapsed())
}

#[test]
fn an_unreachable_redis_gives_a_clear_503_and_writes_nothing_half_way() {
    let _serial = serial();
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), false)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), None)),
        ..Options::default()
    };
    let hosts = start_hosts(2, &options);
    let catalog = hosts[0].catalog();
    let sync = catalog.plan_named("sync").expect("sync plan");
    let asynchronous = catalog.plan_named("async").expect("async plan");

    // State from before the outage.
    let p = new_id();
    let pb = new_id();
    hosts[0]
        .provision(&p, &sync.provision_body(json!({"size": 2})), false)
        .expect(201);
    hosts[1]
        .bind(&p, &pb, &sync.bind_body(json!({})), false)
        .expect(201);
    let a = new_id();
    let op = hosts[1]
        .provision(&a, &asynchronous.provision_body(json!({})), true)
        .expect(202)
        .operation();
    assert_eq!(
        hosts[0].wait_instance_operation(&a, &op).json["state"],
        "succeeded"
    );
    let before = redis.snapshot();

    // Outage.
    redis.stop();
    let mut durations = Vec::new();
    let mut outage_ids = Vec::new();
    for (h, b) in hosts.iter().enumerate() {
        let x = new_id();
        let y = new_id();
        let nb = new_id();
        outage_ids.extend([x.clone(), y.clone(), nb.clone()]);
        let checks: Vec<Check<'_>> = vec![
            (
                "provision (sync)",
                Box::new(|| b.provision(&x, &sync.provision_body(json!({})), false)),
            ),
            (
                "provision (async)",
                Box::new(|| b.provision(&y, &asynchronous.provision_body(json!({})), true)),
            ),
            (
                "bind",
                Box::new(|| b.bind(&p, &nb, &sync.bind_body(json!({})), false)),
            ),
            ("fetch instance", Box::new(|| b.fetch_instance(&p))),
            ("fetch binding", Box::new(|| b.fetch_binding(&p, &pb))),
            (
                "instance last_operation",
                Box::new(|| b.instance_last_operation(&a, None)),
            ),
            (
                "binding last_operation",
                Box::new(|| b.binding_last_operation(&p, &pb, None)),
            ),
            (
                "update",
                Box::new(|| {
                    b.update(
                        &p,
                        &json!({"service_id": sync.service_id, "parameters": {"size": 1}}),
                        false,
                    )
                }),
            ),
            ("unbind", Box::new(|| b.unbind(&p, &pb, &sync, false))),
            (
                "deprovision",
                Box::new(|| b.deprovision(&a, &asynchronous, true)),
            ),
        ];
        for (what, check) in checks {
            let (resp, took) = timed(check);
            eprintln!(
                "redis down, host {h}, {what}: {} in {} ms: {}",
                resp.status,
                took.as_millis(),
                resp.body
            );
            unavailable(resp, took);
            durations.push(took);
        }
        // The catalog never touches the store.
        b.catalog();
    }
    let slowest = durations.iter().max().unwrap();
    eprintln!("slowest 503 during the outage: {slowest:?}");

    // Redis is back: the same requests succeed, and nothing was written while it was down.
    redis.start_again();
    let started = Instant::now();
    for b in &hosts {
        loop {
            let resp = b.fetch_instance(&p);
            if resp.status == 200 {
                break;
            }
            assert_eq!(resp.status, 503, "{}", resp.body);
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no reconnection within 30 s: {}",
                resp.body
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "both hosts answered from Redis again {:?} after it restarted",
        started.elapsed()
    );
    let after = redis.snapshot();
    assert_eq!(
        after, before,
        "the store must be exactly as before the outage (no write happened while Redis was down)"
    );
    for id in &outage_ids {
        let leftovers: Vec<&String> = after.keys().filter(|k| k.contains(id.as_str())).collect();
        assert!(leftovers.is_empty(), "{id}: {leftovers:?}");
    }
    for (h, b) in hosts.iter().enumerate() {
        let x = &outage_ids[h * 3];
        let y = &outage_ids[h * 3 + 1];
        let nb = &outage_ids[h * 3 + 2];
        b.fetch_instance(x).expect(404);
        b.instance_last_operation(x, None).expect(404);
        // Retries succeed as if the first attempt never happened.
        b.provision(x, &sync.provision_body(json!({})), false)
            .expect(201);
        let op = b
            .provision(y, &asynchronous.provision_body(json!({})), true)
            .expect(202)
            .operation();
        assert_eq!(b.wait_instance_operation(y, &op).json["state"], "succeeded");
        b.bind(&p, nb, &sync.bind_body(json!({})), false)
            .expect(201);
    }
    hosts[0].fetch_binding(&p, &pb).expect(200);
    hosts[1].unbind(&p, &pb, &sync, false).expect(200);
    let dop = hosts[0]
        .deprovision(&a, &asynchronous, true)
        .expect(202)
        .operation();
    let gone = hosts[1].wait_instance_operation(&a, &dop);
    assert!(
        gone.status == 410 || gone.json["state"] == "succeeded",
        "{}",
        gone.body
    );

    outage_under_load(&mut redis, &hosts, &sync);
}

/// Redis stops while provisions and binds are in flight on both hosts. Afterwards every
/// interrupted request is retried as a platform would (the same provision again, or a
/// deprovision for orphan mitigation) until it succeeds; then every record is complete,
/// with no operation or lease left, and nothing else is in the store.
fn outage_under_load(redis: &mut RedisServer, hosts: &[Broker], sync: &Plan) {
    let stop = AtomicBool::new(false);
    let attempts: Mutex<Vec<(String, String, u16, u16)>> = Mutex::new(Vec::new());
    let mut outage = Duration::ZERO;
    thread::scope(|s| {
        for t in 0..8 {
            let (stop, attempts) = (&stop, &attempts);
            s.spawn(move || {
                let b = &hosts[t % hosts.len()];
                while !stop.load(Ordering::SeqCst) {
                    let iid = new_id();
                    let bid = new_id();
                    let resp = b.provision(&iid, &sync.provision_body(json!({})), false);
                    let bound = if resp.status == 201 {
                        b.bind(&iid, &bid, &sync.bind_body(json!({})), false).status
                    } else {
                        0
                    };
                    attempts
                        .lock()
                        .unwrap()
                        .push((iid, bid, resp.status, bound));
                }
            });
        }
        thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        redis.stop();
        thread::sleep(Duration::from_millis(3000));
        stop.store(true, Ordering::SeqCst);
        redis.start_again();
        outage = started.elapsed();
    });
    let attempts = attempts.into_inner().unwrap();
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut bind_outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, _, provision, bind) in &attempts {
        *outcomes.entry(*provision).or_default() += 1;
        if *bind != 0 {
            *bind_outcomes.entry(*bind).or_default() += 1;
        }
    }
    eprintln!(
        "outage under load: {} provisions attempted around a {outage:?} outage: provision statuses {outcomes:?}, bind statuses {bind_outcomes:?}",
        attempts.len()
    );
    assert!(
        outcomes.get(&503).copied().unwrap_or(0) > 0,
        "some requests must have met the outage: {outcomes:?}"
    );

    // Recovery, as a platform does it: retry until a final answer.
    let concurrency = std::cell::Cell::new(0usize);
    let started = Instant::now();
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for (n, (iid, bid, provision, bind)) in attempts.iter().enumerate() {
        let (provision, bind) = (*provision, *bind);
        let b = &hosts[n % hosts.len()];
        let retry = |f: &dyn Fn() -> Resp| -> Resp {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let resp = f();
                let busy = resp.status == 422 && resp.json["error"] == "ConcurrencyError";
                if busy {
                    concurrency.set(concurrency.get() + 1);
                }
                if !(busy || resp.status == 503) || Instant::now() > deadline {
                    return resp;
                }
                thread::sleep(Duration::from_millis(500));
            }
        };
        if provision == 201 && bind == 201 {
            expected.insert(instance_key(iid), "ready");
            expected.insert(binding_key(iid, bid), "ready");
            continue;
        }
        if n % 2 == 0 {
            // Retry the provision (and the bind).
            let resp = retry(&|| b.provision(iid, &sync.provision_body(json!({})), false));
            assert!(
                resp.status == 201 || resp.status == 200,
                "retried provision {iid} (first answer {provision}): {} {}",
                resp.status,
                resp.body
            );
            let resp = retry(&|| b.bind(iid, bid, &sync.bind_body(json!({})), false));
            assert!(
                resp.status == 201 || resp.status == 200,
                "retried bind {bid} (first answer {bind}): {} {}",
                resp.status,
                resp.body
            );
            expected.insert(instance_key(iid), "ready");
            expected.insert(binding_key(iid, bid), "ready");
        } else {
            // Orphan mitigation: unbind and deprovision whatever may exist.
            let unbound = retry(&|| b.unbind(iid, bid, sync, false));
            assert!(
                unbound.status == 200 || unbound.status == 410,
                "unbind {bid}: {} {}",
                unbound.status,
                unbound.body
            );
            let resp = retry(&|| b.deprovision(iid, sync, false));
            assert!(
                resp.status == 200 || resp.status == 410,
                "orphan mitigation of {iid} (first answer {provision}): {} {}",
                resp.status,
                resp.body
            );
            if resp.status == 200 {
                expected.insert(instance_key(iid), "deleted");
            }
            if unbound.status == 200 {
                expected.insert(binding_key(iid, bid), "deleted");
            }
        }
    }
    eprintln!(
        "outage under load: recovered every request in {:?} ({} ConcurrencyError answers on the way)",
        started.elapsed(),
        concurrency.get()
    );

    let store = redis.snapshot();
    let mut problems = Vec::new();
    for (key, value) in &store {
        if key.contains("/claim/") || key.contains("/binding-index/") {
            continue;
        }
        if !key.starts_with("osb/v1/") {
            problems.push(format!("unexpected key {key}"));
            continue;
        }
        let record: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
        let wanted = expected.get(key.as_str());
        let of_this_phase = attempts
            .iter()
            .any(|(iid, _, _, _)| key.contains(iid.as_str()));
        if !of_this_phase {
            // Records of the first part of the test.
            continue;
        }
        match wanted {
            None => problems.push(format!("{key}: a record nobody accounted for: {record}")),
            Some(status) if record["status"] != *status => {
                problems.push(format!("{key}: expected {status}: {record}"))
            }
            _ => {}
        }
        let op = &record["operation"];
        if op["state"] == "in progress" || op.get("lease_until").is_some_and(|l| !l.is_null()) {
            problems.push(format!(
                "{key}: an operation or lease was left behind: {op}"
            ));
        }
    }
    for key in expected.keys() {
        if !store.contains_key(key) {
            problems.push(format!("lost record {key}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Deletes a namespace when dropped (also when the test fails).
struct NamespaceGuard<'k>(&'k Kube, String);

impl Drop for NamespaceGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .raw("DELETE", &format!("/api/v1/namespaces/{}", self.1), None);
    }
}

/// A deprovision that arrives (on another host) while the provision's first step is still
/// applying manifests must not tear down only what exists at that moment: it is refused
/// with 422 ConcurrencyError until the step has finished, then deletes everything. (Before
/// that rule, the objects the step applied afterwards outlived the instance.)
#[test]
fn a_deprovision_racing_a_kubernetes_provision_leaves_no_object_behind() {
    let _serial = serial();
    let c = cluster();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let options = Options {
        catalog: Some(catalog_dir(dir.path(), true)),
        runtime_config: Some(runtime_config(dir.path(), &redis.url(), Some(c))),
        ..Options::default()
    }
    .env("SPIN_VARIABLE_KUBERNETES_API_URL", &c.api_url)
    .env("SPIN_VARIABLE_KUBERNETES_TOKEN", &c.admin_token);
    let hosts = start_hosts(2, &options);
    let plan = hosts[0].catalog().plan_named("cache").expect("cache plan");
    let k = c.admin();
    let ns = format!("e2e-so-{}", &new_id()[..8]);
    k.create_namespace(&ns);
    let _cleanup = NamespaceGuard(&k, ns.clone());
    let info = KubeInfo {
        plan: "cache".into(),
        namespace: ns.clone(),
    };
    let mut leaks = Vec::new();
    for delay in (0..=150).step_by(10) {
        let iid = new_id();
        let body = kube_body(&plan, Some(&ns), json!({}));
        let (provision, deprovision) = thread::scope(|s| {
            let p = s.spawn(|| hosts[0].provision(&iid, &body, true));
            thread::sleep(Duration::from_millis(delay));
            let d = hosts[1].deprovision(&iid, &plan, true);
            (p.join().unwrap(), d)
        });
        provision.expect(202);
        // Too early (no record yet: 410), or while the provision's step is still applying
        // (422 ConcurrencyError): deprovision again, as a platform would.
        let mut deprovision = deprovision;
        let retry_until = Instant::now() + Duration::from_secs(40);
        while matches!(deprovision.status, 410 | 422) && Instant::now() < retry_until {
            thread::sleep(Duration::from_millis(100));
            deprovision = hosts[1].deprovision(&iid, &plan, true);
        }
        let op = deprovision.expect(202).operation();
        let waited = Instant::now();
        let end = hosts[0].wait_instance_operation(&iid, &op);
        let waited = waited.elapsed();
        assert!(
            end.status == 410 || end.json["state"] == "succeeded",
            "{}",
            end.body
        );
        hosts[1]
            .instance_last_operation(&iid, Some(&op))
            .expect(410);
        thread::sleep(Duration::from_secs(1));
        let left: BTreeMap<_, _> = instance_objects(&k, &iid, &info)
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .collect();
        eprintln!(
            "deprovision {delay} ms after provision: deleted after {waited:?}, objects left {left:?}"
        );
        if !left.is_empty() {
            leaks.push(format!(
                "deprovision sent {delay} ms after the provision, which ended as {}, yet {left:?} remain",
                end.body
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "objects of deprovisioned instances remain:\n{}",
        leaks.join("\n")
    );
}
