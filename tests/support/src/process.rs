//! Child processes that cannot outlive their test.
//!
//! A test that starts a server (the host, a `redis-server`, an apiserver) and then fails an
//! assertion unwinds past the code that would have stopped it. [`ChildGuard`] stops the
//! process in `Drop` (which also runs while unwinding from a panic): SIGKILL, to its whole
//! process group when it was started as a group leader, then `wait` so no zombie is left.
//! `scripts/test.sh` fails the run if any process a test started is still alive afterwards.

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running child process, killed and reaped when dropped. Derefs to the [`Child`] (for
/// its pid, pipes and `try_wait`).
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    /// The child leads its own process group; signals go to the whole group.
    group: bool,
    /// Killed and reaped already (nothing left to do on drop).
    reaped: bool,
}

impl ChildGuard {
    /// Guards an already spawned child.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child,
            group: false,
            reaped: false,
        }
    }

    /// Spawns `cmd` and guards it.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        cmd.spawn().map(ChildGuard::new)
    }

    /// Spawns `cmd` as the leader of a new process group, so that stopping it also stops
    /// every process it started (the real Spin CLI serves from a child process).
    pub fn spawn_group(cmd: &mut Command) -> io::Result<ChildGuard> {
        cmd.process_group(0);
        let mut guard = ChildGuard::spawn(cmd)?;
        guard.group = true;
        Ok(guard)
    }

    /// Sends `signal` (`TERM`, `INT`, `STOP`, `CONT`, `KILL`, ...) to the process, or to its
    /// process group; whether `kill` succeeded.
    pub fn signal(&self, signal: &str) -> bool {
        let target = if self.group {
            format!("-{}", self.child.id())
        } else {
            self.child.id().to_string()
        };
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(target)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Whether the process is still running (not yet exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; its status, `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// SIGKILL (to the whole group for a group leader, so nothing it started is left) and
    /// reaps the process; its exit status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.group {
            self.signal("KILL");
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.reaped = true;
        status
    }

    /// SIGTERM, then up to `timeout` for a graceful exit; whatever is left (the process, or
    /// members of its group that outlived it) is then killed. The exit status if the
    /// process exited within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let status = self.wait_timeout(timeout);
        self.kill();
        status
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

/// Waits up to `timeout` for `child` to exit (polling every 20 ms); `None` if it still runs.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Sends `signal` (`TERM`, `INT`, ...) to process `pid` with `kill`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Removes every `SPIN_VARIABLE_*` of the test's own environment from `cmd`, so that the
/// application variables a process under test sees are only the ones the test sets.
pub fn without_spin_variables(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A zombie still has /proc/<pid>, but its state is `Z`.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[test]
    fn a_dropped_guard_kills_and_reaps_its_child() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("600")).unwrap();
        let pid = guard.id();
        assert!(alive(pid));
        drop(guard);
        assert!(!alive(pid), "pid {pid} still runs");
    }

    #[test]
    fn a_panicking_test_still_stops_its_child() {
        let pid = std::sync::Mutex::new(0);
        let result = std::panic::catch_unwind(|| {
            let guard = ChildGuard::spawn(Command::new("sleep").arg("600")).unwrap();
            *pid.lock().unwrap() = guard.id();
            panic!("the test fails");
        });
        assert!(result.is_err());
        let pid = *pid.lock().unwrap();
        assert!(pid != 0 && !alive(pid), "pid {pid} still runs");
    }

    #[test]
    fn a_group_leader_takes_its_children_along() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 600 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut guard = ChildGuard::spawn_group(&mut cmd).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(guard.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(alive(grandchild));
        assert_eq!(
            guard.terminate(Duration::from_secs(5)).map(|s| s.success()),
            Some(false)
        );
        // The orphaned `sleep` is reaped by init; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "the group's other process still runs");
    }
}
