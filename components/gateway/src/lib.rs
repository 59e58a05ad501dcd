//! The gateway: the shop's only public component (route `/...`).
//!
//! It forwards `/api/{auth,users,products,cart,orders,payments,notifications}/...`
//! to the service that answers it, over Spin's service chaining, after
//! checking who the caller is (EdDSA access tokens from auth, verified with
//! auth's JWK Set), whether they may call the route, and whether they are
//! within their rate limit. Catalog reads are served from a shared cache
//! (to signed-in callers too, when products marks the answer `public`).
//! Every request leaves with a request id and a W3C trace context, and
//! every answer carries the request id. `GET /api/openapi.json` describes
//! the public API.
//!
//! Settings are Spin variables (see [`config`]); state lives in three
//! key-value stores: `gateway` (rate-limit counters, shared by every host),
//! `gateway-tokens` (the cached JWK Set and the tokens verified last, which
//! each host may keep for itself) and `gateway-cache` (catalog responses).
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

mod cache;
mod cache_control;
mod clock;
mod config;
mod inbound;
mod jwks;
mod kv;
mod pipeline;
mod proxy;
mod rate_limit;
mod reply;
mod routes;
mod token;
mod trace;
mod verified;

#[http_component]
async fn gateway(req: IncomingRequest, out: ResponseOutparam) {
    pipeline::handle(req).await.send(out).await;
}
