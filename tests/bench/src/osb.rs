//! The OSB workloads: the broker app (`spin.toml`, default catalog) served by `spin-osb up`,
//! each workload printed next to the gateway-only floor (an unauthenticated request the
//! gateway answers 401 without calling an endpoint component) measured in the same run.
//!
//! Workloads, all through HTTP on loopback except the 100,000-instance seeding, which
//! copies one real instance record (and its instance-index entry) directly into the host's
//! SQLite store:
//! - `GET /v2/catalog`, 1 connection;
//! - `last_operation` of a finished async instance, 1 and 16 connections;
//! - provision → bind → unbind → deprovision on the sync credentials plan, 1 and 4
//!   connections (a "request" is a whole cycle);
//! - the same provision with parameters, which the schema check sends to `osb-parameters`;
//! - `last_operation` with 10 and with 100,000 stored instances;
//! - an operator API page (`GET /operator/instances`) of 10 instances with 10 stored, and
//!   from the middle of the index with 100,000 stored;
//! - component sizes and the first start after a build (empty compiled-code cache) to the
//!   first 200.
//!
//! Targets are printed beside the figures; nothing here fails on a figure, only on a wrong
//! answer (a benchmark that measured errors would measure nothing).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const PASSWORD: &str = "bench-password";
const OPERATOR_PASSWORD: &str = "bench-operator-password";
/// Instances on an operator API page in the listing workloads.
const PAGE: u64 = 10;
const SERVICE_ID: &str = "2e7edef7-6281-46fe-8349-5110cfcdca61";
const SYNC_PLAN: &str = "be528205-62b7-4eb7-ac6a-034c732eb1ae";
const ASYNC_PLAN: &str = "42ac6998-3b8a-46c8-aeb6-9cea0501d880";
const SEEDED_INSTANCES: u64 = 100_000;
/// Alternating rounds of the 10 vs 100,000 instances comparison.
const ROUNDS: u64 = 6;

/// Options of the OSB suite (from the command line).
pub struct OsbArgs {
    /// `spin-osb` binary.
    pub host_bin: PathBuf,
    /// The broker's manifest (built: `spin-osb build -f spin.toml`).
    pub app: PathBuf,
    /// Measured requests (cycles for the cycle workloads) per workload.
    pub requests: u64,
    /// Whole-suite time budget.
    pub max_seconds: u64,
}

/// One HTTP request of a workload and the status it must get.
struct Step {
    method: &'static str,
    path: String,
    body: Option<String>,
    expect: u16,
}

impl Step {
    fn new(method: &'static str, path: String, expect: u16) -> Self {
        Step {
            method,
            path,
            body: None,
            expect,
        }
    }
    fn body(mut self, body: String) -> Self {
        self.body = Some(body);
        self
    }
}

/// Whether a step sends the broker's credentials (the floor does not).
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Broker,
    /// The operator API's own credentials.
    Operator,
    None,
}

