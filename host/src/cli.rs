//! The `bazaar` command line, shaped like Spin's so a Spin user knows it:
//! `bazaar build` runs each component's build command; `bazaar up` serves
//! the app; `bazaar swap` replaces a component of a running app.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::admin::client::AdminClient;
use crate::admin::{self, Admin, token};
use crate::app::{App, LoadOptions};
use crate::bus::Bus;
use crate::engine::{EngineOptions, default_cache_dir};
use crate::manifest;
use crate::runtime_config::RuntimeConfig;
use crate::swap::Swapper;
use crate::trigger::admission::{Admission, Limit};
use crate::trigger::http::{HttpTrigger, bind};
use crate::trigger::redis::{MeteredPublisher, RedisTrigger, bus_addresses};

#[derive(Parser, Debug)]
#[command(name = "bazaar", version, about = "Run Spin apps on wasmtime: every request a fresh sandboxed instance")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
    /// Log format and trace export, for every subcommand.
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
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
    /// Replace a component of a running `bazaar up` with a new build, or roll
    /// it back, through the admin endpoint.
    Swap(SwapArgs),
    /// Rebuild a component when its sources change (its build.watch globs)
    /// and hot-swap it into a running `bazaar up`.
    Watch(AdminArgs),
}

#[derive(Args, Debug)]
pub struct SwapArgs {
    /// The component to replace, as spin.toml names it.
    pub component: String,
    /// The new build (a .wasm component); not with --rollback.
    #[arg(required_unless_present = "rollback", conflicts_with = "rollback")]
    pub file: Option<PathBuf>,
    /// Return to the version before the last swap instead.
    #[arg(long)]
    pub rollback: bool,
    /// Before switching, GET this path from the new build; a 5xx refuses the swap.
    #[arg(long = "smoke-path")]
    pub smoke_path: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// How to reach the admin endpoint of a running `bazaar up`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The admin endpoint of the running host.
    #[arg(long = "admin-url", default_value = "http://127.0.0.1:3001", env = "BAZAAR_ADMIN_URL")]
    pub admin_url: String,
    /// The admin token (default: the one `bazaar up` wrote to its state directory).
    #[arg(long = "admin-token", env = "BAZAAR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The manifest of the running app, to find its state directory.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub from: PathBuf,
    /// The state directory `bazaar up` was given.
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
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
    /// How components' SQLite databases and key-value stores (the `spin`
    /// kind) sync commits:
    /// normal (a commit survives a crash of bazaar; a power cut may undo the
    /// last ones) or full (every commit waits for the disk: ten times slower).
    #[arg(long, value_enum, default_value_t, env = "BAZAAR_SQLITE_SYNCHRONOUS")]
    pub sqlite_synchronous: crate::capabilities::sqlite::Synchronous,
    /// Largest linear memory one instance may use, in MiB.
    #[arg(long, default_value_t = 256, env = "BAZAAR_MAX_INSTANCE_MEMORY_MB")]
    pub max_instance_memory_mb: usize,
    /// How many instances may run at once.
    #[arg(long, default_value_t = 1000)]
    pub max_instances: u32,
    /// How many requests from the network are served at once; the others
    /// wait their turn, first come first served, up to the request timeout
    /// (then a 503). A number suits apps whose requests keep the CPU busy
    /// (about 2 per core); `auto` raises and lowers the limit as the host
    /// has CPU to spare or work queueing; `off`, the default, serves every
    /// request as it arrives, as Spin does.
    #[arg(long, default_value = "off", env = "BAZAAR_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Limit,
    /// Compile cache directory (default: the user cache dir).
    #[arg(long, env = "BAZAAR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time instead of using the compile cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Name the guests' compiled functions for `perf`: perfmap (a symbol
    /// map, /tmp/perf-<pid>.map) or jitdump (for `perf inject --jit`).
    #[arg(long, value_enum, default_value_t, env = "BAZAAR_PROFILER")]
    pub profiler: crate::engine::Profiler,
    /// Address of the admin endpoint (swap, health, metrics), or `off`.
    #[arg(long = "admin-listen", default_value = "127.0.0.1:3001", value_parser = parse_admin_listen, env = "BAZAAR_ADMIN_LISTEN")]
    pub admin_listen: AdminListen,
    /// Bearer token of the admin endpoint (default: a new random one, in <state-dir>/admin-token).
    #[arg(long = "admin-token", env = "BAZAAR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Hot-swap a component whenever its wasm file changes.
    #[arg(long)]
    pub watch: bool,
    /// Add `bazaar-served-by: <component>@<version>` to every response, naming
    /// the build that served it (off by default: it reveals which builds run).
    #[arg(long = "version-header")]
    pub version_header: bool,
    /// Add `server-timing: read;at=..., queue;dur=..., app;dur=...` to every
    /// response: when the request's head was read (microseconds since 1970),
    /// then the milliseconds it waited to be admitted and took to its head
    /// (off by default: it tells the world how loaded the host is).
    #[arg(long = "server-timing")]
    pub server_timing: bool,
}

