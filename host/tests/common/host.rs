//! `spin-osb up` under test: [`Up`] builds the command line, [`Host`] is the running
//! process (killed on drop, its output printed when the test panics).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use spin_osb_test_support::output::{capture, Output, Readers};
use spin_osb_test_support::process::{without_spin_variables, ChildGuard};
use spin_osb_test_support::query;

use super::guests::{app_manifest, build_guests, host_bin};

/// How long `spin-osb up` may take to print `Serving ...` (the first start
/// compiles the guest with Cranelift on a slow 2-core machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

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
        without_spin_variables(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd).expect("spawn spin-osb");
        let output = Output::default();
        let (serving, readers) = capture(&mut child, &output);
        let deadline = Instant::now() + START_TIMEOUT;
        let failure = |mut child: ChildGuard, reason: String, readers: Readers| {
            let status = child.wait_timeout(Duration::from_secs(10));
            child.kill();
            readers.join();
            StartFailure {
                status,
                stdout: output.stdout(),
                stderr: output.stderr(),
                reason,
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match serving.recv_timeout(left) {
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
                    readers: Some(readers),
                    state_dir,
                    _state_tmp: state_tmp,
                    _held: self.held,
                    client: client(),
                })
            }
            Ok(None) => Err(failure(
                child,
                "stdout closed before `Serving`".into(),
                readers,
            )),
            Err(_) => {
                child.kill();
                Err(failure(
                    child,
                    format!("no `Serving` line within {START_TIMEOUT:?}"),
                    readers,
                ))
            }
        }
    }
}

pub fn client() -> reqwest::blocking::Client {
    spin_osb_test_support::http::client(Duration::from_secs(120))
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
/// A running `spin-osb up`.
pub struct Host {
    child: Option<ChildGuard>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub addr: SocketAddr,
    pub output: Output,
    readers: Option<Readers>,
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
        let status = self.child.take()?.terminate(timeout);
        if let Some(readers) = self.readers.take() {
            readers.join();
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
            child.kill();
        }
        if let Some(readers) = self.readers.take() {
            readers.join();
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

/// Run `spin-osb` with arbitrary arguments to completion.
pub fn run_host(args: &[&str], cwd: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(host_bin());
    cmd.args(args).stdin(Stdio::null());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    without_spin_variables(&mut cmd);
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
