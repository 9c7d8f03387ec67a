//! A [`Store`] in one SQLite file, laid out like Spin's default key-value store.
//!
//! Spin keeps every label of an app in `.spin/sqlite_key_value.db`, in one table keyed by
//! `(store, key)`. Using the same schema means an app's data is readable by both Spin and
//! this host, and one file can back several labels.
//!
//! Several processes may share the file (e.g. two host instances), so the connection runs
//! in WAL mode with a busy timeout, and every read-modify-write (`increment`, CAS swap,
//! batch writes) runs in a `BEGIN IMMEDIATE` transaction: SQLite's write lock is taken
//! before the read, which makes the check and the write atomic across threads and
//! processes alike.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{Cas, Store, StoreError};

/// How long a statement waits for another connection's lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Spin's schema for `sqlite_key_value.db`; `store` is the label.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)";

const GET: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const SET: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
    ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

/// One labelled store inside a SQLite file.
///
/// Cloning is cheap and shares the connection. The connection sits behind an async mutex
/// (a request waiting for it frees its worker thread); a statement that meets another
/// process's lock waits where blocking is allowed, never on an async worker (see
/// `SqliteStore::run`).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<tokio::sync::Mutex<Connection>>,
    name: Arc<str>,
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `path` and returns the store labelled
    /// `store_name` in it.
    ///
    /// Missing parent directories are created, as Spin does for `.spin/`. Blocks while
    /// opening; call it at startup or from a blocking context.
    pub fn open(path: &Path, store_name: &str) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("sqlite: cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(|e| {
            StoreError::Backend(format!("sqlite: cannot open {}: {e}", path.display()))
        })?;
        // Set the busy timeout first so that switching to WAL and creating the table wait
        // for other processes instead of failing.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql_err)?;
        if mode.eq_ignore_ascii_case("wal") {
            // In WAL mode, NORMAL still survives any crash or kill of the process (a commit
            // is in the WAL before it returns) and never corrupts the file; only an OS crash
            // or power loss can drop the last commits. FULL adds an fsync to every commit
            // (0.6 ms against 0.08 ms on the benchmark machine), several per OSB request.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sql_err)?;
        } else {
            // Still correct (locking works in every mode), just more contention.
            tracing::warn!(path = %path.display(), %mode, "SQLite refused WAL journal mode");
        }
        Self::init(conn, store_name)
    }

    /// A private in-memory database holding one store, for tests and throwaway apps.
    pub fn open_in_memory(store_name: &str) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql_err)?, store_name)
    }

    fn init(conn: Connection, store_name: &str) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        Ok(Self {
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            name: store_name.into(),
        })
    }

    /// Runs `f` with the connection and this store's label.
    ///
    /// On a multi-threaded runtime a request waits for the connection asynchronously (its
    /// worker thread runs other requests meanwhile; blocking it on a mutex left a core
    /// idle under concurrent load) and then runs the statement on its own thread when
    /// SQLite's lock is free at once, which is nearly always: it takes microseconds, and
    /// handing it to another thread cost more than the statement (a thread wake-up each
    /// way; ~10 % of a synchronous provision→deprovision cycle's host CPU time, measured
    /// side by side). Only a statement that meets another process's database lock waits
    /// for it where blocking is allowed: in place with `block_in_place`, which hands this
    /// worker's other tasks to another thread, or on the blocking pool on a current-thread
    /// runtime.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if multi_thread {
            let mut conn = self.conn.lock().await;
            return match without_waiting(&mut conn, |conn| f(conn, &self.name)) {
                Err(StoreError::Busy(_)) => {
                    tokio::task::block_in_place(|| f(&mut conn, &self.name))
                }
                done => done,
            };
        }
        let conn = self.conn.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.blocking_lock(), &name))
            .await
            .map_err(|e| StoreError::Backend(format!("sqlite: task failed: {e}")))?
    }
}

/// Runs `f` with SQLite's busy timeout off: a statement that would wait for another
/// connection's lock fails at once with [`StoreError::Busy`], having changed nothing
/// (`BEGIN IMMEDIATE` and single statements take the lock before they write).
fn without_waiting<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.busy_timeout(Duration::ZERO).map_err(sql_err)?;
    let result = f(conn);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    result
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Busy(format!("sqlite: {e}"))
        }
        _ => StoreError::Backend(format!("sqlite: {e}")),
    }
}

