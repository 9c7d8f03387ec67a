//! What the broker needs from its surroundings besides storage: time, randomness and a
//! way to wait. Components use the WASI clock and random sources; tests use fakes.

/// The runtime's random source failed. Instance seeds, generated secrets, operation ids
/// and write tokens all come from it, and a predictable substitute would make them
/// guessable, so the request fails instead (500, nothing written).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the runtime's random source failed ({0}); nothing was changed")]
pub struct RandomnessUnavailable(pub String);

/// Clock, randomness and sleeping.
pub trait Env {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Milliseconds since the Unix epoch: operation durations span requests (and hosts).
    fn now_ms(&self) -> u64 {
        self.now().saturating_mul(1000)
    }
    /// Milliseconds on a clock that only moves forward, from any origin: for time budgets
    /// within one request.
    fn monotonic_ms(&self) -> u64;
    /// `bytes` random bytes, hex-encoded; used for operation ids, write tokens and
    /// per-instance seeds.
    fn random_hex(&self, bytes: usize) -> Result<String, RandomnessUnavailable>;
    /// Blocks for `millis` (used only while waiting for a concurrent creator).
    fn sleep_ms(&self, millis: u64);
    /// Writes one line to the operators' log (the component's stderr): the details behind
    /// the short descriptions platforms show their users (API addresses, raw answers,
    /// errand output). Never secrets.
    fn log(&self, line: &str);
}

/// An [`Env`] for tests: a settable clock and a counter instead of randomness.
#[derive(Default)]
pub struct TestEnv {
    /// The current time.
    pub now: std::sync::atomic::AtomicU64,
    counter: std::sync::atomic::AtomicU64,
    /// When set, randomness fails (as a broken runtime's would).
    pub randomness_fails: std::sync::atomic::AtomicBool,
    /// The operators' log lines written so far.
    pub log: std::sync::Mutex<Vec<String>>,
}

impl TestEnv {
    /// A clock starting at `now`.
    pub fn at(now: u64) -> Self {
        Self {
            now: now.into(),
            ..Self::default()
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.now
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Env for TestEnv {
    fn now(&self) -> u64 {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.now().saturating_mul(1000)
    }

    fn random_hex(&self, bytes: usize) -> Result<String, RandomnessUnavailable> {
        if self
            .randomness_fails
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(RandomnessUnavailable("the test turned it off".into()));
        }
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let hex = format!("{n:0width$x}", width = bytes * 2);
        Ok(hex[hex.len() - bytes * 2..].to_string())
    }

    fn sleep_ms(&self, millis: u64) {
        std::thread::sleep(std::time::Duration::from_millis(millis.min(5)));
    }

    fn log(&self, line: &str) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_owned());
    }
}
