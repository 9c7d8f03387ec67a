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

mod host_process;
mod load;
mod native;
mod osb;

use host_process::{resolve, rss_line, HostProcess};
use load::{fetch_one, load, percentile_us, RunResult};
use native::start_native_server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

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
