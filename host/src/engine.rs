//! The wasmtime engine the host runs components on: pooling allocator sized for the
//! instance cap, epoch interruption, the linker with every interface a Spin app may import,
//! and the on-disk cache of compiled components.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Linear-memory ceiling per instance.
const MAX_MEMORY_BYTES: usize = 256 << 20;
/// Bytes of each reused memory slot zeroed in place (not returned to the OS) between
/// instances; at most this much per slot ever used stays resident.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// How often running guests yield to the scheduler (lets timeouts pre-empt busy loops).
const EPOCH_TICK: Duration = Duration::from_millis(10);

pub(crate) fn make_engine(max_instances: u32) -> Result<Engine> {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(max_instances)
        .total_core_instances(max_instances * 4)
        .total_memories(max_instances * 4)
        .total_tables(max_instances * 4)
        .total_stacks(max_instances)
        .max_memory_size(MAX_MEMORY_BYTES)
        .max_memories_per_component(16)
        .max_tables_per_component(16)
        .max_core_instances_per_component(64)
        // Zero the first pages of a reused slot in place instead of madvise: every madvise
        // shoots down TLB entries on all cores (a third of the CPU time at 16 connections)
        // and the next instance faults the pages back in. Measured with scripts/bench.sh:
        // last_operation at 16 connections 1,630–1,700 → 1,920–2,250 req/s.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 8);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    // `SPIN_OSB_PROFILE=perfmap` names guest functions in `perf` profiles (written to
    // /tmp/perf-<pid>.map): how the guests' share of a request is found and measured.
    if std::env::var("SPIN_OSB_PROFILE").is_ok_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Ok(Engine::new(&config)?)
}

/// Increments the engine epoch forever; each tick lets running guests yield.
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("spin-osb-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning a thread at start-up");
}

/// Compiles `wasm_path`, or loads the machine code cached for exactly these bytes.
///
/// The cache key is the wasm's SHA-256 plus the engine's compatibility hash, so a new
/// build of either the component or the host never loads stale code.
pub(crate) fn compile_cached(engine: &Engine, wasm_path: &Path) -> Result<Component> {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let wasm = std::fs::read(wasm_path).with_context(|| {
        format!(
            "cannot read {} (run `spin-osb build` first?)",
            wasm_path.display()
        )
    })?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!(
        "{}-{:016x}.cwasm",
        hex::encode(sha2::Sha256::digest(&wasm)),
        engine_hash.finish()
    );
    let cache_file = cache_dir().map(|dir| dir.join(key));
    if let Some(file) = cache_file.as_ref().filter(|f| f.exists()) {
        // SAFETY: the file was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the name), in a directory only this user writes.
        match unsafe { Component::deserialize_file(engine, file) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!("ignoring unusable compiled cache {}: {e}", file.display()),
        }
    }
    let started = std::time::Instant::now();
    let component = Component::new(engine, &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a valid wasm component", wasm_path.display()))?;
    tracing::info!(
        "compiled {} in {:?}",
        wasm_path.display(),
        started.elapsed()
    );
    if let Some(file) = cache_file {
        let written =
            component
                .serialize()
                .map_err(anyhow::Error::from)
                .and_then(|bytes| -> Result<()> {
                    std::fs::create_dir_all(file.parent().expect("cache file has a parent"))?;
                    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
                    std::fs::write(&tmp, bytes)?;
                    std::fs::rename(&tmp, &file)?;
                    Ok(())
                });
        if let Err(e) = written {
            tracing::warn!("cannot write compiled cache {}: {e}", file.display());
        }
    }
    Ok(component)
}

/// `$SPIN_OSB_CACHE_DIR`, else `$XDG_CACHE_HOME/spin-osb/components`, else `~/.cache/...`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SPIN_OSB_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("spin-osb").join("components"))
}
