//! The Redis trigger: order events from the bus become messages.
//!
//! The bus delivers at least once, so the same event may arrive again (a
//! retry after a crash, a replayed dead letter): an event is written once,
//! keyed by its `event_id` (see [`store::record`]). An error makes the bus
//! retry the delivery and, after its last attempt, keep it as a dead letter
//! for an operator: a payload that is not an order event fails for good
//! that way instead of being dropped silently.
use shop_shared::db::DbError;
use shop_shared::events::Envelope;

use crate::{clock, messages, recipients, store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("notifications: the message is not an order event: {0}")]
    NotAnEvent(String),
    #[error("notifications: database: {0}")]
    Db(#[from] DbError),
}

pub async fn handle(payload: &[u8]) -> Result<(), Error> {
    let event: Envelope = serde_json::from_slice(payload).map_err(|e| Error::NotAnEvent(e.to_string()))?;
    for (field, value) in [("event_id", &event.event_id), ("order_id", &event.order_id), ("user_id", &event.user_id)] {
        if value.trim().is_empty() {
            return Err(Error::NotAnEvent(format!("{field} is empty")));
        }
    }
    let db = store::open()?;
    // A delivery of an event already handled is rare (a retry, a replayed
    // dead letter): it asks users again and writes nothing, `record`
    // deciding. Looking first would cost every event a query.
    let recipient = recipients::lookup(&event.user_id, &event.event_id).await;
    let messages = messages::compose(&event, &recipient);
    if store::record(&db, &event, &messages, clock::now_ms())? {
        let channels: Vec<&str> = messages.iter().map(|m| m.channel.as_str()).collect();
        println!(
            "notifications: {} {} for user {}: wrote {}",
            event.kind(),
            event.event_id,
            event.user_id,
            channels.join(", ")
        );
    } else {
        println!("notifications: event {} was already handled; nothing written", event.event_id);
    }
    Ok(())
}
