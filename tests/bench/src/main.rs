//! `spin-osb-bench`: a loopback load benchmark comparing `spin-osb` serving a
//! trivial wasm component (`tests/components/hello`, app `tests/apps/bench`)
//! with the same handler served by native hyper in this process.
//!
//! Both targets get the same closed-loop load: `--concurrency` workers, each
//! with its own keep-alive HTTP/1.1 connection, sharing `--requests` requests.
//! Every response latency is recorded; non-200 answers (and bodies other than
//! `hello, world\n`) count as errors. The whole run is bounded by
//! `--max-seconds` (host start-up, warm-ups and both measured runs); a run cut
//! short by the limit is flagged in the table.
//!
//! The host is started as `spin-osb up -f APP --listen 127.0.0.1:0 --state-dir
//! TMP` and stopped at the end (SIGTERM, then SIGKILL after 5 s), also on
//! error or panic. Its stderr (one log line per request at the default
//! `info` level; `--quiet-host` sets `RUST_LOG=warn`) goes to a file in the
//! temporary state directory.
//!
//! The `osb` suite ([`osb`]) then runs the broker itself (`spin.toml`) through its OSB
//! workloads, each next to the gateway-only floor measured in the same run.
//!
//! Run it with `scripts/bench.sh [ARGS]`, which builds everything first.

mod osb;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// What both targets answer to every request.
const STATUS: u16 = 200;
const CONTENT_TYPE: &str = "text/plain";
const BODY: &[u8] = b"hello, world\n";

