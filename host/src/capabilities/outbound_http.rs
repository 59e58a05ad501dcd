//! Outbound HTTP (`wasi:http/outgoing-handler`) and service chaining.
//!
//! wasmtime-wasi-http implements the interface; this capability decides
//! where each request may go, through its `send_request` hook:
//! - the destination must match the component's `allowed_outbound_hosts`
//!   (see [`AllowedHosts`]); anything else fails with `HttpRequestDenied`
//!   and a warning in the host log naming the component and the URL;
//! - `http://<component-id>.spin.internal/...` is service chaining: the
//!   request is handed to that component inside this process, without a
//!   socket, private components included;
//! - `http://self.alt/...` is routed through the app's own routes, in
//!   process, when `http://self` or `http://self.alt` is allowed;
//! - everything else goes out over the network with wasmtime-wasi-http's
//!   default client.
//!
//! Every request that is let through carries the W3C `traceparent` of the
//! request the instance serves (same trace, this request's span as the
//! parent) unless the component set one itself; chained and `self.alt`
//! requests also carry its `x-request-id` (see [`crate::telemetry::request`]).
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use anyhow::{Result, anyhow};
use futures::FutureExt;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::allowed_hosts::{AllowedHosts, CHAINING_SUFFIX, Destination};
use super::variables::Variables;
use crate::manifest::Manifest;
use crate::telemetry::RequestContext;

/// The host name that addresses the app itself.
pub const SELF_HOST: &str = "self.alt";

/// Who serves a request that never leaves the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainTarget {
    /// `<id>.spin.internal`: that component, whatever its route.
    Component(String),
    /// `self.alt`: whichever component the app's routes pick.
    App,
}

pub type ChainFuture = Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send>>;

/// Implemented by the HTTP trigger: serves a chained request in process.
pub trait InProcessHandler: Send + Sync {
    fn handle_in_process(&self, caller: &str, target: ChainTarget, request: http::Request<WasiBody>) -> ChainFuture;
}

/// App-wide: every component's parsed allow-list.
pub struct OutboundHttp {
    allowed: HashMap<String, Arc<AllowedHosts>>,
    /// Set by the HTTP trigger once it exists (it owns the app, so this
    /// link is weak to avoid a cycle).
    in_process: OnceLock<Weak<dyn InProcessHandler>>,
}

impl OutboundHttp {
    pub fn new(manifest: &Manifest, variables: &Variables) -> Result<Self> {
        let mut allowed = HashMap::new();
        for (id, component) in &manifest.components {
            let hosts = AllowedHosts::parse(&component.allowed_outbound_hosts, |name| {
                variables.app_value(name).map(str::to_string)
            })
            .map_err(|e| anyhow!("{}: [component.{id}] {e}", manifest.file.display()))?;
            allowed.insert(id.clone(), Arc::new(hosts));
        }
        Ok(Self { allowed, in_process: OnceLock::new() })
    }

    /// Connects chaining to the trigger that serves in-process requests.
    pub fn set_in_process_handler(&self, handler: Weak<dyn InProcessHandler>) {
        let _ = self.in_process.set(handler);
    }

    /// The allow-list of a component (empty for unknown ids).
    pub fn allowed_hosts(&self, component_id: &str) -> Arc<AllowedHosts> {
        self.allowed.get(component_id).cloned().unwrap_or_default()
    }

    pub fn instance(self: &Arc<Self>, component_id: &str) -> OutboundHttpInstance {
        OutboundHttpInstance {
            component_id: component_id.into(),
            allowed: self.allowed_hosts(component_id),
            in_process: self.in_process.get().and_then(Weak::upgrade),
            request: None,
        }
    }
}

/// Per instance: the hooks wasmtime-wasi-http calls for each request.
pub struct OutboundHttpInstance {
    component_id: Arc<str>,
    allowed: Arc<AllowedHosts>,
    in_process: Option<Arc<dyn InProcessHandler>>,
    /// The request the instance serves, whose trace its requests continue.
    request: Option<Arc<RequestContext>>,
}

