//! A loaded app: the manifest, its capabilities, and every component compiled
//! and pre-instantiated, ready for a fresh instance per request.
//!
//! Loading does all the slow and fallible work up front (reading files,
//! compiling, linking, checking grants) so that a bad manifest or a missing
//! wasm fails `bazaar up` with a clear message instead of failing requests,
//! and so that the per-request path is only "new store, instantiate, call".
//!
//! Each component sits in a [`ComponentSlot`] so it can be replaced while
//! the app serves (see [`crate::swap`]): a request takes the version current
//! when it starts and keeps it to the end.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::redis_trigger::RedisTriggerPre;
use crate::capabilities::wasi::Wasi;
use crate::capabilities::sqlite::Synchronous;
use crate::capabilities::{BuildContext, Capabilities};
use crate::engine::{BazaarEngine, EngineOptions};
use crate::manifest::{self, Manifest};
use crate::metrics::Metrics;
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;
use crate::swap::ComponentSlot;

/// Everything `bazaar up` needs to know to load an app.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub manifest_file: PathBuf,
    pub runtime_config_file: Option<PathBuf>,
    /// Defaults to `.bazaar` next to the manifest.
    pub state_dir: Option<PathBuf>,
    pub engine: EngineOptions,
    /// Wall-clock budget of one request, enforced by epoch interruption.
    pub request_timeout: Duration,
    /// How SQLite databases and key-value stores (the `spin` kind) sync commits.
    pub sqlite_synchronous: Synchronous,
}

pub struct App {
    pub manifest: Manifest,
    pub runtime_config: RuntimeConfig,
    pub state_dir: PathBuf,
    pub capabilities: Capabilities,
    pub request_timeout: Duration,
    pub metrics: Arc<Metrics>,
    engine: BazaarEngine,
    linker: Linker<InstanceState>,
    components: HashMap<String, ComponentSlot>,
    max_instance_memory: usize,
}

/// One version of a component, compiled and linked.
pub struct LoadedComponent {
    pub id: String,
    pub source: PathBuf,
    /// SHA-256 of the wasm, hex: what tells two builds apart.
    pub version: String,
    pub loaded_at: SystemTime,
    /// Requests and messages this version has handled.
    pub requests: AtomicU64,
    /// Present when the component exports `wasi:http/incoming-handler`.
    pub http: Option<ProxyPre<InstanceState>>,
    /// Present when the component exports `fermyon:spin/inbound-redis`.
    pub redis: Option<RedisTriggerPre<InstanceState>>,
    wasi: Wasi,
}

impl App {
    pub fn load(options: &LoadOptions) -> Result<Self> {
        let manifest = manifest::load(&options.manifest_file)?;
        let state_dir = match &options.state_dir {
            Some(dir) => dir.clone(),
            None => manifest.dir.join(".bazaar"),
        };
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let runtime_config =
            RuntimeConfig::load(options.runtime_config_file.as_deref(), &manifest.dir, &state_dir)?;
        let capabilities = Capabilities::new(&BuildContext {
            manifest: &manifest,
            runtime_config: &runtime_config,
            state_dir: &state_dir,
            sqlite_synchronous: options.sqlite_synchronous,
        })?;

        let engine = BazaarEngine::new(&options.engine)?;
        let mut linker = Linker::new(engine.engine());
        Capabilities::add_to_linker(&mut linker)?;

        let mut components = HashMap::new();
        for (id, component) in &manifest.components {
            check_source(&manifest, id, &component.source)?;
            let wasm = std::fs::read(&component.source)
                .with_context(|| format!("reading {}", component.source.display()))?;
            let compiled = engine.load_component(&component.source, &wasm)?;
            let pre = link(&linker, &compiled, id)?;
            let loaded = loaded_component(&manifest, id, &wasm, pre)?;
            components.insert(id.clone(), ComponentSlot::new(loaded));
        }

        Ok(Self {
            manifest,
            runtime_config,
            state_dir,
            capabilities,
            request_timeout: options.request_timeout,
            metrics: Arc::new(Metrics::new()),
            engine,
            linker,
            components,
            max_instance_memory: options.engine.max_instance_memory,
        })
    }

    /// The version of component `id` serving now. Callers keep the `Arc`
    /// for the whole request, so a swap never changes a request midway.
    pub fn component(&self, id: &str) -> Option<Arc<LoadedComponent>> {
        self.components.get(id).map(ComponentSlot::current)
    }

    /// Where component `id`'s versions live, for swapping and rollback.
    pub fn slot(&self, id: &str) -> Option<&ComponentSlot> {
        self.components.get(id)
    }

