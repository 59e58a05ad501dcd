//! The native baseline of `make bench`: a plain hyper 1 + tokio server that
//! answers every request with the same response as the `hello` component
//! (tests/components/hello), so the benchmark can say what running that
//! greeting in a fresh WebAssembly instance per request costs.
//!
//! Same runtime shape as `bazaar up` (tokio's multi-threaded runtime, one
//! task per connection, HTTP/1.1 keep-alive, TCP_NODELAY), nothing else.
//!
//! `native_hello --listen 127.0.0.1:3100` (scripts/bench/bench.sh starts it).
//! Under `cargo bench` it has nothing to measure by itself and exits.
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &str = "Hello from Bazaar!\n";

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.iter().position(|a| a == "--listen") {
        Some(i) => args.get(i + 1).ok_or_else(|| anyhow::anyhow!("--listen needs HOST:PORT"))?,
        None if args.iter().any(|a| a == "--bench") => {
            println!("native_hello is a server for scripts/bench/bench.sh (make bench); nothing to measure on its own");
            return Ok(());
        }
        None => anyhow::bail!("usage: native_hello --listen HOST:PORT"),
    };
    let addr: SocketAddr = listen.parse().map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?;
    let listener = TcpListener::bind(addr).await?;
    println!("Serving http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello)).await;
        });
    }
}