/// How long the host gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(
    name = "spin-osb-bench",
    about = "Loopback benchmarks: spin-osb vs. native hyper on a trivial component, and the broker's OSB workloads vs. the gateway floor"
)]
struct Args {
    /// The spin-osb binary (relative paths are tried from the current directory, then the repo root).
    #[arg(long, default_value = "target/release/spin-osb")]
    host_bin: PathBuf,
    /// The Spin manifest to serve (one catch-all hello component).
    #[arg(long, default_value = "tests/apps/bench/spin.toml")]
    app: PathBuf,
    /// Measured requests per target.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Concurrent workers (one keep-alive connection each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Unmeasured warm-up requests per target.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Wall-clock budget for the whole benchmark (hard stop for the load loops).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    max_seconds: u64,
    /// Run the host with RUST_LOG=warn (no per-request log line).
    #[arg(long)]
    quiet_host: bool,
    /// Which suites to run: `hello` (host vs native hyper), `osb` (the broker's OSB
    /// workloads next to the gateway floor) or `all`.
    #[arg(long, default_value = "all", value_parser = ["all", "hello", "osb"])]
    suite: String,
    /// The broker's manifest for the OSB suite (built by `spin-osb build`).
    #[arg(long, default_value = "spin.toml")]
    osb_app: PathBuf,
    /// Measured requests per OSB workload (cycles: a quarter of it, so the cycle workloads run long enough to average out a noisy machine).
    #[arg(long, default_value_t = 4_000)]
    osb_requests: u64,
    /// Native server sends `content-length` instead of chunked framing
    /// (spin-osb answers a guest body chunked).
    #[arg(long)]
    native_content_length: bool,
    /// Another spin-osb binary (e.g. the host before a change) serving the same hello app:
    /// it and `--host-bin` are measured in alternating rounds and printed side by side.
    #[arg(long)]
    baseline_host_bin: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let osb = (args.suite != "hello").then(|| osb::OsbArgs {
        host_bin: resolve(&args.host_bin),
        app: resolve(&args.osb_app),
        requests: args.osb_requests,
        max_seconds: args.max_seconds.max(300),
    });
    let hello = if args.suite == "osb" {
        Ok(true)
    } else {
        run(args)
    };
    let outcome = hello.and_then(|good| match osb {
        Some(osb) => Ok(osb::run(osb)? && good),
        None => Ok(good),
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("spin-osb-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; `Ok(false)` when a run had errors or hit the time limit.
fn run(args: Args) -> Result<bool> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let host_bin = resolve(&args.host_bin);
    let app = resolve(&args.app);
    if !host_bin.is_file() {
        bail!(
            "host binary {} not found (build it: cargo build --release -p spin-osb-host)",
            host_bin.display()
        );
    }
    if !app.is_file() {
        bail!("manifest {} not found", app.display());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The native server gets its own runtime (like the host process has its
    // own), so it does not share worker threads with the load generator.
    let native_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .thread_name("native-server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .thread_name("load")
        .enable_all()
        .build()?;

    // Dropped (host stopped) on every path out of this function, panics included.
    let mut host = HostProcess::start(&host_bin, &app, args.quiet_host, deadline)?;
    let baseline = match &args.baseline_host_bin {
        Some(bin) => Some(HostProcess::start(
            &resolve(bin),
            &app,
            args.quiet_host,
            deadline,
        )?),
        None => None,
    };
    let native_addr = native_rt.block_on(start_native_server(args.native_content_length))?;

    let outcome = client_rt.block_on(async {
        tokio::select! {
            r = async {
                let results = bench(&args, native_addr, &host, deadline, cpus).await?;
                if let Some(baseline) = &baseline {
                    compare_hosts(&args, &host, baseline, deadline).await;
                }
                Ok(results)
            } => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    drop(baseline);
    client_rt.shutdown_timeout(Duration::from_secs(1));
    native_rt.shutdown_timeout(Duration::from_secs(1));
    let stopped = host.stop();
    let (native, spin) = outcome?;
    match stopped {
        Ok(how) => println!("host stopped ({how})"),
        Err(e) => println!("host stop: {e:#}"),
    }
    println!("total wall time: {:.1}s", started.elapsed().as_secs_f64());

    let mut good = true;
    for (name, r) in [("native hyper", &native), ("spin-osb", &spin)] {
        if r.errors() > 0 {
            good = false;
            eprintln!(
                "{name}: {} errors (non-200/bad body {}, transport {}); first: {}",
                r.errors(),
                r.bad_responses,
                r.transport_errors,
                r.first_error.as_deref().unwrap_or("-")
            );
        }
        if r.timed_out {
            good = false;
            eprintln!(
                "{name}: stopped by --max-seconds after {} of {} requests",
                r.completed(),
                r.planned
            );
        }
    }
    Ok(good)
}

/// Warm-up and measured runs; returns (native, spin-osb) results.
async fn bench(
    args: &Args,
    native_addr: SocketAddr,
    host: &HostProcess,
    deadline: Instant,
    cpus: usize,
) -> Result<(RunResult, RunResult)> {
    let spin_addr = host.addr;
    println!(
        "spin-osb-bench: {} requests/target, concurrency {}, warm-up {}, limit {}s, {} CPU(s) shared by client and servers",
        args.requests, args.concurrency, args.warmup, args.max_seconds, cpus
    );
    println!(
        "  native hyper      http://{native_addr}/ (in-process, own runtime, {} body)",
        if args.native_content_length {
            "content-length"
        } else {
            "chunked"
        }
    );
    println!(
        "  spin-osb (wasm)   http://{spin_addr}/ (pid {}, {}{})",
        host.pid,
        host.app.display(),
        if args.quiet_host {
            ", RUST_LOG=warn"
        } else {
            ""
        }
    );
    println!(
        "  host RSS after start-up: {}",
        rss_line(host.pid).unwrap_or_else(|e| format!("? ({e})"))
    );

    // Both targets must give the same answer.
    let n = fetch_one(native_addr, deadline)
        .await
        .context("native check request")?;
    let s = fetch_one(spin_addr, deadline)
        .await
        .context("spin-osb check request")?;
    println!("response check:");
    println!("  native hyper      {}", n.describe());
    println!("  spin-osb (wasm)   {}", s.describe());
    for (name, r) in [("native hyper", &n), ("spin-osb", &s)] {
        if r.status != STATUS || r.body != BODY || r.header("content-type") != Some(CONTENT_TYPE) {
            bail!("{name} answered {}, not 200 text/plain hello", r.describe());
        }
    }
    if n.comparable_headers() != s.comparable_headers() {
        println!("  note: header sets differ (date excluded); see above");
    } else {
        println!("  identical status, headers (date excluded) and body");
    }

    if args.warmup > 0 {
        for (name, addr) in [("native hyper", native_addr), ("spin-osb", spin_addr)] {
            let w = load(addr, args.warmup, args.concurrency, deadline).await;
            if w.errors() > 0 || w.timed_out {
                bail!(
                    "{name} warm-up: {} of {} completed, {} errors (first: {}){}",
                    w.completed(),
                    w.planned,
                    w.errors(),
                    w.first_error.as_deref().unwrap_or("-"),
                    if w.timed_out { ", hit time limit" } else { "" }
                );
            }
        }
    }

    // The native run may use at most half of what is left; spin-osb the rest.
    let left = deadline.saturating_duration_since(Instant::now());
    let native_deadline = Instant::now() + left / 2;
    let native = load(
        native_addr,
        args.requests,
        args.concurrency,
        native_deadline,
    )
    .await;
    let spin = load(spin_addr, args.requests, args.concurrency, deadline).await;
    let rss_after = rss_line(host.pid).unwrap_or_else(|e| format!("? ({e})"));

    println!();
    println!(
        "{:<20}{:>9}{:>8}{:>11}{:>11}{:>11}{:>11}{:>11}",
        "target", "requests", "errors", "req/s", "p50 (µs)", "p90 (µs)", "p99 (µs)", "max (µs)"
    );
    for (name, r) in [("native hyper", &native), ("spin-osb (wasm)", &spin)] {
        println!(
            "{:<20}{:>9}{:>8}{:>11.0}{:>11.1}{:>11.1}{:>11.1}{:>11.1}{}",
            name,
            r.completed(),
            r.errors(),
            r.rps(),
            r.percentile_us(50.0),
            r.percentile_us(90.0),
            r.percentile_us(99.0),
            r.max_us(),
            if r.timed_out { "  (time limit)" } else { "" }
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "{:<20}{:>9}{:>8}{:>11.2}{:>11.2}{:>11.2}{:>11.2}{:>11.2}",
        "ratio spin/native",
        "",
        "",
        ratio(spin.rps(), native.rps()),
        ratio(spin.percentile_us(50.0), native.percentile_us(50.0)),
        ratio(spin.percentile_us(90.0), native.percentile_us(90.0)),
        ratio(spin.percentile_us(99.0), native.percentile_us(99.0)),
        ratio(spin.max_us(), native.max_us()),
    );
    println!();
    println!("spin-osb host memory after the run: {rss_after}");
    Ok((native, spin))
}

/// `--host-bin` against `--baseline-host-bin` on the same app: alternating rounds, so a
/// machine that speeds up or slows down during the run affects both alike.
async fn compare_hosts(args: &Args, host: &HostProcess, baseline: &HostProcess, deadline: Instant) {
    const ROUNDS: u64 = 4;
    let per_round = (args.requests / ROUNDS).max(1);
    let mut results = [RunResult::default(), RunResult::default()];
    for _ in 0..ROUNDS {
        for (result, addr) in results.iter_mut().zip([host.addr, baseline.addr]) {
            let round = load(addr, per_round, args.concurrency, deadline).await;
            result.planned += round.planned;
            result.elapsed += round.elapsed;
            result.merge(round);
        }
    }
    println!();
    println!(
        "host vs baseline host ({ROUNDS} alternating rounds of {per_round} requests, concurrency {})",
        args.concurrency
    );
    for result in &mut results {
        result.latencies_ns.sort_unstable();
    }
    for (name, result) in ["spin-osb", "baseline"].into_iter().zip(&results) {
        println!(
            "  {name:<10}{:>11.0} req/s   p50 {:>8.1} µs   p99 {:>8.1} µs   errors {}",
            result.rps(),
            result.percentile_us(50.0),
            result.percentile_us(99.0),
            result.errors()
        );
    }
    let (new, old) = (&results[0], &results[1]);
    println!(
        "  throughput {:+.1} % vs the baseline (p99 {:+.1} %)",
        (new.rps() / old.rps() - 1.0) * 100.0,
        (new.percentile_us(99.0) / old.percentile_us(99.0) - 1.0) * 100.0
    );
}

// ---------------------------------------------------------------------------
// Load generator

#[derive(Default)]
struct RunResult {
    planned: u64,
    /// Latencies of every complete response (any status), nanoseconds, sorted.
    latencies_ns: Vec<u64>,
    ok: u64,
    /// Complete responses that were not 200 + the expected body.
    bad_responses: u64,
    /// Connect/send/receive failures (the connection is replaced).
    transport_errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    timed_out: bool,
}

impl RunResult {
    fn completed(&self) -> u64 {
        self.ok + self.bad_responses
    }
    fn errors(&self) -> u64 {
        self.bad_responses + self.transport_errors
    }
    fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.completed() as f64 / secs
        } else {
            0.0
        }
    }
    fn percentile_us(&self, p: f64) -> f64 {
        percentile_us(&self.latencies_ns, p)
    }
    fn max_us(&self) -> f64 {
        self.latencies_ns
            .last()
            .map_or(f64::NAN, |&ns| ns as f64 / 1000.0)
    }
    fn merge(&mut self, w: RunResult) {
        self.latencies_ns.extend(w.latencies_ns);
        self.ok += w.ok;
        self.bad_responses += w.bad_responses;
        self.transport_errors += w.transport_errors;
        self.timed_out |= w.timed_out;
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
    }
    fn error(&mut self, e: String) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// The `p`th percentile (nearest rank) of sorted nanosecond latencies, in µs.
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    let n = sorted_ns.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, n) - 1] as f64 / 1000.0
}

/// Closed loop: `concurrency` workers with one keep-alive connection each take
/// request tickets until `total` are taken or `deadline` passes.
async fn load(addr: SocketAddr, total: u64, concurrency: u64, deadline: Instant) -> RunResult {
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let tickets = tickets.clone();
            let per_worker = (total / concurrency + 1) as usize;
            tokio::spawn(worker(addr, total, tickets, deadline, per_worker))
        })
        .collect();
    let mut result = RunResult {
        planned: total,
        ..RunResult::default()
    };
    for w in workers {
        match w.await {
            Ok(r) => result.merge(r),
            Err(e) => {
                result.transport_errors += 1;
                result.error(format!("worker failed: {e}"));
            }
        }
    }
    result.elapsed = started.elapsed();
    result.latencies_ns.sort_unstable();
    result
}

async fn worker(
    addr: SocketAddr,
    total: u64,
    tickets: Arc<AtomicU64>,
    deadline: Instant,
    capacity: usize,
) -> RunResult {
    let mut r = RunResult {
        latencies_ns: Vec::with_capacity(capacity),
        ..RunResult::default()
    };
    let authority = addr.to_string();
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        if Instant::now() >= deadline {
            r.timed_out = true;
            break;
        }
        if tickets.fetch_add(1, Ordering::Relaxed) >= total {
            break;
        }
        let sender = match conn.as_mut() {
            Some(s) => s,
            None => match tokio::time::timeout_at(deadline.into(), connect(addr)).await {
                Err(_) => {
                    r.timed_out = true;
                    break;
                }
                Ok(Err(e)) => {
                    r.transport_errors += 1;
                    r.error(format!("connect: {e:#}"));
                    // Do not spin on a dead server; the deadline still bounds us.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Ok(Ok(s)) => conn.insert(s),
            },
        };
        let request = Request::get("/")
            .header(http::header::HOST, &authority)
            .body(Empty::<Bytes>::new())
            .expect("static request");
        let t0 = Instant::now();
        let answer = tokio::time::timeout_at(deadline.into(), async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await;
        let dt = t0.elapsed();
        match answer {
            Err(_) => {
                r.timed_out = true;
                break;
            }
            Ok(Err(e)) => {
                r.transport_errors += 1;
                r.error(format!("request: {e}"));
                conn = None;
            }
            Ok(Ok((status, body))) => {
                r.latencies_ns.push(dt.as_nanos() as u64);
                if status == StatusCode::OK && body.as_ref() == BODY {
                    r.ok += 1;
                } else {
                    r.bad_responses += 1;
                    r.error(format!(
                        "status {status}, body {:?}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
            }
        }
    }
    r
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Headers without `date` (which differs by the second), sorted.
    fn comparable_headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| n != "date")
            .cloned()
            .collect();
        h.sort();
        h
    }
    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .comparable_headers()
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!(
            "{} [{}] {:?}",
            self.status,
            headers.join("; "),
            String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
        )
    }
}

async fn fetch_one(addr: SocketAddr, deadline: Instant) -> Result<Fetched> {
    let limit = deadline.min(Instant::now() + Duration::from_secs(10));
    tokio::time::timeout_at(limit.into(), async {
        let mut sender = connect(addr).await?;
        let request = Request::get("/")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Fetched {
            status,
            headers,
            body,
        })
    })
    .await
    .map_err(|_| anyhow!("no answer in time"))?
}

// ---------------------------------------------------------------------------
// Native baseline: the hello handler on hyper, configured like spin-osb's server.

/// The hello body. By default it has no exact size hint, so hyper frames it
/// with `transfer-encoding: chunked`, as spin-osb does for a guest body; with
/// `--native-content-length` it is a `Full` body (`content-length: 13`).
enum HelloBody {
    Chunked(Option<Bytes>),
    Full(Full<Bytes>),
}

impl hyper::body::Body for HelloBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            HelloBody::Chunked(data) => {
                std::task::Poll::Ready(data.take().map(|d| Ok(hyper::body::Frame::data(d))))
            }
            HelloBody::Full(full) => std::pin::Pin::new(full).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            HelloBody::Chunked(data) => data.is_none(),
            HelloBody::Full(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            HelloBody::Chunked(_) => hyper::body::SizeHint::default(),
            HelloBody::Full(full) => full.size_hint(),
        }
    }
}

fn hello(content_length: bool) -> Response<HelloBody> {
    let body = Bytes::from_static(BODY);
    let body = if content_length {
        HelloBody::Full(Full::new(body))
    } else {
        HelloBody::Chunked(Some(body))
    };
    Response::builder()
        .status(STATUS)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(body)
        .expect("static response")
}

async fn start_native_server(content_length: bool) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |_request: Request<Incoming>| async move {
                            Ok::<_, Infallible>(hello(content_length))
                        }),
                    )
                    .await;
            });
        }
    });
    Ok(addr)
}

