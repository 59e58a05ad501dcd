//! What the customer reads: one message per channel for each order event,
//! written as the shop would send it.
//!
//! Order events carry amounts in cents without a currency; the shop prices
//! everything in US dollars, so amounts read `$1,234.56`.
use shop_shared::events::{Envelope, OrderEvent, OrderLine};

use crate::recipients::Recipient;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub channel: Channel,
    pub subject: String,
    pub body: String,
}

/// The messages `event` produces for `to`: the email always, SMS and push
/// when the customer asked for them.
pub fn compose(event: &Envelope, to: &Recipient) -> Vec<Message> {
    let mut messages = vec![email(event, to)];
    if to.sms {
        messages.push(sms(event));
    }
    if to.push {
        messages.push(push(event));
    }
    messages
}

const SIGNATURE: &str = "The Bazaar team";

fn email(event: &Envelope, to: &Recipient) -> Message {
    let order = &event.order_id;
    let greeting = match &to.name {
        Some(name) => format!("Hi {name},"),
        None => "Hello,".to_string(),
    };
    let (subject, text) = match &event.event {
        OrderEvent::OrderCreated { lines, total_cents } => (
            format!("We received your order {order}"),
            format!(
                "Thank you for your order {order}. Here is what you ordered:\n\n{}\n\nTotal: {}\n\n\
                 We are confirming your payment and will email you again as soon as your order is confirmed.",
                lines.iter().map(line).collect::<Vec<_>>().join("\n"),
                money(*total_cents)
            ),
        ),
        OrderEvent::OrderConfirmed { total_cents, payment_id } => (
            format!("Your order {order} is confirmed"),
            format!(
                "Good news: your order {order} is confirmed, and your payment of {} was received \
                 (payment reference {payment_id}).\n\n\
                 We are getting your items ready and will let you know when they are on their way.",
                money(*total_cents)
            ),
        ),
        OrderEvent::OrderCancelled { reason, refunded } => (
            format!("Your order {order} was cancelled"),
            format!("We are sorry: your order {order} was cancelled ({reason}).\n\n{}", refund_note(*refunded, true)),
        ),
    };
    Message { channel: Channel::Email, subject, body: format!("{greeting}\n\n{text}\n\n{SIGNATURE}") }
}

/// A text message: short, and signed up front, as SMS senders are.
fn sms(event: &Envelope) -> Message {
    let order = &event.order_id;
    let (subject, body) = match &event.event {
        OrderEvent::OrderCreated { total_cents, .. } => (
            format!("Order {order} received"),
            format!(
                "Bazaar: we received your order {order} ({}). We will text you when it is confirmed.",
                money(*total_cents)
            ),
        ),
        OrderEvent::OrderConfirmed { total_cents, .. } => (
            format!("Order {order} confirmed"),
            format!("Bazaar: your order {order} is confirmed. Total charged: {}.", money(*total_cents)),
        ),
        OrderEvent::OrderCancelled { reason, refunded } => (
            format!("Order {order} cancelled"),
            format!("Bazaar: your order {order} was cancelled ({reason}). {}", refund_note(*refunded, false)),
        ),
    };
    Message { channel: Channel::Sms, subject, body }
}

/// A push notification: a title and one line.
fn push(event: &Envelope) -> Message {
    let order = &event.order_id;
    let (subject, body) = match &event.event {
        OrderEvent::OrderCreated { total_cents, .. } => {
            ("Order received".to_string(), format!("Order {order} ({}) is being processed.", money(*total_cents)))
        }
        OrderEvent::OrderConfirmed { total_cents, .. } => {
            ("Order confirmed".to_string(), format!("Order {order} is confirmed: {} charged.", money(*total_cents)))
        }
        OrderEvent::OrderCancelled { reason, .. } => {
            ("Order cancelled".to_string(), format!("Order {order} was cancelled: {reason}."))
        }
    };
    Message { channel: Channel::Push, subject, body }
}

fn refund_note(refunded: bool, detailed: bool) -> &'static str {
    match (refunded, detailed) {
        (true, true) => {
            "Your payment was refunded in full. Depending on your bank, it can take 5 to 10 business days \
             to appear on your statement."
        }
        (true, false) => "Your payment was refunded.",
        (false, _) => "You were not charged.",
    }
}

fn line(l: &OrderLine) -> String {
    let subtotal = l.unit_price_cents.saturating_mul(i64::from(l.quantity));
    format!("  {} × {} — {}", l.quantity, l.name, money(subtotal))
}

/// `$1,234.56`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let dollars = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in dollars.chars().enumerate() {
        if i > 0 && (dollars.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}${grouped}.{:02}", cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed() -> Envelope {
        Envelope {
            event_id: "e1".into(),
            order_id: "ord_42".into(),
            user_id: "u1".into(),
            occurred_at_ms: 1,
            event: OrderEvent::OrderConfirmed { total_cents: 123_456, payment_id: "pay_1".into() },
        }
    }

    #[test]
    fn money_reads_like_money() {
        assert_eq!(money(0), "$0.00");
        assert_eq!(money(5), "$0.05");
        assert_eq!(money(2_499), "$24.99");
        assert_eq!(money(123_456_789), "$1,234,567.89");
        assert_eq!(money(-100_000), "-$1,000.00");
    }

    #[test]
    fn email_always_others_by_preference() {
        let email_only = compose(&confirmed(), &Recipient::default());
        assert_eq!(email_only.len(), 1);
        let email = &email_only[0];
        assert_eq!(email.channel, Channel::Email);
        assert_eq!(email.subject, "Your order ord_42 is confirmed");
        assert!(email.body.starts_with("Hello,\n\n"), "{}", email.body);
        assert!(email.body.contains("$1,234.56") && email.body.contains("pay_1"), "{}", email.body);

        let all = compose(&confirmed(), &Recipient { name: Some("Ada".into()), sms: true, push: true });
        let channels: Vec<_> = all.iter().map(|m| m.channel).collect();
        assert_eq!(channels, [Channel::Email, Channel::Sms, Channel::Push]);
        assert!(all[0].body.starts_with("Hi Ada,"));
    }

    #[test]
    fn a_created_order_lists_its_lines() {
        let event = Envelope {
            event: OrderEvent::OrderCreated {
                lines: vec![OrderLine {
                    sku: "MUG".into(),
                    name: "Blue mug".into(),
                    quantity: 2,
                    unit_price_cents: 1_200,
                }],
                total_cents: 2_400,
            },
            ..confirmed()
        };
        let body = &compose(&event, &Recipient::default())[0].body;
        assert!(body.contains("  2 × Blue mug — $24.00\n\nTotal: $24.00"), "{body}");
    }
}
