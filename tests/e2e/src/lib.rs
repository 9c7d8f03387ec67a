//! Harness for the broker's end-to-end suites (`tests/*.rs`).
//!
//! * [`Broker::start`] runs `spin-osb up -f <repo>/spin.toml --listen 127.0.0.1:0` with a
//!   private state dir and a random password, waits for `Serving http://...`, and captures
//!   the host's output (printed when a test panics). [`Broker::kill9`],
//!   [`Broker::terminate`] and [`Broker::restart`] simulate crashes and restarts on the
//!   same state dir.
//! * [`shared`] is one broker per test binary for tests that do not interfere; it is
//!   killed when the test binary exits.
//! * [`Req`] builds authenticated OSB requests (`X-Broker-API-Version: 2.17`), sent with
//!   reqwest or, for paths a URL parser would normalise (`..`), verbatim over TCP.
//! * [`Broker::store_entries`] reads the SQLite state file the way the broker wrote it.
//!
//! The binary and the components must be built first (`scripts/test.sh` does it):
//! `cargo build --release -p spin-osb && target/release/spin-osb build -f spin.toml`.
//! Everything here only talks to 127.0.0.1.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub mod kube;
pub mod redis;
pub use serde_json::{json, Value};

/// How long `spin-osb up` may take to print `Serving ...` (a cold start compiles eleven
/// components with Cranelift on a slow 2-core machine; later starts hit the cache).
pub const START_TIMEOUT: Duration = Duration::from_secs(480);
/// The API version every helper sends.
pub const API_VERSION: &str = "2.17";
/// The broker's default basic-auth user (`broker_username` in spin.toml).
pub const USERNAME: &str = "broker";
/// How long the `wait_*` helpers poll an asynchronous operation.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// The workspace root (`tests/e2e/../..`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The broker's manifest.
pub fn manifest() -> PathBuf {
    repo_root().join("spin.toml")
}

fn target_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        dirs.push(if dir.is_absolute() {
            dir
        } else {
            repo_root().join(dir)
        });
    }
    // <target>/release/deps/<test>-<hash>
    if let Ok(exe) = std::env::current_exe() {
        if let Some(target) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            dirs.push(target.to_path_buf());
        }
    }
    dirs.push(repo_root().join("target"));
    dirs
}

/// The real Spin CLI: `$SPIN_OSB_REAL_SPIN`, else where `scripts/test.sh` installs it
/// (`~/.cache/spin-osb/spin/spin`, from the Spin build the project's CI provides).
pub fn real_spin_bin() -> Result<PathBuf, String> {
    let path = match std::env::var_os("SPIN_OSB_REAL_SPIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/spin-osb/spin/spin"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the real Spin CLI is not at {} (scripts/test.sh installs it when the Spin build is \
             available; set SPIN_OSB_REAL_SPIN to use another)",
            path.display()
        ))
    }
}

/// The `spin-osb` host binary; panics with build instructions when it is missing.
pub fn host_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let candidates: Vec<PathBuf> = target_dirs()
            .into_iter()
            .map(|d| d.join("release/spin-osb"))
            .collect();
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the spin-osb host binary was not found (looked at {}).\n\
                     Build it and the broker's components first (scripts/test.sh does both):\n  \
                     cargo build --release -p spin-osb && target/release/spin-osb build -f spin.toml",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Panics with build instructions unless every `source` wasm of spin.toml exists.
pub fn check_components_built() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let root = repo_root();
            let text = std::fs::read_to_string(manifest())
                .map_err(|e| format!("cannot read {}: {e}", manifest().display()))?;
            let missing: Vec<String> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("source"))
                .filter_map(|l| l.trim().strip_prefix('='))
                .map(|l| l.trim().trim_matches('"').to_string())
                .filter(|p| p.ends_with(".wasm") && !root.join(p).is_file())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the broker's components are not built (missing: {}).\n\
                     Build them first (scripts/test.sh does it): target/release/spin-osb build -f spin.toml",
                    missing.join(", ")
                ))
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A fresh random id shaped like a v4 UUID.
pub fn new_id() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

fn random_password() -> String {
    format!("e2e-{:016x}{:016x}", random_u64(), random_u64())
}

// ---------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------

/// The host's stdout and stderr, line by line, in arrival order.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn lines(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: String) {
        self.lines().push(line);
    }

    /// Number of lines so far.
    pub fn len(&self) -> usize {
        self.lines().len()
    }

    /// Whether nothing was printed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.lines().iter().map(|l| format!("{l}\n")).collect()
    }

    /// The lines from index `from` on, at most the last `max` of them.
    pub fn since(&self, from: usize, max: usize) -> String {
        let lines = self.lines();
        let from = from.min(lines.len()).max(lines.len().saturating_sub(max));
        lines[from..].iter().map(|l| format!("  {l}\n")).collect()
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    reader: R,
    tag: &'static str,
    output: Output,
    serving: Option<mpsc::Sender<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if let Some(tx) = &serving {
                        if let Some(rest) = line.trim().strip_prefix("Serving ") {
                            let url = rest.split_whitespace().next().unwrap_or("").to_string();
                            let _ = tx.send(url);
                        }
                    }
                    output.push(format!("[{tag}] {line}"));
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------

struct Running {
    child: Option<Child>,
    base: String,
    readers: Vec<thread::JoinHandle<()>>,
    starts: u32,
}

/// A `spin-osb up` serving the repository's spin.toml.
pub struct Broker {
    running: Mutex<Running>,
    manifest: PathBuf,
    /// The `--state-dir` (holds `sqlite_key_value.db`); kept across restarts.
    pub state_dir: PathBuf,
    _state_tmp: Option<tempfile::TempDir>,
    /// The basic-auth password (user [`USERNAME`]).
    pub password: String,
    /// The host's output across all starts.
    pub output: Output,
    client: reqwest::blocking::Client,
    options: Options,
}

/// How a broker differs from the default one.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve this catalog directory instead of the repository's `catalog/` (the repository's
    /// spin.toml is rewritten into the state dir with only that path changed).
    pub catalog: Option<PathBuf>,
    /// Extra environment, e.g. `SPIN_VARIABLE_KUBERNETES_TOKEN`.
    pub env: Vec<(String, String)>,
    /// `--runtime-config-file`.
    pub runtime_config: Option<PathBuf>,
    /// Run the app under the real Spin CLI ([`real_spin_bin`]) instead of `spin-osb up`.
    pub real_spin: bool,
    /// Extra arguments of `spin-osb up` (e.g. `--max-connections 8`).
    pub args: Vec<String>,
}

