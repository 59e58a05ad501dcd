//! Order events: published by orders (through its outbox) on the bus,
//! consumed by notifications. The JSON form is the contract.
use serde::{Deserialize, Serialize};

/// The bus channel order events travel on.
pub const ORDERS_CHANNEL: &str = "orders";

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

#[cfg(test)]
mod tests {
    use super::*;

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
