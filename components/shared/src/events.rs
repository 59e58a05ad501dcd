//! The events services publish on the bus; the JSON form is the contract.
//!
//! - Order events ([`Envelope`]): published by orders (through its outbox)
//!   on [`ORDERS_CHANNEL`], consumed by notifications.
//! - Profile events ([`UserEvent`]): published by users on
//!   [`USERS_CHANNEL`], consumed by notifications, which keeps what it needs
//!   of each profile (its recipients) instead of asking users per order
//!   event.
use serde::{Deserialize, Serialize};

/// The bus channel order events travel on.
pub const ORDERS_CHANNEL: &str = "orders";
/// The bus channel profile events travel on.
pub const USERS_CHANNEL: &str = "users";

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

/// What happened to an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrderEvent {
    OrderCreated { lines: Vec<OrderLine>, total_cents: i64 },
    OrderConfirmed { total_cents: i64, payment_id: String },
    OrderCancelled { reason: String, refunded: bool },
}

/// An event with what every consumer needs to handle it exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event: consumers deduplicate on it (delivery is at least once).
    pub event_id: String,
    pub order_id: String,
    pub user_id: String,
    /// Unix milliseconds.
    pub occurred_at_ms: i64,
    #[serde(flatten)]
    pub event: OrderEvent,
}

impl Envelope {
    pub fn kind(&self) -> &'static str {
        match self.event {
            OrderEvent::OrderCreated { .. } => "OrderCreated",
            OrderEvent::OrderConfirmed { .. } => "OrderConfirmed",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

/// What happened to a user's profile.
///
/// A profile event carries the profile's whole state at a revision, not a
/// change: a consumer keeps the highest revision it has seen and ignores
/// the rest, so events delivered twice or out of order (the bus delivers at
/// least once, and a relay may publish a revision again) leave it with the
/// newest state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    ProfileChanged(ProfileState),
}

/// A profile as notifications needs it, at `revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileState {
    pub user_id: String,
    /// Counts the profile's changes, from 1 at its creation: the higher, the
    /// newer.
    pub revision: i64,
    pub name: String,
    pub phone: Option<String>,
    pub email_notifications: bool,
    pub sms_notifications: bool,
    pub push_notifications: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_event_is_flat_and_tagged() {
        let e = UserEvent::ProfileChanged(ProfileState {
            user_id: "u1".into(),
            revision: 3,
            name: "Ada".into(),
            phone: None,
            email_notifications: true,
            sms_notifications: true,
            push_notifications: false,
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "ProfileChanged");
        assert_eq!((json["user_id"].as_str(), json["revision"].as_i64()), (Some("u1"), Some(3)));
        assert_eq!(serde_json::from_value::<UserEvent>(json).unwrap(), e);
    }

    #[test]
    fn the_json_form_is_flat_and_tagged() {
        let e = Envelope {
            event_id: "e1".into(),
            order_id: "o1".into(),
            user_id: "u1".into(),
            occurred_at_ms: 5,
            event: OrderEvent::OrderCancelled { reason: "out of stock".into(), refunded: true },
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "OrderCancelled");
        assert_eq!(json["reason"], "out of stock");
        assert_eq!(serde_json::from_value::<Envelope>(json).unwrap(), e);
    }
}
