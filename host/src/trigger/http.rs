//! The HTTP trigger: a hyper server that routes each request to a fresh
//! instance of the component whose route matches, as `spin up` does.
//!
//! Per request: match the route (404 if none), add the `spin-*` headers,
//! create a store with its deadline, instantiate from the component's
//! `InstancePre`, call `wasi:http/incoming-handler.handle`, and stream the
//! response back. Bodies are streamed both ways; nothing is buffered whole.
//! A component that traps, times out or never answers costs only its own
//! request: the client gets a 500 and the host keeps serving.
//!
//! The same path serves chained requests (`<id>.spin.internal`) in process,
//! through [`InProcessHandler`].
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpView};

use super::admission::{Admission, Shed};
use super::cut_short::{CutShort, Failed};
use super::unread_body::DrainedWhenDropped;
use super::{served_by, server_timing, spin_headers};
use crate::app::{App, LoadedComponent};
use crate::capabilities::outbound_http::{ChainFuture, ChainTarget, InProcessHandler};
use crate::manifest::HttpRoute;
use crate::metrics::{ComponentLabels, FailureLabels, InFlight, RequestLabels, RouteLabels};
use crate::routing::{RouteMatch, Router};
use crate::telemetry::RequestContext;
use crate::telemetry::request::REQUEST_ID_HEADER;

/// Spin's reserved endpoints, answered by the host itself.
pub const HEALTH_PATH: &str = "/.well-known/spin/health";
pub const INFO_PATH: &str = "/.well-known/spin/info";

/// How long in-flight requests may take to finish after SIGINT/SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct HttpTrigger {
    app: Arc<App>,
    router: Router,
    base: String,
    this: Weak<HttpTrigger>,
    /// `bazaar up --version-header`: see [`served_by`].
    version_header: AtomicBool,
    /// `bazaar up --server-timing`: see [`server_timing`].
    server_timing: AtomicBool,
    /// How many requests from the network are served at once.
    admission: Admission,
}

/// Why a request produced no response from its component.
#[derive(Debug)]
enum Failure {
    Busy(String),
    Trap(String),
    Timeout,
}

impl HttpTrigger {
    pub fn new(app: Arc<App>, admission: Admission) -> Result<Arc<Self>> {
        let manifest = &app.manifest;
        let routes: Vec<(String, String)> = manifest
            .http_triggers
            .iter()
            .filter_map(|t| match &t.route {
                HttpRoute::Route(route) => Some((route.clone(), t.component.clone())),
                HttpRoute::Private => None,
            })
            .collect();
        let base = manifest.application.http_base.clone();
        let router = Router::build(&base, &routes).map_err(|e| anyhow::anyhow!("{}: {e}", manifest.file.display()))?;
        for (route, component) in router.reserved_routes() {
            tracing::warn!(
                component,
                "route {route:?} is under /.well-known/spin/, which the host answers itself; requests there never reach the component"
            );
        }
        for trigger in &manifest.http_triggers {
            let served = app.component(&trigger.component).is_some_and(|c| c.http.is_some());
            if !served {
                anyhow::bail!(
                    "{}: component {:?} is used by [[trigger.http]] but does not export wasi:http/incoming-handler; build it with spin-sdk's #[http_component]",
                    manifest.file.display(),
                    trigger.component
                );
            }
        }
        let trigger = Arc::new_cyclic(|this| HttpTrigger {
            app,
            router,
            base,
            this: this.clone(),
            version_header: AtomicBool::new(false),
            server_timing: AtomicBool::new(false),
            admission,
        });
        let handler: Weak<dyn InProcessHandler> = trigger.this.clone();
        trigger.app.capabilities.outbound_http.set_in_process_handler(handler);
        Ok(trigger)
    }

    /// Whether responses name the component version that served them.
    pub fn set_version_header(&self, on: bool) {
        self.version_header.store(on, Ordering::Relaxed);
    }

    /// Whether responses say when they were read, how long they waited to
    /// be admitted and how long they ran.
    pub fn set_server_timing(&self, on: bool) {
        self.server_timing.store(on, Ordering::Relaxed);
    }

