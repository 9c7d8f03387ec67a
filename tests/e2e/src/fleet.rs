//! `spin-osb fleet …` against a running broker, as an operator runs it: a child process
//! whose output the test reads while it plays the parts nobody else plays (the kubelet).

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use spin_osb_test_support::output::{capture, Output, Readers};
use spin_osb_test_support::process::ChildGuard;

use crate::{host_bin, Broker};

/// A running `spin-osb fleet` command.
pub struct Fleet {
    child: ChildGuard,
    output: Output,
    readers: Option<Readers>,
}

impl Broker {
    /// Starts `spin-osb fleet <args>` against this broker with the operator's password.
    pub fn fleet(&self, operator_password: &str, args: &[&str]) -> Fleet {
        let mut child = Command::new(host_bin())
            .arg("fleet")
            .args(args)
            .env("SPIN_OSB_BROKER_URL", self.base())
            .env("SPIN_OSB_OPERATOR_PASSWORD", operator_password)
            .env_remove("SPIN_OSB_OPERATOR_USERNAME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spin-osb fleet starts");
        let output = Output::default();
        let (_, readers) = capture(&mut child, &output);
        Fleet {
            child: ChildGuard::new(child),
            output,
            readers: Some(readers),
        }
    }
}

impl Fleet {
    /// Everything it printed so far.
    pub fn text(&self) -> String {
        self.output.text()
    }

    /// Calls `meanwhile` every half second until the command printed `needle`.
    #[track_caller]
    pub fn wait_for(&self, needle: &str, timeout: Duration, mut meanwhile: impl FnMut()) {
        let deadline = Instant::now() + timeout;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "spin-osb fleet never printed {needle:?}:\n{}",
                self.text()
            );
            meanwhile();
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Calls `meanwhile` every half second until the command exits; its status and output.
    #[track_caller]
    pub fn finish(
        mut self,
        timeout: Duration,
        mut meanwhile: impl FnMut(),
    ) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.wait_timeout(Duration::from_millis(500)) {
                if let Some(readers) = self.readers.take() {
                    readers.join();
                }
                return (status, self.text());
            }
            assert!(
                Instant::now() < deadline,
                "spin-osb fleet did not finish:\n{}",
                self.text()
            );
            meanwhile();
        }
    }

    /// Kills it (SIGKILL), as an operator's lost terminal would.
    pub fn kill(mut self) -> String {
        self.child.kill();
        if let Some(readers) = self.readers.take() {
            readers.join();
        }
        self.text()
    }
}