/// Where the admin endpoint listens, if anywhere.
#[derive(Clone, Copy, Debug)]
pub enum AdminListen {
    Off,
    On(SocketAddr),
}

fn parse_admin_listen(value: &str) -> Result<AdminListen, String> {
    if value == "off" {
        return Ok(AdminListen::Off);
    }
    value.parse().map(AdminListen::On).map_err(|e| format!("{e}; give HOST:PORT, or off"))
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Commands::Build(args) => build(&manifest_path(&args.from)?, &args.components),
        Commands::Up(args) => up(args).await,
        Commands::Bus(command) => bus_command(command).await,
        Commands::Swap(args) => swap_command(args).await,
        Commands::Watch(args) => {
            let client = args.client()?;
            crate::rebuild::run(&manifest_path(&args.from)?, client, shutdown_signal()).await
        }
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
            profiler: args.profiler,
        },
        request_timeout: args.request_timeout,
        sqlite_synchronous: args.sqlite_synchronous,
    };
    let started = std::time::Instant::now();
    // Compiling is CPU-bound and may take seconds: keep it off the runtime.
    let app = tokio::task::spawn_blocking(move || App::load(&options)).await??;
    let app = Arc::new(app);
    let admission = Admission::new(args.max_concurrent_requests, args.request_timeout, &app.metrics);
    let trigger = HttpTrigger::new(app.clone(), admission)?;
    trigger.set_version_header(args.version_header);
    trigger.set_server_timing(args.server_timing);
    let redis_trigger = RedisTrigger::new(app.clone())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut subscribers = Vec::new();
    let mut bus = None;
    let addresses = bus_addresses(&app)?;
    if !addresses.is_empty() {
        let opened = Bus::open(&app.runtime_config.message_bus, &app.state_dir, addresses).await?;
        let publisher = MeteredPublisher { bus: opened.clone(), metrics: app.metrics.clone() };
        app.capabilities.redis.set_publish_interceptor(Arc::new(publisher));
        for sub in redis_trigger.subscriptions() {
            let at_once = match opened.config.in_flight_of(&sub.subscriber) {
                1 => String::new(),
                n => format!(", up to {n} messages at once"),
            };
            println!("Subscribed {} to channel {:?} on the {:?} bus{at_once}", sub.subscriber, sub.channel, opened.config.kind);
        }
        subscribers = redis_trigger.start(opened.clone(), stopped.clone());
        bus = Some(opened);
    }
    let swapper = Arc::new(Swapper::new(app.clone(), trigger.clone()));
    if let AdminListen::On(admin_addr) = args.admin_listen {
        let listener = admin::bind(admin_addr).await?;
        let admin = Arc::new(Admin {
            app: app.clone(),
            swapper: swapper.clone(),
            bus,
            subscriptions: redis_trigger.subscriptions().to_vec(),
            token: token::resolve(args.admin_token, &app.state_dir)?,
        });
        println!("Admin endpoint http://{}", listener.local_addr()?);
        let mut stopped = stopped.clone();
        tokio::spawn(admin.serve(listener, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    // Dropping the watcher stops it: keep it until the host stops.
    let _watcher = if args.watch { Some(crate::watch::start(app.clone(), swapper)?) } else { None };
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

impl AdminArgs {
    /// A client with the given token, or the one `bazaar up` wrote to its
    /// state directory.
    fn client(&self) -> Result<AdminClient> {
        let token = match self.admin_token.as_ref().filter(|t| !t.is_empty()) {
            Some(token) => token.clone(),
            None => {
                let state_dir = match &self.state_dir {
                    Some(dir) => dir.clone(),
                    None => manifest_path(&self.from)?.parent().expect("a file has a parent").join(".bazaar"),
                };
                token::read(&state_dir)?
            }
        };
        Ok(AdminClient { base: self.admin_url.clone(), token })
    }
}

/// `bazaar swap`: one request to the admin endpoint of a running host.
async fn swap_command(args: SwapArgs) -> Result<()> {
    let client = args.admin.client()?;
    let id: String = url::form_urlencoded::byte_serialize(args.component.as_bytes()).collect();
    let answer = match &args.file {
        Some(file) if !args.rollback => {
            let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let mut path = format!("/admin/components/{id}/swap");
            if let Some(smoke) = &args.smoke_path {
                let query: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("smoke_path", smoke).finish();
                path = format!("{path}?{query}");
            }
            client.send(http::Method::POST, &path, Some(wasm)).await?
        }
        _ => client.send(http::Method::POST, &format!("/admin/components/{id}/rollback"), None).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
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
