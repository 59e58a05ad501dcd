//! The admin endpoint: operating a running app, on a listener of its own.
//!
//! It is separate from the app's listener so it can stay on loopback (the
//! default, `127.0.0.1:3001`) while the app faces the world, and so no
//! route of the app can shadow it. Everything under `/admin/` wants
//! `Authorization: Bearer <token>` (see [`token`]); the probes and the
//! metrics are open, as load balancers and scrapers expect, and reveal
//! nothing secret.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when every component is loaded and every backend answers; 503 naming those that do not |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /admin/components` | id, version (SHA-256 of the wasm), loaded_at, requests, previous_version |
//! | `POST /admin/components/{id}/swap[?smoke_path=/x]` | body: the wasm, or JSON `{"path": "file.wasm"}` |
//! | `POST /admin/components/{id}/rollback` | back to the version before the last swap |
//! | `GET /admin/bus/dead-letters` | the bus's dead letters |
//! | `POST /admin/bus/dead-letters/{id}/replay` | deliver one again |
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::app::{App, LoadedComponent};
use crate::bus::{Bus, Subscription};
use crate::metrics::SubscriptionLabels;
use crate::swap::Swapper;

pub mod client;
pub mod health;
pub mod token;

/// Largest wasm a swap accepts: far above any real component, low enough
/// that a runaway upload cannot exhaust memory.
const MAX_UPLOAD: usize = 512 << 20;

pub struct Admin {
    pub app: Arc<App>,
    pub swapper: Arc<Swapper>,
    /// The app's bus, when it has Redis triggers.
    pub bus: Option<Arc<Bus>>,
    pub subscriptions: Vec<Subscription>,
    pub token: String,
}

type AdminResponse = Response<Full<Bytes>>;

