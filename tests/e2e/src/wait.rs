//! Waiting for something that happens later: an asynchronous OSB operation to finish, or
//! any condition to hold.

use std::thread;
use std::time::{Duration, Instant};

use crate::{Broker, Resp, OPERATION_TIMEOUT};

/// Polls `check` until it returns `Some`, for at most `timeout`.
#[track_caller]
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(250));
    }
}

impl Broker {
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
}
