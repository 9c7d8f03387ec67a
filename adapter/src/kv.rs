//! The core's [`Kv`] over `wasi:keyvalue` (store, atomics).

use spin_osb_core::kv::{Kv, KvError};
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

/// A `wasi:keyvalue` bucket (or none, for components without state).
pub struct SpinKv {
    bucket: Option<store::Bucket>,
}

fn err(e: store::Error) -> KvError {
    KvError(match e {
        store::Error::NoSuchStore => {
            "no such store (check key_value_stores and the runtime config)".into()
        }
        store::Error::AccessDenied => "access to the store was denied".into(),
        store::Error::Other(message) => message,
    })
}

impl SpinKv {
    /// Opens the store `label`.
    pub fn open(label: &str) -> Result<Self, KvError> {
        Ok(Self {
            bucket: Some(store::open(label).map_err(err)?),
        })
    }

    /// A store that fails every call (for components that must not touch state).
    pub fn none() -> Self {
        Self { bucket: None }
    }

    fn bucket(&self) -> Result<&store::Bucket, KvError> {
        self.bucket
            .as_ref()
            .ok_or_else(|| KvError("this component has no state store".into()))
    }
}

impl Kv for SpinKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket()?.get(key).map_err(err)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket()?.set(key, value).map_err(err)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.bucket()?.delete(key).map_err(err)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(self.bucket()?, key, delta).map_err(err)
    }

    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError> {
        let cas = atomics::Cas::new(self.bucket()?, key).map_err(err)?;
        if cas.current().map_err(err)?.as_deref() != Some(expected) {
            return Ok(false);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(err(e)),
        }
    }
}
