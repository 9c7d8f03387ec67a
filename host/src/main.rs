//! `spin-osb`: a Spin-compatible host for this project's `spin.toml` (and other Spin HTTP
//! apps that use key-value, variables and outbound HTTP), built on wasmtime.

use spin_osb_host::{app, build_cmd, clusters, fleet, manifest, server};

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "spin-osb",
    version,
    about = "Run Spin HTTP apps (such as the spin-osb broker) on wasmtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application (like `spin up`).
    Up(UpArgs),
    /// Run every component's build command (like `spin build`).
    Build {
        /// The manifest, or a directory containing spin.toml.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// Work with the broker's service catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Declare the Kubernetes clusters of the broker in its spin.toml.
    #[command(subcommand)]
    Clusters(ClustersCommand),
    /// Operate a running broker's fleet through its operator API.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Upgrade every instance whose plan's maintenance_info changed: canaries first, then
    /// the rest, resumable (the run lives in the broker). Exits non-zero if anything failed.
    Upgrade(fleet::UpgradeArgs),
    /// List the instances running an older maintenance_info than their plan's.
    Outdated(fleet::Target),
    /// Stop the active fleet upgrade (upgrades already running finish as ordinary updates).
    Abandon(fleet::Target),
    /// Find backend resources of instances the broker no longer has, and instances stuck
    /// past their deadline; `--delete` cleans them up (never automatically).
    Orphans(fleet::OrphansArgs),
}

#[derive(Subcommand)]
enum ClustersCommand {
    /// Declare one more cluster: its variables, and its API in the allowed_outbound_hosts
    /// of every component that talks to Kubernetes.
    Add {
        /// The cluster's name: a lower-case letter, then lower-case letters and digits.
        name: String,
        /// The manifest, or a directory containing spin.toml.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// Undo `add`: the cluster's variables and outbound host go (deprovision its instances
    /// first: their operations fail once it is gone).
    Remove {
        /// The cluster's name.
        name: String,
        /// The manifest, or a directory containing spin.toml.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// List the declared clusters; fails naming anything a component lacks to reach one.
    List {
        /// The manifest, or a directory containing spin.toml.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate a catalog directory exactly as the broker does when it loads it.
    Check {
        /// The directory holding the catalog's *.yaml files.
        #[arg(default_value = "catalog")]
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    /// The manifest, or a directory containing spin.toml.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Spin runtime config file (key-value stores, client TLS).
    #[arg(long = "runtime-config-file")]
    runtime_config_file: Option<PathBuf>,
    /// Directory for local state such as the default SQLite store [default: .spin beside the manifest].
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long = "max-request-body-bytes", default_value_t = 1024 * 1024)]
    max_request_body_bytes: usize,
    /// Longest a request may take before the host answers 504.
    #[arg(long = "request-timeout-secs", default_value_t = 60)]
    request_timeout_secs: u64,
    /// Open connections served at once; one more gets `503` with `Retry-After`.
    #[arg(long = "max-connections", default_value_t = 1024)]
    max_connections: usize,
    /// Component instances running at once (a chained request uses two); a request that
    /// finds none free gets `503` with `Retry-After`.
    #[arg(long = "max-instances", default_value_t = app::DEFAULT_MAX_INSTANCES)]
    max_instances: u32,
    /// Time a client has to send a request's headers before its connection is closed
    /// (also the idle time allowed between keep-alive requests).
    #[arg(long = "header-read-timeout-secs", default_value_t = 30)]
    header_read_timeout_secs: u64,
    /// Time a client has to send a request's body; a slower one gets `408`.
    #[arg(long = "body-read-timeout-secs", default_value_t = 30)]
    body_read_timeout_secs: u64,
}

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build { manifest } => manifest::LoadedManifest::load(&manifest_path(&manifest))
            .and_then(|m| build_cmd::build(&m)),
        Command::Up(args) => up(args),
        Command::Catalog(CatalogCommand::Check { dir }) => check_catalog(&dir),
        Command::Clusters(ClustersCommand::Add { name, manifest }) => {
            clusters::add(&manifest_path(&manifest), &name)
        }
        Command::Clusters(ClustersCommand::Remove { name, manifest }) => {
            clusters::remove(&manifest_path(&manifest), &name)
        }
        Command::Clusters(ClustersCommand::List { manifest }) => {
            clusters::list(&manifest_path(&manifest))
        }
        Command::Fleet(FleetCommand::Upgrade(args)) => match fleet::upgrade(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Fleet(FleetCommand::Outdated(target)) => fleet::outdated(&target),
        Command::Fleet(FleetCommand::Abandon(target)) => fleet::abandon(&target),
        Command::Fleet(FleetCommand::Orphans(args)) => fleet::orphans(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn up(args: UpArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let options = app::AppOptions {
            manifest: manifest_path(&args.manifest),
            state_dir: args.state_dir,
            runtime_config: args.runtime_config_file,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            max_instances: args.max_instances,
        };
        let app = app::App::load(&options).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        print_banner(&app, addr);
        let limits = server::Limits {
            max_body: args.max_request_body_bytes,
            max_connections: args.max_connections.max(1),
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs.max(1)),
        };
        server::serve(app, listener, limits, shutdown_signal()).await
    })
}

fn check_catalog(dir: &Path) -> Result<()> {
    match spin_osb_core::catalog::check_dir(dir) {
        Ok((_, summary)) => {
            println!("{summary}");
            Ok(())
        }
        Err((errors, summary)) => {
            eprintln!("{errors}");
            anyhow::bail!(summary)
        }
    }
}

fn print_banner(app: &app::App, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Serving http://{addr}");
    tracing::info!("app {} is ready", app.name);
    let _ = writeln!(out, "Available Routes:");
    for (route, component) in app.router().listing() {
        let shown = match route.strip_suffix("/...") {
            Some(prefix) => format!("http://{addr}{prefix} (wildcard)"),
            None => format!("http://{addr}{route}"),
        };
        let _ = writeln!(out, "  {component}: {shown}");
    }
    let _ = out.flush();
}

fn manifest_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("spin.toml")
    } else {
        path.to_path_buf()
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime_wasi_http=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
