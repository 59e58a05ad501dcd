//! What the host tells its operators about the requests it serves, besides
//! the metrics ([`crate::metrics`]): log lines, request ids and traces.
//!
//! - logs go to stderr as text (for people) or, with `--log-format json`
//!   (`BAZAAR_LOG_FORMAT=json`), as one JSON object a line (for log
//!   collectors); `BAZAAR_LOG` (or `RUST_LOG`) filters them;
//! - every HTTP request runs in a span carrying its request id, trace id,
//!   component, method and route ([`request`]), so every line written for
//!   it, the component's stdout and stderr included, carries them too;
//! - W3C `traceparent` is honoured and propagated ([`traceparent`]);
//! - with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`), request
//!   spans are exported to an OpenTelemetry collector ([`otlp`]); off by
//!   default.
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub mod otlp;
pub mod request;
pub mod traceparent;

pub use request::RequestContext;

/// The command line's say in logging and tracing (every subcommand's).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// How log lines are written to stderr: text, or json (one object a line).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, env = "BAZAAR_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// Export request spans to this OpenTelemetry collector (OTLP HTTP/protobuf,
    /// its base URL: `/v1/traces` is added). Off when not given.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Whether request spans are exported ([`init`] with an OTLP endpoint).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether request spans are exported: what is recorded on a span only
/// for the exporter (its ids from the OpenTelemetry layer, the response
/// status) is skipped otherwise, as the log never shows it.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] sends what is left.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Sets up logging (and tracing export, if asked) for the process. Call
/// once, within the tokio runtime.
pub fn init(args: &TelemetryArgs) -> Result<Telemetry> {
    let filter = EnvFilter::try_from_env("BAZAAR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime_cranelift=warn,cranelift=warn"));
    let provider = match args.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(endpoint) => Some(otlp::provider(endpoint)?),
        None => None,
    };
    match &provider {
        // The log is the only layer, so its filter is the subscriber's own:
        // a span or event it does not want is never built, and the spans it
        // does want skip the bookkeeping of a filter per layer (each span
        // noting which layers took it, checked again on every enter and
        // exit). Every request opens a span, so that showed in profiles of
        // the hello benchmark.
        None => tracing_subscriber::registry().with(filter).with(log_layer(args.log_format)).try_init()?,
        Some(provider) => {
            EXPORTING.store(true, Ordering::Relaxed);
            // Only the host's own spans and what is logged within them,
            // whatever BAZAAR_LOG says: the exporter's volume does not follow
            // the log's.
            let exported = Targets::new().with_target("bazaar", Level::INFO).with_target("component", Level::INFO);
            let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bazaar")).with_filter(exported);
            tracing_subscriber::registry().with(log_layer(args.log_format).with_filter(filter)).with(otel).try_init()?
        }
    }
    Ok(Telemetry { provider })
}

/// The log lines' layer, in the format asked for, over subscriber `S`.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    }
}

impl Telemetry {
    /// Exports the spans still buffered, then stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Blocks until the export thread is done, which needs the runtime.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}