// ---------------------------------------------------------------------------
// The spin-osb host process

struct HostProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    app: PathBuf,
    stopped: bool,
    log: PathBuf,
    /// Holds the state dir (and the host log) until the host is gone.
    _state: tempfile::TempDir,
}

impl HostProcess {
    /// Starts `spin-osb up` on a free port and waits for its `Serving` line.
    fn start(bin: &Path, app: &Path, quiet: bool, deadline: Instant) -> Result<Self> {
        let state = tempfile::Builder::new()
            .prefix("spin-osb-bench-")
            .tempdir()?;
        let log = state.path().join("host.log");
        let stderr = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("up")
            .arg("-f")
            .arg(app)
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if quiet {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the banner, then keeps draining guest/host stdout until EOF.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.trim().strip_prefix("Serving http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.to_string());
                    }
                }
            }
        });
        let mut host = HostProcess {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            app: app.to_path_buf(),
            stopped: false,
            log,
            _state: state,
        };
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    host.addr = addr
                        .trim_end_matches('/')
                        .parse()
                        .with_context(|| format!("bad Serving address {addr:?}"))?;
                    return Ok(host);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed without a banner: give the exit status a moment.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if let Some(status) = host.child.try_wait()? {
                host.stopped = true;
                bail!(
                    "spin-osb exited ({status}) before serving; its stderr:\n{}",
                    host.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "spin-osb did not print `Serving http://...` within --max-seconds; its stderr:\n{}",
                    host.log_tail()
                );
            }
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        if text.trim().is_empty() {
            "(empty)".into()
        } else {
            text
        }
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL. Idempotent.
    fn stop(&mut self) -> Result<String> {
        if self.stopped {
            return Ok("already stopped".into());
        }
        self.stopped = true;
        if let Some(status) = self.child.try_wait()? {
            return Ok(format!("had exited: {status}"));
        }
        // SAFETY: plain kill(2) on our own child, which has not been reaped.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let until = Instant::now() + STOP_GRACE;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait()? {
                return Ok(format!("SIGTERM: {status}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        Ok(format!("SIGKILL after {STOP_GRACE:?}: {status}"))
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("spin-osb-bench: stopping host pid {}: {e:#}", self.pid);
        }
    }
}

/// `VmRSS` (and peak `VmHWM`) of a process, from /proc.
fn rss_line(pid: u32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let rss = field("VmRSS:").ok_or_else(|| anyhow!("no VmRSS"))?;
    let peak = field("VmHWM:").map_or(String::new(), |kb| {
        format!(" (peak {:.1} MiB)", kb as f64 / 1024.0)
    });
    Ok(format!("VmRSS {:.1} MiB{peak}", rss as f64 / 1024.0))
}

/// Relative paths: from the current directory if they exist there, else from
/// the repository root (this crate lives in `tests/bench`).
fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = root.join(path);
    if candidate.exists() {
        candidate
    } else {
        path.to_path_buf()
    }
}
