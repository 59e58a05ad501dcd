//! Hot swap: replacing one component while the app keeps serving, without
//! failing a request.
//!
//! Each component lives in a [`ComponentSlot`] holding its current version
//! (and the one before, for rollback). A request loads the current `Arc` when
//! it starts and keeps it, so requests in flight finish on the old version
//! while new ones get the new; the old version is dropped when its last
//! request ends. All the slow and fallible work (compiling, linking, checking
//! exports, the optional smoke request) happens before the switch, off the
//! request path; the switch itself is one atomic pointer store. A build that
//! fails any check is refused and the old version keeps serving.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use serde::Serialize;

use crate::app::{App, LoadedComponent};
use crate::metrics::SwapLabels;
use crate::trigger::http::HttpTrigger;

/// Where the versions of one component live.
pub struct ComponentSlot {
    current: ArcSwap<LoadedComponent>,
    previous: Mutex<Option<Arc<LoadedComponent>>>,
    /// One swap or rollback of a component at a time, so "previous" always
    /// means the version that served just before.
    changing: tokio::sync::Mutex<()>,
}

impl ComponentSlot {
    pub fn new(loaded: LoadedComponent) -> Self {
        Self {
            current: ArcSwap::from_pointee(loaded),
            previous: Mutex::new(None),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Arc<LoadedComponent> {
        self.current.load_full()
    }

    /// The version a rollback returns to.
    pub fn previous(&self) -> Option<Arc<LoadedComponent>> {
        self.previous.lock().expect("slot lock").clone()
    }

    /// Makes `new` current; the replaced version becomes the previous one.
    fn install(&self, new: Arc<LoadedComponent>) -> Arc<LoadedComponent> {
        let old = self.current.swap(new);
        *self.previous.lock().expect("slot lock") = Some(old.clone());
        old
    }
}

/// What a swap or rollback did, as the admin API reports it.
#[derive(Debug, Serialize)]
pub struct SwapReport {
    pub component: String,
    pub version: String,
    pub previous_version: String,
    /// Compiling (or loading from the compile cache), linking and checking.
    pub compile_ms: f64,
    /// The smoke request against the new version, when one was asked for.
    pub smoke_status: Option<u16>,
    /// The switch itself.
    pub switch_us: f64,
}

/// Swaps and rolls back the components of a running app.
pub struct Swapper {
    app: Arc<App>,
    http: Arc<HttpTrigger>,
}

impl Swapper {
    pub fn new(app: Arc<App>, http: Arc<HttpTrigger>) -> Self {
        Self { app, http }
    }

    /// Replaces component `id` by the build `wasm` if it compiles, links,
    /// exports what its triggers call and, with `smoke_path`, answers a GET
    /// there with less than 500.
    pub async fn swap(&self, id: &str, wasm: Vec<u8>, smoke_path: Option<&str>) -> Result<SwapReport> {
        let slot = self.slot(id)?;
        let _one_at_a_time = slot.changing.lock().await;
        let result = self.prepare_and_install(slot, id, wasm, smoke_path).await;
        let outcome = if result.is_ok() { "swapped" } else { "refused" };
        self.count(id, outcome);
        match &result {
            Ok(report) => tracing::info!(
                component = id,
                version = %report.version,
                "swapped in {:.1} ms (compile) + {:.1} µs (switch)",
                report.compile_ms,
                report.switch_us
            ),
            Err(e) => tracing::warn!(component = id, "swap refused, the current version keeps serving: {e:#}"),
        }
        result
    }

    async fn prepare_and_install(
        &self,
        slot: &ComponentSlot,
        id: &str,
        wasm: Vec<u8>,
        smoke_path: Option<&str>,
    ) -> Result<SwapReport> {
        let started = Instant::now();
        let app = self.app.clone();
        let component_id = id.to_string();
        // Cranelift is CPU-bound for seconds: keep it off the runtime threads
        // that serve requests.
        let new = tokio::task::spawn_blocking(move || app.prepare(&component_id, &wasm))
            .await
            .context("the compile task failed")??;
        let compile = started.elapsed();
        let smoke_status = match smoke_path {
            Some(path) => Some(self.smoke(&new, path).await?),
            None => None,
        };
        let switched = Instant::now();
        let old = slot.install(Arc::new(new));
        let switch = switched.elapsed();
        let current = slot.current();
        Ok(SwapReport {
            component: id.to_string(),
            version: current.version.clone(),
            previous_version: old.version.clone(),
            compile_ms: millis(compile),
            smoke_status,
            switch_us: switch.as_secs_f64() * 1e6,
        })
    }

    /// Returns component `id` to the version before the last swap (a second
    /// rollback undoes the first).
    pub async fn rollback(&self, id: &str) -> Result<SwapReport> {
        let slot = self.slot(id)?;
        let _one_at_a_time = slot.changing.lock().await;
        let previous = slot.previous().with_context(|| {
            format!("component {id} has not been swapped since the host started, so there is no version to roll back to")
        })?;
        let switched = Instant::now();
        let old = slot.install(previous);
        let switch = switched.elapsed();
        self.count(id, "rolled_back");
        let current = slot.current();
        tracing::info!(component = id, version = %current.version, "rolled back");
        Ok(SwapReport {
            component: id.to_string(),
            version: current.version.clone(),
            previous_version: old.version.clone(),
            compile_ms: 0.0,
            smoke_status: None,
            switch_us: switch.as_secs_f64() * 1e6,
        })
    }

    /// A GET against a fresh instance of the new version: a 5xx, a trap or
    /// a timeout refuses the swap.
    async fn smoke(&self, new: &LoadedComponent, path: &str) -> Result<u16> {
        let status = self
            .http
            .smoke(new, path)
            .await
            .with_context(|| format!("the smoke request GET {path} against the new build of {} failed", new.id))?;
        if status >= 500 {
            anyhow::bail!(
                "the new build of {} answered the smoke request GET {path} with {status}; fix it or swap without --smoke-path",
                new.id
            );
        }
        Ok(status)
    }

    fn slot(&self, id: &str) -> Result<&ComponentSlot> {
        self.app.slot(id).with_context(|| {
            format!("there is no component {id:?}; the app has {}", self.app.component_ids().join(", "))
        })
    }

    fn count(&self, id: &str, outcome: &'static str) {
        self.app.metrics.swaps.get_or_create(&SwapLabels { component: id.into(), outcome }).inc();
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
