//! The behaviour every [`Store`] must show, written once for all backends.

use std::sync::Arc;

use spin_osb_host_kv::{Store, StoreError};

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| k.to_string()).collect()
}

pub async fn get_returns_none_for_an_absent_key(store: Arc<dyn Store>) {
    assert_eq!(store.get("missing").await.unwrap(), None);
}

pub async fn set_then_get_returns_the_value(store: Arc<dyn Store>) {
    store.set("k", b"v").await.unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

pub async fn set_replaces_the_previous_value(store: Arc<dyn Store>) {
    store.set("k", b"first").await.unwrap();
    store.set("k", b"second").await.unwrap();
    assert_eq!(
        store.get("k").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
}

pub async fn values_are_binary_safe_and_may_be_empty(store: Arc<dyn Store>) {
    let binary: Vec<u8> = (0..=255).collect();
    store.set("binary", &binary).await.unwrap();
    store.set("empty", b"").await.unwrap();
    assert_eq!(store.get("binary").await.unwrap(), Some(binary));
    assert_eq!(store.get("empty").await.unwrap(), Some(Vec::new()));
    assert!(store.exists("empty").await.unwrap());
}

pub async fn delete_removes_the_key_and_ignores_absent_keys(store: Arc<dyn Store>) {
    store.set("k", b"v").await.unwrap();
    store.delete("k").await.unwrap();
    assert_eq!(store.get("k").await.unwrap(), None);
    store.delete("k").await.unwrap();
    store.delete("never-set").await.unwrap();
}

pub async fn exists_reports_whether_a_key_holds_a_value(store: Arc<dyn Store>) {
    assert!(!store.exists("k").await.unwrap());
    store.set("k", b"v").await.unwrap();
    assert!(store.exists("k").await.unwrap());
    store.delete("k").await.unwrap();
    assert!(!store.exists("k").await.unwrap());
}

pub async fn get_keys_lists_every_key_once(store: Arc<dyn Store>) {
    assert!(store.get_keys().await.unwrap().is_empty());
    for key in ["b", "a", "c"] {
        store.set(key, b"v").await.unwrap();
    }
    store.set("a", b"again").await.unwrap();
    store.delete("c").await.unwrap();
    let mut listed = store.get_keys().await.unwrap();
    listed.sort();
    assert_eq!(listed, keys(&["a", "b"]));
}

pub async fn get_keys_lists_thousands_of_keys_without_duplicates(store: Arc<dyn Store>) {
    let pairs: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| (format!("key-{i:05}"), i.to_string().into_bytes()))
        .collect();
    store.set_many(&pairs).await.unwrap();
    let mut listed = store.get_keys().await.unwrap();
    listed.sort();
    let expected: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, expected);
}

pub async fn get_many_returns_values_in_order_with_none_for_absent_keys(store: Arc<dyn Store>) {
    store.set("a", b"1").await.unwrap();
    store.set("c", b"3").await.unwrap();
    let got = store.get_many(&keys(&["c", "b", "a"])).await.unwrap();
    assert_eq!(
        got,
        vec![
            ("c".to_string(), Some(b"3".to_vec())),
            ("b".to_string(), None),
            ("a".to_string(), Some(b"1".to_vec())),
        ]
    );
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

pub async fn set_many_stores_every_pair(store: Arc<dyn Store>) {
    store.set("a", b"old").await.unwrap();
    let pairs = vec![
        ("a".to_string(), b"1".to_vec()),
        ("b".to_string(), b"2".to_vec()),
    ];
    store.set_many(&pairs).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get("b").await.unwrap(), Some(b"2".to_vec()));
    store.set_many(&[]).await.unwrap();
}

pub async fn delete_many_removes_only_the_listed_keys(store: Arc<dyn Store>) {
    for key in ["a", "b", "c"] {
        store.set(key, b"v").await.unwrap();
    }
    store
        .delete_many(&keys(&["a", "c", "never-set"]))
        .await
        .unwrap();
    assert_eq!(store.get_keys().await.unwrap(), keys(&["b"]));
    store.delete_many(&[]).await.unwrap();
}

pub async fn increment_treats_an_absent_key_as_zero_and_returns_the_new_value(
    store: Arc<dyn Store>,
) {
    assert_eq!(store.increment("n", 1).await.unwrap(), 1);
    assert_eq!(store.increment("n", 2).await.unwrap(), 3);
    assert_eq!(store.increment("n", -10).await.unwrap(), -7);
    assert_eq!(store.increment("zero", 0).await.unwrap(), 0);
    assert!(store.exists("zero").await.unwrap());
}