/// Where one outgoing request goes, once checked.
#[derive(Debug, PartialEq)]
enum Route {
    Network,
    InProcess(ChainTarget),
    Denied(String),
}

impl OutboundHttpInstance {
    pub fn set_request(&mut self, request: Arc<RequestContext>) {
        self.request = Some(request);
    }

    /// Adds the trace (and, in process, the request id) to `request`.
    fn propagate(&self, request: &mut http::Request<WasiBody>, in_process: bool) {
        if let Some(ctx) = &self.request {
            ctx.propagate(request.headers_mut(), in_process);
        }
    }

    fn decide(&self, uri: &http::Uri) -> Route {
        let scheme = uri.scheme_str().unwrap_or("http");
        let Some(host) = uri.host() else {
            return Route::Denied(format!("{uri} has no host"));
        };
        let host = host.to_ascii_lowercase();
        let dest = Destination { scheme, host: &host, port: uri.port_u16() };
        if host == SELF_HOST {
            return if self.allowed.allows_self() {
                Route::InProcess(ChainTarget::App)
            } else {
                Route::Denied(format!("{uri}: add \"http://self\" to allowed_outbound_hosts to call the app itself"))
            };
        }
        if !self.allowed.allows(&dest) {
            return Route::Denied(format!("{uri} is not in allowed_outbound_hosts"));
        }
        match host.strip_suffix(CHAINING_SUFFIX) {
            Some(id) => Route::InProcess(ChainTarget::Component(id.to_string())),
            None => Route::Network,
        }
    }
}

type SendResult = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>;

impl WasiHttpHooks for OutboundHttpInstance {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        match self.decide(request.uri()) {
            Route::Denied(why) => {
                tracing::warn!(component = %self.component_id, "outbound request denied: {why}");
                Box::new(async { Err(HttpError::HttpRequestDenied) })
            }
            Route::InProcess(target) => {
                self.propagate(&mut request, true);
                let Some(handler) = self.in_process.clone() else {
                    return Box::new(async { Err(HttpError::DestinationUnavailable) });
                };
                let caller = self.component_id.clone();
                Box::new(async move {
                    let response = handler.handle_in_process(&caller, target, request).await?;
                    let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
                    Ok((response, done))
                })
            }
            Route::Network => {
                self.propagate(&mut request, false);
                Box::new(
                async move {
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(io);
                    Ok((response.map(BodyExt::boxed_unsync), io))
                }
                .boxed(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(entries: &[&str]) -> OutboundHttpInstance {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        OutboundHttpInstance {
            component_id: "caller".into(),
            allowed: Arc::new(AllowedHosts::parse(&entries, |_| None).unwrap()),
            in_process: None,
            request: None,
        }
    }

    fn decide(entries: &[&str], uri: &str) -> Route {
        instance(entries).decide(&uri.parse().unwrap())
    }

    #[test]
    fn network_requests_need_a_matching_entry() {
        assert_eq!(decide(&["http://127.0.0.1:8080"], "http://127.0.0.1:8080/x"), Route::Network);
        assert!(matches!(decide(&["http://127.0.0.1:8080"], "http://127.0.0.1:8081/x"), Route::Denied(_)));
        assert!(matches!(decide(&[], "https://example.com/"), Route::Denied(_)));
    }

    #[test]
    fn chaining_needs_its_own_entry() {
        assert_eq!(
            decide(&["http://backend.spin.internal"], "http://backend.spin.internal/a"),
            Route::InProcess(ChainTarget::Component("backend".into()))
        );
        assert!(matches!(decide(&["http://*:*"], "http://127.0.0.1/"), Route::Network));
        assert!(matches!(decide(&["http://other.spin.internal"], "http://backend.spin.internal/a"), Route::Denied(_)));
    }

    #[test]
    fn self_requests_need_self() {
        assert_eq!(decide(&["http://self"], "http://self.alt/x"), Route::InProcess(ChainTarget::App));
        assert!(matches!(decide(&["http://*.spin.internal"], "http://self.alt/x"), Route::Denied(_)));
    }
}
