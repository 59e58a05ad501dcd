//! `bazaar watch`: rebuilds a component when its sources change and
//! hot-swaps the new build into a running `bazaar up`, through its admin
//! endpoint.
//!
//! Unlike `spin watch`, which restarts the whole app, only the component
//! whose sources changed is rebuilt and replaced; the others keep serving,
//! and so does the changed one until its new build is in. Which files are
//! its sources is what Spin says: the `[component.X.build] watch` globs,
//! relative to the build's workdir (the manifest's directory without one).
//! Changes come in bursts (an editor saves, a formatter runs), so a build
//! starts once the sources have been quiet for [`QUIET`].
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify::{RecursiveMode, Watcher};

use crate::admin::client::AdminClient;
use crate::manifest::{self, Manifest};

/// How long sources must stay unchanged before a rebuild starts.
const QUIET: Duration = Duration::from_millis(300);

/// What to watch for one component.
struct Sources {
    id: String,
    patterns: Vec<glob::Pattern>,
}

/// Watches until interrupted; a failed build or a refused swap is reported
/// and watching goes on.
pub async fn run(manifest_file: &Path, admin: AdminClient, shutdown: impl Future<Output = ()>) -> Result<()> {
    let manifest = manifest::load(manifest_file)?;
    let (sources, roots) = sources(&manifest)?;
    let (events, mut changed) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event.map(|e| e.paths) {
            for path in event {
                let _ = events.send(path);
            }
        }
    })
    .context("starting the file watcher")?;
    for root in &roots {
        watcher.watch(root, RecursiveMode::Recursive).with_context(|| format!("watching {}", root.display()))?;
    }
    for s in &sources {
        let globs: Vec<&str> = s.patterns.iter().map(glob::Pattern::as_str).collect();
        println!("Watching {}: {}", s.id, globs.join(", "));
    }

    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(QUIET / 3);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            path = changed.recv() => {
                let Some(path) = path else { return Ok(()) };
                for s in sources.iter().filter(|s| s.patterns.iter().any(|p| p.matches_path(&path))) {
                    pending.insert(s.id.clone(), Instant::now());
                }
            }
            _ = tick.tick() => {
                let ready: Vec<String> = pending.iter().filter(|(_, at)| at.elapsed() >= QUIET).map(|(id, _)| id.clone()).collect();
                for id in ready {
                    pending.remove(&id);
                    if let Err(e) = rebuild_and_swap(&manifest, &id, &admin).await {
                        eprintln!("{id}: {e:#}");
                    }
                }
            }
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// The globs of every component that has some, and the directories to watch
/// for them (each glob's literal prefix).
fn sources(manifest: &Manifest) -> Result<(Vec<Sources>, Vec<PathBuf>)> {
    let mut sources = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    for (id, component) in &manifest.components {
        let Some(build) = component.build.as_ref().filter(|b| !b.watch.is_empty()) else {
            continue;
        };
        let base = build.workdir.clone().unwrap_or_else(|| manifest.dir.clone());
        let mut patterns = Vec::new();
        for glob in &build.watch {
            let full = normalize(&base.join(glob));
            let pattern = glob::Pattern::new(&full.to_string_lossy())
                .with_context(|| format!("{}: [component.{id}.build] watch glob {glob:?}", manifest.file.display()))?;
            patterns.push(pattern);
            let root = literal_prefix(&full);
            if root.is_dir() && !roots.iter().any(|r| root.starts_with(r)) {
                roots.retain(|r| !r.starts_with(&root));
                roots.push(root);
            }
        }
        sources.push(Sources { id: id.clone(), patterns });
    }
    if sources.is_empty() {
        bail!(
            "{}: no component has watch globs; add watch = [\"src/**/*.rs\"] to a [component.X.build] section",
            manifest.file.display()
        );
    }
    Ok((sources, roots))
}

/// `a/x/../b` as `a/b`, without touching the file system: watch events
/// name files by such plain paths, so globs must too.
fn normalize(path: &Path) -> PathBuf {
    let mut plain = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                plain.pop();
            }
            Component::CurDir => {}
            other => plain.push(other),
        }
    }
    plain
}

/// The directories of a (normalised) glob before its first wildcard.
fn literal_prefix(glob: &Path) -> PathBuf {
    let mut prefix = PathBuf::new();
    for part in glob.components() {
        if part.as_os_str().to_string_lossy().contains(['*', '?', '[', '{']) {
            break;
        }
        prefix.push(part);
    }
    // A glob naming one file: watch its directory.
    if prefix.is_file() {
        prefix.pop();
    }
    prefix
}

/// Runs component `id`'s build, then swaps its new wasm into every component
/// built from it.
async fn rebuild_and_swap(manifest: &Manifest, id: &str, admin: &AdminClient) -> Result<()> {
    println!("{id}: sources changed, rebuilding");
    let file = manifest.file.clone();
    let only = vec![id.to_string()];
    tokio::task::spawn_blocking(move || crate::cli::build(&file, &only)).await??;
    let source = &manifest.components[id].source;
    let wasm = std::fs::read(source).with_context(|| format!("reading the new build {}", source.display()))?;
    for (other, component) in &manifest.components {
        if &component.source != source {
            continue;
        }
        let answer = admin.send(http::Method::POST, &format!("/admin/components/{other}/swap"), Some(wasm.clone())).await?;
        println!("{other}: swapped to {} in {} ms", answer["version"].as_str().unwrap_or("?"), answer["compile_ms"]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_at_the_first_wildcard() {
        assert_eq!(literal_prefix(Path::new("/app/components/x/src/**/*.rs")), Path::new("/app/components/x/src"));
        let glob = normalize(Path::new("/app/tests/./../components/y/*.rs"));
        assert_eq!(glob, Path::new("/app/components/y/*.rs"));
        assert_eq!(literal_prefix(&glob), Path::new("/app/components/y"));
    }
}
