//! Shared harness for the end-to-end tests of the `spin-osb` host.
//!
//! * [`build_guests`] builds the `test-probe` guest once per test binary (the
//!   apps under `tests/apps/` reference it as
//!   `../../../target/wasm32-wasip2/release/test_probe.wasm`).
//! * [`Up`] starts `spin-osb up` on `127.0.0.1:0` with a private state dir,
//!   waits for `Serving http://...`, and hands back a [`Host`] that captures
//!   stdout/stderr (printed when the test panics) and is killed on drop.
//! * [`Redis`], [`HttpServer`] and [`TestPki`] start local collaborators.
//!
//! Everything here only ever talks to 127.0.0.1 / localhost.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use serde_json::{json, Value};

/// How long `spin-osb up` may take to print `Serving ...` (the first start
/// compiles the guest with Cranelift on a slow 2-core machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Paths and the guest build
// ---------------------------------------------------------------------------

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

pub fn app_dir(scenario: &str) -> PathBuf {
    repo_root().join("tests/apps").join(scenario)
}

pub fn app_manifest(scenario: &str) -> PathBuf {
    app_dir(scenario).join("spin.toml")
}

pub fn host_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spin-osb"))
}

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            repo_root().join(dir)
        };
    }
    // <target>/release/deps/<test>-<hash>
    if let Ok(exe) = std::env::current_exe() {
        if let Some(target) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            if target.join("CACHEDIR.TAG").exists() || target.join("release").is_dir() {
                return target.to_path_buf();
            }
        }
    }
    repo_root().join("target")
}

/// Path of the probe wasm as the manifests see it (`<repo>/target/...`).
pub fn probe_wasm() -> PathBuf {
    repo_root().join("target/wasm32-wasip2/release/test_probe.wasm")
}

static GUESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Build the guest components once per test binary and make sure
/// `<repo>/target/wasm32-wasip2/release/test_probe.wasm` is the fresh build.
pub fn build_guests() -> PathBuf {
    GUESTS
        .get_or_init(build_guests_inner)
        .clone()
        .unwrap_or_else(|e| panic!("building the test guests failed:\n{e}"))
}

fn build_guests_inner() -> Result<PathBuf, String> {
    let root = repo_root();
    let target = target_dir();
    // The manifests point at <repo>/target; link it to the real target dir.
    let link = root.join("target");
    if std::fs::symlink_metadata(&link).is_err() && target != link {
        std::os::unix::fs::symlink(&target, &link)
            .or_else(|e| {
                // Another test binary may have created it concurrently.
                if link.exists() {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                format!(
                    "cannot symlink {} -> {}: {e}",
                    link.display(),
                    target.display()
                )
            })?;
    }
    if std::env::var_os("SPIN_OSB_TEST_SKIP_GUEST_BUILD").is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let out = Command::new(cargo)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--release",
                "-p",
                "test-probe",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build of test-probe failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let built = target.join("wasm32-wasip2/release/test_probe.wasm");
    let seen = probe_wasm();
    if !built.exists() {
        return Err(format!(
            "{} does not exist after the build",
            built.display()
        ));
    }
    let same = match (built.canonicalize(), seen.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        // <repo>/target is a real directory distinct from the target dir:
        // copy the guest where the manifests look for it.
        std::fs::create_dir_all(seen.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(&built, &seen)
            .map_err(|e| format!("copy {} -> {}: {e}", built.display(), seen.display()))?;
    }
    Ok(seen)
}

// ---------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct Captured {
    lines: Vec<(Stream, String)>,
}

#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Captured>>);

impl Output {
    fn push(&self, stream: Stream, line: String) {
        self.0.lock().unwrap().lines.push((stream, line));
    }

    pub fn stdout(&self) -> String {
        self.only(Stream::Stdout)
    }

    pub fn stderr(&self) -> String {
        self.only(Stream::Stderr)
    }

    fn only(&self, which: Stream) -> String {
        let c = self.0.lock().unwrap();
        c.lines
            .iter()
            .filter(|(s, _)| *s == which)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    /// stdout and stderr interleaved in arrival order.
    pub fn all(&self) -> String {
        let c = self.0.lock().unwrap();
        c.lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    pub fn pretty(&self) -> String {
        let c = self.0.lock().unwrap();
        c.lines
            .iter()
            .map(|(s, l)| {
                let tag = if *s == Stream::Stdout { "out" } else { "err" };
                format!("  [{tag}] {l}\n")
            })
            .collect()
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    reader: R,
    stream: Stream,
    output: Output,
    serving: Option<mpsc::Sender<Option<String>>>,
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
                    let url = line
                        .trim()
                        .strip_prefix("Serving ")
                        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                    output.push(stream, line);
                    if let (Some(tx), Some(url)) = (&serving, url) {
                        let _ = tx.send(Some(url));
                    }
                }
            }
        }
        if let Some(tx) = serving {
            let _ = tx.send(None);
        }
    })
}