impl Options {
    /// Sets an environment variable of the host process.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }
}

/// The repository's spin.toml serving `catalog` (YAML) instead: the catalog is compiled
/// into `dir/app/osb-catalog` exactly as `spin build` compiles `catalog/`, and the manifest
/// is written into `dir/app` with only that path changed.
fn manifest_with_catalog(catalog: &Path, dir: &Path) -> PathBuf {
    let root = repo_root();
    let text = std::fs::read_to_string(manifest()).expect("spin.toml");
    let app = dir.join("app");
    std::fs::create_dir_all(&app).expect("app dir");
    let compiled = app.join("osb-catalog");
    compile_catalog(catalog, &compiled);
    let rewritten = text
        .replace(
            "source = \"target/osb-catalog\"",
            &format!("source = {:?}", compiled.display().to_string()),
        )
        .replace(
            "source = \"target/",
            &format!("source = \"{}/target/", root.display()),
        );
    let path = app.join("spin.toml");
    std::fs::write(&path, rewritten).expect("write spin.toml");
    path
}

/// Compiles the YAML catalog in `catalog` into `out` (what `spin-osb-catalog compile` does).
pub fn compile_catalog(catalog: &Path, out: &Path) {
    let loaded = spin_osb_core::catalog::Catalog::load_dir(catalog)
        .unwrap_or_else(|e| panic!("{}: invalid catalog:\n{e}", catalog.display()));
    loaded
        .compiled()
        .write_dir(out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

impl Broker {
    /// Starts a broker on a fresh temporary state dir.
    pub fn start() -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("spin-osb-e2e-")
            .tempdir()
            .expect("temporary state dir");
        let dir = tmp.path().to_path_buf();
        Self::start_with(manifest(), dir, Some(tmp))
    }

    /// Starts a broker with `options` on a fresh temporary state dir.
    pub fn start_with_options(options: Options) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("spin-osb-e2e-")
            .tempdir()
            .expect("temporary state dir");
        let dir = tmp.path().to_path_buf();
        let manifest = match &options.catalog {
            Some(catalog) => manifest_with_catalog(catalog, &dir),
            None => manifest(),
        };
        let mut broker = Self::prepare(manifest, dir, Some(tmp));
        broker.options = options;
        broker.spawn();
        broker
    }

    /// Runs another app than the broker (for checking the harness itself).
    #[doc(hidden)]
    pub fn start_app(manifest: impl Into<PathBuf>) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("spin-osb-e2e-")
            .tempdir()
            .expect("temporary state dir");
        let dir = tmp.path().to_path_buf();
        Self::start_with(manifest.into(), dir, Some(tmp))
    }

    /// Runs another app than the broker with extra `spin-osb up` arguments.
    pub fn start_app_with_args(manifest: impl Into<PathBuf>, args: &[&str]) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("spin-osb-e2e-")
            .tempdir()
            .expect("temporary state dir");
        let dir = tmp.path().to_path_buf();
        let mut broker = Self::prepare(manifest.into(), dir, Some(tmp));
        broker.options.args = args.iter().map(|a| a.to_string()).collect();
        broker.spawn();
        broker
    }

    /// Starts a broker on `state_dir` (which the caller keeps alive).
    pub fn start_in(state_dir: impl Into<PathBuf>) -> Broker {
        Self::start_with(manifest(), state_dir.into(), None)
    }

    fn start_with(manifest: PathBuf, state_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Broker {
        let broker = Self::prepare(manifest, state_dir, tmp);
        broker.spawn();
        broker
    }

    fn prepare(manifest: PathBuf, state_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Broker {
        Broker {
            manifest,
            running: Mutex::new(Running {
                child: None,
                base: String::new(),
                readers: Vec::new(),
                starts: 0,
            }),
            state_dir,
            _state_tmp: tmp,
            password: random_password(),
            output: Output::default(),
            client: reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("reqwest client"),
            options: Options::default(),
        }
    }

    fn running(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) {
        let real_spin = self.options.real_spin;
        let bin = if real_spin {
            real_spin_bin().unwrap_or_else(|e| panic!("{e}"))
        } else {
            host_bin()
        };
        // Spin prints the address it was given, so it gets a port chosen here.
        let listen = if real_spin {
            format!("127.0.0.1:{}", redis::free_port())
        } else {
            "127.0.0.1:0".to_string()
        };
        if self.manifest == manifest() || self.options.catalog.is_some() {
            check_components_built();
        }
        let mut running = self.running();
        assert!(running.child.is_none(), "the broker is already running");
        running.starts += 1;
        let mut cmd = Command::new(&bin);
        // Its own process group, so that stopping it reaches every process it started:
        // real Spin's `spin up` serves from a child `spin trigger http` process.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.arg("up")
            .arg("-f")
            .arg(&self.manifest)
            .args(["--listen", &listen])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .current_dir(repo_root());
        // Hermetic variables: nothing leaks in from the developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                cmd.env_remove(key);
            }
        }
        if let Some(config) = &self.options.runtime_config {
            cmd.arg("--runtime-config-file").arg(config);
        }
        cmd.args(&self.options.args);
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        cmd.env("SPIN_VARIABLE_BROKER_PASSWORD", &self.password)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        self.output.push(format!(
            "=== e2e: {} up (start #{}, pid {}, state dir {}) ===",
            if real_spin { "spin" } else { "spin-osb" },
            running.starts,
            child.id(),
            self.state_dir.display()
        ));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            spawn_reader(
                child.stdout.take().unwrap(),
                "out",
                self.output.clone(),
                Some(tx),
            ),
            spawn_reader(
                child.stderr.take().unwrap(),
                "err",
                self.output.clone(),
                None,
            ),
        ];
        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(url) => break Ok(url),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err("stdout closed before `Serving`".to_string())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        break Err(format!("exited with {status} before `Serving`"));
                    }
                    if Instant::now() > deadline {
                        break Err(format!("no `Serving` line within {START_TIMEOUT:?}"));
                    }
                }
            }
        };
        match url {
            Ok(url) => {
                running.base = url.trim_end_matches('/').to_string();
                running.child = Some(child);
                running.readers = readers;
            }
            Err(reason) => {
                kill_group(&mut child);
                for r in readers {
                    let _ = r.join();
                }
                panic!(
                    "spin-osb up -f {} did not start: {reason}\n--- output ---\n{}",
                    self.manifest.display(),
                    self.output.text()
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT` of the current run.
    pub fn base(&self) -> String {
        self.running().base.clone()
    }

    /// The host's pid (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.running().child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process is still alive.
    pub fn is_running(&self) -> bool {
        let mut running = self.running();
        match running.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn stop_with(&self, signal: Option<&str>, timeout: Duration) -> Option<ExitStatus> {
        let mut running = self.running();
        let mut child = running.child.take()?;
        let status = match signal {
            Some(sig) => {
                signal_group(&child, sig);
                let status = wait_timeout(&mut child, timeout);
                // Whatever is left of the group (a child that outlived its parent) goes too.
                kill_group(&mut child);
                status
            }
            None => kill_group(&mut child),
        };
        for r in running.readers.drain(..) {
            let _ = r.join();
        }
        self.output
            .push(format!("=== e2e: spin-osb stopped: {status:?} ==="));
        status
    }

    /// SIGTERM, then waits up to 30 s for a graceful exit (killed after that); returns the
    /// exit status, `None` if it had to be killed or was not running.
    pub fn terminate(&self) -> Option<ExitStatus> {
        self.stop_with(Some("TERM"), Duration::from_secs(30))
    }

    /// `kill -9`: the host gets no chance to clean up.
    pub fn kill9(&self) {
        self.stop_with(None, Duration::ZERO);
    }

    /// Starts the host again on the same state dir and password (terminating it first if
    /// it is still running). The port changes.
    pub fn restart(&self) {
        if self.is_running() {
            self.terminate();
        } else {
            self.stop_with(None, Duration::ZERO);
        }
        self.spawn();
    }

    // -- requests ---------------------------------------------------------------

    /// A request with basic auth and `X-Broker-API-Version: 2.17`.
    pub fn request(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            broker: self,
            method: method.to_string(),
            path: path.to_string(),
            auth: Some((USERNAME.to_string(), self.password.clone())),
            version: Some(API_VERSION.to_string()),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Authenticated `GET`.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path).send()
    }

    /// `GET /v2/catalog`, expecting 200.
    pub fn catalog(&self) -> Catalog {
        let resp = self.get("/v2/catalog").expect(200);
        Catalog { json: resp.json }
    }

    /// `PUT /v2/service_instances/:iid[?accepts_incomplete=true]`.
    pub fn provision(&self, iid: &str, body: &Value, accepts_incomplete: bool) -> Resp {
        self.request("PUT", &with_ai(&instance_path(iid), accepts_incomplete))
            .json(body)
            .send()
    }

    /// `PATCH /v2/service_instances/:iid[?accepts_incomplete=true]`.
    pub fn update(&self, iid: &str, body: &Value, accepts_incomplete: bool) -> Resp {
        self.request("PATCH", &with_ai(&instance_path(iid), accepts_incomplete))
            .json(body)
            .send()
    }

    /// `DELETE /v2/service_instances/:iid?service_id=..&plan_id=..[&accepts_incomplete=true]`.
    pub fn deprovision(&self, iid: &str, plan: &Plan, accepts_incomplete: bool) -> Resp {
        let path = format!(
            "{}?{}",
            instance_path(iid),
            query(&[("service_id", &plan.service_id), ("plan_id", &plan.plan_id)])
        );
        self.request("DELETE", &with_ai(&path, accepts_incomplete))
            .send()
    }

    /// `GET /v2/service_instances/:iid`.
    pub fn fetch_instance(&self, iid: &str) -> Resp {
        self.get(&instance_path(iid))
    }

    /// `GET /v2/service_instances/:iid/last_operation[?operation=..]`.
    pub fn instance_last_operation(&self, iid: &str, operation: Option<&str>) -> Resp {
        let mut path = format!("{}/last_operation", instance_path(iid));
        if let Some(op) = operation {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.get(&path)
    }

    /// `PUT .../service_bindings/:bid[?accepts_incomplete=true]`.
    pub fn bind(&self, iid: &str, bid: &str, body: &Value, accepts_incomplete: bool) -> Resp {
        self.request("PUT", &with_ai(&binding_path(iid, bid), accepts_incomplete))
            .json(body)
            .send()
    }

    /// `DELETE .../service_bindings/:bid?service_id=..&plan_id=..[&accepts_incomplete=true]`.
    pub fn unbind(&self, iid: &str, bid: &str, plan: &Plan, accepts_incomplete: bool) -> Resp {
        let path = format!(
            "{}?{}",
            binding_path(iid, bid),
            query(&[("service_id", &plan.service_id), ("plan_id", &plan.plan_id)])
        );
        self.request("DELETE", &with_ai(&path, accepts_incomplete))
            .send()
    }

    /// `GET .../service_bindings/:bid`.
    pub fn fetch_binding(&self, iid: &str, bid: &str) -> Resp {
        self.get(&binding_path(iid, bid))
    }

    /// `GET .../service_bindings/:bid/last_operation[?operation=..]`.
    pub fn binding_last_operation(&self, iid: &str, bid: &str, operation: Option<&str>) -> Resp {
        let mut path = format!("{}/last_operation", binding_path(iid, bid));
        if let Some(op) = operation {
            path = format!("{path}?{}", query(&[("operation", op)]));
        }
        self.get(&path)
    }

    /// Polls the instance's `last_operation` until the state is no longer `in progress`
    /// and returns that answer (200 with `succeeded`/`failed`, or whatever non-200 came).
    /// Every `in progress` answer must carry a numeric `Retry-After`.
    #[track_caller]
    pub fn wait_instance_operation(&self, iid: &str, operation: &str) -> Resp {
        self.wait_operation(|| self.instance_last_operation(iid, Some(operation)))
    }

    /// [`Broker::wait_instance_operation`] for a binding.
    #[track_caller]
    pub fn wait_binding_operation(&self, iid: &str, bid: &str, operation: &str) -> Resp {
        self.wait_operation(|| self.binding_last_operation(iid, bid, Some(operation)))
    }

    #[track_caller]
    fn wait_operation(&self, poll: impl Fn() -> Resp) -> Resp {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        loop {
            let resp = poll();
            if resp.status != 200 || resp.json["state"] != "in progress" {
                return resp;
            }
            let retry_after = resp.header("retry-after").unwrap_or_default();
            assert!(
                retry_after.parse::<u64>().is_ok(),
                "{}: an `in progress` answer needs a Retry-After in seconds, got {retry_after:?}",
                resp.what
            );
            assert!(
                Instant::now() < deadline,
                "{}: still in progress after {OPERATION_TIMEOUT:?}: {}",
                resp.what,
                resp.body
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    // -- the state file ---------------------------------------------------------

    /// The SQLite file of the default key-value store.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("sqlite_key_value.db")
    }

    /// Every `(key, value)` of the broker's `default` store, sorted by key.
    pub fn store_entries(&self) -> Vec<(String, Vec<u8>)> {
        let path = self.state_file();
        if !path.exists() {
            // Nothing was ever stored.
            return Vec::new();
        }
        let conn = rusqlite::Connection::open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let has_table: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'spin_key_value'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if !has_table {
            return Vec::new();
        }
        let mut stmt = conn
            .prepare("SELECT key, value FROM spin_key_value WHERE store = 'default' ORDER BY key")
            .unwrap_or_else(|e| panic!("cannot query {}: {e}", path.display()));
        let rows = stmt
            .query_map([], |row| {
                let key: String = row.get(0)?;
                let value = match row.get_ref(1)? {
                    rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
                    rusqlite::types::ValueRef::Text(t) => t.to_vec(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string().into_bytes(),
                    other => format!("{other:?}").into_bytes(),
                };
                Ok((key, value))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Keys of the default store that start with `prefix`.
    pub fn store_keys(&self, prefix: &str) -> Vec<String> {
        self.store_entries()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    /// Keys that mention `id` anywhere.
    pub fn store_keys_mentioning(&self, id: &str) -> Vec<String> {
        self.store_entries()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.contains(id))
            .collect()
    }

    /// The JSON record stored under `key`.
    pub fn store_json(&self, key: &str) -> Option<Value> {
        self.store_entries()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .unwrap_or_else(|e| panic!("{k} does not hold JSON ({e}): {v:?}"))
            })
    }

    /// The instance record keys for `iid` (`osb/v1/instance/{iid}`, never claim counters).
    pub fn instance_record_keys(&self, iid: &str) -> Vec<String> {
        let key = instance_key(iid);
        self.store_keys(&key)
            .into_iter()
            .filter(|k| *k == key)
            .collect()
    }
}

/// Sends `signal` (`TERM`, `KILL`) to the process group `child` leads (see `spawn`).
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{}", child.id()))
        .stderr(Stdio::null())
        .status();
}

/// `kill -9` of `child`'s whole process group, then reaps `child`.
fn kill_group(child: &mut Child) -> Option<ExitStatus> {
    signal_group(child, "KILL");
    let _ = child.kill();
    child.wait().ok()
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop_with(None, Duration::ZERO);
        if thread::panicking() {
            eprintln!(
                "----- spin-osb output (state dir {}) -----\n{}----- end of spin-osb output -----",
                self.state_dir.display(),
                self.output.since(0, 400)
            );
        }
    }
}

/// `osb/v1/instance/{iid}`
pub fn instance_key(iid: &str) -> String {
    format!("osb/v1/instance/{iid}")
}

/// `osb/v1/binding/{iid}/{bid}`
pub fn binding_key(iid: &str, bid: &str) -> String {
    format!("osb/v1/binding/{iid}/{bid}")
}

/// `/v2/service_instances/{iid}`
pub fn instance_path(iid: &str) -> String {
    format!("/v2/service_instances/{iid}")
}

/// `/v2/service_instances/{iid}/service_bindings/{bid}`
pub fn binding_path(iid: &str, bid: &str) -> String {
    format!("/v2/service_instances/{iid}/service_bindings/{bid}")
}

fn with_ai(path: &str, accepts_incomplete: bool) -> String {
    if !accepts_incomplete {
        return path.to_string();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}accepts_incomplete=true")
}

// ---------------------------------------------------------------------------
// The shared broker
// ---------------------------------------------------------------------------

static SHARED: OnceLock<&'static Broker> = OnceLock::new();

/// Brokers that live as long as the test binary: statics are never dropped, so their hosts
/// are killed (and their state dirs removed) by an `atexit` handler instead.
static UNTIL_EXIT: std::sync::Mutex<Vec<&'static Broker>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_brokers_at_exit() {
    let brokers = UNTIL_EXIT.lock().map(|b| b.clone()).unwrap_or_default();
    for broker in brokers {
        let mut running = broker.running();
        if let Some(mut child) = running.child.take() {
            kill_group(&mut child);
        }
        let _ = std::fs::remove_dir_all(&broker.state_dir);
    }
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// Keeps `broker` running until the test binary exits (for brokers held in statics).
pub fn until_exit(broker: Broker) -> &'static Broker {
    let broker: &'static Broker = Box::leak(Box::new(broker));
    let mut brokers = UNTIL_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    if brokers.is_empty() {
        // SAFETY: registers a plain `extern "C"` function with libc; it only touches
        // `UNTIL_EXIT` and brokers leaked for the life of the process.
        unsafe {
            atexit(kill_brokers_at_exit);
        }
    }
    brokers.push(broker);
    broker
}

/// The broker shared by the tests of this test binary (started on first use, killed when
/// the binary exits). The guard prints the host's output if the test fails.
pub fn shared() -> Shared {
    let broker = *SHARED.get_or_init(|| until_exit(Broker::start()));
    Shared {
        broker,
        since: broker.output.len(),
    }
}

/// A test's handle on the [`shared`] broker.
pub struct Shared {
    broker: &'static Broker,
    since: usize,
}

impl Deref for Shared {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        self.broker
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "----- spin-osb output during this test (shared broker {}, other tests may interleave) -----\n{}----- end of spin-osb output -----",
                self.broker.base(),
                self.broker.output.since(self.since, 300)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------

/// One request being built; [`Req::send`] or [`Req::send_raw`] sends it.
pub struct Req<'a> {
    broker: &'a Broker,
    method: String,
    path: String,
    auth: Option<(String, String)>,
    version: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    /// No `Authorization` header.
    pub fn no_auth(mut self) -> Self {
        self.auth = None;
        self
    }

    /// Basic auth with these credentials.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    /// `X-Broker-API-Version` (`None`: no header).
    pub fn version(mut self, version: Option<&str>) -> Self {
        self.version = version.map(str::to_string);
        self
    }

    /// An extra header (an `Authorization` here replaces the basic auth).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("authorization") {
            self.auth = None;
        }
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(self, body: &Value) -> Self {
        self.body(serde_json::to_vec(body).unwrap())
    }

    /// Raw body bytes, sent as `Content-Type: application/json` unless a content type was
    /// set with [`Req::header`].
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn all_headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some((user, password)) = &self.auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.push(("Authorization".to_string(), format!("Basic {token}")));
        }
        if let Some(version) = &self.version {
            headers.push(("X-Broker-API-Version".to_string(), version.clone()));
        }
        let has_content_type = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if self.body.is_some() && !has_content_type {
            headers.push(("Content-Type".to_string(), "application/json".to_string()));
        }
        headers.extend(self.headers.iter().cloned());
        headers
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Sends with reqwest (the path is parsed as a URL: `..` segments are normalised);
    /// panics if no response arrives.
    #[track_caller]
    pub fn send(self) -> Resp {
        let what = self.what();
        let broker = self.broker;
        self.try_send().unwrap_or_else(|e| {
            panic!(
                "{what} failed: {e}\n--- spin-osb output (last lines) ---\n{}",
                broker.output.since(0, 60)
            )
        })
    }

    /// Sends with reqwest; `Err` when no response arrives (connection reset, timeout).
    pub fn try_send(self) -> Result<Resp, String> {
        let url = format!("{}{}", self.broker.base(), self.path);
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("HTTP method");
        let mut request = self.broker.client.request(method, &url);
        for (name, value) in self.all_headers() {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let what = self.what();
        match request.send() {
            Ok(response) => {
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
                let body = response.text().unwrap_or_default();
                Ok(Resp::new(what, status, headers, body))
            }
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// Sends the request line exactly as given over a fresh TCP connection (for paths a
    /// URL parser would rewrite, such as `..`).
    #[track_caller]
    pub fn send_raw(self) -> Resp {
        let base = self.broker.base();
        let addr = base.trim_start_matches("http://").to_string();
        let what = self.what();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in self.all_headers() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.clone().unwrap_or_default();
        if self.body.is_some() || matches!(self.method.as_str(), "PUT" | "PATCH" | "POST") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let result = (|| -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect(&addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(120)))?;
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)?;
            stream.flush()?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw)?;
            Ok(raw)
        })();
        let raw = result.unwrap_or_else(|e| panic!("{what} (raw) failed: {e}"));
        parse_raw_response(what, &raw)
    }
}

fn parse_raw_response(what: String, raw: &[u8]) -> Resp {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!(
            "{what}: no HTTP response head in {:?}",
            String::from_utf8_lossy(raw)
        );
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Resp::new(
        what,
        status,
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    /// `METHOD path` of the request, for messages.
    pub what: String,
    /// HTTP status.
    pub status: u16,
    /// Headers (names in lowercase).
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
}

impl Resp {
    fn new(what: String, status: u16, headers: Vec<(String, String)>, body: String) -> Resp {
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        let headers = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        Resp {
            what,
            status,
            headers,
            body,
            json,
        }
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and returns the response.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.what, self.status, self.body
        );
        self
    }

    /// Asserts one of `statuses`.
    #[track_caller]
    pub fn expect_one_of(self, statuses: &[u16]) -> Resp {
        assert!(
            statuses.contains(&self.status),
            "{}: expected one of {statuses:?}, got {}: {}",
            self.what,
            self.status,
            self.body
        );
        self
    }

    /// Asserts an OSB error: this status, a JSON object body with a non-empty
    /// `description`, and a non-empty `error` when present.
    #[track_caller]
    pub fn expect_error(self, status: u16) -> Resp {
        let resp = self.expect(status);
        resp.assert_osb_error_body();
        resp
    }

    /// Asserts an OSB error with this status and `error` code.
    #[track_caller]
    pub fn expect_error_code(self, status: u16, code: &str) -> Resp {
        let resp = self.expect_error(status);
        assert_eq!(
            resp.json["error"], code,
            "{}: expected error code {code:?}: {}",
            resp.what, resp.body
        );
        resp
    }

    /// Asserts the body is an OSB error object (`description` non-empty).
    #[track_caller]
    pub fn assert_osb_error_body(&self) {
        assert!(
            self.json.is_object(),
            "{}: the {} error body is not a JSON object: {:?}",
            self.what,
            self.status,
            self.body
        );
        let description = self.json["description"].as_str().unwrap_or_default();
        assert!(
            !description.trim().is_empty(),
            "{}: the {} error has no non-empty description: {}",
            self.what,
            self.status,
            self.body
        );
        if let Some(error) = self.json.get("error") {
            assert!(
                error.as_str().is_some_and(|e| !e.is_empty()),
                "{}: `error` must be a non-empty string: {}",
                self.what,
                self.body
            );
        }
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{}: the {} error has Content-Type {content_type:?}, not application/json",
            self.what,
            self.status
        );
    }

    /// The `description` of an error body ("" when absent).
    pub fn description(&self) -> &str {
        self.json["description"].as_str().unwrap_or_default()
    }

    /// The `operation` of a 202 body.
    #[track_caller]
    pub fn operation(&self) -> String {
        self.json["operation"]
            .as_str()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "{}: expected an `operation` string in {}",
                    self.what, self.body
                )
            })
            .to_string()
    }

    /// `state` of a last_operation answer.
    pub fn state(&self) -> &str {
        self.json["state"].as_str().unwrap_or_default()
    }
}

/// Percent-encodes query pairs.
pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------

/// A `GET /v2/catalog` answer.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The response body.
    pub json: Value,
}

/// A plan and its service, as the catalog shows them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The service offering's id.
    pub service_id: String,
    /// The plan's id.
    pub plan_id: String,
    /// The plan's name.
    pub name: String,
    /// The service offering object.
    pub service: Value,
    /// The plan object.
    pub plan: Value,
}

impl Catalog {
    /// Every service offering.
    pub fn services(&self) -> Vec<Value> {
        self.json["services"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every plan of every service.
    pub fn plans(&self) -> Vec<Plan> {
        let mut plans = Vec::new();
        for service in self.services() {
            for plan in service["plans"].as_array().cloned().unwrap_or_default() {
                plans.push(Plan {
                    service_id: service["id"].as_str().unwrap_or_default().to_string(),
                    plan_id: plan["id"].as_str().unwrap_or_default().to_string(),
                    name: plan["name"].as_str().unwrap_or_default().to_string(),
                    service: service.clone(),
                    plan,
                });
            }
        }
        plans
    }

    /// The plan called `name` (of any service).
    pub fn plan_named(&self, name: &str) -> Option<Plan> {
        self.plans().into_iter().find(|p| p.name == name)
    }
}

impl Plan {
    /// Whether instances of this plan can be bound (the plan overrides the service).
    pub fn bindable(&self) -> bool {
        self.plan["bindable"]
            .as_bool()
            .or_else(|| self.service["bindable"].as_bool())
            .unwrap_or(false)
    }

    /// Whether plan changes are allowed from this plan (the plan overrides the service).
    pub fn plan_updateable(&self) -> bool {
        self.plan["plan_updateable"]
            .as_bool()
            .or_else(|| self.service["plan_updateable"].as_bool())
            .unwrap_or(false)
    }

    /// `binding_rotatable`.
    pub fn binding_rotatable(&self) -> bool {
        self.plan["binding_rotatable"].as_bool().unwrap_or(false)
    }

    /// `maintenance_info.version`, when the plan has one.
    pub fn maintenance_version(&self) -> Option<String> {
        self.plan["maintenance_info"]["version"]
            .as_str()
            .map(str::to_string)
    }

    /// The JSON schema of `kind` parameters (`["service_instance","create"]` ...).
    pub fn schema(&self, section: &str, action: &str) -> Option<Value> {
        let schema = &self.plan["schemas"][section][action]["parameters"];
        (!schema.is_null()).then(|| schema.clone())
    }

    /// `{"service_id", "plan_id", "context", "organization_guid", "space_guid",
    /// "parameters"}` for a provision.
    pub fn provision_body(&self, parameters: Value) -> Value {
        json!({
            "service_id": self.service_id,
            "plan_id": self.plan_id,
            "organization_guid": "e2e-org",
            "space_guid": "e2e-space",
            "context": {"platform": "cloudfoundry", "organization_guid": "e2e-org", "space_guid": "e2e-space"},
            "parameters": parameters,
        })
    }

    /// A bind body for this plan.
    pub fn bind_body(&self, parameters: Value) -> Value {
        json!({
            "service_id": self.service_id,
            "plan_id": self.plan_id,
            "bind_resource": {"app_guid": "e2e-app"},
            "context": {"platform": "cloudfoundry"},
            "parameters": parameters,
        })
    }
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// Runs `f` on `n` threads released together and collects the results in order.
pub fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread panicked"))
        .collect()
}

/// Counts of each status in `responses`, for messages (`{201: 1, 200: 49}`).
pub fn status_histogram(responses: &[Resp]) -> std::collections::BTreeMap<u16, usize> {
    let mut map = std::collections::BTreeMap::new();
    for r in responses {
        *map.entry(r.status).or_insert(0) += 1;
    }
    map
}

// ---------------------------------------------------------------------------
// Parameters from JSON Schemas
// ---------------------------------------------------------------------------

/// A value that satisfies `schema` (defaults, `const`, `enum`, `examples` first; then the
/// smallest value of the declared type within its bounds).
pub fn example_value(schema: &Value) -> Value {
    for key in ["default", "const"] {
        if let Some(v) = schema.get(key) {
            return v.clone();
        }
    }
    for key in ["enum", "examples"] {
        if let Some(v) = schema[key].as_array().and_then(|a| a.first()) {
            return v.clone();
        }
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema.get("properties").is_some() => "object".to_string(),
        _ => "string".to_string(),
    };
    match ty.as_str() {
        "integer" | "number" => {
            let min = schema["minimum"]
                .as_f64()
                .or_else(|| schema["exclusiveMinimum"].as_f64().map(|m| m + 1.0));
            let max = schema["maximum"].as_f64();
            let v = min
                .unwrap_or_else(|| max.map(|m| m.min(1.0)).unwrap_or(1.0))
                .ceil();
            json!(v as i64)
        }
        "boolean" => json!(true),
        "null" => Value::Null,
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0) as usize;
            let item = example_value(&schema["items"]);
            Value::Array(vec![item; n])
        }
        "object" => valid_parameters(schema),
        _ => {
            if schema["format"] == "email" {
                return json!("e2e@example.com");
            }
            let min = schema["minLength"].as_u64().unwrap_or(1) as usize;
            let max = schema["maxLength"].as_u64().unwrap_or(64) as usize;
            let mut s = "e2e".to_string();
            while s.len() < min {
                s.push('x');
            }
            s.truncate(max.max(min));
            json!(s)
        }
    }
}

/// An object with every `required` property of an object schema filled in.
pub fn valid_parameters(schema: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for name in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str() {
            out.insert(name.to_string(), example_value(&schema["properties"][name]));
        }
    }
    Value::Object(out)
}

