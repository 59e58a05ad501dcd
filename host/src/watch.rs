//! `bazaar up --watch`: hot-swaps a component when its wasm file changes.
//!
//! A build writes the wasm over many writes (and cargo replaces it by a
//! rename), so an event means "something is happening", not "a new build is
//! there". A file is swapped only once it has stopped changing for
//! [`QUIET`]: its size and modification time the same across that period.
//! The parent directories are watched rather than the files, so a file that
//! is replaced (a new inode) is still seen. A build identical to the one
//! serving (same content hash) is not swapped again.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::app::App;
use crate::engine::content_hash;
use crate::swap::Swapper;

/// How long a file must stay unchanged before it is swapped in.
const QUIET: Duration = Duration::from_millis(500);

/// A wasm that changed and is waiting to settle.
struct Pending {
    seen: (u64, Option<SystemTime>),
    since: Instant,
}

/// Starts watching every component's source; the returned watcher must be
/// kept alive for as long as watching should go on.
pub fn start(app: Arc<App>, swapper: Arc<Swapper>) -> Result<notify::RecommendedWatcher> {
    // Several components may share one wasm (the same code under two ids).
    let mut components: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for id in app.component_ids() {
        if let Some(slot) = app.slot(id) {
            components.entry(slot.current().source.clone()).or_default().push(id.to_string());
        }
    }
    let (events, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = events.send(path);
            }
        }
    })
    .context("starting the file watcher for --watch")?;
    let mut dirs: Vec<&Path> = components.keys().filter_map(|p| p.parent()).collect();
    dirs.sort_unstable();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for --watch", dir.display()))?;
    }
    for path in components.keys() {
        tracing::info!(path = %path.display(), "watching for new builds");
    }

    tokio::spawn(async move {
        let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
        let mut tick = tokio::time::interval(QUIET / 5);
        loop {
            tokio::select! {
                path = changed.recv() => match path {
                    Some(path) if components.contains_key(&path) => {
                        let seen = stat(&path);
                        pending.insert(path, Pending { seen, since: Instant::now() });
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => {
                    for path in settled(&mut pending) {
                        for id in &components[&path] {
                            swap_if_new(&app, &swapper, id, &path).await;
                        }
                    }
                }
            }
        }
    });
    Ok(watcher)
}

/// Takes out of `pending` the files unchanged for [`QUIET`]; a file that
/// changed since it was last looked at starts its quiet period again.
fn settled(pending: &mut HashMap<PathBuf, Pending>) -> Vec<PathBuf> {
    let mut ready = Vec::new();
    for (path, p) in pending.iter_mut() {
        let now = stat(path);
        if now != p.seen {
            *p = Pending { seen: now, since: Instant::now() };
        } else if p.since.elapsed() >= QUIET && now.1.is_some() {
            ready.push(path.clone());
        }
    }
    for path in &ready {
        pending.remove(path);
    }
    ready
}

fn stat(path: &Path) -> (u64, Option<SystemTime>) {
    match std::fs::metadata(path) {
        Ok(m) => (m.len(), m.modified().ok()),
        Err(_) => (0, None),
    }
}

async fn swap_if_new(app: &App, swapper: &Swapper, id: &str, path: &Path) {
    let wasm = match tokio::fs::read(path).await {
        Ok(wasm) => wasm,
        Err(e) => return tracing::warn!(component = id, "cannot read the new build {}: {e}", path.display()),
    };
    if app.component(id).is_some_and(|c| c.version == content_hash(&wasm)) {
        return;
    }
    tracing::info!(component = id, "new build at {}, swapping", path.display());
    // The swapper logs the outcome; a refused build leaves the old serving.
    let _ = swapper.swap(id, wasm, None).await;
}
