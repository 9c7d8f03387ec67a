//! The broker's own identity: a random id created once per state store, race-free. It marks
//! what the broker makes in shared backends (a label on Kubernetes objects), so that two
//! brokers sharing a cluster never take each other's objects for orphans.

use serde_json::{json, Value};

use super::{create, read, Created};
use crate::env::Env;
use crate::error::OsbError;
use crate::kv::Kv;

const KEY: &str = "osb/v1/broker";

/// This broker's id: read, or created by the first caller (concurrent first callers all
/// get the one that was stored).
pub fn broker_id(kv: &dyn Kv, env: &dyn Env) -> Result<String, OsbError> {
    // A plain JSON record: the store code it goes through is the one other JSON records
    // (the expiry cursor) already use, not another copy in every component.
    let id_of = |record: &Value| record["id"].as_str().unwrap_or_default().to_string();
    if let Some(stored) = read::<Value>(kv, KEY)? {
        return Ok(id_of(&stored.value));
    }
    let fresh = json!({ "id": env.random_hex(8)? });
    Ok(match create(kv, env, KEY, &fresh)? {
        Created::New(created) | Created::Existing(created) => id_of(&created.value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TestEnv;
    use crate::kv::MemoryKv;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let kv = MemoryKv::default();
        let env = TestEnv::at(1);
        let first = broker_id(&kv, &env).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(broker_id(&kv, &env).unwrap(), first);
    }
}
