//! The Redis triggers: order events from the bus (channel `orders`) become
//! messages; profile events (channel `users`) update the profiles kept for
//! addressing them ([`recipients`]).
//!
//! The bus delivers at least once, so the same event may arrive again (a
//! retry after a crash, a replayed dead letter): an order event is written
//! once, keyed by its `event_id` (see [`store::record`]), and a profile is
//! kept only if its revision is newer than the one kept (see
//! [`store::keep_profile`]). An error makes the bus retry the delivery and,
//! after its last attempt, keep it as a dead letter for an operator: a
//! payload that is no such event fails for good that way instead of being
//! dropped silently.
use serde::Deserialize;
use shop_shared::db::DbError;
use shop_shared::events::{Envelope, UserEvent};

use crate::{clock, messages, recipients, store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("notifications: the message is not an order event: {0}")]
    NotAnEvent(String),
    #[error("notifications: the message is not a profile event: {0}")]
    NotAProfileEvent(String),
    #[error("notifications: database: {0}")]
    Db(#[from] DbError),
}

/// The `type` every event names itself by. The trigger says only what was
/// sent, not on which channel, so the type tells the two kinds apart.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
}

pub async fn handle(payload: &[u8]) -> Result<(), Error> {
    match serde_json::from_slice::<Kind>(payload) {
        Ok(Kind { kind: Some("ProfileChanged") }) => profile_changed(payload),
        _ => order_event(payload).await,
    }
}

/// Keeps the profile an event carries, unless a newer one is kept.
fn profile_changed(payload: &[u8]) -> Result<(), Error> {
    let UserEvent::ProfileChanged(profile) =
        serde_json::from_slice(payload).map_err(|e| Error::NotAProfileEvent(e.to_string()))?;
    if profile.user_id.trim().is_empty() {
        return Err(Error::NotAProfileEvent("user_id is empty".into()));
    }
    if store::keep_profile(&store::open()?, &profile, clock::now_ms())? {
        println!("notifications: keeping the profile of user {} at revision {}", profile.user_id, profile.revision);
    } else {
        println!(
            "notifications: the profile of user {} at revision {} is no newer than the one kept; ignored",
            profile.user_id, profile.revision
        );
    }
    Ok(())
}

async fn order_event(payload: &[u8]) -> Result<(), Error> {
    let event: Envelope = serde_json::from_slice(payload).map_err(|e| Error::NotAnEvent(e.to_string()))?;
    for (field, value) in [("event_id", &event.event_id), ("order_id", &event.order_id), ("user_id", &event.user_id)] {
        if value.trim().is_empty() {
            return Err(Error::NotAnEvent(format!("{field} is empty")));
        }
    }
    let db = store::open()?;
    // A delivery of an event already handled is rare (a retry, a replayed
    // dead letter): it composes the messages again and writes nothing,
    // `record` deciding. Looking first would cost every event a query.
    let recipient = recipients::lookup(&db, &event.user_id, &event.event_id).await?;
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
