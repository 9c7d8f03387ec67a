//! Append-only indexes in the key-value store: the way to enumerate records without
//! listing keys (Spin's `get-keys` scans the whole store).
//!
//! An index is a counter (`{prefix}/n`, atomic `increment`) and one key per slot
//! (`{prefix}/{slot}`) holding a record's id. A creator appends before it creates its
//! record, so no record is ever missing from the index (a crash in between leaves an entry
//! whose record never appears, which readers skip). Concurrent identical creations each
//! append; a record remembers the slot it was created with, and only that slot counts
//! (see [`Index::live`]). Slots only grow, so a reader can page through an index with a
//! cursor while entries are added and removed.

use crate::error::OsbError;
use crate::kv::Kv;

/// One index, under `prefix`.
#[derive(Debug, Clone)]
pub struct Index {
    prefix: String,
}

impl Index {
    /// The index under `prefix` (no trailing `/`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Index {
            prefix: prefix.into(),
        }
    }

    fn count_key(&self) -> String {
        format!("{}/n", self.prefix)
    }

    fn slot_key(&self, slot: u64) -> String {
        format!("{}/{slot}", self.prefix)
    }

    /// Appends `id`; returns its slot (1, 2, …). Two store calls.
    pub fn append(&self, kv: &dyn Kv, id: &str) -> Result<u64, OsbError> {
        let slot = kv.increment(&self.count_key(), 1)?.max(0) as u64;
        kv.set(&self.slot_key(slot), id.as_bytes())?;
        Ok(slot)
    }

    /// The highest slot handed out (0 for an empty index).
    pub fn len(&self, kv: &dyn Kv) -> Result<u64, OsbError> {
        Ok(kv
            .get(&self.count_key())?
            .and_then(|bytes| parse_counter(&bytes))
            .unwrap_or(0))
    }

    /// The id at `slot`, if the slot was written and not removed.
    pub fn get(&self, kv: &dyn Kv, slot: u64) -> Result<Option<String>, OsbError> {
        Ok(kv
            .get(&self.slot_key(slot))?
            .and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    /// Removes the entry at `slot`.
    pub fn remove(&self, kv: &dyn Kv, slot: u64) -> Result<(), OsbError> {
        Ok(kv.delete(&self.slot_key(slot))?)
    }

    /// Sets the highest slot to `len`: only for an index nobody appends to any more
    /// (the bindings of a deleted instance) while its top entries are removed.
    pub fn truncate(&self, kv: &dyn Kv, len: u64) -> Result<(), OsbError> {
        if len == 0 {
            Ok(kv.delete(&self.count_key())?)
        } else {
            Ok(kv.set(&self.count_key(), len.to_string().as_bytes())?)
        }
    }

    /// Whether the entry at `slot` is the one a record created with `record_slot` counts
    /// (records created before indexes existed have none and count wherever they are).
    pub fn live(slot: u64, record_slot: Option<u64>) -> bool {
        record_slot.is_none_or(|own| own == slot)
    }
}

/// A counter as `increment` left it: decimal text (our stores, Redis) or 8 little-endian
/// bytes (Spin's SQLite store).
pub fn parse_counter(bytes: &[u8]) -> Option<u64> {
    if let Some(n) = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
    {
        return u64::try_from(n).ok();
    }
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    u64::try_from(i64::from_le_bytes(bytes)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    #[test]
    fn slots_grow_and_removed_entries_read_as_none() {
        let kv = MemoryKv::default();
        let index = Index::new("osb/v1/index/test");
        assert_eq!(index.len(&kv).unwrap(), 0);
        assert_eq!(index.append(&kv, "a").unwrap(), 1);
        assert_eq!(index.append(&kv, "b").unwrap(), 2);
        assert_eq!(index.get(&kv, 2).unwrap().as_deref(), Some("b"));
        index.remove(&kv, 1).unwrap();
        assert_eq!(index.get(&kv, 1).unwrap(), None);
        assert_eq!(index.len(&kv).unwrap(), 2);
        index.truncate(&kv, 0).unwrap();
        assert_eq!(index.len(&kv).unwrap(), 0);
    }

    #[test]
    fn counters_of_every_store_are_read() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(&7i64.to_le_bytes()), Some(7));
        assert_eq!(parse_counter(b"-1"), None);
    }
}
