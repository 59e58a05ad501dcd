//! The notifications service: one component with two entry points.
//!
//! - The Redis triggers on channels `orders` and `users` ([`consumer`]):
//!   each order event from the bus becomes the messages its customer asked
//!   for (email always, SMS and push by preference, [`recipients`] and
//!   [`messages`]), written once per event however often the bus delivers
//!   it ([`store`]); each profile event from users updates the customer's
//!   profile kept here, which those preferences are read from.
//! - `GET /api/notifications` ([`routes`]): a customer's messages, newest
//!   first.
//!
//! spin-sdk's `#[redis_component]` and `#[http_component]` each expand to
//! their own module with their own bindings, so one crate exports both
//! `fermyon:spin/inbound-redis` and `wasi:http/incoming-handler`; the host
//! instantiates it for whichever trigger fires.
mod clock;
mod consumer;
mod messages;
mod recipients;
mod routes;
mod store;

use spin_sdk::http::{Request, Response};
use spin_sdk::{http_component, redis_component};

#[redis_component]
async fn on_event(payload: Vec<u8>) -> Result<(), consumer::Error> {
    consumer::handle(&payload).await
}

#[http_component]
fn handle(req: Request) -> Response {
    routes::handle(&req).unwrap_or_else(|e| e.into_response())
}