    /// Every component id, sorted, for listings.
    pub fn component_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.components.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Compiles and links a new build of component `id` without installing
    /// it. Slow (Cranelift): call it off the async runtime. Unlike loading
    /// at start-up, every import must be one bazaar provides, and the new
    /// build must export what the component's triggers call: a swap must
    /// not turn a serving component into one that traps.
    pub fn prepare(&self, id: &str, wasm: &[u8]) -> Result<LoadedComponent> {
        if !self.manifest.components.contains_key(id) {
            bail!("there is no component {id:?} in {}", self.manifest.file.display());
        }
        let (compiled, _) = self
            .engine
            .load_component_bytes(wasm)
            .with_context(|| format!("the new build of {id} is not a valid WebAssembly component"))?;
        let pre = self.linker.instantiate_pre(&compiled).map_err(|e| {
            anyhow::anyhow!("the new build of {id} does not link against what bazaar provides: {e:#}")
        })?;
        let loaded = loaded_component(&self.manifest, id, wasm, pre)?;
        if self.manifest.http_triggers.iter().any(|t| t.component == id) && loaded.http.is_none() {
            bail!(
                "the new build of {id} does not export wasi:http/incoming-handler, which its [[trigger.http]] calls; build it with spin-sdk's #[http_component]"
            );
        }
        if self.manifest.redis_triggers.iter().any(|t| t.component == id) && loaded.redis.is_none() {
            bail!(
                "the new build of {id} does not export fermyon:spin/inbound-redis, which its [[trigger.redis]] calls; build it with spin-sdk's #[redis_component]"
            );
        }
        Ok(loaded)
    }

    /// A fresh store for one instance of `component`, with its deadline set.
    pub fn new_store(&self, component: &LoadedComponent) -> Result<Store<InstanceState>> {
        let caps = &self.capabilities;
        let id = component.id.as_str();
        let state = InstanceState {
            component_id: id.into(),
            request: None,
            table: Default::default(),
            wasi: component.wasi.instance()?,
            http: WasiHttpCtx::new(),
            outbound_http: caps.outbound_http.instance(id),
            variables: caps.variables.instance(id),
            key_value: caps.key_value.instance(id),
            sqlite: caps.sqlite.instance(id, Instant::now() + self.request_timeout),
            postgres: caps.postgres.instance(id),
            redis: caps.redis.instance(id),
            limits: StoreLimitsBuilder::new().memory_size(self.max_instance_memory).build(),
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|state| &mut state.limits);
        crate::engine::set_deadline(&mut store, self.request_timeout);
        Ok(store)
    }
}

/// A linked component with what the triggers need from it.
fn loaded_component(
    manifest: &Manifest,
    id: &str,
    wasm: &[u8],
    pre: InstancePre<InstanceState>,
) -> Result<LoadedComponent> {
    let component = &manifest.components[id];
    Ok(LoadedComponent {
        id: id.to_string(),
        source: component.source.clone(),
        version: crate::engine::content_hash(wasm),
        loaded_at: SystemTime::now(),
        requests: AtomicU64::new(0),
        http: ProxyPre::new(pre.clone()).ok(),
        redis: RedisTriggerPre::new(pre).ok(),
        wasi: Wasi::new(component)?,
    })
}

fn check_source(manifest: &Manifest, id: &str, source: &Path) -> Result<()> {
    if source.is_file() {
        return Ok(());
    }
    let hint = match manifest.components[id].build {
        Some(_) => "run `bazaar build` (or `bazaar up --build`) to build it",
        None => "check the path; it is relative to the manifest's directory",
    };
    bail!(
        "{}: [component.{id}] source {} does not exist; {hint}",
        manifest.file.display(),
        source.display()
    )
}

/// Links a component against the host's capabilities. Imports bazaar does
/// not implement yet are defined as traps, so the component still loads and
/// fails only if it calls them, with the import's name in the error.
fn link(linker: &Linker<InstanceState>, component: &Component, id: &str) -> Result<InstancePre<InstanceState>> {
    Ok(match linker.instantiate_pre(component) {
        Ok(pre) => pre,
        Err(e) => {
            tracing::warn!(component = id, "some imports are not provided by bazaar and will trap if called: {e:#}");
            let mut lenient = linker.clone();
            lenient.define_unknown_imports_as_traps(component)?;
            lenient.instantiate_pre(component).map_err(anyhow::Error::from).with_context(|| format!("linking component {id}"))?
        }
    })
}
