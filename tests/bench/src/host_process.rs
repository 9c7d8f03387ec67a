//! The `spin-osb` host process under test: started, measured (RSS), always stopped.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::STOP_GRACE;

pub(crate) struct HostProcess {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) app: PathBuf,
    pub(crate) stopped: bool,
    pub(crate) log: PathBuf,
    /// Holds the state dir (and the host log) until the host is gone.
    pub(crate) _state: tempfile::TempDir,
}

impl HostProcess {
    /// Starts `spin-osb up` on a free port and waits for its `Serving` line.
    pub(crate) fn start(bin: &Path, app: &Path, quiet: bool, deadline: Instant) -> Result<Self> {
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

    pub(crate) fn log_tail(&self) -> String {
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
    pub(crate) fn stop(&mut self) -> Result<String> {
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
pub(crate) fn rss_line(pid: u32) -> Result<String> {
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
pub(crate) fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    // The checkout the bench runs in (its current directory's), else where it was built.
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = std::env::current_dir()
        .ok()
        .and_then(|dir| {
            dir.ancestors()
                .find(|d| d.join("spin.toml").is_file() && d.join("tests/bench").is_dir())
                .map(Path::to_path_buf)
        })
        .unwrap_or(built);
    let candidate = root.join(path);
    if candidate.exists() {
        candidate
    } else {
        path.to_path_buf()
    }
}