/// A value of the wrong JSON type for `schema` (`None` when the schema takes anything).
pub fn wrong_type_value(schema: &Value) -> Option<Value> {
    match schema["type"].as_str()? {
        "string" => Some(json!(12345)),
        "integer" | "number" => Some(json!("not-a-number")),
        "boolean" => Some(json!("not-a-boolean")),
        "object" => Some(json!(["not", "an", "object"])),
        "array" => Some(json!({"not": "an array"})),
        _ => None,
    }
}

impl Plan {
    /// Valid parameters for `section`/`action` (`{}` without a schema).
    pub fn valid_parameters(&self, section: &str, action: &str) -> Value {
        self.schema(section, action)
            .map(|s| valid_parameters(&s))
            .unwrap_or_else(|| json!({}))
    }

    /// Valid provision parameters.
    pub fn provision_parameters(&self) -> Value {
        self.valid_parameters("service_instance", "create")
    }

    /// Valid bind parameters.
    pub fn bind_parameters(&self) -> Value {
        self.valid_parameters("service_binding", "create")
    }

    /// A property of the `section`/`action` schema with a typed sub-schema:
    /// `(name, its schema)`; required properties first.
    pub fn typed_property(&self, section: &str, action: &str) -> Option<(String, Value)> {
        let schema = self.schema(section, action)?;
        let properties = schema["properties"].as_object()?.clone();
        let required: Vec<String> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort_by_key(|n| !required.contains(n));
        names
            .into_iter()
            .find(|n| wrong_type_value(&properties[n.as_str()]).is_some())
            .map(|n| (n.clone(), properties[n.as_str()].clone()))
    }
}