    /// The routes users can reach, for the start-up banner: (component, route).
    pub fn public_routes(&self) -> Vec<(String, String)> {
        self.app
            .manifest
            .http_triggers
            .iter()
            .filter_map(|t| match &t.route {
                HttpRoute::Route(r) => Some((t.component.clone(), r.clone())),
                HttpRoute::Private => None,
            })
            .collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits up to
    /// [`DRAIN_TIMEOUT`] for in-flight requests to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            // A response goes out as soon as hyper writes it, not held back
            // by Nagle's algorithm until the client acknowledges the last
            // segment (which it may delay by 40 ms): with instances run in
            // their request's task, one request in a hundred waited that
            // long at one connection.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%client, "cannot set TCP_NODELAY: {e}");
            }
            let trigger = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let trigger = trigger.clone();
                async move { Ok::<_, Infallible>(trigger.handle(req, client).await) }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%client, "connection closed: {e}");
                }
            });
        }
        drop(listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; exiting anyway");
        }
        Ok(())
    }

    /// Handles one request from the network.
    async fn handle(&self, req: Request<Incoming>, client: SocketAddr) -> Response<HyperOutgoingBody> {
        // hyper calls this once it has read the request's head.
        let read_at = self.server_timing.load(Ordering::Relaxed).then(SystemTime::now);
        let path = req.uri().path().to_string();
        match path.as_str() {
            HEALTH_PATH => return text(StatusCode::OK, "OK"),
            INFO_PATH => return self.info(),
            _ => {}
        }
        let Some(route) = self.router.route(&path) else {
            return text(StatusCode::NOT_FOUND, &format!("no route matches {path}\n"));
        };
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let full_url = format!("http://{host}{}", req.uri().path_and_query().map_or("/", |p| p.as_str()));
        let component_id = route.component_id.to_string();
        // Held until the response head (see [`admission`]).
        let admitted = match self.admission.admit().await {
            Ok(admitted) => admitted,
            Err(shed) => return busy(&shed),
        };
        let timed_from = read_at.map(|read_at| (read_at, Instant::now()));
        let req = req.map(DrainedWhenDropped::new);
        let mut response = self.dispatch(&component_id, req, &full_url, &route, &client.to_string()).await;
        if let Some((read_at, from)) = timed_from {
            server_timing::append(&mut response, read_at, admitted.waited, from.elapsed());
        }
        tracing::debug!(component = %component_id, %path, status = response.status().as_u16(), "request");
        response
    }

    /// Runs `component_id` on `req` within the request's span (its request
    /// id and trace: see [`crate::telemetry::request`]), which the
    /// instance gets through the request's extensions.
    async fn dispatch<B>(
        &self,
        component_id: &str,
        mut req: Request<B>,
        full_url: &str,
        route: &RouteMatch<'_>,
        client_addr: &str,
    ) -> Response<HyperOutgoingBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpError>,
    {
        let method = req.method().to_string();
        let (request, span) = RequestContext::begin(req.headers_mut(), component_id, &method, route.raw_route);
        req.extensions_mut().insert(request.clone());
        let mut response = self.dispatch_in_span(component_id, req, full_url, route, client_addr).instrument(span.clone()).await;
        // For the exporter: the log writes nothing in the span after this.
        if crate::telemetry::exporting() {
            span.record("status", response.status().as_u16());
        }
        if !response.headers().contains_key(REQUEST_ID_HEADER)
            && let Ok(id) = http::HeaderValue::from_str(&request.request_id)
        {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        }
        response
    }

    /// Runs `component_id` on `req`, turning every failure into a response.
    async fn dispatch_in_span<B>(
        &self,
        component_id: &str,
        mut req: Request<B>,
        full_url: &str,
        route: &RouteMatch<'_>,
        client_addr: &str,
    ) -> Response<HyperOutgoingBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpError>,
    {
        // The version current now serves the whole request, whatever swaps
        // happen meanwhile.
        let Some(component) = self.app.component(component_id) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("component {component_id} is not loaded\n"));
        };
        component.requests.fetch_add(1, Ordering::Relaxed);
        let metrics = &self.app.metrics;
        let _in_flight = InFlight::start(metrics, component_id);
        let started = Instant::now();
        spin_headers::apply(req.headers_mut(), full_url, &self.base, route, client_addr);
        let result = self.execute(&component, req).await;
        if let Err(failure) = &result {
            let kind = match failure {
                Failure::Busy(_) => "busy",
                Failure::Trap(_) => "trap",
                Failure::Timeout => "timeout",
            };
            metrics.failures.get_or_create(&FailureLabels { component: component_id.into(), kind }).inc();
        }
        let mut response = self.failure_response(component_id, result);
        if self.version_header.load(Ordering::Relaxed) {
            served_by::append(&mut response, &component);
        }
        let route = route.raw_route.to_string();
        metrics
            .request_duration
            .get_or_create(&RouteLabels { component: component_id.into(), route: route.clone() })
            .observe(started.elapsed().as_secs_f64());
        let status = response.status().as_u16();
        metrics.requests.get_or_create(&RequestLabels { component: component_id.into(), route, status }).inc();
        response
    }

    /// The response for a request's outcome: the component's, or one from
    /// the host saying what went wrong.
    fn failure_response(
        &self,
        component_id: &str,
        result: Result<Response<HyperOutgoingBody>, Failure>,
    ) -> Response<HyperOutgoingBody> {
        match result {
            Ok(response) => response,
            Err(Failure::Busy(why)) => {
                tracing::warn!(component = component_id, "cannot start an instance: {why}");
                text(StatusCode::SERVICE_UNAVAILABLE, "server busy: no instance slot free, retry shortly\n")
            }
            Err(Failure::Trap(why)) => {
                tracing::error!(component = component_id, "component failed: {why}");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("component {component_id} failed; the host log has the reason\n"),
                )
            }
            Err(Failure::Timeout) => {
                let limit = self.app.request_timeout;
                tracing::error!(component = component_id, "component exceeded its {limit:?} deadline");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("component {component_id} exceeded its {limit:?} deadline\n"),
                )
            }
        }
    }

    /// A fresh instance handles one request: the sandbox boundary.
    async fn execute<B>(&self, component: &LoadedComponent, req: Request<B>) -> Result<Response<HyperOutgoingBody>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpError>,
    {
        let pre = component.http.clone().ok_or_else(|| Failure::Trap("component does not export wasi:http".into()))?;
        let mut store = self.app.new_store(component).map_err(|e| Failure::Trap(format!("{e:#}")))?;
        if let Some(request) = req.extensions().get::<Arc<RequestContext>>() {
            store.data_mut().set_request(request.clone());
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| Failure::Trap(format!("{e:#}")))?;
        let outparam = store.data_mut().http().new_response_outparam(sender).map_err(|e| Failure::Trap(format!("{e:#}")))?;

        let id = component.id.clone();
        let instantiation = self.app.metrics.instantiation.get_or_create(&ComponentLabels { component: id.clone() }).clone();
        let failed = Failed::default();
        let instance: Instance = Box::pin({
            let failed = failed.clone();
            async move {
                let started = Instant::now();
                let proxy = match pre.instantiate_async(&mut store).await {
                    Ok(proxy) => proxy,
                    Err(e) => return Err(Failure::Busy(format!("{e:#}"))),
                };
                instantiation.observe(started.elapsed().as_secs_f64());
                let result = proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await;
                let result = result.map_err(|e| {
                    let text = format!("{e:?}");
                    if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
                        Failure::Timeout
                    } else {
                        Failure::Trap(text)
                    }
                });
                // Before the store goes, with any body left unfinished in it:
                // see `cut_short`.
                if result.is_err() {
                    failed.mark();
                }
                drop(store);
                result
            }
        });

        let instance: Instance = match self.admission.ready_wait() {
            Some(meter) => Box::pin(meter.watch(instance)),
            None => instance,
        };
        let deadline = self.app.request_timeout + Duration::from_millis(100);
        match tokio::time::timeout(deadline, until_head(instance, receiver)).await {
            Ok(Head::Set(set, rest)) => {
                // A failure after the head was set is logged: the body is
                // then cut short, which is all the client can be told. An
                // instance that answered before it finished (it is
                // streaming its body) goes on in a task of its own, as long
                // as it takes.
                let log = move |failure: Failure| {
                    tracing::error!(component = %id, "component failed after setting its response: {failure:?}");
                };
                match rest {
                    Rest::Finished(Ok(())) => {}
                    Rest::Finished(Err(failure)) => log(failure),
                    Rest::Running(instance) => {
                        tokio::spawn(async move { instance.await.unwrap_or_else(log) }.in_current_span());
                    }
                }
                match set {
                    Ok(response) => Ok(response.map(|body| CutShort::new(body, failed).boxed_unsync())),
                    Err(code) => Err(Failure::Trap(format!("component answered with error code {code:?}"))),
                }
            }
            Ok(Head::None(Ok(()))) => Err(Failure::Trap("component returned without setting a response".into())),
            Ok(Head::None(Err(failure))) => Err(failure),
            // Dropping the instance's future drops its store.
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Sends a GET for `path` to a fresh instance of `component`, which need
    /// not be the version serving now: how a swap tries a new build before
    /// switching to it. Returns the status once the whole body has arrived.
    pub async fn smoke(&self, component: &LoadedComponent, path: &str) -> Result<u16> {
        let mut req = Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .context("the smoke path is not a valid URL path")?;
        // The component's own route when it has one there, so it sees the
        // same spin-* headers as for a real request.
        let route = self
            .router
            .route(path)
            .filter(|r| r.component_id == component.id)
            .unwrap_or_else(|| RouteMatch::synthetic(&component.id, path));
        spin_headers::apply(req.headers_mut(), &format!("http://localhost{path}"), &self.base, &route, "127.0.0.1:0");
        let response = self.execute(component, req).await.map_err(|failure| anyhow::anyhow!("{failure:?}"))?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|e| anyhow::anyhow!("the response body failed: {e:?}"))?;
        Ok(status)
    }

    fn info(&self) -> Response<HyperOutgoingBody> {
        let body = serde_json::json!({
            "host": "bazaar",
            "version": env!("CARGO_PKG_VERSION"),
            "application": self.app.manifest.application.name,
        });
        let mut response = text(StatusCode::OK, &body.to_string());
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }
}