/// Reads `key`'s value. Values are written as BLOBs, but text or numbers put there by
/// other tools are accepted as their bytes.
fn read(conn: &Connection, store: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached(GET)
        .and_then(|mut stmt| {
            stmt.query_row((store, key), |row| {
                Ok(match row.get_ref(0)? {
                    ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                    ValueRef::Integer(i) => i.to_string().into_bytes(),
                    ValueRef::Real(f) => f.to_string().into_bytes(),
                    ValueRef::Null => Vec::new(),
                })
            })
            .optional()
        })
        .map_err(sql_err)
}

fn write(conn: &Connection, store: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached(SET)
        .and_then(|mut stmt| stmt.execute((store, key, value)))
        .map(drop)
        .map_err(sql_err)
}

fn remove(conn: &Connection, store: &str, key: &str) -> Result<(), StoreError> {
    conn.prepare_cached(DELETE)
        .and_then(|mut stmt| stmt.execute((store, key)))
        .map(drop)
        .map_err(sql_err)
}

/// Runs `f` inside `BEGIN IMMEDIATE … COMMIT`; any error rolls back.
fn immediate<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    let out = f(&tx)?;
    tx.commit().map_err(sql_err)?;
    Ok(out)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.run(move |conn, store| read(conn, store, &key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(move |conn, store| write(conn, store, &key, &value))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(move |conn, store| remove(conn, store, &key)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run(move |conn, store| {
            conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.exists((store, &key)))
                .map_err(sql_err)
        })
        .await
    }

    async fn get_keys(&self) -> Result<Vec<String>, StoreError> {
        self.run(|conn, store| {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")
                .map_err(sql_err)?;
            let keys = stmt
                .query_map([store], |row| row.get(0))
                .and_then(|rows| rows.collect())
                .map_err(sql_err);
            keys
        })
        .await
    }

    async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        let keys = keys.to_vec();
        self.run(move |conn, store| {
            // One read transaction, so all values come from the same snapshot.
            let tx = conn.transaction().map_err(sql_err)?;
            keys.iter()
                .map(|key| read(&tx, store, key).map(|value| (key.clone(), value)))
                .collect()
        })
        .await
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let pairs = pairs.to_vec();
        self.run(move |conn, store| {
            immediate(conn, |tx| {
                pairs.iter().try_for_each(|(k, v)| write(tx, store, k, v))
            })
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let keys = keys.to_vec();
        self.run(move |conn, store| {
            immediate(conn, |tx| {
                keys.iter().try_for_each(|k| remove(tx, store, k))
            })
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let key = key.to_owned();
        self.run(move |conn, store| {
            immediate(conn, |tx| {
                let current = match read(tx, store, &key)? {
                    None => 0,
                    Some(bytes) => parse_i64(&bytes).ok_or(StoreError::NotAnInteger)?,
                };
                let new = current.checked_add(delta).ok_or_else(|| {
                    StoreError::Backend("sqlite: increment would overflow".into())
                })?;
                write(tx, store, &key, new.to_string().as_bytes())?;
                Ok(new)
            })
        })
        .await
    }

    async fn new_cas(&self, key: &str) -> Result<Arc<dyn Cas>, StoreError> {
        let current = self.get(key).await?;
        Ok(Arc::new(SqliteCas {
            store: self.clone(),
            key: key.to_owned(),
            current,
        }))
    }
}

/// Parses a counter exactly as Redis' `INCRBY` does, so both backends accept the same
/// values: decimal text with an optional `-`, no `+`, spaces or leading zeros, within i64.
fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = text == "0" || digits.starts_with(|c: char| matches!(c, '1'..='9'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The CAS handle of a [`SqliteStore`]: remembers the value read by `new_cas`.
struct SqliteCas {
    store: SqliteStore,
    key: String,
    current: Option<Vec<u8>>,
}

#[async_trait::async_trait]
impl Cas for SqliteCas {
    async fn current(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.current.clone())
    }

    async fn swap(&self, value: Vec<u8>) -> Result<bool, StoreError> {
        let (key, expected) = (self.key.clone(), self.current.clone());
        self.store
            .run(move |conn, store| {
                immediate(conn, |tx| {
                    if read(tx, store, &key)? != expected {
                        return Ok(false);
                    }
                    write(tx, store, &key, &value)?;
                    Ok(true)
                })
            })
            .await
    }

    fn key(&self) -> &str {
        &self.key
    }
}
