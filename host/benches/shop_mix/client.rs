//! One customer's HTTP/1.1 keep-alive connection to the shop, on hyper's
//! connection API directly.
//!
//! Why not reqwest (the driver's client until 2026-12-06): the driver shares
//! the 2-core machine with the shop it measures, and every microsecond it
//! spends is taken from the shop. With reqwest (its per-request URL parsing,
//! pool lookup and header maps, a client per customer, on a multi-thread
//! runtime) the driver took 64 to 76 µs of CPU a request, a quarter of a
//! core at 3,400 to 3,900 req/s; with this client, the request's head mostly
//! prepared once per customer (the Host and Authorization values, the
//! checkout's body) as wrk prepares its requests, 49 to 52 µs, most of it
//! the kernel's (loopback TCP, waking the driver's thread).
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

// The whole chain: hyper's own message ("connection closed before message
// completed") does not always say what happened underneath.
use bazaar::capabilities::postgres::pool::error_chain;

use crate::support::ServerTiming;

/// How long one request may take before it counts as a transport error.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the shop listens, taken apart once from its base URL.
#[derive(Clone, Debug)]
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
}

impl Target {
    /// From `http://<host>:<port>` (the base URL of a shop), its host
    /// name resolved once.
    pub fn parse(base: &str) -> Target {
        let authority = base.strip_prefix("http://").unwrap_or_else(|| panic!("{base}: the driver speaks plain http:// only")).trim_end_matches('/');
        let addr = authority
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("{base}: the driver needs http://<host>:<port> ({e})"))
            .next()
            .unwrap_or_else(|| panic!("{base}: the host name has no address"));
        let host = HeaderValue::from_str(authority).unwrap_or_else(|e| panic!("{base}: not a valid Host header ({e})"));
        Target { addr, host }
    }
}

/// What the shop answered, as much of it as the driver looks at.
pub struct Answer {
    pub status: u16,
    /// The gateway's catalog cache answered (`Cache-Status: gateway; hit`).
    pub cache_hit: bool,
    /// The host's `server-timing` (`bazaar up --server-timing`), in ms.
    pub timing: Option<ServerTiming>,
}

/// A customer's connection: opened on first use, opened again after a
/// transport error (the shop may have closed it).
pub struct Client {
    target: Target,
    authorization: HeaderValue,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(target: Target, token: &str) -> Client {
        let authorization = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is a valid header value");
        Client { target, authorization, connection: None }
    }

    /// Sends one request and reads the whole answer (so the latency is the
    /// customer's and the connection can carry the next one). `body`: JSON.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<Answer, String> {
        let result = tokio::time::timeout(TIMEOUT, self.exchange(method, path, body)).await;
        let answer = match result {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
        };
        if answer.is_err() {
            // Whatever state the connection is in, the next request gets a
            // fresh one.
            self.connection = None;
        }
        answer
    }

    async fn exchange(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(body.unwrap_or_default())).map_err(|e| format!("building the request: {e}"))?;
        let connection = self.connection().await?;
        connection.ready().await.map_err(|e| error_chain(&e))?;
        let response = connection.send_request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let cache_hit = response.headers().get("cache-status").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("gateway; hit"));
        // The host's field, among any the components set themselves.
        let timing = response.headers().get_all("server-timing").iter().find_map(|v| v.to_str().ok().and_then(ServerTiming::parse));
        response.into_body().collect().await.map_err(|e| error_chain(&e))?;
        Ok(Answer { status, cache_hit, timing })
    }

    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.target.addr).await.map_err(|e| format!("connecting to {}: {e}", self.target.addr))?;
            stream.set_nodelay(true).map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| error_chain(&e))?;
            // The connection's I/O runs as its own task; it ends when the
            // sender is dropped or the shop closes the connection.
            tokio::spawn(connection);
            self.connection = Some(sender);
        }
        Ok(self.connection.as_mut().expect("opened above"))
    }
}