// ---------------------------------------------------------------------------
// Starting the host
// ---------------------------------------------------------------------------

/// Builder for one `spin-osb up` process.
pub struct Up {
    manifest: PathBuf,
    listen: String,
    state_dir: Option<PathBuf>,
    runtime_config: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    build: bool,
    held: Vec<tempfile::TempDir>,
    /// Pass `-f` and `--state-dir` (off for [`Up::defaults_in`]).
    explicit: bool,
}

/// A failed start: the process exited (or never printed `Serving`).
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub reason: String,
}

impl StartFailure {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Up {
    /// `tests/apps/<scenario>/spin.toml`.
    pub fn app(scenario: &str) -> Self {
        Self::manifest(app_manifest(scenario))
    }

    pub fn manifest(path: impl Into<PathBuf>) -> Self {
        Up {
            manifest: path.into(),
            listen: "127.0.0.1:0".into(),
            state_dir: None,
            runtime_config: None,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            build: true,
            held: Vec::new(),
            explicit: true,
        }
    }

    /// `spin-osb up` run in `dir` without `-f` or `--state-dir`, to exercise
    /// the defaults (`./spin.toml`, `<manifest dir>/.spin`).
    pub fn defaults_in(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let mut up = Self::manifest(dir.join("spin.toml"));
        up.cwd = Some(dir.clone());
        up.state_dir = Some(dir.join(".spin"));
        up.explicit = false;
        up
    }

    /// Use this state dir instead of a fresh temporary one.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    pub fn runtime_config(mut self, file: impl Into<PathBuf>) -> Self {
        self.runtime_config = Some(file.into());
        self
    }

    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Set application variable `name` through `SPIN_VARIABLE_<NAME>`.
    pub fn var(self, name: &str, value: impl Into<String>) -> Self {
        let key = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        self.env(key, value)
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Keep `dir` alive as long as the host (e.g. the runtime config's dir).
    pub fn hold(mut self, dir: tempfile::TempDir) -> Self {
        self.held.push(dir);
        self
    }

    /// Skip building the probe guest (for manifests that do not use it).
    pub fn no_build(mut self) -> Self {
        self.build = false;
        self
    }

    /// Start and wait for `Serving ...`; panics with the host's output if it
    /// does not come up.
    pub fn start(self) -> Host {
        let manifest = self.manifest.clone();
        match self.try_start() {
            Ok(host) => host,
            Err(f) => panic!(
                "spin-osb up -f {} did not start ({}; exit {:?})\n--- stdout ---\n{}--- stderr ---\n{}",
                manifest.display(),
                f.reason,
                f.status,
                f.stdout,
                f.stderr
            ),
        }
    }

    /// Start and expect failure; panics if the host starts serving.
    pub fn start_expect_failure(self) -> StartFailure {
        match self.try_start() {
            Ok(host) => panic!(
                "spin-osb up unexpectedly started serving at {}\n{}",
                host.base,
                host.output.pretty()
            ),
            Err(f) => f,
        }
    }

    pub fn try_start(self) -> Result<Host, StartFailure> {
        if self.build {
            build_guests();
        }
        let (state_tmp, state_dir) = match self.state_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("spin-osb-state-")
                    .tempdir()
                    .expect("temp state dir");
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mut cmd = Command::new(host_bin());
        cmd.arg("up");
        if self.explicit {
            cmd.arg("-f").arg(&self.manifest);
        }
        cmd.arg("--listen").arg(&self.listen);
        if self.explicit {
            cmd.arg("--state-dir").arg(&state_dir);
        }
        if let Some(rc) = &self.runtime_config {
            cmd.arg("--runtime-config-file").arg(rc);
        }
        cmd.args(&self.args);
        // Hermetic variables: nothing leaks in from the developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                cmd.env_remove(key);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn spin-osb");
        let output = Output::default();
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            spawn_reader(
                child.stdout.take().unwrap(),
                Stream::Stdout,
                output.clone(),
                Some(tx),
            ),
            spawn_reader(
                child.stderr.take().unwrap(),
                Stream::Stderr,
                output.clone(),
                None,
            ),
        ];
        let deadline = Instant::now() + START_TIMEOUT;
        let failure = |child: &mut Child, reason: String, readers: Vec<thread::JoinHandle<()>>| {
            let status = wait_timeout(child, Duration::from_secs(10));
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            for r in readers {
                let _ = r.join();
            }
            StartFailure {
                status,
                stdout: output.stdout(),
                stderr: output.stderr(),
                reason,
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(url)) => {
                let base = url.trim_end_matches('/').to_string();
                let addr: SocketAddr = base
                    .trim_start_matches("http://")
                    .parse()
                    .unwrap_or_else(|e| panic!("bad Serving address {base:?}: {e}"));
                Ok(Host {
                    child: Some(child),
                    base,
                    addr,
                    output,
                    readers,
                    state_dir,
                    _state_tmp: state_tmp,
                    _held: self.held,
                    client: client(),
                })
            }
            Ok(None) => Err(failure(
                &mut child,
                "stdout closed before `Serving`".into(),
                readers,
            )),
            Err(_) => {
                let _ = child.kill();
                Err(failure(
                    &mut child,
                    format!("no `Serving` line within {START_TIMEOUT:?}"),
                    readers,
                ))
            }
        }
    }
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

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client")
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub json: Value,
}

impl Resp {
    fn from(resp: reqwest::blocking::Response) -> Resp {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().unwrap_or_default();
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    /// Assert 200 and return the JSON body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.body
        );
        self.json
    }
}