impl Admin {
    /// Serves until `shutdown` resolves. Admin requests are short, so
    /// shutting down does not wait for them.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let builder = auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return,
            };
            let admin = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("admin connection closed: {e}");
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> AdminResponse {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => return reply(StatusCode::OK, json!({"status": "alive"})),
            (&Method::GET, "/readyz") => return self.readyz().await,
            (&Method::GET, "/metrics") => return self.metrics().await,
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/admin/") else {
            return error(StatusCode::NOT_FOUND, format!("no admin endpoint at {path}"));
        };
        if !self.authorized(&req) {
            return error(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <token>; the token is --admin-token, or <state-dir>/admin-token when none was given".into(),
            );
        }
        let segments: Vec<&str> = rest.split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["components"]) => self.components(),
            (&Method::POST, ["components", id, "swap"]) => self.swap(id, req).await,
            (&Method::POST, ["components", id, "rollback"]) => self.rollback(id).await,
            (&Method::GET, ["bus", "dead-letters"]) => self.dead_letters().await,
            (&Method::POST, ["bus", "dead-letters", id, "replay"]) => self.replay(id).await,
            _ => error(StatusCode::NOT_FOUND, format!("no admin endpoint {method} {path}")),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let given = req.headers().get(http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        given.and_then(|h| h.strip_prefix("Bearer ")).is_some_and(|t| token::matches(&self.token, t.trim()))
    }

    fn components(&self) -> AdminResponse {
        let list: Vec<Value> = self
            .app
            .component_ids()
            .into_iter()
            .filter_map(|id| self.app.slot(id).map(|slot| (id, slot)))
            .map(|(id, slot)| {
                let current = slot.current();
                json!({
                    "id": id,
                    "version": current.version,
                    "loaded_at": rfc3339(&current),
                    "requests": current.requests.load(Ordering::Relaxed),
                    "source": current.source,
                    "previous_version": slot.previous().map(|p| p.version.clone()),
                })
            })
            .collect();
        reply(StatusCode::OK, json!({ "components": list }))
    }

    async fn swap(&self, id: &str, req: Request<Incoming>) -> AdminResponse {
        if self.app.slot(id).is_none() {
            return error(StatusCode::NOT_FOUND, format!("there is no component {id:?}"));
        }
        let smoke_path = req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "smoke_path").map(|(_, v)| v.into_owned())
        });
        let is_json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = match Limited::new(req.into_body(), MAX_UPLOAD).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")),
        };
        let wasm = if is_json {
            match wasm_from_path(&body) {
                Ok(wasm) => wasm,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e:#}")),
            }
        } else {
            body.to_vec()
        };
        match self.swapper.swap(id, wasm, smoke_path.as_deref()).await {
            Ok(report) => reply(StatusCode::OK, json!(report)),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("swap refused, the current version keeps serving: {e:#}")),
        }
    }

    async fn rollback(&self, id: &str) -> AdminResponse {
        if self.app.slot(id).is_none() {
            return error(StatusCode::NOT_FOUND, format!("there is no component {id:?}"));
        }
        match self.swapper.rollback(id).await {
            Ok(report) => reply(StatusCode::OK, json!(report)),
            Err(e) => error(StatusCode::CONFLICT, format!("{e:#}")),
        }
    }

    async fn dead_letters(&self) -> AdminResponse {
        let Some(bus) = &self.bus else {
            return reply(StatusCode::OK, json!({ "dead_letters": [] }));
        };
        match bus.backend().dead_letters().await {
            Ok(dead) => reply(StatusCode::OK, json!({ "dead_letters": dead })),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("the bus did not answer: {e:#}")),
        }
    }

    async fn replay(&self, id: &str) -> AdminResponse {
        let Some(bus) = &self.bus else {
            return error(StatusCode::NOT_FOUND, "this app has no message bus (no [[trigger.redis]])".into());
        };
        match bus.backend().replay(id).await {
            Ok(()) => reply(StatusCode::OK, json!({ "replayed": id })),
            Err(e) => error(StatusCode::NOT_FOUND, format!("{e:#}")),
        }
    }

    async fn readyz(&self) -> AdminResponse {
        let backends = health::backends(&self.app);
        let not_ready = health::check(&backends).await;
        let components = self.app.component_ids().len();
        if not_ready.is_empty() {
            reply(StatusCode::OK, json!({ "ready": true, "components": components, "backends": backends }))
        } else {
            reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "ready": false, "components": components, "not_ready": not_ready }))
        }
    }

    /// Refreshes what is read rather than counted (the bus's lag and dead
    /// letters, the connection pools), then encodes.
    async fn metrics(&self) -> AdminResponse {
        if let Some(bus) = &self.bus {
            let metrics = &self.app.metrics;
            for sub in &self.subscriptions {
                let lag = tokio::time::timeout(Duration::from_secs(1), bus.backend().lag(sub)).await;
                if let Ok(Ok(lag)) = lag {
                    let labels = SubscriptionLabels { channel: sub.channel.clone(), subscriber: sub.subscriber.clone() };
                    metrics.bus_lag.get_or_create(&labels).set(lag as i64);
                }
            }
            let dead = tokio::time::timeout(Duration::from_secs(1), bus.backend().dead_letters()).await;
            if let Ok(Ok(dead)) = dead {
                metrics.bus_dead_letters.set(dead.len() as i64);
            }
        }
        let capabilities = &self.app.capabilities;
        self.app.metrics.set_postgres_pools(&capabilities.postgres.pool_usage());
        self.app.metrics.set_redis_connections(&capabilities.redis.connection_usage());
        let mut response = Response::new(Full::new(Bytes::from(self.app.metrics.encode())));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}

/// `{"path": "..."}`: a wasm on the host's own file system.
fn wasm_from_path(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).context("the body is not JSON; send {\"path\": \"file.wasm\"} or the wasm itself")?;
    let path = value["path"].as_str().context("the JSON body needs \"path\": the wasm file to swap in")?;
    std::fs::read(path).with_context(|| format!("reading {path}"))
}

fn rfc3339(component: &LoadedComponent) -> String {
    humantime::format_rfc3339_millis(component.loaded_at).to_string()
}

fn reply(status: StatusCode, body: Value) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: String) -> AdminResponse {
    reply(status, json!({ "error": message }))
}

/// Binds the admin listener, with a message that says what to do when it fails.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the admin endpoint; is another bazaar running? pass --admin-listen ADDR, or --admin-listen off")
    })
}
