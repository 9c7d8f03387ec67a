//! The broker's own identity: a random id created once per state store, race-free. It marks
//! what the broker makes in shared backends (a label on Kubernetes objects), so that two
//! brokers sharing a cluster never take each other's objects for orphans.

use serde::{Deserialize, Serialize};

use super::{create, read, Created};
use crate::env::Env;
use crate::error::OsbError;
use crate::kv::Kv;

const KEY: &str = "osb/v1/broker";

#[derive(Clone, Serialize, Deserialize)]
struct Identity {
    id: String,
}

/// This broker's id: read, or created by the first caller (concurrent first callers all
/// get the one that was stored).
pub fn broker_id(kv: &dyn Kv, env: &dyn Env) -> Result<String, OsbError> {
    if let Some(stored) = read::<Identity>(kv, KEY)? {
        return Ok(stored.value.id);
    }
    let fresh = Identity {
        id: env.random_hex(8)?,
    };
    Ok(match create(kv, env, KEY, &fresh)? {
        Created::New(created) | Created::Existing(created) => created.value.id,
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
