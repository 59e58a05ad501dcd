//! The shop's users service: each user's profile (name, phone), their
//! notification preferences and their addresses.
//!
//! Private like every service but the gateway: the gateway authenticates
//! the caller and passes their id in `x-user-id`, which the `/api/users/me`
//! routes act on ([`caller`]). Auth creates a profile when a user registers
//! (`POST /internal/users`, idempotent) and notifications reads one to know
//! where and how to reach a user (`GET /internal/users/{id}`).
//!
//! Routes are in [`routes`]; each endpoint is a function of [`handlers`],
//! over the model of [`model`], the checks of [`input`] and the SQL of
//! [`store`].
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

mod caller;
mod clock;
mod handlers;
mod ids;
mod input;
mod model;
mod routes;
mod schema;
mod store;

#[http_component]
fn handle(req: Request) -> Response {
    routes::dispatch(&req)
}
