//! A [`Store`] in a Redis database, laid out like Spin's Redis key-value store.
//!
//! Keys are plain Redis keys holding string values, so the whole database (the one the
//! URL selects) is the store; give each label its own database or server. Counters use
//! `INCRBY`, which stores decimal text, the same bytes the SQLite store writes.
//!
//! Several host processes may share one Redis, so anything that reads before writing
//! runs on the server in one step: `INCRBY`, `MSET`, and a Lua script for CAS swaps.
//!
//! Every operation is bounded by a timeout, so a dead or stuck server yields
//! [`StoreError::Backend`] instead of hanging the guest. An operation that times out may
//! still have been applied by the server; the caller cannot know.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, RedisError, Script};

use crate::{Cas, Store, StoreError};

/// How long [`RedisStore::connect`] lets one operation (or the initial connection) take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys fetched per `SCAN` round trip in [`Store::get_keys`].
const SCAN_COUNT: usize = 1000;

/// Sets `KEYS[1]` to `ARGV[3]` only if it still holds `ARGV[2]` (when `ARGV[1]` is `"1"`)
/// or is still absent (when `ARGV[1]` is `"0"`). Returns 1 if it wrote, 0 if not.
/// Lua strings compare byte for byte, and scripts run atomically on the server.
static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
",
    )
});

/// A store backed by one Redis database.
///
/// Cloning is cheap and shares the connection. The [`ConnectionManager`] multiplexes
/// concurrent requests over one connection and reconnects after the server goes away.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    timeout: Duration,
}

impl RedisStore {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/0`) with
    /// [`DEFAULT_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, DEFAULT_TIMEOUT).await
    }

    /// Connects to the Redis at `url`; the connection and each later operation fail with
    /// [`StoreError::Backend`] if they take longer than `timeout`.
    pub async fn connect_with_timeout(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        // Error messages leave out the URL: it may carry a password.
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("redis: invalid URL: {e}")))?;
        // Few, short reconnect attempts: callers get an error quickly while the server is
        // down, and the next operation starts a fresh reconnect anyway.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let conn =
            tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config))
                .await
                .map_err(|_| {
                    StoreError::Backend(format!("redis: cannot connect within {timeout:?}"))
                })?
                .map_err(|e| StoreError::Backend(format!("redis: cannot connect: {e}")))?;
        Ok(Self { conn, timeout })
    }

    /// Sends `cmd`, bounded by the store's timeout.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        within(self.timeout, cmd.query_async(&mut conn)).await
    }
}

/// Awaits `fut` for at most `timeout`, turning every failure into [`StoreError`].
async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(redis_err),
        Err(_) => Err(StoreError::Backend(format!(
            "redis: no reply within {timeout:?}"
        ))),
    }
}

fn redis_err(e: RedisError) -> StoreError {
    // `INCRBY` on a non-numeric value (or one outside i64) is the only command we send
    // that can produce this reply.
    if e.to_string().contains("not an integer") {
        StoreError::NotAnInteger
    } else {
        StoreError::Backend(format!("redis: {e}"))
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("DEL").arg(key)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.query(redis::cmd("EXISTS").arg(key)).await
    }

    async fn get_keys(&self) -> Result<Vec<String>, StoreError> {
        // SCAN, unlike KEYS, does not block the server on a large database. It may return
        // a key more than once, hence the set.
        let mut keys = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = self
                .query(redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(SCAN_COUNT))
                .await?;
            for key in batch {
                match String::from_utf8(key) {
                    Ok(key) => {
                        keys.insert(key);
                    }
                    // Written by something else; a guest could not name it anyway.
                    Err(e) => tracing::warn!(key = ?e.as_bytes(), "skipping non-UTF-8 Redis key"),
                }
            }
            if next == 0 {
                return Ok(keys.into_iter().collect());
            }
            cursor = next;
        }
    }

    async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(keys)).await?;
        Ok(keys.iter().cloned().zip(values).collect())
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        // MSET is atomic: other clients see all pairs or none.
        self.query(redis::cmd("MSET").arg(pairs)).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.query(redis::cmd("DEL").arg(keys)).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.query(redis::cmd("INCRBY").arg(key).arg(delta)).await
    }

    async fn new_cas(&self, key: &str) -> Result<Arc<dyn Cas>, StoreError> {
        let current = self.get(key).await?;
        Ok(Arc::new(RedisCas {
            store: self.clone(),
            key: key.to_owned(),
            current,
        }))
    }
}

/// The CAS handle of a [`RedisStore`]: remembers the value read by `new_cas`.
struct RedisCas {
    store: RedisStore,
    key: String,
    current: Option<Vec<u8>>,
}

#[async_trait::async_trait]
impl Cas for RedisCas {
    async fn current(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.current.clone())
    }

    async fn swap(&self, value: Vec<u8>) -> Result<bool, StoreError> {
        let (present, expected): (&str, &[u8]) = match &self.current {
            Some(bytes) => ("1", bytes),
            None => ("0", b""),
        };
        let mut invocation = SWAP.prepare_invoke();
        invocation
            .key(&self.key)
            .arg(present)
            .arg(expected)
            .arg(value);
        let mut conn = self.store.conn.clone();
        let written: i64 = within(self.store.timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(written == 1)
    }

    fn key(&self) -> &str {
        &self.key
    }
}
