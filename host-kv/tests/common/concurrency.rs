//! Races between many tasks on stores that share data (two connections to one SQLite file
//! or one Redis), the way several host processes would.

use std::sync::Arc;

use spin_osb_host_kv::Store;
use tokio::sync::Barrier;

const TASKS: usize = 50;

/// One read-modify-write of a JSON document `{"count": n}`, retried until the swap wins.
/// Returns how many swaps lost a race.
pub async fn cas_increment_json(store: &dyn Store, key: &str) -> usize {
    let mut lost = 0;
    loop {
        let cas = store.new_cas(key).await.unwrap();
        let count = match cas.current().await.unwrap() {
            None => 0,
            Some(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["count"]
                .as_u64()
                .unwrap(),
        };
        let next = serde_json::to_vec(&serde_json::json!({ "count": count + 1 })).unwrap();
        if cas.swap(next).await.unwrap() {
            return lost;
        }
        lost += 1;
        tokio::task::yield_now().await;
    }
}

/// 50 tasks, alternating between `a` and `b`, each add 1 through a CAS retry loop; no
/// update may be lost.
pub async fn fifty_cas_retry_loops_count_to_exactly_fifty(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { cas_increment_json(&*store, "counter").await })
        })
        .collect();
    let mut lost = 0;
    for task in tasks {
        lost += task.await.unwrap();
    }
    let stored = a.get("counter").await.unwrap().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(value["count"], TASKS, "{lost} swaps lost a race");
    eprintln!("{TASKS} increments, {lost} swaps lost a race and were retried");
}

/// 50 tasks all read an absent key, wait for each other, then all try to create it:
/// exactly one may win, and the stored value is the winner's.
pub async fn fifty_tasks_creating_an_absent_key_produce_exactly_one_winner(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
) {
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let cas = store.new_cas("singleton").await.unwrap();
                assert_eq!(cas.current().await.unwrap(), None);
                barrier.wait().await;
                cas.swap(format!("task-{i}").into_bytes()).await.unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = b.get("singleton").await.unwrap().unwrap();
    assert_eq!(stored, format!("task-{}", winners[0]).into_bytes());
}

/// 50 tasks, alternating between `a` and `b`, each increment by 1: the result is 50.
pub async fn fifty_concurrent_increments_add_up_to_fifty(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.increment("hits", 1).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=TASKS as i64).collect::<Vec<_>>());
    assert_eq!(
        a.get("hits").await.unwrap(),
        Some(TASKS.to_string().into_bytes())
    );
}
