//! The broker process: `spin-osb up` (or the real Spin CLI) on the repository's spin.toml,
//! started, killed, terminated and restarted on the same state dir.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use spin_osb_test_support::output::{capture, Output, Readers};
use spin_osb_test_support::process::{without_spin_variables, ChildGuard};

use crate::ids::random_password;
use crate::paths::{check_components_built, host_bin, manifest, real_spin_bin, repo_root};
use crate::START_TIMEOUT;

pub(crate) struct Running {
    /// The host, leading its own process group.
    pub(crate) child: Option<ChildGuard>,
    base: String,
    readers: Option<Readers>,
    starts: u32,
}

/// A `spin-osb up` serving the repository's spin.toml.
pub struct Broker {
    running: Mutex<Running>,
    manifest: PathBuf,
    /// The `--state-dir` (holds `sqlite_key_value.db`); kept across restarts.
    pub state_dir: PathBuf,
    _state_tmp: Option<tempfile::TempDir>,
    /// The basic-auth password (user [`crate::USERNAME`]).
    pub password: String,
    /// The host's output across all starts.
    pub output: Output,
    pub(crate) client: reqwest::blocking::Client,
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
    /// Kubernetes clusters besides `default` to declare in the rewritten manifest, with
    /// `spin-osb clusters add` (needs `catalog`).
    pub clusters: Vec<String>,
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
        assert!(
            options.clusters.is_empty() || options.catalog.is_some(),
            "declaring clusters rewrites the manifest: set a catalog"
        );
        for name in &options.clusters {
            let status = Command::new(host_bin())
                .args(["clusters", "add", name, "-f"])
                .arg(&manifest)
                .stdout(Stdio::null())
                .status()
                .expect("spin-osb clusters add");
            assert!(status.success(), "spin-osb clusters add {name} failed");
        }
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
                readers: None,
                starts: 0,
            }),
            state_dir,
            _state_tmp: tmp,
            password: random_password(),
            output: Output::default(),
            client: spin_osb_test_support::http::client(Duration::from_secs(120)),
            options: Options::default(),
        }
    }

    pub(crate) fn running(&self) -> MutexGuard<'_, Running> {
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
            format!("127.0.0.1:{}", spin_osb_test_support::free_port())
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
        cmd.arg("up")
            .arg("-f")
            .arg(&self.manifest)
            .args(["--listen", &listen])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .current_dir(repo_root());
        // Hermetic variables: nothing leaks in from the developer's shell.
        without_spin_variables(&mut cmd);
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
        // Its own process group, so that stopping it reaches every process it started:
        // real Spin's `spin up` serves from a child `spin trigger http` process.
        let mut child = ChildGuard::spawn_group(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        self.output.note(format!(
            "=== e2e: {} up (start #{}, pid {}, state dir {}) ===",
            if real_spin { "spin" } else { "spin-osb" },
            running.starts,
            child.id(),
            self.state_dir.display()
        ));
        let (serving, readers) = capture(&mut child, &self.output);
        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            match serving.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(url)) => break Ok(url),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
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
                running.readers = Some(readers);
            }
            Err(reason) => {
                child.kill();
                readers.join();
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
        running.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    fn stop_with(&self, signal: Option<&str>, timeout: Duration) -> Option<ExitStatus> {
        let mut running = self.running();
        let mut child = running.child.take()?;
        let status = match signal {
            Some(sig) => {
                child.signal(sig);
                let status = child.wait_timeout(timeout);
                // Whatever is left of the group (a child that outlived its parent) goes too.
                child.kill();
                status
            }
            None => child.kill(),
        };
        if let Some(readers) = running.readers.take() {
            readers.join();
        }
        self.output
            .note(format!("=== e2e: spin-osb stopped: {status:?} ==="));
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
