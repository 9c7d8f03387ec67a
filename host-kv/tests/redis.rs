//! `RedisStore` against a real `redis-server` on 127.0.0.1: the shared conformance suite,
//! races between separate connections, and behaviour when the server dies or stalls.
//!
//! Each test starts its own server (`spin_osb_test_support::redis`), so tests never share
//! data. Without `/usr/bin/redis-server` these tests fail rather than skip.

#[macro_use]
mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spin_osb_host_kv::redis::RedisStore;
use spin_osb_host_kv::{Cas, Store, StoreError};
use spin_osb_test_support::redis::RedisServer;

/// A store on its own fresh server, with the server.
async fn fresh_store() -> (Arc<dyn Store>, RedisServer) {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    (Arc::new(store), server)
}

/// Two stores with separate connections to one server, as two processes would have.
async fn two_connections(server: &RedisServer) -> (Arc<dyn Store>, Arc<dyn Store>) {
    (
        Arc::new(RedisStore::connect(&server.url()).await.unwrap()),
        Arc::new(RedisStore::connect(&server.url()).await.unwrap()),
    )
}

conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_cas_retry_loops_on_two_connections_count_to_exactly_fifty() {
    let server = RedisServer::start();
    let (a, b) = two_connections(&server).await;
    common::concurrency::fifty_cas_retry_loops_count_to_exactly_fifty(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tasks_on_two_connections_creating_an_absent_key_produce_exactly_one_winner() {
    let server = RedisServer::start();
    let (a, b) = two_connections(&server).await;
    common::concurrency::fifty_tasks_creating_an_absent_key_produce_exactly_one_winner(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_increments_on_two_connections_add_up_to_fifty() {
    let server = RedisServer::start();
    let (a, b) = two_connections(&server).await;
    common::concurrency::fifty_concurrent_increments_add_up_to_fifty(a, b).await;
}

#[tokio::test]
async fn keys_are_plain_redis_keys_holding_the_raw_value() {
    let (store, server) = fresh_store().await;
    store.set("plain", b"value").await.unwrap();
    store.increment("counter", 7).await.unwrap();

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (plain, counter): (Vec<u8>, String) = redis::pipe()
        .get("plain")
        .get("counter")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(plain, b"value");
    assert_eq!(counter, "7");
}

#[tokio::test]
async fn connect_rejects_a_malformed_url_with_a_backend_error() {
    let result = RedisStore::connect("not a url").await;
    assert!(matches!(result, Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn connect_fails_with_a_backend_error_when_nothing_listens() {
    let url = format!("redis://127.0.0.1:{}/", spin_osb_test_support::free_port());
    let started = Instant::now();
    let result = RedisStore::connect_with_timeout(&url, Duration::from_secs(1)).await;
    assert!(
        matches!(result, Err(StoreError::Backend(_))),
        "{:?}",
        result.err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Checks that `operation` fails with `Backend` within `limit`.
async fn fails_quickly<T: std::fmt::Debug>(
    name: &str,
    limit: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    // This outer timeout only keeps a broken store from hanging the test run.
    let result = tokio::time::timeout(Duration::from_secs(30), operation)
        .await
        .unwrap_or_else(|_| panic!("{name} hung"));
    let elapsed = started.elapsed();
    eprintln!("{name}: {result:?} after {elapsed:?}");
    assert!(
        matches!(result, Err(StoreError::Backend(_))),
        "{name}: {result:?}"
    );
    assert!(elapsed < limit, "{name} took {elapsed:?}");
}

/// Runs each kind of operation on a store whose server is unusable; `cas` was created
/// while it still worked.
async fn every_operation_fails_quickly(store: &RedisStore, cas: Arc<dyn Cas>, limit: Duration) {
    fails_quickly("get", limit, store.get("k")).await;
    fails_quickly("set", limit, store.set("k", b"v")).await;
    fails_quickly("increment", limit, store.increment("n", 1)).await;
    fails_quickly("get_keys", limit, store.get_keys()).await;
    fails_quickly("new_cas", limit, async {
        store.new_cas("k").await.map(drop)
    })
    .await;
    fails_quickly("swap", limit, cas.swap(b"w".to_vec())).await;
}

#[tokio::test]
async fn operations_fail_with_a_backend_error_within_seconds_after_the_server_stops() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    store.set("k", b"v").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    server.stop();
    // The default timeout is 5 s; reconnect attempts must not make it longer.
    every_operation_fails_quickly(&store, cas, Duration::from_secs(6)).await;
}

#[tokio::test]
async fn operations_fail_with_a_backend_error_when_the_server_stops_answering() {
    let server = RedisServer::start();
    let store = RedisStore::connect_with_timeout(&server.url(), Duration::from_secs(1))
        .await
        .unwrap();
    store.set("k", b"v").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    server.pause();
    every_operation_fails_quickly(&store, cas, Duration::from_secs(3)).await;
    server.resume();
}

#[tokio::test]
async fn the_store_reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    store.set("k", b"before").await.unwrap();
    server.stop();
    assert!(store.get("k").await.is_err());
    server.restart();

    // Reconnecting backs off for a moment; it must succeed well within the deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.set("k", b"after").await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not reconnected yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no reconnect within 15 s: {e}"),
        }
    }
    assert_eq!(store.get("k").await.unwrap(), Some(b"after".to_vec()));
}
