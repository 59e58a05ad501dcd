//! The one wasmtime [`Engine`] of a bazaar process and how components are
//! compiled for it.
//!
//! Why it looks like this:
//! - **Pooling allocator.** A fresh instance per request is the sandbox between
//!   requests, so instantiation is on the hot path. The pooling allocator
//!   reserves instance slots up front and recycles them, instead of asking
//!   the kernel for new mappings on every request.
//! - **Epoch interruption.** A component stuck in a loop must not take a core
//!   forever. A ticker thread bumps the engine's epoch every [`EPOCH_TICK`];
//!   a guest found running at two ticks in a row gives its worker thread
//!   back to the executor for a turn, and once its request's wall-clock
//!   deadline has passed it traps ([`set_deadline`]). This costs far less
//!   than fuel metering.
//! - **Guard regions, not bounds checks.** Each instance memory reserves
//!   the whole 4 GiB a wasm32 address can reach ([`Reservation`]), so the
//!   guests' compiled loads and stores need no bounds check: a stray access
//!   faults on an inaccessible page and traps. About 8 TiB of address space
//!   for the default pool, none of it memory until used.
//! - **Compile cache.** Cranelift takes seconds for a large component. The
//!   compiled artefact is stored on disk keyed by the wasm's SHA-256 and the
//!   engine's compatibility hash, so a restart only deserialises it.
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

/// How often the epoch advances: the longest a guest runs before other
/// tasks get a turn, and how late past its deadline a spinning guest stops.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Ticks a guest runs between yields ([`set_deadline`]).
const SLICE_TICKS: u64 = 1;

/// Limits and locations that shape the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Largest linear memory one instance may grow to, in bytes.
    pub max_instance_memory: usize,
    /// How many instances may be alive at once (pool size).
    pub max_instances: u32,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Whether to tell `perf` where the guests' compiled code lies.
    pub profiler: Profiler,
}

/// Which profiler, if any, learns the names of the guests' compiled
/// functions. Without one, `perf report` shows wasm code as bare addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profiler {
    #[default]
    None,
    /// Writes `/tmp/perf-<pid>.map` (function names and addresses) for
    /// `perf report`; costs nothing per request.
    Perfmap,
    /// Writes a jitdump file (`perf inject --jit`), with the code itself.
    Jitdump,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instance_memory: 256 << 20,
            max_instances: 1000,
            cache_dir: default_cache_dir(),
            profiler: Profiler::None,
        }
    }
}

/// The user-level cache directory (`$XDG_CACHE_HOME/bazaar` or
/// `~/.cache/bazaar`), shared by every app on the machine like Spin's.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("bazaar"))
}

/// The SHA-256 of a wasm, hex: its identity in the compile cache and its
/// version in the admin API.
pub fn content_hash(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// Gives `store` its request's wall-clock deadline, `timeout` from now,
/// and time slices: a guest found running wasm at two epoch ticks in a row
/// yields its worker thread to the executor and resumes once the thread
/// has nothing else to run (or every few dozen tasks), until the deadline
/// has passed, when it traps with [`wasmtime::Trap::Interrupt`] (which the
/// triggers report as a timeout).
///
/// Why slices: a store runs on one of tokio's worker threads, one per core.
/// A guest spinning in a loop that only trapped at its deadline would hold
/// its thread for the whole request timeout, and as many of them as there
/// are cores would stop the host: every other request, the health check,
/// the bus.
///
/// Why two ticks in a row: the epoch counts wall-clock time, not the
/// guest's, so a guest also meets a tick when it resumes after waiting on
/// the host (a query, a chained request), having hardly run. Sending those
/// to the back of the line (a checkout's instances wait a dozen times each)
/// put tens of milliseconds on the shop's slowest requests; one that is
/// still in its wasm a tick later has been running, and it yields.
pub fn set_deadline<T: 'static>(store: &mut Store<T>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last_tick: Option<Instant> = None;
    store.set_epoch_deadline(SLICE_TICKS);
    store.epoch_deadline_callback(move |_| {
        let now = Instant::now();
        if now >= deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        let running = last_tick.is_some_and(|last| now - last < EPOCH_TICK * 3 / 2);
        last_tick = Some(now);
        Ok(if running {
            // tokio's own yield: the task waits until its worker thread is
            // out of other work, or has run a few dozen other tasks.
            UpdateDeadline::YieldCustom(SLICE_TICKS, Box::pin(tokio::task::yield_now()))
        } else {
            UpdateDeadline::Continue(SLICE_TICKS)
        })
    });
}

