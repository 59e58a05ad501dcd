//! The payments service: the saga's charge and, when the order cannot be
//! filled after all, its refund. Both carry an Idempotency-Key derived from
//! the order id (`charge-<order id>`, `refund-<order id>`), so however often
//! a step is repeated (retries, a resumed saga, two resumers at once), one
//! order makes at most one charge and one refund, and a repeated call
//! learns how the first one ended.
use serde::Serialize;

use super::{Unavailable, Upstream};

const BASE: &str = "http://payments.spin.internal";

/// How a charge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    Captured {
        payment_id: String,
    },
    /// Nothing was charged, for good: the card was declined, the processor
    /// could not take it, or payments refused the request.
    Declined {
        code: String,
    },
}

/// `POST /api/payments/charges`' body.
#[derive(Serialize)]
pub struct ChargeRequest<'a, C: Serialize> {
    pub order_id: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub card: &'a C,
}

/// Charges the order: `body` is the [`ChargeRequest`] stored with the order
/// when it was placed, the same on every attempt, as payments requires of a
/// repeated Idempotency-Key.
pub async fn charge(up: &Upstream, order_id: &str, body: &str) -> Result<Charge, Unavailable> {
    let key = format!("charge-{order_id}");
    let reply = up
        .post(&format!("{BASE}/api/payments/charges"), body.as_bytes().to_vec(), &[("idempotency-key", &key)])
        .await?;
    let code = reply.error_code().unwrap_or("payment_refused").to_string();
    match reply.status {
        200 | 201 => match reply.body.get("payment_id").and_then(serde_json::Value::as_str) {
            Some(payment_id) => Ok(Charge::Captured { payment_id: payment_id.to_string() }),
            None => Err(reply.unexpected("charging")),
        },
        // The processor did not take the charge; payments says nothing was
        // charged and released the key. The contract counts it a decline.
        503 if code == "processor_unavailable" => Ok(Charge::Declined { code }),
        // 409: a call with this key is still in flight (ours, from before a
        // crash); 422: the key was used for another body, which this saga
        // never sends. Either way a charge may exist: ask again later.
        409 | 422 | 408 | 429 => Err(reply.unexpected("charging")),
        400..=499 => Ok(Charge::Declined { code }),
        _ => Err(reply.unexpected("charging")),
    }
}

/// Refunds the whole payment; returns the refund id.
pub async fn refund(up: &Upstream, order_id: &str, payment_id: &str) -> Result<String, Unavailable> {
    let key = format!("refund-{order_id}");
    let url = format!("{BASE}/api/payments/{payment_id}/refunds");
    let reply = up.post(&url, b"{}".to_vec(), &[("idempotency-key", &key)]).await?;
    match reply.status {
        200 | 201 => match reply.body.get("refund_id").and_then(serde_json::Value::as_str) {
            Some(refund_id) => Ok(refund_id.to_string()),
            None => Err(reply.unexpected("refunding")),
        },
        // Nothing left to refund: the payment was refunded in full already
        // (by an admin, say), which is all this step wants.
        422 if reply.error_code() == Some("refund_exceeds_captured") => Ok(format!("{payment_id} already refunded")),
        _ => Err(reply.unexpected("refunding")),
    }
}