// ---------------------------------------------------------------------------
// Finding the synchronous and the asynchronous plan
// ---------------------------------------------------------------------------

/// The plans the suites use, found by behaviour: `sync` provisions without
/// `accepts_incomplete` (201), `asynchronous` answers that with 422 `AsyncRequired`.
#[derive(Debug, Clone)]
pub struct Plans {
    /// A bindable plan that provisions synchronously.
    pub sync: Plan,
    /// A bindable plan that provisions only asynchronously.
    pub asynchronous: Plan,
    /// The whole catalog.
    pub catalog: Catalog,
}

impl Broker {
    /// Finds (once per test binary) a synchronous and an asynchronous bindable plan by
    /// provisioning throw-away instances without `accepts_incomplete`.
    pub fn plans(&self) -> Plans {
        static PLANS: OnceLock<Plans> = OnceLock::new();
        PLANS.get_or_init(|| discover_plans(self)).clone()
    }
}

fn discover_plans(broker: &Broker) -> Plans {
    let catalog = broker.catalog();
    let mut sync = None;
    let mut asynchronous = None;
    let mut seen = Vec::new();
    let mut candidates: Vec<Plan> = catalog.plans().into_iter().filter(Plan::bindable).collect();
    // Plans whose names say what they are are tried first.
    candidates.sort_by_key(|p| !(p.name.contains("sync") || p.name.contains("async")));
    for plan in candidates {
        if sync.is_some() && asynchronous.is_some() {
            break;
        }
        let iid = new_id();
        let body = plan.provision_body(plan.provision_parameters());
        let resp = broker.provision(&iid, &body, false);
        seen.push(format!(
            "{} ({}): {} {}",
            plan.name, plan.plan_id, resp.status, resp.body
        ));
        match resp.status {
            201 => {
                broker.deprovision(&iid, &plan, true);
                sync.get_or_insert(plan);
            }
            422 if resp.json["error"] == "AsyncRequired" => {
                asynchronous.get_or_insert(plan);
            }
            _ => {}
        }
    }
    match (sync, asynchronous) {
        (Some(sync), Some(asynchronous)) => Plans {
            sync,
            asynchronous,
            catalog,
        },
        _ => panic!(
            "the catalog needs a bindable synchronous plan (201 without accepts_incomplete) and a \
             bindable asynchronous plan (422 AsyncRequired); probing gave:\n  {}\ncatalog: {}",
            seen.join("\n  "),
            catalog.json
        ),
    }
}

