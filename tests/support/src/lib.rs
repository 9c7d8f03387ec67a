//! What the test suites of the workspace share (`host/tests`, `host-kv/tests`,
//! `tests/e2e`), so that each of them starts processes, Redis servers and ports the same way.
//!
//! * [`process`]: a child process that is stopped and reaped when dropped, also when the
//!   test fails or panics, so no test leaves a process running;
//! * [`redis`]: a throw-away `redis-server` (Debian's package) with optional password,
//!   pause, stop, restart with or without its data, and a look at every key;
//! * [`ports`]: free loopback ports and whether something listens on one;
//! * [`output`]: a process's stdout and stderr captured line by line, and the address it
//!   announces with `Serving http://...`;
//! * [`mod@query`]: percent-encoded query strings;
//! * [`http`]: an HTTP client for loopback and `Transfer-Encoding: chunked` decoding;
//! * [`concurrency`]: running a closure on many threads released at once;
//! * [`paths`] and [`files`]: the repository, the cargo target directory, temporary
//!   directories and files.
//!
//! Everything here only talks to 127.0.0.1.

pub mod concurrency;
pub mod files;
pub mod http;
pub mod output;
pub mod paths;
pub mod ports;
pub mod process;
pub mod query;
pub mod redis;

pub use self::concurrency::concurrently;
pub use self::ports::free_port;
pub use self::process::ChildGuard;
pub use self::query::{enc, query};
pub use self::redis::RedisServer;
