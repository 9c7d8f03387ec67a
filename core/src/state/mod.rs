//! Instance and binding records in the key-value store, and the only ways to change them.
//!
//! Key layout (every id is validated by [`crate::http::validate_id`], so `/` cannot occur
//! inside one):
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `osb/v1/instance/{iid}`               | [`InstanceRecord`] as JSON              |
//! | `osb/v1/instance/{iid}/claim/g{n}`    | creation claim counter (generation n)   |
//! | `osb/v1/instance/{iid}/binding-index/{k}` | k-th binding id created ([`binding_index`]) |
//! | `osb/v1/index/instances/{k}`          | k-th instance id created ([`instance_index`]) |
//! | `osb/v1/binding/{iid}/{bid}`          | [`BindingRecord`] as JSON               |
//! | `osb/v1/binding/{iid}/{bid}/claim/g{n}` | creation claim counter                |
//!
//! Records carry `schema` (currently [`SCHEMA_VERSION`]). Every change after creation is
//! a compare-and-swap against the exact bytes read ([`replace`]), which is a true CAS on
//! every runtime because the key exists. Creation uses [`create`]: the first caller whose
//! atomic `increment` of the claim counter returns 1 owns the record; concurrent callers
//! wait for it to appear. If it never appears (the owner crashed between claim and write)
//! waiting callers move to the next claim generation, which again has exactly one winner.
//! Deleted resources stay as tombstones ([`Status::Deleted`]) so late polls get 410.

mod claims;
mod fingerprint;
mod identity;
mod records;
mod store;

pub use claims::{create, create_after_read, create_record, delete_claims, Created};
pub use fingerprint::fingerprint;
pub use identity::broker_id;
pub use records::{
    BindingRecord, Done, InstanceMetadata, InstanceRecord, Operation, OperationKind,
    OperationState, OperationSummary, Outcome, PendingUpdate, Record, Status,
};
pub use store::{read, replace, Stored};

/// Version of the record layout written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Key of an instance record.
pub fn instance_key(instance_id: &str) -> String {
    format!("osb/v1/instance/{instance_id}")
}

/// The index of every instance ever created (see [`crate::index`]), for listing without
/// reading the store's key list.
pub fn instance_index() -> crate::index::Index {
    crate::index::Index::new("osb/v1/index/instances")
}

/// The index of an instance's bindings: what expiry deletes with the instance, and what
/// the operator API lists.
pub fn binding_index(instance_id: &str) -> crate::index::Index {
    crate::index::Index::new(format!("{}/binding-index", instance_key(instance_id)))
}

/// Key of a binding record.
pub fn binding_key(instance_id: &str, binding_id: &str) -> String {
    format!("osb/v1/binding/{instance_id}/{binding_id}")
}

#[cfg(test)]
mod tests;
