//! Tombstone expiry without anything running between requests.
//!
//! A deleted instance or binding stays as a tombstone (see
//! [`crate::state::InstanceRecord::become_tombstone`]) so late polls and repeated deletions
//! get `410 Gone`, and so no late writer can bring the record back. After
//! [`TOMBSTONE_TTL_SECONDS`] nobody needs it any more. Each deletion writes its key into an
//! hourly ledger (two store calls); every `SWEEP_EVERY`th deletion of an hour also expires
//! up to `SWEEP_BATCH` ledger entries of hours past the time to live, so expiry keeps pace
//! with deletions and costs no request more than one batch.
//!
//! Expiring a tombstone is race-free on every store: it is first marked `expiring` with a
//! compare-and-swap (a new provision or bind of the same id that replaced the tombstone in
//! the meantime wins, and nothing is expired), creators refuse to replace a marked
//! tombstone, then its creation claims are deleted ([`crate::state::delete_claims`]), and
//! only then the key itself: nothing of the id is left, and its next creation starts afresh.
//!
//! Bindings go with their instance: each new binding is written into its instance's binding
//! index ([`note_binding`], two store calls), and expiring an instance's tombstone first
//! deletes every binding the index names, also those a platform never unbound (the spec
//! makes unbinding first the platform's duty, but a broker must not keep credentials of a
//! deleted instance for ever). No binding can be created meanwhile: the instance is gone.

use serde_json::Value;

use crate::env::Env;
use crate::error::OsbError;
use crate::index::parse_counter;
use crate::kv::Kv;
use crate::metrics::Metrics;
use crate::state::{
    binding_index, binding_key, delete_claims, instance_index, instance_key, read, replace,
    BindingRecord,
};

/// How long a tombstone is kept after its deletion started.
pub const TOMBSTONE_TTL_SECONDS: u64 = 86_400;
/// The ledger's bucket: deletions of one hour.
const BUCKET_SECONDS: u64 = 3_600;
/// Every this many deletions of an hour, one request sweeps.
const SWEEP_EVERY: i64 = 16;
/// Ledger entries one sweep handles at most: twice the deletions between sweeps, so
/// expiry catches up after a backlog.
const SWEEP_BATCH: u64 = 32;
/// How far back a first sweep starts looking (the ledger's first bucket is not recorded).
const LOOKBACK_BUCKETS: u64 = 24 * 7;
/// Empty buckets one sweep walks past at most (one read each).
const MAX_EMPTY_BUCKETS_PER_SWEEP: u64 = LOOKBACK_BUCKETS + 24;
/// Bindings one expiry deletes at most; an instance with more is finished by later sweeps.
const BINDINGS_PER_EXPIRY: u64 = 64;
/// Where the sweep is: `{"bucket": …, "next": …}` (the next ledger entry to expire).
const CURSOR: &str = "osb/v1/expiry/cursor";

fn count_key(bucket: u64) -> String {
    format!("osb/v1/expiry/{bucket}/n")
}

fn entry_key(bucket: u64, entry: u64) -> String {
    format!("osb/v1/expiry/{bucket}/{entry}")
}

/// Writes `binding_id` into the index of `instance_id`'s bindings, before the binding's
/// record is created (an entry whose record never appears costs the expiry one read; a
/// record without an entry would never be deleted).
pub fn note_binding(kv: &dyn Kv, instance_id: &str, binding_id: &str) -> Result<(), OsbError> {
    binding_index(instance_id).append(kv, binding_id)?;
    Ok(())
}

/// Writes `key` into the ledger as being deleted now. `Ok(true)` when this request should
/// also [`sweep`] (every `SWEEP_EVERY`th deletion of the hour).
pub fn note_deletion(kv: &dyn Kv, env: &dyn Env, key: &str) -> Result<bool, OsbError> {
    let bucket = env.now() / BUCKET_SECONDS;
    let entry = kv.increment(&count_key(bucket), 1)?;
    kv.set(&entry_key(bucket, entry.max(0) as u64), key.as_bytes())?;
    Ok(entry % SWEEP_EVERY == 0)
}

