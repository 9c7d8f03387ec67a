//! The guest-facing side of key-value: both WIT versions over one [`spin_osb_host_kv::Store`].
//!
//! Like Spin, a component may open only the labels listed in its manifest's
//! `key_value_stores` (`access-denied` otherwise), and a listed label that the runtime
//! config does not define is `no-such-store`.

use std::sync::Arc;

use spin_osb_host_kv::{Cas, Store, StoreError, StoreManager};
use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::bindings::fermyon::spin::key_value as spin_kv;
use crate::bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};

/// Guests may hold this many open stores at once (Spin's limit is similar).
const MAX_OPEN_STORES: usize = 64;

/// An open `fermyon:spin/key-value.store`.
pub struct SpinStore(Arc<dyn Store>);
/// An open `wasi:keyvalue/store.bucket`.
pub struct Bucket(Arc<dyn Store>);
/// A `wasi:keyvalue/atomics.cas` handle.
pub struct CasHandle {
    cas: Arc<dyn Cas>,
    store: Arc<dyn Store>,
}

/// Key-value state of one component instance.
#[derive(Clone)]
pub struct KvContext {
    /// Labels from the component's `key_value_stores`.
    pub allowed: Arc<Vec<String>>,
    /// Every store the runtime config defines.
    pub stores: Arc<StoreManager>,
}

/// What the generated `Host` traits are implemented on: a borrow of the instance's
/// resource table and its key-value context.
pub struct KvView<'a> {
    table: &'a mut ResourceTable,
    ctx: &'a KvContext,
    open: &'a mut usize,
}

impl<'a> KvView<'a> {
    /// Borrows the pieces of the store data the interfaces need.
    pub fn new(table: &'a mut ResourceTable, ctx: &'a KvContext, open: &'a mut usize) -> Self {
        Self { table, ctx, open }
    }

    fn open_store(&mut self, label: &str) -> Result<Arc<dyn Store>, OpenError> {
        if !self.ctx.allowed.iter().any(|l| l == label) {
            return Err(OpenError::AccessDenied);
        }
        if *self.open >= MAX_OPEN_STORES {
            return Err(OpenError::TableFull);
        }
        let store = self.ctx.stores.get(label).ok_or(OpenError::NoSuchStore)?;
        *self.open += 1;
        Ok(store)
    }
}

/// [`HasData`] marker for `add_to_linker`.
pub struct KvData;
impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

enum OpenError {
    AccessDenied,
    NoSuchStore,
    TableFull,
}

fn spin_err(e: StoreError) -> spin_kv::Error {
    spin_kv::Error::Other(e.to_string())
}

fn wasi_err(e: StoreError) -> wasi_kv::Error {
    wasi_kv::Error::Other(e.to_string())
}

type Trappable<T> = wasmtime::Result<T>;

impl spin_kv::Host for KvView<'_> {}

impl spin_kv::HostStore for KvView<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> Trappable<Result<Resource<SpinStore>, spin_kv::Error>> {
        match self.open_store(&label) {
            Ok(store) => Ok(Ok(self.table.push(SpinStore(store))?)),
            Err(OpenError::AccessDenied) => Ok(Err(spin_kv::Error::AccessDenied)),
            Err(OpenError::NoSuchStore) => Ok(Err(spin_kv::Error::NoSuchStore)),
            Err(OpenError::TableFull) => Ok(Err(spin_kv::Error::StoreTableFull)),
        }
    }

    async fn get(
        &mut self,
        this: Resource<SpinStore>,
        key: String,
    ) -> Trappable<Result<Option<Vec<u8>>, spin_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.get(&key).await.map_err(spin_err))
    }

    async fn set(
        &mut self,
        this: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> Trappable<Result<(), spin_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.set(&key, &value).await.map_err(spin_err))
    }

    async fn delete(
        &mut self,
        this: Resource<SpinStore>,
        key: String,
    ) -> Trappable<Result<(), spin_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.delete(&key).await.map_err(spin_err))
    }

    async fn exists(
        &mut self,
        this: Resource<SpinStore>,
        key: String,
    ) -> Trappable<Result<bool, spin_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.exists(&key).await.map_err(spin_err))
    }

    async fn get_keys(
        &mut self,
        this: Resource<SpinStore>,
    ) -> Trappable<Result<Vec<String>, spin_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.get_keys().await.map_err(spin_err))
    }

    async fn drop(&mut self, this: Resource<SpinStore>) -> Trappable<()> {
        self.table.delete(this)?;
        *self.open = self.open.saturating_sub(1);
        Ok(())
    }
}

