//! The shop's users service: each user's profile (name, phone), their
//! notification preferences and their addresses.
//!
//! Private like every service but the gateway: the gateway authenticates
//! the caller and passes their id in `x-user-id`, which the `/api/users/me`
//! routes act on ([`caller`]). Auth creates a profile when a user registers
//! (`POST /internal/users`, idempotent) and notifications reads one to know
//! where and how to reach a user (`GET /internal/users/{id}`).
//!
//! Every change to a profile is published on the bus afterwards, as the
//! profile's new state ([`feed`]): notifications keeps what it needs of it.
//!
//! Routes are in [`routes`]; each endpoint is a function of [`handlers`],
//! over the model of [`model`], the checks of [`input`] and the SQL of
//! [`store`].
use shop_shared::api::send;
use spin_sdk::http::{Request, ResponseOutparam};
use spin_sdk::http_component;

mod caller;
mod clock;
mod feed;
mod handlers;
mod ids;
mod input;
mod model;
mod routes;
mod schema;
mod store;

/// Answers, then publishes the profile changed, if any ([`feed`]): the
/// response is complete, body and all, before the relay starts, so the
/// caller does not wait on the bus.
#[http_component]
async fn handle(req: Request, out: ResponseOutparam) {
    send(out, routes::dispatch(&req), "users").await;
    feed::relay_if_due();
}