/// A running `spin-osb up`.
pub struct Host {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub addr: SocketAddr,
    pub output: Output,
    readers: Vec<thread::JoinHandle<()>>,
    pub state_dir: PathBuf,
    _state_tmp: Option<tempfile::TempDir>,
    _held: Vec<tempfile::TempDir>,
    pub client: reqwest::blocking::Client,
}

impl Host {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    #[track_caller]
    pub fn get(&self, path_and_query: &str) -> Resp {
        let url = self.url(path_and_query);
        match self.client.get(&url).send() {
            Ok(r) => Resp::from(r),
            Err(e) => panic!("GET {url} failed: {e:?}\n{}", self.output.pretty()),
        }
    }

    #[track_caller]
    pub fn post(&self, path_and_query: &str, body: impl Into<reqwest::blocking::Body>) -> Resp {
        let url = self.url(path_and_query);
        match self.client.post(&url).body(body).send() {
            Ok(r) => Resp::from(r),
            Err(e) => panic!("POST {url} failed: {e:?}\n{}", self.output.pretty()),
        }
    }

    /// GET `path` with a query built from `params`, expecting 200 JSON.
    #[track_caller]
    pub fn probe(&self, path: &str, params: &[(&str, &str)]) -> Value {
        self.get(&format!("{path}?{}", query(params))).ok()
    }

    /// POST `body` to `path` with a query built from `params`, expecting 200 JSON.
    #[track_caller]
    pub fn probe_post(
        &self,
        path: &str,
        params: &[(&str, &str)],
        body: impl Into<reqwest::blocking::Body>,
    ) -> Value {
        self.post(&format!("{path}?{}", query(params)), body).ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Send SIGTERM and wait (up to `timeout`) for the process to exit;
    /// returns its exit status (`None` if it had to be killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        let status = wait_timeout(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }

    /// Wait until a line matching `pred` shows up in the output.
    pub fn wait_for_output(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output.all().lines().any(&pred) {
                return true;
            }
            thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if thread::panicking() {
            eprintln!(
                "----- spin-osb output ({}) -----\n{}----- end of spin-osb output -----",
                self.base,
                self.output.pretty()
            );
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Percent-encode a query string from pairs.
pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

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

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something accepts TCP connections on `addr`.
pub fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Write `text` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// TOML string literal.
pub fn toml_str(s: &str) -> String {
    format!("{:?}", s)
}

/// Run `spin-osb` with arbitrary arguments to completion.
pub fn run_host(args: &[&str], cwd: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(host_bin());
    cmd.args(args).stdin(Stdio::null());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spin-osb");
    // Guard against a command that starts serving instead of failing.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("spin-osb output")
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

pub struct Redis {
    child: Child,
    pub port: u16,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Start a throw-away redis-server on a free 127.0.0.1 port. Fails the
    /// test if redis-server is not installed.
    pub fn start() -> Redis {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|p| p.join("redis-server"))
                        .find(|p| p.exists())
                })
            })
            .unwrap_or_else(|| {
                panic!(
                    "redis-server is required by this test but was not found \
                     (looked in /usr/bin, /usr/local/bin and PATH); install it, \
                     e.g. `apt-get install redis-server`"
                )
            });
        let dir = tempfile::Builder::new()
            .prefix("spin-osb-redis-")
            .tempdir()
            .unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile? retry with another one
                }
                if redis_ping(port) {
                    return Redis {
                        child,
                        port,
                        url: format!("redis://127.0.0.1:{port}"),
                        _dir: dir,
                    };
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not come up");
    }

