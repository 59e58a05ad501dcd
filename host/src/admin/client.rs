//! The client side of the admin endpoint, for `bazaar swap`: one request,
//! its JSON answer printed, a refusal turned into an error that says why.
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where a running host's admin endpoint is and how to get in.
pub struct AdminClient {
    pub base: String,
    pub token: String,
}

impl AdminClient {
    /// Sends `body` (if any) to `path` and returns the JSON answer; a non-2xx
    /// answer is an error carrying the host's message.
    pub async fn send(&self, method: Method, path_and_query: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let url = format!("{}{path_and_query}", self.base.trim_end_matches('/'));
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.token));
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/wasm");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(request).await.with_context(|| {
            format!("cannot reach the admin endpoint at {url}; is `bazaar up` running? pass --admin-url if it listens elsewhere (--admin-listen)")
        })?;
        let status = response.status();
        let body = response.into_body().collect().await.context("reading the admin endpoint's answer")?.to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        if !status.is_success() {
            let message = value["error"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            bail!("{message} ({status})");
        }
        Ok(value)
    }
}
