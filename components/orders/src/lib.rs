//! The orders service: each user's cart, and the checkout saga that turns a
//! cart into an order across two other services it does not control
//! (products for stock, payments for money).
//!
//! - The cart lives in the key-value store `carts`, one JSON document per
//!   user ([`cart`]).
//! - An order and every step of its saga live in this service's own database
//!   ([`orders`], [`saga`]), so a saga interrupted at any point (crash,
//!   timeout, a service down) is resumed exactly where it stopped; every
//!   remote step is idempotent on the other side (same keys), so repeating
//!   one is harmless.
//! - Order events go into an outbox table in the same transaction as the
//!   state change they report, and are relayed to the bus afterwards
//!   ([`outbox`]): an event is never lost and never reports a change that
//!   did not commit.
//!
//! Callers are identified by `x-user-id`, set by the gateway ([`caller`]).
use shop_shared::db::Db;
use shop_shared::api::send;
use spin_sdk::http::{Request, ResponseOutparam};
use spin_sdk::http_component;

mod caller;
mod cart;
mod checkout;
mod clients;
mod clock;
mod ids;
mod internal;
mod orders;
mod outbox;
mod routes;
mod saga;
mod schema;
mod validation;

/// Answers, then does what the answer need not wait for: a checkout
/// resumes stale sagas ([`checkout::resume_stale_after_response`]), and
/// the outbox is relayed if an order changed ([`outbox`]). The response is
/// complete, body and all, before either starts, so the caller waits on
/// neither another order's saga nor the bus.
#[http_component]
async fn handle(req: Request, out: ResponseOutparam) {
    send(out, routes::handle(req).await, "orders").await;
    if !checkout::resume_due() && !outbox::relay_due() {
        return;
    }
    // A connection of its own: the request's is gone with its handler.
    match Db::from_variable() {
        Ok(db) => {
            checkout::resume_stale_after_response(&db).await;
            outbox::relay_if_due(&db);
        }
        Err(e) => eprintln!("orders: the work after the response could not open the database: {e}"),
    }
}
