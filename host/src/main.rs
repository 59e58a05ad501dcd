//! The `bazaar` binary: parse the command line, set up logging, run.
use clap::Parser;

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