/// A valid value for `schema` that differs from `current` (`None` if none is found).
pub fn different_value(schema: &Value, current: &Value) -> Option<Value> {
    if schema.get("const").is_some() {
        return None;
    }
    if let Some(options) = schema["enum"].as_array() {
        return options.iter().find(|v| *v != current).cloned();
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    match ty {
        "integer" | "number" => {
            let min = schema["minimum"].as_f64().unwrap_or(f64::MIN);
            let max = schema["maximum"].as_f64().unwrap_or(f64::MAX);
            let now = current
                .as_f64()
                .unwrap_or_else(|| example_value(schema).as_f64().unwrap_or(1.0));
            [now + 1.0, now - 1.0, min, max]
                .into_iter()
                .find(|v| *v >= min && *v <= max && *v != now && v.is_finite() && v.abs() < 1e15)
                .map(|v| json!(v as i64))
        }
        "boolean" => Some(json!(!current.as_bool().unwrap_or(false))),
        "string" if schema.get("pattern").is_none() && schema.get("format").is_none() => {
            let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
            let max = schema["maxLength"].as_u64().unwrap_or(64) as usize;
            let mut s = "changed".to_string();
            while s.len() < min {
                s.push('y');
            }
            s.truncate(max.max(min));
            (json!(s) != *current).then(|| json!(s))
        }
        _ => None,
    }
}

impl Plan {
    /// Valid parameters for `section`/`action` that differ from `base` in one property.
    #[track_caller]
    pub fn changed_parameters(&self, section: &str, action: &str, base: &Value) -> Value {
        let mut out = base.clone();
        if !out.is_object() {
            out = json!({});
        }
        let Some(schema) = self.schema(section, action) else {
            out["e2e_extra"] = json!("changed");
            return out;
        };
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort();
        for name in names {
            let current = base.get(name.as_str()).cloned().unwrap_or(Value::Null);
            if let Some(v) = different_value(&properties[name.as_str()], &current) {
                out[name.as_str()] = v;
                return out;
            }
        }
        if schema["additionalProperties"] != json!(false) {
            out["e2e_extra"] = json!("changed");
            return out;
        }
        panic!(
            "cannot find different valid {section}.{action} parameters for plan {} from schema {schema}",
            self.name
        )
    }
}

// ---------------------------------------------------------------------------
// The catalog as written
// ---------------------------------------------------------------------------

/// `catalog/*.yaml` (and `*.yml`) as JSON: `{"services": [...]}` with every file's
/// services in file-name order, the way the broker loads them.
pub fn yaml_catalog() -> Value {
    static YAML: OnceLock<Value> = OnceLock::new();
    YAML.get_or_init(|| {
        let dir = repo_root().join("catalog");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut services = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let doc: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            services.extend(doc["services"].as_array().cloned().unwrap_or_default());
        }
        json!({ "services": services })
    })
    .clone()
}

