//! The wasmtime engine: the features the components use and nothing more, the pooling
//! allocator, epoch interruption for per-request deadlines, and the compiled-code cache.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// How often the epoch advances. A running guest yields to the executor at each tick, so one
/// busy instance cannot hold a worker thread, and a deadline is noticed within a tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per slot, how much of a linear memory or table is reset in place and stays resident.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;
/// Per slot, how much of an async stack stays resident.
const STACK_KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Limits of the instance pool.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Instances alive at once (requests in flight, chained requests included).
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to.
    pub max_memory_bytes: usize,
}

/// Builds the engine and starts the thread that advances its epoch.
pub fn build(limits: &PoolLimits) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // `GYRE_PROFILE=perfmap` names the compiled guest functions for `perf` (/tmp/perf-<pid>.map),
    // for profiling a component under load; off by default.
    if std::env::var("GYRE_PROFILE").is_ok_and(|value| value == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }

    let mut pool = PoolingAllocationConfig::default();
    let n = limits.max_instances;
    pool.total_component_instances(n);
    // A Rust component has one main core module plus a few small adapter instances.
    pool.total_core_instances(n.saturating_mul(8));
    pool.total_memories(n.saturating_mul(2));
    pool.total_tables(n.saturating_mul(4));
    pool.total_stacks(n);
    pool.max_memory_size(limits.max_memory_bytes);
    // Reset a returning slot's memory with `memset` over the pages the instance touched (found
    // with Linux's PAGEMAP_SCAN, kernel 6.7+) instead of `madvise`: unmapping pages costs a TLB
    // shootdown on every core and a page fault on the next use, which measured as a quarter of
    // the CPU per request and a third of the throughput. On older kernels `Auto` falls back to
    // `memset` of the lowest pages plus `madvise` for the rest.
    pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
    pool.table_keep_resident(KEEP_RESIDENT_BYTES);
    pool.async_stack_keep_resident(STACK_KEEP_RESIDENT_BYTES);
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    if let Some(dir) = cache_dir() {
        let mut cache_config = CacheConfig::new();
        cache_config.with_directory(dir);
        match Cache::new(cache_config) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(err) => tracing::warn!(error = %err, "compiled-code cache disabled"),
        }
    }

    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring wasmtime")?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("gyre-epoch".into())
        .spawn(move || {
            // Ends with the engine: `upgrade` fails once every clone is dropped.
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("starting the epoch thread")?;
    Ok(engine)
}

/// Compiled components are cached here across runs, so a restart does not recompile.
/// `GYRE_CACHE_DIR` overrides; the default is the user's cache folder.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GYRE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("gyre").join("wasmtime"))
}
