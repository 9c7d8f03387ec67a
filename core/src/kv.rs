//! The key-value contract the broker needs, and an in-memory implementation for tests.
//!
//! Components implement [`Kv`] over Spin's `wasi:keyvalue` (see the `spin-osb-adapter` crate);
//! `cargo test` uses [`MemoryKv`]. The contract is the intersection of what real Spin and
//! this project's host guarantee:
//! - [`Kv::increment`] is atomic everywhere, so it is the only way to *create* safely;
//! - [`Kv::compare_and_swap`] is a true CAS only on keys that already exist (Spin's SQLite
//!   store upserts when the key is absent), so the broker never relies on it for creation;
//! - and its report of failure cannot be trusted: Spin's Redis store writes (under `WATCH`,
//!   so conditionally) and then reports `cas-failed` every time. The broker checks a
//!   reported failure against the store ([`crate::state::replace`]).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::OsbError;

/// A failure of the store itself (unreachable Redis, I/O error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("key-value store error: {0}")]
pub struct KvError(pub String);

impl From<KvError> for OsbError {
    fn from(e: KvError) -> Self {
        OsbError::unavailable(format!(
            "the broker's state store is unavailable ({}); nothing was changed, retry later",
            e.0
        ))
    }
}

/// The store operations the broker uses.
pub trait Kv {
    /// The value under `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Unconditional write; used only for keys this request exclusively owns.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Removes `key`.
    fn delete(&self, key: &str) -> Result<(), KvError>;
    /// Atomically adds `delta` (absent = 0) and returns the new value.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Writes `new` if `key` still holds exactly `expected`; `Ok(false)` if it changed (or,
    /// on Spin's Redis store, whether or not it wrote). Only called for keys that exist.
    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError>;
}

/// An in-memory [`Kv`] that mimics real Spin's SQLite store, including its weakest
/// point: a compare-and-swap on an absent key is an unconditional upsert. Tests that pass
/// on it therefore do not depend on a stricter CAS than Spin offers.
#[derive(Default)]
pub struct MemoryKv {
    data: Mutex<HashMap<String, Vec<u8>>>,
    /// When set, every operation fails (models an unreachable store).
    pub fail: std::sync::atomic::AtomicBool,
    /// When set, a compare-and-swap reports failure even when it wrote, as Spin's Redis
    /// store does.
    pub swap_reports_failure: std::sync::atomic::AtomicBool,
}

impl MemoryKv {
    fn check(&self) -> Result<(), KvError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(KvError("injected failure".into()))
        } else {
            Ok(())
        }
    }

    /// Every key, sorted (for assertions).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .data
            .lock()
            .expect("poisoned")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}

impl Kv for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check()?;
        Ok(self.data.lock().expect("poisoned").get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.check()?;
        self.data
            .lock()
            .expect("poisoned")
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.check()?;
        self.data.lock().expect("poisoned").remove(key);
        Ok(())
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check()?;
        let mut data = self.data.lock().expect("poisoned");
        let current = match data.get(key) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| KvError("not an integer".into()))?,
        };
        let next = current + delta;
        data.insert(key.to_string(), next.to_string().into_bytes());
        Ok(next)
    }

    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError> {
        self.check()?;
        let mut data = self.data.lock().expect("poisoned");
        match data.get(key) {
            Some(current) if current.as_slice() != expected => Ok(false),
            // Present and equal, or absent: Spin's SQLite store writes in both cases.
            _ => {
                data.insert(key.to_string(), new.to_vec());
                Ok(!self
                    .swap_reports_failure
                    .load(std::sync::atomic::Ordering::SeqCst))
            }
        }
    }
}
