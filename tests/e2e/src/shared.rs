//! Brokers that live as long as the test binary, shared by its tests.

use std::ops::Deref;
use std::sync::OnceLock;
use std::thread;

use crate::Broker;

static SHARED: OnceLock<&'static Broker> = OnceLock::new();

/// Brokers that live as long as the test binary: statics are never dropped, so their hosts
/// are killed (and their state dirs removed) by an `atexit` handler instead.
static UNTIL_EXIT: std::sync::Mutex<Vec<&'static Broker>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_brokers_at_exit() {
    let brokers = UNTIL_EXIT.lock().map(|b| b.clone()).unwrap_or_default();
    for broker in brokers {
        let mut running = broker.running();
        if let Some(mut child) = running.child.take() {
            child.kill();
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