#[derive(Default)]
struct Measured {
    latencies_ns: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    timed_out: bool,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile_us(&self, p: f64) -> f64 {
        super::percentile_us(&self.latencies_ns, p)
    }
    /// Adds a run measured after this one (rates then span both runs).
    fn merge_run(&mut self, other: Measured) {
        self.elapsed += other.elapsed;
        self.merge(other);
        self.latencies_ns.sort_unstable();
    }
    fn merge(&mut self, other: Measured) {
        self.latencies_ns.extend(other.latencies_ns);
        self.ok += other.ok;
        self.errors += other.errors;
        self.timed_out |= other.timed_out;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

struct Client {
    addr: SocketAddr,
    auth_header: String,
    operator_header: String,
}

impl Client {
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn send(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        step: &Step,
        auth: Auth,
    ) -> Result<(u16, Bytes)> {
        let mut builder = Request::builder()
            .method(step.method)
            .uri(&step.path)
            .header("host", self.addr.to_string())
            .header("x-broker-api-version", "2.17");
        match auth {
            Auth::Broker => builder = builder.header("authorization", &self.auth_header),
            Auth::Operator => builder = builder.header("authorization", &self.operator_header),
            Auth::None => {}
        }
        let body = match &step.body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Full::new(Bytes::from(body.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        sender.ready().await?;
        let response = sender.send_request(builder.body(body)?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// One request on a fresh connection, for set-up steps.
    async fn once(&self, step: Step) -> Result<(u16, Bytes)> {
        let mut sender = self.connect().await?;
        let (status, body) = self.send(&mut sender, &step, Auth::Broker).await?;
        if status != step.expect {
            bail!(
                "{} {} answered {status}, not {}: {}",
                step.method,
                step.path,
                step.expect,
                String::from_utf8_lossy(&body)
            );
        }
        Ok((status, body))
    }

    /// Closed loop: `connections` workers, each on its own keep-alive connection, take
    /// tickets until `total` are taken; a ticket runs `steps(ticket)` in order and counts
    /// as one measured unit (a request, or a whole cycle).
    async fn load(
        self: &Arc<Self>,
        total: u64,
        connections: u64,
        deadline: Instant,
        auth: Auth,
        steps: Arc<dyn Fn(u64) -> Vec<Step> + Send + Sync>,
    ) -> Measured {
        let tickets = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let (client, tickets, steps) = (self.clone(), tickets.clone(), steps.clone());
                tokio::spawn(async move {
                    let mut m = Measured::default();
                    let mut conn = None;
                    loop {
                        if Instant::now() >= deadline {
                            m.timed_out = true;
                            break;
                        }
                        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                        if ticket >= total {
                            break;
                        }
                        let sender = match conn.as_mut() {
                            Some(sender) => sender,
                            None => match client.connect().await {
                                Ok(sender) => conn.insert(sender),
                                Err(e) => {
                                    m.errors += 1;
                                    m.first_error.get_or_insert(format!("connect: {e}"));
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    continue;
                                }
                            },
                        };
                        let t0 = Instant::now();
                        let mut failed = None;
                        for step in steps(ticket) {
                            match client.send(sender, &step, auth).await {
                                Ok((status, _)) if status == step.expect => {}
                                Ok((status, body)) => {
                                    failed = Some(format!(
                                        "{} {} answered {status}, not {}: {}",
                                        step.method,
                                        step.path,
                                        step.expect,
                                        String::from_utf8_lossy(&body[..body.len().min(300)])
                                    ));
                                    break;
                                }
                                Err(e) => {
                                    failed = Some(format!("{} {}: {e}", step.method, step.path));
                                    conn = None;
                                    break;
                                }
                            }
                        }
                        match failed {
                            None => {
                                m.ok += 1;
                                m.latencies_ns.push(t0.elapsed().as_nanos() as u64);
                            }
                            Some(e) => {
                                m.errors += 1;
                                m.first_error.get_or_insert(e);
                            }
                        }
                    }
                    m
                })
            })
            .collect();
        let mut all = Measured::default();
        for worker in workers {
            match worker.await {
                Ok(m) => all.merge(m),
                Err(e) => {
                    all.errors += 1;
                    all.first_error.get_or_insert(format!("worker: {e}"));
                }
            }
        }
        all.elapsed = started.elapsed();
        all.latencies_ns.sort_unstable();
        all
    }
}

/// The broker under test: `spin-osb up` on the app, with its own state dir and an empty
/// compiled-code cache (so its start is a first start after a build).
struct Broker {
    child: Child,
    addr: SocketAddr,
    state: tempfile::TempDir,
}

impl Broker {
    /// Starts `spin-osb up` on the app; `variables` are extra `SPIN_VARIABLE_*` settings.
    fn start(
        args: &OsbArgs,
        cache: &Path,
        variables: &[(&str, &str)],
    ) -> Result<(Broker, Duration)> {
        let state = tempfile::Builder::new()
            .prefix("spin-osb-bench-osb-")
            .tempdir()?;
        let log = std::fs::File::create(state.path().join("host.log"))?;
        let started = Instant::now();
        let mut child = Command::new(&args.host_bin)
            .arg("up")
            .arg("-f")
            .arg(&args.app)
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.path().join("state"))
            .env("SPIN_VARIABLE_BROKER_PASSWORD", PASSWORD)
            .env("SPIN_VARIABLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
            .env("SPIN_OSB_CACHE_DIR", cache)
            .envs(variables.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.host_bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.trim().strip_prefix("Serving http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim_end_matches('/').to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(600))
            .map_err(|_| anyhow!("spin-osb did not start; see its log in the state dir"))?
            .parse()?;
        let broker = Broker { child, addr, state };
        // The first 200 of an authenticated catalog request ends the first start.
        let client = broker.client();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            loop {
                let step = Step::new("GET", "/v2/catalog".into(), 200);
                if client.once(step).await.is_ok() {
                    return Ok(());
                }
                if started.elapsed() > Duration::from_secs(600) {
                    bail!("no 200 from /v2/catalog after 600 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })?;
        Ok((broker, started.elapsed()))
    }

    fn client(&self) -> Arc<Client> {
        use base64::Engine;
        let basic = |credentials: String| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        Arc::new(Client {
            addr: self.addr,
            auth_header: basic(format!("broker:{PASSWORD}")),
            operator_header: basic(format!("operator:{OPERATOR_PASSWORD}")),
        })
    }

    fn store(&self) -> PathBuf {
        self.state.path().join("state").join("sqlite_key_value.db")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished async instance (whose `last_operation` path is returned) and 9 sync ones.
async fn set_up(client: &Client, deadline: Instant) -> Result<String> {
    client
        .once(provision("bench-async", ASYNC_PLAN, None))
        .await?;
    let poll = "/v2/service_instances/bench-async/last_operation".to_string();
    loop {
        let (_, body) = client.once(Step::new("GET", poll.clone(), 200)).await?;
        if String::from_utf8_lossy(&body).contains("succeeded") {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the async instance did not finish");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for k in 0..9 {
        client
            .once(provision(&format!("bench-sync-{k}"), SYNC_PLAN, None))
            .await?;
    }
    Ok(poll)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn provision(iid: &str, plan: &str, parameters: Option<&str>) -> Step {
    let parameters = parameters
        .map(|p| format!(r#","parameters":{p}"#))
        .unwrap_or_default();
    let (query, expect) = if plan == ASYNC_PLAN {
        ("?accepts_incomplete=true", 202)
    } else {
        ("", 201)
    };
    Step::new("PUT", format!("/v2/service_instances/{iid}{query}"), expect).body(format!(
        r#"{{"service_id":"{SERVICE_ID}","plan_id":"{plan}","organization_guid":"org","space_guid":"space"{parameters}}}"#
    ))
}

fn cycle(
    prefix: String,
    parameters: Option<&'static str>,
) -> Arc<dyn Fn(u64) -> Vec<Step> + Send + Sync> {
    Arc::new(move |ticket| {
        let iid = format!("{prefix}-{ticket}");
        let bid = format!("{iid}-b");
        let ids = format!("service_id={SERVICE_ID}&plan_id={SYNC_PLAN}");
        vec![
            provision(&iid, SYNC_PLAN, parameters),
            Step::new(
                "PUT",
                format!("/v2/service_instances/{iid}/service_bindings/{bid}"),
                201,
            )
            .body(format!(
                r#"{{"service_id":"{SERVICE_ID}","plan_id":"{SYNC_PLAN}"}}"#
            )),
            Step::new(
                "DELETE",
                format!("/v2/service_instances/{iid}/service_bindings/{bid}?{ids}"),
                200,
            ),
            Step::new("DELETE", format!("/v2/service_instances/{iid}?{ids}"), 200),
        ]
    })
}

fn repeat(
    method: &'static str,
    path: String,
    expect: u16,
) -> Arc<dyn Fn(u64) -> Vec<Step> + Send + Sync> {
    Arc::new(move |_| vec![Step::new(method, path.clone(), expect)])
}

/// Copies instance `template_id`'s record under `count` new ids in one transaction, each
/// appended to the instance index as a provision would (so the operator API lists them).
/// Returns how long it took and the index slot the copies start after.
fn seed_instances(store: &Path, template_id: &str, count: u64) -> Result<(Duration, u64)> {
    const INDEX: &str = "osb/v1/index/instances";
    let started = Instant::now();
    let mut db = rusqlite::Connection::open(store)?;
    db.busy_timeout(Duration::from_secs(10))?;
    let read = |db: &rusqlite::Connection, key: &str| -> Result<Option<Vec<u8>>> {
        let mut query =
            db.prepare("SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1")?;
        let mut rows = query.query([key])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    };
    let key = format!("osb/v1/instance/{template_id}");
    let template = read(&db, &key)?.with_context(|| format!("no record {key}"))?;
    let mut template: serde_json::Value = serde_json::from_slice(&template)?;
    let base: u64 = read(&db, &format!("{INDEX}/n"))?
        .and_then(|n| String::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .context("the instance index has no count")?;
    let tx = db.transaction()?;
    {
        let mut upsert = tx.prepare(
            "INSERT OR REPLACE INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
        )?;
        for n in 0..count {
            let id = format!("seeded-{n:08}");
            let slot = base + 1 + n;
            template["instance_id"] = serde_json::json!(id);
            template["index_slot"] = serde_json::json!(slot);
            upsert.execute(rusqlite::params![
                format!("osb/v1/instance/{id}"),
                serde_json::to_vec(&template)?
            ])?;
            upsert.execute(rusqlite::params![
                format!("{INDEX}/{slot}"),
                id.into_bytes()
            ])?;
        }
        upsert.execute(rusqlite::params![
            format!("{INDEX}/n"),
            (base + count).to_string().into_bytes()
        ])?;
    }
    tx.commit()?;
    Ok((started.elapsed(), base))
}

fn wasm_sizes(app: &Path) -> Result<Vec<(String, u64)>> {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(app)?)?;
    let root = app.parent().unwrap_or(Path::new("."));
    let mut sizes = Vec::new();
    if let Some(components) = manifest.get("component").and_then(|c| c.as_table()) {
        for (id, component) in components {
            if let Some(source) = component.get("source").and_then(|s| s.as_str()) {
                let size = std::fs::metadata(root.join(source))
                    .with_context(|| format!("{id}: {source} (build the app first)"))?
                    .len();
                sizes.push((id.clone(), size));
            }
        }
    }
    sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
    Ok(sizes)
}

struct Row {
    name: String,
    connections: u64,
    m: Measured,
    unit: &'static str,
    target: String,
}

fn print_rows(rows: &[Row], floor: &Measured) {
    println!(
        "{:<52}{:>6}{:>8}{:>7}{:>15}{:>11}{:>11}  target",
        "workload", "conns", "done", "errors", "rate", "p50 (µs)", "p99 (µs)"
    );
    for row in rows {
        println!(
            "{:<52}{:>6}{:>8}{:>7}{:>15}{:>11.0}{:>11.0}  {}{}",
            row.name,
            row.connections,
            row.m.ok,
            row.m.errors,
            format!("{:.0} {}", row.m.rate(), row.unit),
            row.m.percentile_us(50.0),
            row.m.percentile_us(99.0),
            row.target,
            if row.m.timed_out { " (time limit)" } else { "" }
        );
    }
    println!(
        "(p99 of each 1-connection request workload / floor p99 {:.0} µs is in its target column)",
        floor.percentile_us(99.0)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

/// Runs the OSB suite; `Ok(false)` when a workload got wrong answers.
pub fn run(args: OsbArgs) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let cache = tempfile::Builder::new()
        .prefix("spin-osb-bench-cache-")
        .tempdir()?;
    println!();
    println!(
        "OSB workloads: {} (default catalog), loopback, `spin-osb up`",
        args.app.display()
    );

    let sizes = wasm_sizes(&args.app)?;
    let catalog_size = sizes
        .iter()
        .find(|(id, _)| id == "osb-catalog")
        .map_or(0, |s| s.1);
    let largest_endpoint = sizes
        .iter()
        // The OSB endpoints: not the schema checker, not the operator API.
        .find(|(id, _)| id != "osb-parameters" && id != "osb-operator")
        .cloned()
        .unwrap_or_default();
    println!("component sizes:");
    for (id, size) in &sizes {
        println!("  {id:<32}{:>10.0} KB", *size as f64 / 1000.0);
    }
    println!(
        "  largest OSB endpoint component {} {:.2} MB (target ≤ 2 MB {}), catalog {:.0} KB (target ≤ 500 KB {})",
        largest_endpoint.0,
        largest_endpoint.1 as f64 / 1e6,
        verdict(largest_endpoint.1 <= 2_000_000),
        catalog_size as f64 / 1000.0,
        verdict(catalog_size <= 500_000)
    );

    let (broker, first_start) = Broker::start(&args, cache.path(), &[])?;
    println!(
        "first start after a build (empty compiled-code cache) to the first 200: {:.1} s (target ≤ 30 s {})",
        first_start.as_secs_f64(),
        verdict(first_start <= Duration::from_secs(30))
    );
    // A second broker, which will hold 100,000 more instances; started with the compiled
    // code the first start left in the cache.
    let (seeded, warm_start) = Broker::start(&args, cache.path(), &[])?;
    // A third, counting no metrics: the cost of counting is its cycle rate against the first's.
    let (unmetered, _) = Broker::start(&args, cache.path(), &[("SPIN_VARIABLE_METRICS", "off")])?;
    println!(
        "start with a warm compiled-code cache to the first 200: {:.1} s",
        warm_start.as_secs_f64()
    );
    let client = broker.client();
    let seeded_client = seeded.client();
    let unmetered_client = unmetered.client();
    // One client thread, as wrk uses: a multi-threaded client adds a cross-thread wake-up to
    // every request and competes with the host for the two cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let n = args.requests;
    let result = rt.block_on(async {
        let poll = set_up(&client, deadline).await?;
        let seeded_poll = set_up(&seeded_client, deadline).await?;
        let warm = |path: &str| repeat("GET", path.to_string(), 200);
        for workload in [warm("/v2/catalog"), warm(&poll)] {
            client.load(200, 4, deadline, Auth::Broker, workload).await;
        }
        client.load(200, 1, deadline, Auth::None, repeat("GET", "/v2/catalog".into(), 401)).await;

        let floor = client
            .load(n, 1, deadline, Auth::None, repeat("GET", "/v2/catalog".into(), 401))
            .await;
        let floor16 = client
            .load(n, 16, deadline, Auth::None, repeat("GET", "/v2/catalog".into(), 401))
            .await;
        let floor_p99 = floor.percentile_us(99.0);
        let catalog = client.load(n, 1, deadline, Auth::Broker, warm("/v2/catalog")).await;
        let last1 = client.load(n, 1, deadline, Auth::Broker, warm(&poll)).await;
        let last16 = client.load(n, 16, deadline, Auth::Broker, warm(&poll)).await;
        // 10 instances on one broker, 100,010 on the other (same app, same machine),
        // measured in alternating rounds so drift and noise hit both alike.
        let (seeding, seeded_base) =
            seed_instances(&seeded.store(), "bench-sync-0", SEEDED_INSTANCES)?;
        println!(
            "seeded {SEEDED_INSTANCES} instance records into the second broker's SQLite store in {:.1} s",
            seeding.as_secs_f64()
        );
        let some_seeded = format!("/v2/service_instances/seeded-{:08}", SEEDED_INSTANCES / 2);
        seeded_client.once(Step::new("GET", some_seeded, 200)).await?;
        seeded_client.load(200, 1, deadline, Auth::Broker, warm(&seeded_poll)).await;
        let (mut at10, mut at100k) = (Measured::default(), Measured::default());
        let (mut rates10, mut rates100k) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let m = client.load(n / ROUNDS, 1, deadline, Auth::Broker, warm(&poll)).await;
            rates10.push(m.rate());
            at10.merge_run(m);
            let m = seeded_client
                .load(n / ROUNDS, 1, deadline, Auth::Broker, warm(&seeded_poll))
                .await;
            rates100k.push(m.rate());
            at100k.merge_run(m);
        }
        let change = (median(&mut rates100k) / median(&mut rates10) - 1.0) * 100.0;
        // An operator API page of PAGE instances: the first page of the 10, and a page from
        // the middle of the 100,010 (after slot 50,000), in alternating rounds.
        let page10 = repeat("GET", format!("/operator/instances?limit={PAGE}"), 200);
        let middle = seeded_base + SEEDED_INSTANCES / 2;
        let page100k = repeat(
            "GET",
            format!("/operator/instances?limit={PAGE}&after={middle}"),
            200,
        );
        let (mut list10, mut list100k) = (Measured::default(), Measured::default());
        let (mut list_rates10, mut list_rates100k) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let m = client
                .load(n / 4 / ROUNDS, 1, deadline, Auth::Operator, page10.clone())
                .await;
            list_rates10.push(m.rate());
            list10.merge_run(m);
            let m = seeded_client
                .load(n / 4 / ROUNDS, 1, deadline, Auth::Operator, page100k.clone())
                .await;
            list_rates100k.push(m.rate());
            list100k.merge_run(m);
        }
        let list_change =
            (median(&mut list_rates100k) / median(&mut list_rates10) - 1.0) * 100.0;
        let cycles = (n / 4).max(50);
        let cycle1 = client
            .load(cycles, 1, deadline, Auth::Broker, cycle("c1".into(), None))
            .await;
        let cycle4 = client
            .load(cycles, 4, deadline, Auth::Broker, cycle("c4".into(), None))
            .await;
        // The same cycle with and without metrics, in alternating rounds.
        let (mut metered, mut not_metered) = (Measured::default(), Measured::default());
        let (mut metered_rates, mut not_metered_rates) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let m = client
                .load(cycles / ROUNDS, 1, deadline, Auth::Broker, cycle(format!("m{round}"), None))
                .await;
            metered_rates.push(m.rate());
            metered.merge_run(m);
            let m = unmetered_client
                .load(cycles / ROUNDS, 1, deadline, Auth::Broker, cycle(format!("u{round}"), None))
                .await;
            not_metered_rates.push(m.rate());
            not_metered.merge_run(m);
        }
        let metrics_change =
            (median(&mut metered_rates) / median(&mut not_metered_rates) - 1.0) * 100.0;
        let with_parameters = client
            .load(
                cycles,
                1,
                deadline,
                Auth::Broker,
                cycle("cp".into(), Some(r#"{"username_prefix":"app","size":2}"#)),
            )
            .await;

        let p99_target = |m: &Measured| {
            let ratio = m.percentile_us(99.0) / floor_p99;
            (ratio, ratio <= 2.0)
        };
        let (catalog_ratio, catalog_p99_ok) = p99_target(&catalog);
        let rows = vec![
            Row {
                name: "floor: unauthenticated GET /v2/catalog (401)".into(),
                connections: 1,
                target: "-".into(),
                unit: "req/s",
                m: floor,
            },
            Row {
                name: "floor: unauthenticated GET /v2/catalog (401)".into(),
                connections: 16,
                target: "-".into(),
                unit: "req/s",
                m: floor16,
            },
            Row {
                name: "GET /v2/catalog".into(),
                connections: 1,
                target: format!(
                    "≥ 1500 req/s {}; p99 {catalog_ratio:.2}× floor ≤ 2× {}",
                    verdict(catalog.rate() >= 1500.0),
                    verdict(catalog_p99_ok)
                ),
                unit: "req/s",
                m: catalog,
            },
            Row {
                name: "last_operation (finished async instance)".into(),
                connections: 1,
                target: format!("≥ 1200 req/s {}", verdict(last1.rate() >= 1200.0)),
                unit: "req/s",
                m: last1,
            },
            Row {
                name: "last_operation (finished async instance)".into(),
                connections: 16,
                target: format!("≥ 3000 req/s {}", verdict(last16.rate() >= 3000.0)),
                unit: "req/s",
                m: last16,
            },
            Row {
                name: "provision→bind→unbind→deprovision (sync)".into(),
                connections: 1,
                target: format!("≥ 250 cycles/s {}", verdict(cycle1.rate() >= 250.0)),
                unit: "cycles/s",
                m: cycle1,
            },
            Row {
                name: "provision→bind→unbind→deprovision (sync)".into(),
                connections: 4,
                target: format!("≥ 500 cycles/s {}", verdict(cycle4.rate() >= 500.0)),
                unit: "cycles/s",
                m: cycle4,
            },
            Row {
                name: "  same cycle, metrics off (SPIN_VARIABLE_METRICS=off)".into(),
                connections: 1,
                target: "-".into(),
                unit: "cycles/s",
                m: not_metered,
            },
            Row {
                name: "  same cycle, metrics on (alternating rounds)".into(),
                connections: 1,
                target: format!("median round {metrics_change:+.1} % vs off"),
                unit: "cycles/s",
                m: metered,
            },
            Row {
                name: "  same cycle, provision with parameters".into(),
                connections: 1,
                target: "(schema checked by osb-parameters)".into(),
                unit: "cycles/s",
                m: with_parameters,
            },
            Row {
                name: "last_operation, 10 stored instances".into(),
                connections: 1,
                target: "-".into(),
                unit: "req/s",
                m: at10,
            },
            Row {
                name: "last_operation, 100,010 stored instances".into(),
                connections: 1,
                target: format!(
                    "median round {change:+.1} % vs 10, within ±10 % {}",
                    verdict(change.abs() <= 10.0)
                ),
                unit: "req/s",
                m: at100k,
            },
            Row {
                name: format!("operator page of {PAGE}, 10 stored instances"),
                connections: 1,
                target: "-".into(),
                unit: "req/s",
                m: list10,
            },
            Row {
                name: format!("operator page of {PAGE} at slot 50,000 of 100,010"),
                connections: 1,
                target: format!(
                    "median round {list_change:+.1} % vs 10, within ±10 % {}",
                    verdict(list_change.abs() <= 10.0)
                ),
                unit: "req/s",
                m: list100k,
            },
        ];
        Ok::<_, anyhow::Error>(rows)
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let rows = result?;
    println!();
    let floor = &rows[0].m;
    print_rows(&rows, floor);
    let mut good = true;
    for row in &rows {
        if row.m.errors > 0 || row.m.timed_out {
            good = false;
            eprintln!(
                "{} ({} conns): {} errors{}; first: {}",
                row.name,
                row.connections,
                row.m.errors,
                if row.m.timed_out {
                    ", hit the time limit"
                } else {
                    ""
                },
                row.m.first_error.as_deref().unwrap_or("-")
            );
        }
    }
    drop(unmetered);
    drop(seeded);
    drop(broker);
    Ok(good)
}