pub async fn increment_stores_decimal_text_that_get_returns(store: Arc<dyn Store>) {
    store.increment("n", 3).await.unwrap();
    assert_eq!(store.get("n").await.unwrap(), Some(b"3".to_vec()));
    store.increment("n", -5).await.unwrap();
    assert_eq!(store.get("n").await.unwrap(), Some(b"-2".to_vec()));
}

pub async fn increment_continues_from_a_decimal_value_written_by_set(store: Arc<dyn Store>) {
    store.set("n", b"41").await.unwrap();
    assert_eq!(store.increment("n", 1).await.unwrap(), 42);
}

pub async fn increment_on_a_non_integer_value_fails_with_not_an_integer(store: Arc<dyn Store>) {
    let not_integers = [
        &b"abc"[..],
        b"1.5",
        b"",
        b" 1",
        b"+1",
        b"01",
        b"-0",
        b"99999999999999999999",
    ];
    for value in not_integers {
        store.set("n", value).await.unwrap();
        let result = store.increment("n", 1).await;
        assert!(
            matches!(result, Err(StoreError::NotAnInteger)),
            "{:?}: {result:?}",
            String::from_utf8_lossy(value)
        );
        assert_eq!(store.get("n").await.unwrap().as_deref(), Some(value));
    }
}

pub async fn cas_remembers_the_value_it_read_and_its_key(store: Arc<dyn Store>) {
    store.set("k", b"seen").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    store.set("k", b"later").await.unwrap();
    assert_eq!(cas.current().await.unwrap(), Some(b"seen".to_vec()));
    assert_eq!(cas.key(), "k");
    assert_eq!(
        store
            .new_cas("absent")
            .await
            .unwrap()
            .current()
            .await
            .unwrap(),
        None
    );
}

pub async fn cas_swap_succeeds_when_the_key_is_unchanged(store: Arc<dyn Store>) {
    store.set("k", b"old").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    assert!(cas.swap(b"new".to_vec()).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some(b"new".to_vec()));
}

pub async fn cas_swap_fails_after_a_concurrent_write(store: Arc<dyn Store>) {
    store.set("k", b"old").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    store.set("k", b"theirs").await.unwrap();
    assert!(!cas.swap(b"mine".to_vec()).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some(b"theirs".to_vec()));

    // Writing back the very bytes that were read counts as unchanged.
    let cas = store.new_cas("k").await.unwrap();
    store.set("k", b"theirs").await.unwrap();
    assert!(cas.swap(b"mine".to_vec()).await.unwrap());
}

pub async fn cas_swap_fails_when_the_key_was_deleted_meanwhile(store: Arc<dyn Store>) {
    store.set("k", b"old").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    store.delete("k").await.unwrap();
    assert!(!cas.swap(b"mine".to_vec()).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), None);
}

pub async fn cas_on_an_absent_key_succeeds_once_and_a_second_handle_then_fails(
    store: Arc<dyn Store>,
) {
    let first = store.new_cas("k").await.unwrap();
    let second = store.new_cas("k").await.unwrap();
    assert!(first.swap(b"first".to_vec()).await.unwrap());
    assert!(!second.swap(b"second".to_vec()).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some(b"first".to_vec()));
}

pub async fn cas_on_an_empty_value_does_not_confuse_empty_with_absent(store: Arc<dyn Store>) {
    // Read absent, then someone stores an empty value: the key is no longer absent.
    let cas = store.new_cas("k").await.unwrap();
    store.set("k", b"").await.unwrap();
    assert!(!cas.swap(b"mine".to_vec()).await.unwrap());

    // Read empty, then someone deletes it: the key is no longer empty.
    let cas = store.new_cas("k").await.unwrap();
    assert_eq!(cas.current().await.unwrap(), Some(Vec::new()));
    store.delete("k").await.unwrap();
    assert!(!cas.swap(b"mine".to_vec()).await.unwrap());

    // Read empty and unchanged: the swap goes through.
    store.set("k", b"").await.unwrap();
    let cas = store.new_cas("k").await.unwrap();
    assert!(cas.swap(b"mine".to_vec()).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some(b"mine".to_vec()));
}
