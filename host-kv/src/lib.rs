#![deny(missing_docs)]
//! Key-value stores behind Spin's `fermyon:spin/key-value` and `wasi:keyvalue` interfaces.
//!
//! One [`Store`] trait serves both WIT versions (as in Spin's `factor-key-value`): the WIT
//! adapters in the `spin-osb` host translate guest calls into these methods, and each
//! backend ([`sqlite`], [`redis`]) implements them once. Stores are opened per label from the
//! runtime config (see [`StoreManager`]); a component may open only the labels listed in
//! its manifest's `key_value_stores`.

pub mod redis;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

/// Errors a store reports to the guest as `error::other(...)`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, connection, SQL).
    #[error("{0}")]
    Backend(String),
    /// `increment` on a value that is not a decimal i64.
    #[error("value is not an integer")]
    NotAnInteger,
    /// Another connection holds the lock the statement needs (SQLite's `SQLITE_BUSY`);
    /// nothing was changed.
    #[error("{0}")]
    Busy(String),
}

/// A read-then-swap handle, the host side of `wasi:keyvalue/atomics.cas`.
///
/// Created by [`Store::new_cas`], which reads the key's current value. [`Cas::swap`]
/// then writes the new value only if the key still holds exactly what was read (an
/// absent key must still be absent). That is stricter than Spin's SQLite store, where a
/// swap on an absent key is an unconditional upsert; guests must not rely on either.
#[async_trait::async_trait]
pub trait Cas: Send + Sync {
    /// The value observed when this handle was created.
    async fn current(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes `value` if the key is unchanged since [`Store::new_cas`]; `Ok(false)` otherwise.
    async fn swap(&self, value: Vec<u8>) -> Result<bool, StoreError>;
    /// The key this handle guards.
    fn key(&self) -> &str;
}

/// One named key-value store.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The value stored under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, replacing what was there.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`; not an error when it is absent.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Whether `key` holds a value.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Every key in the store.
    async fn get_keys(&self) -> Result<Vec<String>, StoreError>;
    /// Values for several keys, in order; `None` for absent ones.
    async fn get_many(&self, keys: &[String])
        -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError>;
    /// Stores several pairs in one transaction where the backend has one.
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// Removes several keys.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Atomically adds `delta` to the integer under `key` (absent = 0) and returns the result.
    ///
    /// Values are stored as decimal text, like Redis' `INCRBY` (Spin's SQLite store uses
    /// 8 little-endian bytes instead), so `get` on a counter returns e.g. `b"3"` on every
    /// backend.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Reads `key` and returns a handle that can swap it if nobody wrote it meanwhile.
    async fn new_cas(&self, key: &str) -> Result<Arc<dyn Cas>, StoreError>;
}

/// The stores of one running app, by label.
#[derive(Clone, Default)]
pub struct StoreManager {
    stores: HashMap<String, Arc<dyn Store>>,
}

impl StoreManager {
    /// Registers the store backing `label`.
    pub fn insert(&mut self, label: impl Into<String>, store: Arc<dyn Store>) {
        self.stores.insert(label.into(), store);
    }

    /// The store for `label`, if the runtime config (or the default) defines it.
    pub fn get(&self, label: &str) -> Option<Arc<dyn Store>> {
        self.stores.get(label).cloned()
    }

    /// Whether a store with this label exists.
    pub fn contains(&self, label: &str) -> bool {
        self.stores.contains_key(label)
    }
}
