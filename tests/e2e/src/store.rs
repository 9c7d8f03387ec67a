//! The broker's state as it lands in the SQLite file of the default key-value store.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::{instance_key, Broker};

impl Broker {
    /// The SQLite file of the default key-value store.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("sqlite_key_value.db")
    }

    /// Every `(key, value)` of the broker's `default` store, sorted by key.
    pub fn store_entries(&self) -> Vec<(String, Vec<u8>)> {
        let path = self.state_file();
        if !path.exists() {
            // Nothing was ever stored.
            return Vec::new();
        }
        let conn = rusqlite::Connection::open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let has_table: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'spin_key_value'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if !has_table {
            return Vec::new();
        }
        let mut stmt = conn
            .prepare("SELECT key, value FROM spin_key_value WHERE store = 'default' ORDER BY key")
            .unwrap_or_else(|e| panic!("cannot query {}: {e}", path.display()));
        let rows = stmt
            .query_map([], |row| {
                let key: String = row.get(0)?;
                let value = match row.get_ref(1)? {
                    rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
                    rusqlite::types::ValueRef::Text(t) => t.to_vec(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string().into_bytes(),
                    other => format!("{other:?}").into_bytes(),
                };
                Ok((key, value))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Keys of the default store that start with `prefix`.
    pub fn store_keys(&self, prefix: &str) -> Vec<String> {
        self.store_entries()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    /// Keys that mention `id` anywhere.
    pub fn store_keys_mentioning(&self, id: &str) -> Vec<String> {
        self.store_entries()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.contains(id))
            .collect()
    }

    /// The JSON record stored under `key`.
    pub fn store_json(&self, key: &str) -> Option<Value> {
        self.store_entries()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .unwrap_or_else(|e| panic!("{k} does not hold JSON ({e}): {v:?}"))
            })
    }

    /// The instance record keys for `iid` (`osb/v1/instance/{iid}`, never claim counters).
    pub fn instance_record_keys(&self, iid: &str) -> Vec<String> {
        let key = instance_key(iid);
        self.store_keys(&key)
            .into_iter()
            .filter(|k| *k == key)
            .collect()
    }
}
