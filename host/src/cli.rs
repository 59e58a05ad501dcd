//! The `bazaar` command line, shaped like Spin's so a Spin user knows it:
//! `bazaar build` runs each component's build command; `bazaar up` serves
//! the app.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{App, LoadOptions};
use crate::bus::Bus;
use crate::runtime_config::RuntimeConfig;
use crate::trigger::redis::{RedisTrigger, bus_addresses};
use crate::engine::{EngineOptions, default_cache_dir};
use crate::manifest;
use crate::trigger::http::{HttpTrigger, bind};

#[derive(Parser, Debug)]
#[command(name = "bazaar", version, about = "Run Spin apps on wasmtime: every request a fresh sandboxed instance")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Build every component (each [component.X.build] command), like `spin build`.
    Build(BuildArgs),
    /// Serve the app, like `spin up`.
    Up(UpArgs),
    /// Inspect and operate the app's message bus.
    #[command(subcommand)]
    Bus(BusCommand),
}

#[derive(Subcommand, Debug)]
pub enum BusCommand {
    /// List the messages a subscriber failed for good, as JSON lines.
    DeadLetters(BusArgs),
    /// Deliver a dead letter again to the subscriber that failed it.
    Replay {
        #[command(flatten)]
        args: BusArgs,
        /// The dead letter's id, as `dead-letters` shows it.
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct BusArgs {
    /// The manifest (spin.toml) or the directory holding it.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub from: PathBuf,
    /// The runtime config `bazaar up` was given.
    #[arg(long = "runtime-config-file", env = "BAZAAR_RUNTIME_CONFIG")]
    pub runtime_config_file: Option<PathBuf>,
    /// The state directory `bazaar up` was given.
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The manifest (spin.toml) or the directory holding it.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub from: PathBuf,
    /// Build only these components.
    #[arg(short = 'c', long = "component-id")]
    pub components: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The manifest (spin.toml) or the directory holding it.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub from: PathBuf,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "BAZAAR_LISTEN")]
    pub listen: SocketAddr,
    /// Where stores and databases live, in Spin's runtime config format.
    #[arg(long = "runtime-config-file", env = "BAZAAR_RUNTIME_CONFIG")]
    pub runtime_config_file: Option<PathBuf>,
    /// Directory for the app's state (default: .bazaar next to the manifest).
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Run `bazaar build` first.
    #[arg(long)]
    pub build: bool,
    /// Longest a request may run before its instance is stopped (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "BAZAAR_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,
    /// Largest linear memory one instance may use, in MiB.
    #[arg(long, default_value_t = 256, env = "BAZAAR_MAX_INSTANCE_MEMORY_MB")]
    pub max_instance_memory_mb: usize,
    /// How many instances may run at once.
    #[arg(long, default_value_t = 1000)]
    pub max_instances: u32,
    /// Compile cache directory (default: the user cache dir).
    #[arg(long, env = "BAZAAR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Commands::Build(args) => build(&manifest_path(&args.from)?, &args.components),
        Commands::Up(args) => up(args).await,
        Commands::Bus(command) => bus_command(command).await,
    }
}

/// `--from` may name the manifest or the directory that holds spin.toml.
fn manifest_path(from: &Path) -> Result<PathBuf> {
    let path = if from.is_dir() { from.join("spin.toml") } else { from.to_path_buf() };
    if !path.is_file() {
        bail!("no manifest at {}; pass --from PATH to a spin.toml or its directory", path.display());
    }
    Ok(std::path::absolute(&path)?)
}

/// Runs each component's build command in its workdir, stopping at the
/// first failure.
pub fn build(manifest_file: &Path, only: &[String]) -> Result<()> {
    let manifest = manifest::load(manifest_file)?;
    for id in only {
        if !manifest.components.contains_key(id) {
            bail!("{}: there is no [component.{id}] to build", manifest.file.display());
        }
    }
    for (id, component) in &manifest.components {
        if !only.is_empty() && !only.contains(id) {
            continue;
        }
        let Some(build) = &component.build else {
            println!("{id}: no build command, skipped");
            continue;
        };
        let workdir = build.workdir.clone().unwrap_or_else(|| manifest.dir.clone());
        for command in &build.commands {
            println!("Building component {id} with `{command}`");
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .status()
                .with_context(|| format!("running the build command of component {id} in {}", workdir.display()))?;
            if !status.success() {
                bail!(
                    "{}: the build command of [component.{id}] failed ({status}); fix the error above and run `bazaar build` again",
                    manifest.file.display()
                );
            }
        }
    }
    println!("Finished building all Spin components");
    Ok(())
}

async fn up(args: UpArgs) -> Result<()> {
    let manifest_file = manifest_path(&args.from)?;
    if args.build {
        build(&manifest_file, &[])?;
    }
    let options = LoadOptions {
        manifest_file,
        runtime_config_file: args.runtime_config_file.map(std::path::absolute).transpose()?,
        state_dir: args.state_dir.map(std::path::absolute).transpose()?,
        engine: EngineOptions {
            max_instance_memory: args.max_instance_memory_mb << 20,
            max_instances: args.max_instances,
            cache_dir: if args.no_cache { None } else { args.cache_dir.or_else(default_cache_dir) },
        },
        request_timeout: args.request_timeout,
    };
    let started = std::time::Instant::now();
    // Compiling is CPU-bound and may take seconds: keep it off the runtime.
    let app = tokio::task::spawn_blocking(move || App::load(&options)).await??;
    let app = Arc::new(app);
    let trigger = HttpTrigger::new(app.clone())?;
    let redis_trigger = RedisTrigger::new(app.clone())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut subscribers = Vec::new();
    let addresses = bus_addresses(&app)?;
    if !addresses.is_empty() {
        let bus = Bus::open(&app.runtime_config.message_bus, &app.state_dir, addresses).await?;
        app.capabilities.redis.set_publish_interceptor(bus.clone());
        for sub in redis_trigger.subscriptions() {
            println!("Subscribed {} to channel {:?} on the {:?} bus", sub.subscriber, sub.channel, bus.config.kind);
        }
        subscribers = redis_trigger.start(bus, stopped);
    }
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("Serving http://{addr}");
    println!("Available Routes:");
    for (component, route) in trigger.public_routes() {
        println!("  {component}: http://{addr}{route}");
    }
    tracing::info!("ready in {:?}", started.elapsed());
    trigger.serve(listener, shutdown_signal()).await?;
    // Subscribers finish the message in hand; the rest stays on the bus.
    let _ = stop.send(true);
    for subscriber in subscribers {
        let _ = subscriber.await;
    }
    Ok(())
}

/// `bazaar bus ...`: opens the app's bus as `bazaar up` would, without
/// loading any component.
async fn bus_command(command: BusCommand) -> Result<()> {
    let args = match &command {
        BusCommand::DeadLetters(args) | BusCommand::Replay { args, .. } => args,
    };
    let manifest = manifest::load(&manifest_path(&args.from)?)?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| manifest.dir.join(".bazaar"));
    let runtime_config = RuntimeConfig::load(args.runtime_config_file.as_deref(), &manifest.dir, &state_dir)?;
    let bus = Bus::open(&runtime_config.message_bus, &state_dir, Vec::new()).await?;
    match command {
        BusCommand::DeadLetters(_) => {
            for dead in bus.backend().dead_letters().await? {
                println!("{}", serde_json::to_string(&dead)?);
            }
        }
        BusCommand::Replay { id, .. } => {
            bus.backend().replay(&id).await?;
            println!("dead letter {id} queued for redelivery");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