    /// Run one raw redis command (inline protocol) and return the reply text.
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Tiny local HTTP(S) servers
// ---------------------------------------------------------------------------

/// What a [`HttpServer`] saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a [`HttpServer`] answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync + 'static;

/// A minimal HTTP/1.1 server (one thread per connection, `Connection: close`)
/// on 127.0.0.1, optionally TLS.
pub struct HttpServer {
    pub port: u16,
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    /// Connections whose TLS handshake or request parsing failed.
    pub failed_connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> HttpServer {
        Self::start_inner(Arc::new(handler), None)
    }

    /// A server that always answers 200 with `body`.
    pub fn fixed(body: &str) -> HttpServer {
        let body = body.to_string();
        Self::start(move |_| Reply::ok(body.clone()))
    }

    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> HttpServer {
        Self::start_inner(Arc::new(handler), Some(tls))
    }

    fn start_inner(handler: Arc<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        {
            let stop = stop.clone();
            let requests = requests.clone();
            let failed = failed.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let handler = handler.clone();
                    let requests = requests.clone();
                    let failed = failed.clone();
                    let tls = tls.clone();
                    thread::spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        let ok = match tls {
                            None => serve_conn(conn, &*handler, &requests),
                            Some(cfg) => match rustls::ServerConnection::new(cfg) {
                                Ok(sc) => {
                                    let stream = rustls::StreamOwned::new(sc, conn);
                                    serve_conn(stream, &*handler, &requests)
                                }
                                Err(_) => false,
                            },
                        };
                        if !ok {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
            });
        }
        HttpServer {
            port: addr.port(),
            addr,
            requests,
            failed_connections: failed,
            stop,
        }
    }

    pub fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_conn<S: Read + Write>(
    mut stream: S,
    handler: &Handler,
    requests: &Mutex<Vec<SeenRequest>>,
) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return false;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let mut body = buf[head_end + 4..].to_vec();
    if chunked {
        // Read until the terminating zero-size chunk, then decode.
        while !body.ends_with(b"0\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body = dechunk(&body);
    } else {
        while body.len() < len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let seen = SeenRequest {
        method,
        target,
        headers,
        body,
    };
    requests.lock().unwrap().push(seen.clone());
    let reply = handler(&seen);
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let response = format!(
        "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    true
}

/// Decode a `Transfer-Encoding: chunked` body (no trailers).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A throw-away CA and a server certificate for `localhost` and `127.0.0.1`.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "spin-osb test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = params.signed_by(&server_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap();
        Arc::new(cfg)
    }
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// A host shared by the tests of one binary that are running at the same
/// time: started on first use, killed when the last user drops its `Arc`
/// (so nothing outlives the test binary), restarted if needed again.
pub fn shared(key: &str, start: impl FnOnce() -> Host) -> Arc<Host> {
    static SHARED: OnceLock<Mutex<std::collections::HashMap<String, std::sync::Weak<Host>>>> =
        OnceLock::new();
    let map = SHARED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(host) = map.get(key).and_then(std::sync::Weak::upgrade) {
        return host;
    }
    let host = Arc::new(start());
    map.insert(key.to_string(), Arc::downgrade(&host));
    host
}

/// Run `f` on `n` threads at once (released together) and collect results.
pub fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(std::sync::Barrier::new(n));
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

/// A fresh temp dir.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("spin-osb-test-")
        .tempdir()
        .unwrap()
}
