//! Optional export of request spans to an OpenTelemetry collector, over
//! OTLP's HTTP/protobuf protocol (`POST <endpoint>/v1/traces`).
//!
//! Off unless `--otlp-endpoint URL` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is
//! given. The exporter runs on the SDK's batch processor (spans are sent in
//! batches every `OTEL_BSP_SCHEDULE_DELAY` ms, 5000 by default, and when the
//! host stops), so a request never waits for the collector, and a collector
//! that is down costs dropped spans, not failed requests.
//!
//! The HTTP client is hyper's, already in the host, rather than a second
//! HTTP stack: so the endpoint is plain `http://` (a collector on the same
//! host or a sidecar, as is usual). The batch processor exports from a
//! thread of its own, outside the tokio runtime hyper needs, so each export
//! is handed to the runtime ([`OnRuntime`]).
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// How long one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The path OTLP/HTTP receives traces on, under the collector's base URL.
const TRACES_PATH: &str = "/v1/traces";

/// A tracer provider exporting to the collector at `endpoint` (its base
/// URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it). Must be called within
/// the tokio runtime, which then carries the exports.
pub fn provider(endpoint: &str) -> Result<SdkTracerProvider> {
    let url = traces_url(endpoint)?;
    let client = OnRuntime {
        client: HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
        runtime: tokio::runtime::Handle::try_current().context("the OTLP exporter needs the tokio runtime")?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(client)
        .build()
        .with_context(|| format!("setting up the OTLP exporter to {url}"))?;
    let mut resource = Resource::builder();
    // OTEL_SERVICE_NAME, when set, names the service; "bazaar" otherwise.
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("bazaar");
    }
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

/// `<endpoint>/v1/traces`, checking that the endpoint is one we can reach.
fn traces_url(endpoint: &str) -> Result<String> {
    let parsed = url::Url::parse(endpoint).with_context(|| {
        format!("--otlp-endpoint / OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?} is not a URL; give the collector's base URL, e.g. http://127.0.0.1:4318")
    })?;
    if parsed.scheme() != "http" {
        bail!(
            "--otlp-endpoint / OTEL_EXPORTER_OTLP_ENDPOINT {endpoint:?}: bazaar exports OTLP over plain http:// \
             (a collector on this host or a sidecar); give http://HOST:PORT"
        );
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with(TRACES_PATH) { base.to_string() } else { format!("{base}{TRACES_PATH}") })
}

/// Runs each export on the tokio runtime, whatever thread asks for it.
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime.spawn(async move { client.send_bytes(request).await }).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://127.0.0.1:4318").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces").unwrap(), "http://c:4318/v1/traces");
        assert!(traces_url("https://collector:4318").unwrap_err().to_string().contains("plain http://"));
        assert!(traces_url("collector:4318").is_err());
    }
}