impl Plan {
    /// This plan as written in `catalog/*.yaml` (`Null` if it is not there).
    pub fn yaml(&self) -> Value {
        yaml_catalog()["services"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["plans"].as_array().cloned().unwrap_or_default())
            .find(|p| p["id"] == json!(self.plan_id))
            .unwrap_or(Value::Null)
    }

    /// Whether the plan's backend renders a `dashboard_url`.
    pub fn has_dashboard_url(&self) -> bool {
        self.yaml()["backend"]["dashboard_url"].is_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_v4_uuids_and_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(20) {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!("89ab".contains(&parts[3][..1]), "{id}");
        }
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6; ext=1\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        let resp = parse_raw_response(
            "GET /".into(),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\ncontent-length: 17\r\n\r\n{\"description\":1}extra",
        );
        assert_eq!(resp.status, 404);
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert_eq!(resp.json["description"], 1);
    }

    #[test]
    fn the_yaml_catalog_is_read_with_its_anchors_resolved() {
        let yaml = yaml_catalog();
        let services = yaml["services"].as_array().expect("services");
        assert!(!services.is_empty());
        for plan in services.iter().flat_map(|s| s["plans"].as_array().unwrap()) {
            assert!(plan["id"].is_string(), "{plan}");
            if let Some(schemas) = plan.get("schemas") {
                assert!(
                    schemas.is_object(),
                    "aliases must resolve to objects: {schemas}"
                );
            }
        }
    }

    #[test]
    fn example_and_changed_parameters_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "required": ["size", "name"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 3},
                "name": {"type": "string", "minLength": 5},
                "role": {"type": "string", "enum": ["a", "b"]}
            }
        });
        let params = valid_parameters(&schema);
        assert_eq!(params, json!({"size": 1, "name": "e2exx"}));
        assert_eq!(
            different_value(&schema["properties"]["size"], &json!(3)),
            Some(json!(2))
        );
        assert_eq!(
            different_value(&schema["properties"]["role"], &json!("a")),
            Some(json!("b"))
        );
        assert_eq!(
            wrong_type_value(&schema["properties"]["size"]),
            Some(json!("not-a-number"))
        );
    }
}