/// Guard region after each instance memory: loads and stores whose static
/// offset lies within it need no check of their own.
const GUARD: u64 = 64 << 20;

/// How much address space each instance memory reserves, which decides
/// whether the guests' loads and stores carry bounds checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reservation {
    /// The whole 32-bit index space (4 GiB) plus the guard region: no
    /// wasm32 address reaches past it, so Cranelift emits no bounds check
    /// and an access past the memory's end hits an inaccessible page, which
    /// wasmtime turns into a trap (as `wasmtime serve`'s defaults do). This
    /// is address space, not memory: nothing is mapped until an instance
    /// grows into it. Measured on the shop mix (embedded, 64 clients,
    /// `auto`, 20 s, three interleaved pairs on a 2-core AMD EPYC,
    /// 2026-12-07): 2,240, 2,003, 2,022 req/s against 2,120, 1,895, 1,883
    /// with [`Reservation::Checked`], +6% in every pair; hello world moved
    /// less than its noise (it runs hardly any guest code).
    Guarded,
    /// The largest memory an instance may grow to and 64 MiB more (the
    /// guard region comes after): every load and store first compares its
    /// address with the memory's current size. The fallback when the
    /// address space for the pool is not there (a 39-bit address space, a
    /// `ulimit -v`).
    Checked,
}

impl Reservation {
    /// Bytes reserved per instance memory, guard region excluded.
    fn bytes(self, options: &EngineOptions) -> u64 {
        let checked = options.max_instance_memory as u64 + GUARD;
        match self {
            Reservation::Guarded => checked.max(1 << 32),
            Reservation::Checked => checked,
        }
    }
}

/// Instance memories in the pool: two per instance (a Rust component has
/// one; the second is headroom for components that bring an adapter).
fn memory_slots(options: &EngineOptions) -> u32 {
    options.max_instances * 2
}

/// The engine's configuration, with instance memories reserved as
/// `reservation` says.
fn engine_config(options: &EngineOptions, reservation: Reservation) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(options.max_instances)
        // A Rust component is one core module plus a few small shims.
        .total_core_instances(options.max_instances * 8)
        .total_memories(memory_slots(options))
        .total_tables(options.max_instances * 8)
        .total_stacks(options.max_instances)
        .max_memory_size(options.max_instance_memory)
        .max_memories_per_component(4)
        .max_core_instances_per_component(32)
        .max_tables_per_component(32)
        .table_elements(64 * 1024)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        // Keep each slot's pages mapped between instances and reset
        // only the pages the last instance dirtied (found with the
        // PAGEMAP_SCAN ioctl, Linux 6.7+; on older kernels up to 16 MiB
        // of the memory the instance could access is reset with memset,
        // the rest with madvise): unmapping pages and faulting them back
        // in on the next request is what costs the most otherwise.
        // Measured with scripts/bench/hello.sh (hello, 16 connections,
        // same run as `wasmtime serve -O pooling-allocator`, 2-core
        // machine): 1 MiB kept resident, no scan: 2,916 req/s (0.81x
        // wasmtime serve); 16 MiB + scan: 4,134 req/s (1.24x), 41 µs
        // per instantiation instead of 47 (noisy machine: the ratio is
        // the figure to trust). Tables keep 64 KiB resident.
        .linear_memory_keep_resident(16 << 20)
        .pagemap_scan(Enabled::Auto)
        .table_keep_resident(1 << 16);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Spin components are WASI 0.2 (no component-model async), and
        // with the concurrency machinery on every export call goes
        // through wasmtime's task scheduler (`run_concurrent`) instead of
        // straight onto a fiber, and every store sets up its task state.
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Static reservations: memories grow in place, never move.
        .memory_reservation(reservation.bytes(options))
        .memory_guard_size(GUARD)
        .max_wasm_stack(1 << 20)
        .profiler(match options.profiler {
            Profiler::None => wasmtime::ProfilingStrategy::None,
            Profiler::Perfmap => wasmtime::ProfilingStrategy::PerfMap,
            Profiler::Jitdump => wasmtime::ProfilingStrategy::JitDump,
        });
    config
}

