//! Host bindings for the Spin interfaces that are not WASI: `fermyon:spin/key-value`,
//! `fermyon:spin/variables` and `wasi:keyvalue` (draft 2), generated from `host/wit/`.
//!
//! WIT resources map to the host types in [`crate::kv_host`]; every import is `async`
//! (stores do I/O) and `trappable` (a host fault traps instead of lying to the guest).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-osb:host/host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::kv_host::SpinStore,
        "wasi:keyvalue/store.bucket": crate::kv_host::Bucket,
        "wasi:keyvalue/atomics.cas": crate::kv_host::CasHandle,
    },
});
