//! The smallest useful Spin component: answers every request with a greeting.
//! Used by the README walk-through and the benchmarks.
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(_req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("Hello from Bazaar!\n")
        .build())
}
