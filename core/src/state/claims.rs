//! Creating a record exactly once: creation claims (an atomic counter per generation),
//! takeover of claims whose owner died, and their removal once the id expires.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{encode, read, replace, Stored, WriteStamp};
use super::{Record, Status};
use crate::env::Env;
use crate::error::OsbError;
use crate::kv::Kv;

/// How long the owner of a creation claim may take from claiming to writing its record.
/// An owner that finds this window closed does not write (503, the platform retries):
/// by then a waiter may take over.
const CLAIM_WRITE_MS: u64 = 1_000;
/// How long a caller that lost a creation claim waits for its owner's record before
/// taking over with the next claim generation: far past the owner's write window, so an
/// owner that was slow rather than dead never writes after a takeover.
const CLAIM_WAIT_MS: u64 = 3_000;
const CLAIM_POLL_MS: u64 = 50;
/// How long one creation may wait on claims in all before answering 503.
const CREATE_WAIT_MS: u64 = 12_000;

/// The outcome of [`create`].
pub enum Created<T> {
    /// This caller created the record.
    New(Stored<T>),
    /// A record was already there (possibly a tombstone); the caller applies its rules.
    Existing(Stored<T>),
}

/// Creates the record at `key` unless one exists, race-free on every runtime.
pub fn create<T: Serialize + DeserializeOwned + Clone>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    record: &T,
) -> Result<Created<T>, OsbError> {
    let seen = read(kv, key)?;
    create_after_read(kv, env, key, record, seen)
}

/// [`create`] for a caller that has just read `key` and found `seen`: a record found is the
/// existing one, and an absent one is claimed without reading again (a store call saved on
/// every bind, which must look before it validates).
pub fn create_after_read<T: Serialize + DeserializeOwned + Clone>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    record: &T,
    seen: Option<Stored<T>>,
) -> Result<Created<T>, OsbError> {
    if let Some(existing) = seen {
        return Ok(Created::Existing(existing));
    }
    // Everything that can fail is done before a claim is taken: a claim whose record is
    // never written costs the next creator a wait.
    let stamp = WriteStamp::fresh(env)?;
    let raw = encode(record, &stamp)?;
    let first_free = format!("{key}/claim/first-free");
    let mut generation: u64 = 0;
    let mut waited = 0;
    loop {
        let claim = format!("{key}/claim/g{generation}");
        let claimed_at = env.monotonic_ms();
        if kv.increment(&claim, 1)? == 1 {
            if env.monotonic_ms().saturating_sub(claimed_at) > CLAIM_WRITE_MS {
                return Err(OsbError::unavailable(format!(
                    "creating {key} took too long to claim; retry the request"
                )));
            }
            kv.set(key, &raw)?;
            return Ok(Created::New(Stored {
                value: record.clone(),
                raw,
                stamp,
                in_store: None,
            }));
        }
        // Someone else owns this generation. Generations before the first free one are
        // known to be stale: start past them.
        let first_free_generation = read_generation(kv, &first_free)?;
        if first_free_generation > generation {
            generation = first_free_generation;
            if let Some(existing) = read(kv, key)? {
                return Ok(Created::Existing(existing));
            }
            continue;
        }
        // Wait for the owner's record.
        let waited_from = waited;
        while waited - waited_from < CLAIM_WAIT_MS {
            if let Some(existing) = read(kv, key)? {
                return Ok(Created::Existing(existing));
            }
            if waited >= CREATE_WAIT_MS {
                return Err(OsbError::unavailable(format!(
                    "could not create {key}: concurrent creators did not finish; retry the request"
                )));
            }
            env.sleep_ms(CLAIM_POLL_MS);
            waited += CLAIM_POLL_MS;
        }
        // Its owner is gone (or too slow to write any more): the generation is stale. Say
        // so for later creators, which start past it instead of waiting again.
        if read_generation(kv, &first_free)? <= generation {
            kv.set(&first_free, (generation + 1).to_string().as_bytes())?;
        }
        generation += 1;
        if let Some(existing) = read(kv, key)? {
            return Ok(Created::Existing(existing));
        }
    }
}

/// Deletes the creation claims of `key` while its record is a tombstone about to be deleted
/// for good (see [`crate::expiry`]), so the next creation of the id starts afresh at
/// generation 0. Safe only then: the record has existed for longer than any creation can
/// take, so no creator that found it absent is still running, and a creator that finds the
/// marked tombstone does not claim. (While a record is live its claim counters must stay:
/// on Spin's SQLite store a swap on a missing key is an upsert, so the counter is what makes
/// creation exclusive.)
pub fn delete_claims(kv: &dyn Kv, key: &str) -> Result<(), OsbError> {
    // Generations are claimed in order, so the used ones are g0, g1, … up to the first gap.
    let mut generation = 0;
    loop {
        let claim = format!("{key}/claim/g{generation}");
        if kv.get(&claim)?.is_none() {
            break;
        }
        kv.delete(&claim)?;
        generation += 1;
    }
    // Recorded after a takeover (also one whose request ended before claiming again).
    kv.delete(&format!("{key}/claim/first-free"))?;
    Ok(())
}

/// The claim generation recorded under `key` (0 when none or unreadable).
fn read_generation(kv: &dyn Kv, key: &str) -> Result<u64, OsbError> {
    Ok(kv
        .get(key)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0))
}

/// [`create_after_read`] for instance and binding records, whose deletion leaves a
/// tombstone: a tombstone is replaced by `record` as if the id were free, unless it is being
/// expired right now or another request replaced it first (422: the platform retries).
pub fn create_record<R: Record>(
    kv: &dyn Kv,
    env: &dyn Env,
    key: &str,
    record: &R,
    seen: Option<Stored<R>>,
) -> Result<Created<R>, OsbError> {
    match create_after_read(kv, env, key, record, seen)? {
        Created::Existing(existing) if existing.value.status() == Status::Deleted => {
            let replaced = if existing.value.expiring() {
                None
            } else {
                replace(kv, env, key, &existing, record)?
            };
            replaced.map(Created::New).ok_or_else(|| {
                OsbError::concurrency(format!(
                    "another request for {} is in progress",
                    record.label()
                ))
            })
        }
        created => Ok(created),
    }
}