/// One instance handling one request, from instantiation to its return.
type Instance = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// What became of a request by the time its response head was known.
enum Head {
    /// The instance set its response, or an error code instead.
    Set(Result<Response<HyperOutgoingBody>, ErrorCode>, Rest),
    /// The instance ended without setting anything: how it ended.
    None(Result<(), Failure>),
}

/// The instance, once it has set its response.
enum Rest {
    /// It has finished too: how.
    Finished(Result<(), Failure>),
    /// It is still running (writing its body).
    Running(Instance),
}

/// Runs `instance` in the request's own task until its response head is
/// known. Most instances finish before the request's task looks again (the
/// body fits the channel to hyper), so the instance costs no task of its
/// own, nor a wake-up from one task to another; one still running when its
/// head arrives is handed back, to finish elsewhere. The head is seen when
/// the instance next waits (on the host, on its body's reader) or yields
/// its time slice, so work it does after answering without waiting delays
/// its answer by at most that. (The shop mix at 16 clients, measured: as
/// fast as with an instance spawned at once, as before, with a p99 as low
/// or lower; spawning it once it first waits instead was about 5% slower.)
async fn until_head(
    mut instance: Instance,
    mut head: tokio::sync::oneshot::Receiver<Result<Response<HyperOutgoingBody>, ErrorCode>>,
) -> Head {
    tokio::select! {
        // The instance first: when it has finished, its head (if any) is
        // already in the channel.
        biased;
        ended = &mut instance => match head.try_recv() {
            Ok(set) => Head::Set(set, Rest::Finished(ended)),
            Err(_) => Head::None(ended),
        },
        set = &mut head => match set {
            Ok(set) => Head::Set(set, Rest::Running(instance)),
            // The outparam was dropped unset while the instance runs on:
            // how it ends says why.
            Err(_) => Head::None(instance.await),
        },
    }
}

