//! The fleet: OSB requests spread over the hosts, counted, sent again elsewhere when their
//! host was killed, and the expectations the scenarios leave for the final checks.

use super::*;

/// A response together with the host that gave it.
pub struct Got {
    pub resp: Resp,
    pub host: usize,
    /// An earlier attempt of this request got no response (its host died): it may or
    /// may not have been carried out.
    pub uncertain: bool,
}

impl std::ops::Deref for Got {
    type Target = Resp;
    fn deref(&self) -> &Resp {
        &self.resp
    }
}

impl Got {
    #[track_caller]
    pub fn must(self, statuses: &[u16], what: &str) -> Got {
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

    pub fn is_concurrency_error(&self) -> bool {
        self.resp.status == 422 && self.resp.json["error"] == "ConcurrencyError"
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Final {
    /// Exists, usable, with these parameters.
    Ready(Value),
    /// Deleted: 404 on fetch, 410 on last_operation and deletion.
    Gone,
}

#[derive(Debug, Clone)]
pub struct KubeInfo {
    pub plan: String,
    pub namespace: String,
}

#[derive(Debug, Clone)]
pub struct InstanceExpect {
    pub iid: String,
    pub plan: Plan,
    pub last: Final,
    pub kube: Option<KubeInfo>,
    pub scenario: &'static str,
}

#[derive(Debug, Clone)]
pub struct BindingExpect {
    pub iid: String,
    pub bid: String,
    pub last: Final,
    pub kube: Option<KubeInfo>,
    pub scenario: &'static str,
}

pub struct Fleet<'a> {
    pub hosts: &'a [Broker],
    pub alive: Vec<AtomicBool>,
    pub per_host: Vec<AtomicUsize>,
    pub in_flight: Vec<AtomicUsize>,
    pub total: AtomicUsize,
    pub mutating: AtomicUsize,
    pub transport_errors: AtomicUsize,
    pub concurrency_errors: AtomicUsize,
    pub statuses: Mutex<BTreeMap<u16, usize>>,
    pub notes: Mutex<Vec<String>>,
    pub instances: Mutex<Vec<InstanceExpect>>,
    pub bindings: Mutex<Vec<BindingExpect>>,
    pub kube: Option<Kube>,
    /// Stops counting into the workload figures (final checks are counted separately).
    pub counting: AtomicBool,
}

/// How long a request keeps retrying a `ConcurrencyError` (a killed host's lease lasts
/// 30 s; a synchronous request waits 5 s for a concurrent holder before answering 422).
pub const SETTLE: Duration = Duration::from_secs(90);
/// How long an asynchronous operation may take (lease expiry included).
pub const OPERATION: Duration = Duration::from_secs(180);

pub fn deletion_path(base: &str, plan: &Plan, accepts_incomplete: bool) -> String {
    with_ai(
        &format!(
            "{base}?{}",
            query(&[("service_id", &plan.service_id), ("plan_id", &plan.plan_id)])
        ),
        accepts_incomplete,
    )
}

impl<'a> Fleet<'a> {
    pub fn new(hosts: &'a [Broker], kube: Option<Kube>) -> Fleet<'a> {
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

    pub fn note(&self, text: String) {
        self.notes.lock().unwrap().push(text);
    }

    pub fn random_alive(&self) -> usize {
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
    pub fn send(
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
    pub fn settle(&self, f: impl Fn() -> Got) -> Got {
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
    pub fn fan<T: Send>(&self, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
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

    pub fn provision(&self, to: Option<usize>, iid: &str, body: &Value, ai: bool) -> Got {
        let path = with_ai(&instance_path(iid), ai);
        self.send(to, true, &|b| b.request("PUT", &path).json(body))
    }

    pub fn deprovision(&self, to: Option<usize>, iid: &str, plan: &Plan, ai: bool) -> Got {
        let path = deletion_path(&instance_path(iid), plan, ai);
        self.send(to, true, &|b| b.request("DELETE", &path))
    }

    pub fn bind(&self, to: Option<usize>, iid: &str, bid: &str, body: &Value, ai: bool) -> Got {
        let path = with_ai(&binding_path(iid, bid), ai);
        self.send(to, true, &|b| b.request("PUT", &path).json(body))
    }

    pub fn unbind(&self, to: Option<usize>, iid: &str, bid: &str, plan: &Plan, ai: bool) -> Got {
        let path = deletion_path(&binding_path(iid, bid), plan, ai);
        self.send(to, true, &|b| b.request("DELETE", &path))
    }

    pub fn fetch_instance(&self, to: Option<usize>, iid: &str) -> Got {
        let path = instance_path(iid);
        self.send(to, false, &|b| b.request("GET", &path))
    }

    pub fn fetch_binding(&self, to: Option<usize>, iid: &str, bid: &str) -> Got {
        let path = binding_path(iid, bid);
        self.send(to, false, &|b| b.request("GET", &path))
    }

    pub fn instance_last_op(&self, to: Option<usize>, iid: &str, op: Option<&str>) -> Got {
        let mut path = format!("{}/last_operation", instance_path(iid));
        if let Some(op) = op {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.send(to, false, &|b| b.request("GET", &path))
    }

    pub fn binding_last_op(
        &self,
        to: Option<usize>,
        iid: &str,
        bid: &str,
        op: Option<&str>,
    ) -> Got {
        let mut path = format!("{}/last_operation", binding_path(iid, bid));
        if let Some(op) = op {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.send(to, false, &|b| b.request("GET", &path))
    }

    /// Polls `poll` on random hosts (playing the kubelet in `namespace` first) until the
    /// operation is no longer in progress; returns that answer.
    pub fn wait(&self, what: &str, namespace: Option<&str>, poll: impl Fn() -> Got) -> Got {
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

    pub fn wait_instance(&self, iid: &str, op: &str, namespace: Option<&str>) -> Got {
        self.wait(&format!("instance {iid} operation {op}"), namespace, || {
            self.instance_last_op(None, iid, Some(op))
        })
    }

    pub fn wait_binding(&self, iid: &str, bid: &str, op: &str, namespace: Option<&str>) -> Got {
        self.wait(&format!("binding {bid} operation {op}"), namespace, || {
            self.binding_last_op(None, iid, bid, Some(op))
        })
    }

    pub fn expect_instance(
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

    pub fn expect_binding(
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
pub fn one_operation(got: &[Got], what: &str) -> String {
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
pub fn identical_creations(got: &[Got], ok: &[u16], created: u16, what: &str) {
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
