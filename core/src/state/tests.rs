use super::store::decode;
use serde::{Deserialize, Serialize};

use super::*;
use crate::env::TestEnv;
use crate::kv::Kv;
use crate::kv::MemoryKv;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rec {
    schema: u32,
    owner: u32,
}

#[test]
fn fingerprints_ignore_key_order() {
    let a = serde_json::json!({"a": 1, "b": {"x": 1, "y": [1, 2]}});
    let b = serde_json::json!({"b": {"y": [1, 2], "x": 1}, "a": 1});
    assert_eq!(fingerprint(&a), fingerprint(&b));
    assert_ne!(fingerprint(&a), fingerprint(&serde_json::json!({"a": 2})));
}

#[test]
fn fifty_concurrent_creators_produce_one_record_on_spin_semantics() {
    // MemoryKv upserts on CAS of an absent key, like Spin's SQLite store.
    let kv = Arc::new(MemoryKv::default());
    let winners = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..50)
        .map(|owner| {
            let kv = kv.clone();
            let winners = winners.clone();
            std::thread::spawn(move || {
                let env = TestEnv::at(0);
                match create(&*kv, &env, "k", &Rec { schema: 1, owner }).unwrap() {
                    Created::New(_) => {
                        winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Created::Existing(_) => {}
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(winners.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_crashed_claimer_is_taken_over_by_the_next_generation() {
    let kv = MemoryKv::default();
    let env = TestEnv::at(0);
    // A previous request claimed generation 0 and died before writing the record.
    kv.increment("k/claim/g0", 1).unwrap();
    match create(
        &kv,
        &env,
        "k",
        &Rec {
            schema: 1,
            owner: 7,
        },
    )
    .unwrap()
    {
        Created::New(stored) => assert_eq!(stored.value.owner, 7),
        Created::Existing(_) => panic!("nobody else wrote the record"),
    }
}

#[test]
fn replace_fails_when_the_record_changed_meanwhile() {
    let kv = MemoryKv::default();
    let env = TestEnv::at(0);
    let Created::New(first) = create(
        &kv,
        &env,
        "k",
        &Rec {
            schema: 1,
            owner: 1,
        },
    )
    .unwrap() else {
        panic!()
    };
    let second = replace(
        &kv,
        &env,
        "k",
        &first,
        &Rec {
            schema: 1,
            owner: 2,
        },
    )
    .unwrap();
    assert!(second.is_some());
    assert!(replace(
        &kv,
        &env,
        "k",
        &first,
        &Rec {
            schema: 1,
            owner: 3
        }
    )
    .unwrap()
    .is_none());
    let now: Stored<Rec> = read(&kv, "k").unwrap().unwrap();
    assert_eq!(now.value.owner, 2);
}

fn rec(owner: u32) -> Rec {
    Rec { schema: 1, owner }
}

/// A store whose swaps report failure after writing, like Spin's Redis store.
fn lying_store() -> MemoryKv {
    let kv = MemoryKv::default();
    kv.swap_reports_failure
        .store(true, std::sync::atomic::Ordering::SeqCst);
    kv
}

#[test]
fn a_swap_reported_failed_that_wrote_is_a_success() {
    let (kv, env) = (lying_store(), TestEnv::at(0));
    let Created::New(first) = create(&kv, &env, "k", &rec(1)).unwrap() else {
        panic!()
    };
    let second = replace(&kv, &env, "k", &first, &rec(2)).unwrap();
    assert_eq!(second.map(|s| s.value.owner), Some(2));
    // And the transition after it too (its stamp chains to the first).
    let now: Stored<Rec> = read(&kv, "k").unwrap().unwrap();
    assert!(replace(&kv, &env, "k", &now, &rec(3)).unwrap().is_some());
    assert_eq!(read::<Rec>(&kv, "k").unwrap().unwrap().value.owner, 3);
}

#[test]
fn a_swap_reported_failed_that_lost_is_a_failure() {
    let (kv, env) = (lying_store(), TestEnv::at(0));
    let Created::New(first) = create(&kv, &env, "k", &rec(1)).unwrap() else {
        panic!()
    };
    assert!(replace(&kv, &env, "k", &first, &rec(2)).unwrap().is_some());
    // A second writer that read the same version loses, although it sends the same bytes
    // a winner would: the tokens differ.
    assert!(replace(&kv, &env, "k", &first, &rec(2)).unwrap().is_none());
    assert!(replace(&kv, &env, "k", &first, &rec(9)).unwrap().is_none());
    assert_eq!(read::<Rec>(&kv, "k").unwrap().unwrap().value.owner, 2);
}

#[test]
fn our_write_replaced_before_we_looked_is_still_ours() {
    let (kv, env) = (MemoryKv::default(), TestEnv::at(0));
    let Created::New(first) = create(&kv, &env, "k", &rec(1)).unwrap() else {
        panic!()
    };
    // Our swap wrote; then, before we read back, someone replaced our write.
    let ours = replace(&kv, &env, "k", &first, &rec(2)).unwrap().unwrap();
    let theirs = replace(&kv, &env, "k", &ours, &rec(3)).unwrap().unwrap();
    let (now, stamp) = decode::<Rec>("k", &theirs.raw).unwrap();
    assert_eq!(now.owner, 3);
    assert!(stamp.includes(&ours.stamp.token));
}

#[test]
fn concurrent_transitions_on_a_lying_store_have_exactly_one_winner() {
    let (kv, env) = (lying_store(), TestEnv::at(0));
    let Created::New(first) = create(&kv, &env, "k", &rec(0)).unwrap() else {
        panic!()
    };
    let winners: Vec<u32> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=16)
            .map(|owner| {
                let (kv, env, first) = (&kv, &env, &first);
                scope.spawn(move || {
                    replace(kv, env, "k", first, &rec(owner))
                        .unwrap()
                        .map(|_| owner)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        read::<Rec>(&kv, "k").unwrap().unwrap().value.owner,
        winners[0]
    );
}

#[test]
fn records_written_before_stamps_are_read_and_replaced() {
    let (kv, env) = (lying_store(), TestEnv::at(0));
    kv.set("old", br#"{"schema": 1, "owner": 1}"#).unwrap();
    let old: Stored<Rec> = read(&kv, "old").unwrap().unwrap();
    assert!(replace(&kv, &env, "old", &old, &rec(2)).unwrap().is_some());
    assert_eq!(read::<Rec>(&kv, "old").unwrap().unwrap().value.owner, 2);
}

#[test]
fn corrupt_and_future_records_are_errors_not_panics() {
    let kv = MemoryKv::default();
    kv.set("bad", b"{not json").unwrap();
    assert_eq!(read::<Rec>(&kv, "bad").unwrap_err().status, 500);
    kv.set("future", br#"{"schema": 99, "owner": 1}"#).unwrap();
    assert!(read::<Rec>(&kv, "future")
        .unwrap_err()
        .description
        .contains("newer"));
}

#[test]
fn store_failures_are_503() {
    let kv = MemoryKv::default();
    kv.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(read::<Rec>(&kv, "k").unwrap_err().status, 503);
}
