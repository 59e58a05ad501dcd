//! The `bazaar` binary: parse the command line, set up logging, run.
use clap::Parser;

/// mimalloc instead of glibc's malloc: every request allocates a store,
/// resource tables and headers on one thread and frees some on another,
/// where glibc's arenas spend their time consolidating. Measured A/B, same
/// minute, hello at 16 connections: 10.6k req/s with glibc, 11.8k with
/// mimalloc. (SQLite, compiled C, still uses glibc's.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Errors of libraries (wasmtime's, anyhow's) capture a backtrace when
    // RUST_BACKTRACE is set, and wasmtime makes one as it drops every
    // store: with RUST_BACKTRACE=1 in a developer's shell, unwinding the
    // stack took 7% of a hello request. Panics keep their backtraces;
    // RUST_LIB_BACKTRACE=1 brings the errors' back.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet (the runtime starts below).
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = bazaar::cli::Cli::parse();
    let telemetry = match bazaar::telemetry::init(&cli.telemetry) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = bazaar::cli::run(cli).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