/// The engine plus what compiling for it needs.
#[derive(Clone)]
pub struct BazaarEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
}

impl BazaarEngine {
    /// Builds the engine and starts its epoch ticker thread. The thread ends
    /// by itself once the last clone of the engine is dropped.
    pub fn new(options: &EngineOptions) -> Result<Self> {
        let engine = match Engine::new(&engine_config(options, Reservation::Guarded)) {
            Ok(engine) => engine,
            Err(e) => {
                let reserved = (Reservation::Guarded.bytes(options) + GUARD) * memory_slots(options) as u64;
                tracing::warn!(
                    "could not reserve {} GiB of address space for {} instance memories with guard regions ({e:#}); \
                     bounds-checking every guest memory access instead, which runs guest code slower \
                     (raise the process's address-space limit, `ulimit -v`, or lower --max-instances to keep them)",
                    reserved >> 30,
                    memory_slots(options),
                );
                Engine::new(&engine_config(options, Reservation::Checked))
                    .map_err(anyhow::Error::from)
                    .context("configuring the wasmtime engine")?
            }
        };

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("bazaar-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;

        Ok(Self { engine, cache_dir: options.cache_dir.clone() })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `wasm`, read from `path`, or loads it from the compile cache.
    pub fn load_component(&self, path: &Path, wasm: &[u8]) -> Result<Component> {
        let started = std::time::Instant::now();
        let (component, from_cache) = self.load_component_bytes(wasm).map_err(|e| {
            // wasmtime names the sizes, not the setting that caps them.
            let hint = if format!("{e:#}").contains("exceeds the limit") {
                "; the component starts with more linear memory than one instance may have: \
                 raise --max-instance-memory-mb (BAZAAR_MAX_INSTANCE_MEMORY_MB)"
            } else {
                ""
            };
            e.context(format!("compiling {}{hint}", path.display()))
        })?;
        let how = if from_cache { "loaded from the compile cache" } else { "compiled" };
        tracing::info!(path = %path.display(), "{how} in {:?}", started.elapsed());
        Ok(component)
    }

    /// Like [`Self::load_component`], from bytes already in memory; also
    /// says whether the compile cache had it.
    pub fn load_component_bytes(&self, wasm: &[u8]) -> Result<(Component, bool)> {
        let Some(cached) = self.cache_path(wasm) else {
            return Ok((Component::new(&self.engine, wasm)?, false));
        };
        if cached.exists() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the file
            // name), into a directory only bazaar writes; wasmtime still
            // checks the header and refuses a mismatching artefact.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!(path = %cached.display(), "ignoring unusable compile cache entry: {e:#}"),
            }
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Err(e) = self.store_in_cache(&component, &cached) {
            tracing::warn!(path = %cached.display(), "could not write compile cache: {e:#}");
        }
        Ok((component, false))
    }

    fn cache_path(&self, wasm: &[u8]) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let digest = content_hash(wasm);
        Some(dir.join("components").join(format!("{digest}-{:016x}.cwasm", engine_hash.finish())))
    }

    fn store_in_cache(&self, component: &Component, cached: &Path) -> Result<()> {
        let bytes = component.serialize()?;
        let dir = cached.parent().expect("cache path has a parent");
        std::fs::create_dir_all(dir)?;
        // Write then rename, so a concurrent reader never sees half a file.
        let name = cached.file_name().expect("cache path has a file name").to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, cached)?;
        Ok(())
    }
}
