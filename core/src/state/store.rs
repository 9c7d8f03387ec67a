//! Reading and replacing records: every change is a compare-and-swap against the exact
//! bytes read, with a write stamp that recognises this request's own write on stores that
//! misreport a swap.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SCHEMA_VERSION;

use crate::env::{Env, RandomnessUnavailable};
use crate::error::OsbError;
use crate::kv::Kv;

/// A record together with the exact bytes it was read from (the CAS expectation).
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The decoded record.
    pub value: T,
    pub(super) raw: Vec<u8>,
    pub(super) stamp: WriteStamp,
    /// For an [`Stored::unwritten`] change: the record as the store still holds it.
    pub(super) in_store: Option<Box<T>>,
}

impl<T: Clone> Stored<T> {
    /// `value` as a change of this record that is decided but not written: [`replace`]ing
    /// it later still compares against what was read, so the change and whatever follows
    /// from it land in one write, or not at all.
    pub fn unwritten(&self, value: T) -> Stored<T> {
        Stored {
            value,
            raw: self.raw.clone(),
            stamp: self.stamp.clone(),
            in_store: Some(Box::new(self.in_store().clone())),
        }
    }

    /// The record as the store holds it: `value`, unless that is an unwritten change.
    pub fn in_store(&self) -> &T {
        self.in_store.as_deref().unwrap_or(&self.value)
    }
}

/// How many earlier write tokens a record remembers (see [`WriteStamp`]).
const LINEAGE: usize = 8;

/// Every record write carries a fresh random token and the tokens of the writes it replaced,
/// so a writer can tell from the store whether its compare-and-swap took effect, whatever
/// the store reported: Spin's Redis store writes (conditionally, under `WATCH`) and then
/// reports `cas-failed`, every time. A write is ours if the record now holds our token, or
/// a later write that replaced ours (and so lists our token among its predecessors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WriteStamp {
    pub(super) token: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    after: Vec<String>,
}

impl WriteStamp {
    pub(super) fn fresh(env: &dyn Env) -> Result<Self, RandomnessUnavailable> {
        Ok(WriteStamp {
            token: env.random_hex(12)?,
            after: Vec::new(),
        })
    }

    /// The stamp of a write that replaces the one stamped `self`.
    fn successor(&self, env: &dyn Env) -> Result<Self, RandomnessUnavailable> {
        let mut after = Vec::with_capacity(LINEAGE);
        after.push(self.token.clone());
        after.extend(self.after.iter().take(LINEAGE - 1).cloned());
        Ok(WriteStamp {
            token: env.random_hex(12)?,
            after,
        })
    }

    pub(super) fn includes(&self, token: &str) -> bool {
        self.token == token || self.after.iter().any(|t| t == token)
    }
}

/// The field of a stored record that holds its [`WriteStamp`].
const STAMP_FIELD: &str = "write";

/// Reads and decodes `key`. A record that does not decode (corruption, a newer schema)
/// is a 500 that names the key, never a panic or a silent overwrite.
pub fn read<T: DeserializeOwned>(kv: &dyn Kv, key: &str) -> Result<Option<Stored<T>>, OsbError> {
    let Some(raw) = kv.get(key)? else {
        return Ok(None);
    };
    let (value, stamp) = decode(key, &raw)?;
    Ok(Some(Stored {
        value,
        raw,
        stamp,
        in_store: None,
    }))
}

pub(super) fn decode<T: DeserializeOwned>(
    key: &str,
    raw: &[u8],
) -> Result<(T, WriteStamp), OsbError> {
    let unreadable =
        |e: serde_json::Error| OsbError::internal(format!("record {key} is unreadable: {e}"));
    let mut json = serde_json::from_slice::<Value>(raw).map_err(unreadable)?;
    let schema = json.get("schema").and_then(Value::as_u64);
    if let Some(schema) = schema.filter(|s| *s > SCHEMA_VERSION as u64) {
        return Err(OsbError::internal(format!(
            "record {key} has schema {schema}, newer than this broker's {SCHEMA_VERSION}; upgrade the broker"
        )));
    }
    // Records written before stamps existed have none: an empty token never matches.
    let stamp = match json.as_object_mut().and_then(|o| o.remove(STAMP_FIELD)) {
        Some(stamp) => serde_json::from_value(stamp).map_err(unreadable)?,
        None => WriteStamp::default(),
    };
    Ok((serde_json::from_value(json).map_err(unreadable)?, stamp))
}

pub(super) fn encode<T: Serialize>(value: &T, stamp: &WriteStamp) -> Result<Vec<u8>, OsbError> {
    let failed = |e: serde_json::Error| OsbError::internal(format!("cannot encode record: {e}"));
    let mut json = serde_json::to_value(value).map_err(failed)?;
    let Some(object) = json.as_object_mut() else {
        return Err(OsbError::internal("a record must encode as a JSON object"));
    };
    object.insert(
        STAMP_FIELD.into(),
        serde_json::to_value(stamp).map_err(failed)?,
    );
    serde_json::to_vec(&json).map_err(failed)
}

/// Writes `new` if the record still holds what `current` was read from. `Ok(None)` when
/// someone else changed it first (the caller re-reads and decides again).
///
/// A reported success is trusted; a reported failure is checked against the store (see
/// [`WriteStamp`]), so a store that reports failure after writing cannot make the broker
/// believe a transition it made did not happen.
pub fn replace<T: Serialize + Clone + DeserializeOwned>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    current: &Stored<T>,
    new: &T,
) -> Result<Option<Stored<T>>, OsbError> {
    let stamp = current.stamp.successor(env)?;
    let raw = encode(new, &stamp)?;
    let written = kv.compare_and_swap(key, &current.raw, &raw)?
        || match kv.get(key)? {
            Some(now) => now == raw || decode::<Value>(key, &now)?.1.includes(&stamp.token),
            None => false,
        };
    Ok(written.then(|| Stored {
        value: new.clone(),
        raw,
        stamp,
        in_store: None,
    }))
}
