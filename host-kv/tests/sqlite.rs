//! `SqliteStore`: the shared conformance suite, file layout, and races between
//! connections (and processes) sharing one file.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use spin_osb_host_kv::sqlite::SqliteStore;
use spin_osb_host_kv::{Store, StoreError};
use tempfile::TempDir;

/// A store in a fresh file, with the directory that holds it.
async fn fresh_store() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir), "default").unwrap();
    (Arc::new(store), dir)
}

fn db_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join(".spin").join("sqlite_key_value.db")
}

/// Two stores on one file, each with its own connection, as two processes would have.
fn two_connections(path: &Path) -> (Arc<dyn Store>, Arc<dyn Store>) {
    (
        Arc::new(SqliteStore::open(path, "default").unwrap()),
        Arc::new(SqliteStore::open(path, "default").unwrap()),
    )
}

conformance_tests!(fresh_store);

#[tokio::test]
async fn the_in_memory_store_behaves_like_a_file() {
    let store = SqliteStore::open_in_memory("default").unwrap();
    store.set("k", b"v").await.unwrap();
    assert_eq!(store.increment("n", 2).await.unwrap(), 2);
    let cas = store.new_cas("k").await.unwrap();
    assert!(cas.swap(b"w".to_vec()).await.unwrap());
    assert_eq!(store.get_keys().await.unwrap(), ["k", "n"]);
}

#[tokio::test]
async fn labels_in_one_file_are_separate_stores() {
    let dir = tempfile::tempdir().unwrap();
    let default = SqliteStore::open(&db_path(&dir), "default").unwrap();
    let other = SqliteStore::open(&db_path(&dir), "other").unwrap();
    default.set("k", b"default").await.unwrap();
    other.set("k", b"other").await.unwrap();
    other.set("only-other", b"x").await.unwrap();

    assert_eq!(default.get("k").await.unwrap(), Some(b"default".to_vec()));
    assert_eq!(default.get_keys().await.unwrap(), ["k"]);
    default.delete_many(&["only-other".into()]).await.unwrap();
    assert!(other.exists("only-other").await.unwrap());
    assert_eq!(default.increment("only-other", 1).await.unwrap(), 1);
    assert_eq!(other.get("only-other").await.unwrap(), Some(b"x".to_vec()));
}

#[tokio::test]
async fn values_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    SqliteStore::open(&db_path(&dir), "default")
        .unwrap()
        .set("k", b"kept")
        .await
        .unwrap();
    let reopened = SqliteStore::open(&db_path(&dir), "default").unwrap();
    assert_eq!(reopened.get("k").await.unwrap(), Some(b"kept".to_vec()));
}

#[tokio::test]
async fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/kv.db");
    SqliteStore::open(&path, "default").unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn open_fails_with_a_backend_error_when_the_path_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let result = SqliteStore::open(dir.path(), "default");
    assert!(matches!(result, Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn the_file_uses_wal_mode_and_spins_schema() {
    let (_store, dir) = fresh_store().await;
    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let columns: Vec<(String, String, bool, i64)> = conn
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info('spin_key_value')")
        .unwrap()
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        ("store", "TEXT", true, 1),
        ("key", "TEXT", true, 2),
        ("value", "BLOB", true, 0),
    ]
    .map(|(n, t, nn, pk)| (n.to_string(), t.to_string(), nn, pk));
    assert_eq!(columns, expected);
}

#[tokio::test]
async fn rows_written_by_spin_are_readable() {
    let (store, dir) = fresh_store().await;
    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    conn.execute(
        "INSERT INTO spin_key_value (store, key, value) VALUES ('default', 'from-spin', ?1)",
        [&b"hello"[..]],
    )
    .unwrap();
    assert_eq!(
        store.get("from-spin").await.unwrap(),
        Some(b"hello".to_vec())
    );
    let cas = store.new_cas("from-spin").await.unwrap();
    assert!(cas.swap(b"bye".to_vec()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_cas_retry_loops_on_two_connections_to_one_file_count_to_exactly_fifty() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_connections(&db_path(&dir));
    common::concurrency::fifty_cas_retry_loops_count_to_exactly_fifty(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tasks_on_two_connections_creating_an_absent_key_produce_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_connections(&db_path(&dir));
    common::concurrency::fifty_tasks_creating_an_absent_key_produce_exactly_one_winner(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_increments_on_two_connections_to_one_file_add_up_to_fifty() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_connections(&db_path(&dir));
    common::concurrency::fifty_concurrent_increments_add_up_to_fifty(a, b).await;
}

/// Statements run on the request's thread only when they need not wait: one that finds
/// another connection holding the write lock waits for it (off the async worker) instead of
/// failing, and lands after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_meets_another_connections_lock_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path, "default").unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES ('default', 'k', x'01')",
                [],
            )
            .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            tx.commit().unwrap();
        }
    });
    locked_rx.recv().unwrap();
    store.set("k", b"after the lock").await.unwrap();
    holder.join().unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap(), b"after the lock");
}

/// Set by [`cas_retry_loops_in_two_processes_sharing_one_file_lose_no_update`] for the
/// child processes it starts.
const CHILD_DB: &str = "SPIN_OSB_KV_TEST_CHILD_DB";
const CHILD_INCREMENTS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_retry_loops_in_two_processes_sharing_one_file_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    SqliteStore::open(&path, "default").unwrap();
    // Re-run this test binary, twice at once, as the helper below.
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_adds_its_cas_increments",
                    "--ignored",
                    "--nocapture",
                ])
                .env(CHILD_DB, &path)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child process failed");
    }
    let store = SqliteStore::open(&path, "default").unwrap();
    let stored = store.get("counter").await.unwrap().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(value["count"], 2 * CHILD_INCREMENTS);
}

/// Not a test on its own: the child process of the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by cas_retry_loops_in_two_processes_sharing_one_file_lose_no_update"]
async fn child_process_adds_its_cas_increments() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let store = SqliteStore::open(Path::new(&path), "default").unwrap();
    let mut lost = 0;
    for _ in 0..CHILD_INCREMENTS {
        lost += common::concurrency::cas_increment_json(&store, "counter").await;
    }
    eprintln!("child {}: {lost} swaps lost a race", std::process::id());
}
