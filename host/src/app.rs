//! A loaded app: the manifest, its capabilities, and every component compiled
//! and pre-instantiated, ready for a fresh instance per request.
//!
//! Loading does all the slow and fallible work up front (reading files,
//! compiling, linking, checking grants) so that a bad manifest or a missing
//! wasm fails `bazaar up` with a clear message instead of failing requests,
//! and so that the per-request path is only "new store, instantiate, call".
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::redis_trigger::RedisTriggerPre;
use crate::capabilities::wasi::Wasi;
use crate::capabilities::{BuildContext, Capabilities};
use crate::engine::{BazaarEngine, EngineOptions};
use crate::manifest::{self, Manifest};
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;

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
}

pub struct App {
    pub manifest: Manifest,
    pub runtime_config: RuntimeConfig,
    pub state_dir: PathBuf,
    pub capabilities: Capabilities,
    pub request_timeout: Duration,
    engine: BazaarEngine,
    components: HashMap<String, Arc<LoadedComponent>>,
    max_instance_memory: usize,
}

/// One component, compiled and linked.
pub struct LoadedComponent {
    pub id: String,
    pub source: PathBuf,
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
        })?;

        let engine = BazaarEngine::new(&options.engine)?;
        let mut linker = Linker::new(engine.engine());
        Capabilities::add_to_linker(&mut linker)?;

        let mut components = HashMap::new();
        for (id, component) in &manifest.components {
            check_source(&manifest, id, &component.source)?;
            let compiled = engine.load_component(&component.source)?;
            let pre = link(&linker, &compiled, id)?;
            let loaded = LoadedComponent {
                id: id.clone(),
                source: component.source.clone(),
                http: ProxyPre::new(pre.clone()).ok(),
                redis: RedisTriggerPre::new(pre).ok(),
                wasi: Wasi::new(component)?,
            };
            components.insert(id.clone(), Arc::new(loaded));
        }

        Ok(Self {
            manifest,
            runtime_config,
            state_dir,
            capabilities,
            request_timeout: options.request_timeout,
            engine,
            components,
            max_instance_memory: options.engine.max_instance_memory,
        })
    }

    pub fn component(&self, id: &str) -> Option<&Arc<LoadedComponent>> {
        self.components.get(id)
    }

    /// A fresh store for one instance of `component`, with its deadline set.
    pub fn new_store(&self, component: &LoadedComponent) -> Result<Store<InstanceState>> {
        let caps = &self.capabilities;
        let id = component.id.as_str();
        let state = InstanceState {
            component_id: id.into(),
            table: Default::default(),
            wasi: component.wasi.instance()?,
            http: WasiHttpCtx::new(),
            outbound_http: caps.outbound_http.instance(id),
            variables: caps.variables.instance(id),
            key_value: caps.key_value.instance(id),
            sqlite: caps.sqlite.instance(id),
            postgres: caps.postgres.instance(id),
            redis: caps.redis.instance(id),
            limits: StoreLimitsBuilder::new().memory_size(self.max_instance_memory).build(),
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(BazaarEngine::ticks(self.request_timeout));
        store.epoch_deadline_trap();
        Ok(store)
    }
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