impl wasi_kv::Host for KvView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> Trappable<Result<Resource<Bucket>, wasi_kv::Error>> {
        match self.open_store(&identifier) {
            Ok(store) => Ok(Ok(self.table.push(Bucket(store))?)),
            Err(OpenError::AccessDenied) => Ok(Err(wasi_kv::Error::AccessDenied)),
            Err(OpenError::NoSuchStore) => Ok(Err(wasi_kv::Error::NoSuchStore)),
            Err(OpenError::TableFull) => {
                Ok(Err(wasi_kv::Error::Other("too many open stores".into())))
            }
        }
    }
}

impl wasi_kv::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> Trappable<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.get(&key).await.map_err(wasi_err))
    }

    async fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Trappable<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.set(&key, &value).await.map_err(wasi_err))
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> Trappable<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.delete(&key).await.map_err(wasi_err))
    }

    async fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> Trappable<Result<bool, wasi_kv::Error>> {
        let store = self.table.get(&this)?.0.clone();
        Ok(store.exists(&key).await.map_err(wasi_err))
    }

    async fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        _cursor: Option<String>,
    ) -> Trappable<Result<wasi_kv::KeyResponse, wasi_kv::Error>> {
        // All keys in one page: the cursor is never needed.
        let store = self.table.get(&this)?.0.clone();
        Ok(store
            .get_keys()
            .await
            .map(|keys| wasi_kv::KeyResponse { keys, cursor: None })
            .map_err(wasi_err))
    }

    async fn drop(&mut self, this: Resource<Bucket>) -> Trappable<()> {
        self.table.delete(this)?;
        *self.open = self.open.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Trappable<Result<i64, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?.0.clone();
        Ok(store.increment(&key, delta).await.map_err(wasi_err))
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> Trappable<Result<(), atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        match handle.cas.swap(value).await {
            Ok(true) => Ok(Ok(())),
            // Hand back a fresh handle on the current value so the guest can retry.
            Ok(false) => match handle.store.new_cas(handle.cas.key()).await {
                Ok(fresh) => {
                    let fresh = self.table.push(CasHandle {
                        cas: fresh,
                        store: handle.store,
                    })?;
                    Ok(Err(atomics::CasError::CasFailed(fresh)))
                }
                Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_err(e)))),
            },
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_err(e)))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Trappable<Result<Resource<CasHandle>, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?.0.clone();
        match store.new_cas(&key).await {
            Ok(cas) => Ok(Ok(self.table.push(CasHandle { cas, store })?)),
            Err(e) => Ok(Err(wasi_err(e))),
        }
    }

    async fn current(
        &mut self,
        this: Resource<CasHandle>,
    ) -> Trappable<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        let cas = self.table.get(&this)?.cas.clone();
        Ok(cas.current().await.map_err(wasi_err))
    }

    async fn drop(&mut self, this: Resource<CasHandle>) -> Trappable<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Trappable<Result<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?.0.clone();
        Ok(store.get_many(&keys).await.map_err(wasi_err))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Trappable<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&bucket)?.0.clone();
        Ok(store.set_many(&key_values).await.map_err(wasi_err))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Trappable<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&bucket)?.0.clone();
        Ok(store.delete_many(&keys).await.map_err(wasi_err))
    }
}