/// Expires up to `SWEEP_BATCH` tombstones whose hour is past the time to live. Returns
/// how many keys it removed; a store error stops the batch (the next sweep goes on).
pub fn sweep(kv: &dyn Kv, env: &dyn Env, metrics: &Metrics) -> Result<usize, OsbError> {
    let due_before = env.now().saturating_sub(TOMBSTONE_TTL_SECONDS) / BUCKET_SECONDS;
    let stored_cursor = read::<Value>(kv, CURSOR)?;
    let (mut bucket, mut next) = stored_cursor
        .as_ref()
        .and_then(|c| parse_cursor(&c.value))
        .unwrap_or((due_before.saturating_sub(LOOKBACK_BUCKETS), 1));
    let mut skipped = 0;
    // Walk past buckets with nothing (left) to expire; `last < first` when none is due.
    let (first, last) = loop {
        if bucket >= due_before || skipped >= MAX_EMPTY_BUCKETS_PER_SWEEP {
            break (next, next - 1);
        }
        let count = read_count(kv, &count_key(bucket))?;
        if next <= count {
            break (next, count.min(next + SWEEP_BATCH - 1));
        }
        if count > 0 {
            kv.delete(&count_key(bucket))?;
        }
        bucket += 1;
        next = 1;
        skipped += 1;
    };
    if last < first && skipped == 0 && stored_cursor.is_some() {
        return Ok(0);
    }
    // Move the cursor past the range (or the empty buckets walked): of concurrent sweepers
    // exactly one does, and only that one expires the range.
    let cursor = serde_json::json!({ "bucket": bucket, "next": last + 1 });
    let taken = match &stored_cursor {
        Some(stored) => replace(kv, env, CURSOR, stored, &cursor)?.is_some(),
        None => crate::state::create(kv, env, CURSOR, &cursor)
            .map(|c| matches!(c, crate::state::Created::New(_)))?,
    };
    if !taken || last < first {
        return Ok(0);
    }
    let cutoff = env.now().saturating_sub(TOMBSTONE_TTL_SECONDS);
    let mut removed = 0;
    for entry in first..=last {
        let ledger = entry_key(bucket, entry);
        if let Some(key) = kv.get(&ledger)?.and_then(|k| String::from_utf8(k).ok()) {
            removed += expire(kv, env, metrics, &key, cutoff, bucket)?;
        }
        kv.delete(&ledger)?;
    }
    Ok(removed)
}

/// Removes the tombstone at `key` if it is one and its deletion started before `cutoff`
/// (an instance's with its bindings). `bucket` is the ledger bucket being swept, where an
/// instance with too many bindings for one request is put back to be finished next.
fn expire(
    kv: &dyn Kv,
    env: &dyn Env,
    metrics: &Metrics,
    key: &str,
    cutoff: u64,
    bucket: u64,
) -> Result<usize, OsbError> {
    let Some(stored) = read::<Value>(kv, key)? else {
        return Ok(0);
    };
    let record = &stored.value;
    let deleted = record.get("status").and_then(Value::as_str) == Some("deleted");
    let started = record
        .pointer("/operation/started_at")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if !deleted || started > cutoff {
        return Ok(0);
    }
    let mut marked = record.clone();
    marked["expiring"] = Value::Bool(true);
    if replace(kv, env, key, &stored, &marked)?.is_none() {
        // Replaced by a new provision or bind of the same id: not a tombstone any more.
        return Ok(0);
    }
    if let Some(instance_id) = record
        .get("instance_id")
        .and_then(Value::as_str)
        .filter(|id| key == instance_key(id))
    {
        if !expire_bindings(kv, metrics, instance_id)? {
            // Marked, so no creator replaces it meanwhile; the next sweep goes on.
            let entry = kv.increment(&count_key(bucket), 1)?;
            kv.set(&entry_key(bucket, entry.max(0) as u64), key.as_bytes())?;
            return Ok(0);
        }
        if let Some(slot) = record.get("index_slot").and_then(Value::as_u64) {
            instance_index().remove(kv, slot)?;
        }
    }
    delete_claims(kv, key)?;
    kv.delete(key)?;
    Ok(1)
}

/// Deletes up to `BINDINGS_PER_EXPIRY` of the bindings indexed for `instance_id`, last
/// first. `Ok(true)` when none is left (and the index is gone).
fn expire_bindings(kv: &dyn Kv, metrics: &Metrics, instance_id: &str) -> Result<bool, OsbError> {
    let index = binding_index(instance_id);
    let len = index.len(kv)?;
    let stop = len.saturating_sub(BINDINGS_PER_EXPIRY);
    for slot in (stop + 1..=len).rev() {
        if let Some(binding_id) = index.get(kv, slot)? {
            let key = binding_key(instance_id, &binding_id);
            // One never unbound is still counted as a binding: no longer.
            if let Ok(Some(binding)) = read::<BindingRecord>(kv, &key) {
                metrics.record_dropped(&binding.value);
            }
            delete_claims(kv, &key)?;
            kv.delete(&key)?;
        }
        index.remove(kv, slot)?;
    }
    // Nobody appends to the index of a deleted instance: its length can be rewritten.
    index.truncate(kv, stop)?;
    Ok(stop == 0)
}

fn parse_cursor(value: &Value) -> Option<(u64, u64)> {
    Some((value.get("bucket")?.as_u64()?, value.get("next")?.as_u64()?))
}

fn read_count(kv: &dyn Kv, key: &str) -> Result<u64, OsbError> {
    Ok(kv
        .get(key)?
        .and_then(|bytes| parse_counter(&bytes))
        .unwrap_or(0))
}