impl InProcessHandler for HttpTrigger {
    fn handle_in_process(&self, caller: &str, target: ChainTarget, request: Request<WasiBody>) -> ChainFuture {
        let Some(this) = self.this.upgrade() else {
            return Box::pin(async { Err(HttpError::DestinationUnavailable) });
        };
        let caller = caller.to_string();
        Box::pin(async move {
            let path = request.uri().path().to_string();
            let full_url = request.uri().to_string();
            let route = match &target {
                ChainTarget::App => this.router.route(&path),
                // Spin serves `<id>.spin.internal` as if the component's
                // route were `/...`, private components included.
                ChainTarget::Component(id) => Some(RouteMatch::synthetic(id, &path)),
            };
            let Some(route) = route else {
                return Ok(text(StatusCode::NOT_FOUND, &format!("no route matches {path}\n")));
            };
            let component_id = route.component_id.to_string();
            if this.app.component(&component_id).is_none() {
                tracing::warn!(caller, "chained request to unknown component {component_id}");
                return Err(HttpError::DestinationNotFound);
            }
            tracing::debug!(caller, target = %component_id, %path, "chained request");
            Ok(this.dispatch(&component_id, request, &full_url, &route, "127.0.0.1:0").await)
        })
    }
}

/// The 503 for a request shed at the door: the host is overloaded.
fn busy(shed: &Shed) -> Response<HyperOutgoingBody> {
    tracing::warn!("shed a request after {:?} waiting to be admitted (--max-concurrent-requests)", shed.waited);
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "server busy: too many requests waiting; retry shortly\n");
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
}

/// A small complete response from the host itself.
pub fn text(status: StatusCode, body: &str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(body.to_string())).map_err(|never: Infallible| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Binds the listener, with a message that says what to do when it fails.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another server using it? pass --listen ADDR to choose another"))
}
