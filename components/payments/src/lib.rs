//! The payments service: card charges and refunds, each made exactly once
//! however often a client retries it.
//!
//! - [`routes`]: the HTTP API (`/api/payments/...`); [`access`]: who may see
//!   which payment; [`reads`]: looking payments up;
//! - [`charges`] and [`refunds`]: the two writes, each behind an
//!   `Idempotency-Key` ([`idempotency`]);
//! - [`validation`]: request bodies, checked field by field;
//! - [`processor`]: the simulated card processor and its test cards;
//! - [`model`] and [`store`]: payments and refunds, and their tables.
//!
//! Reached through the gateway (which sets `x-user-id` / `x-user-role`) and
//! by the orders service's checkout saga.
mod access;
mod charges;
mod clock;
mod idempotency;
mod model;
mod processor;
mod reads;
mod refunds;
mod routes;
mod store;
mod validation;

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    routes::handle(&req).unwrap_or_else(|e| e.into_response())
}
