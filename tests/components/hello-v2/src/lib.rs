//! A second build of `hello` that answers differently, so the hot-swap
//! tests can tell from a response which version served it.
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(_req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("Hello from Bazaar v2!\n")
        .build())
}
