//! The `bazaar` binary: parse the command line, set up logging, run.
use clap::Parser;

/// mimalloc instead of glibc's malloc: every request allocates a store,
/// resource tables, headers and SQLite's buffers on one thread and frees
/// some on another, where glibc's arenas spend much of their time
/// consolidating (15% of the shop's CPU under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
