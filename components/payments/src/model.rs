//! Payments and refunds, in the JSON form the API returns.
use serde::Serialize;

/// A captured card payment. `refunded_cents` grows with each refund and
/// never exceeds `amount_cents`; the payment itself stays `captured` (as a
/// Stripe charge stays `succeeded`), its refunds say the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub payment_id: String,
    pub order_id: String,
    pub status: &'static str,
    pub amount_cents: i64,
    pub refunded_cents: i64,
    pub currency: String,
    pub card_last4: String,
    pub created_at_ms: i64,
    /// Who paid (the gateway's `x-user-id` on the charge), if anyone did
    /// through the gateway: customers see only their own payments.
    #[serde(skip)]
    pub user_id: Option<String>,
    /// The processor's reference, for reconciliation; not shown to clients.
    #[serde(skip)]
    pub processor_ref: String,
}

/// The only status a payment has: it exists once the processor captured it.
pub const CAPTURED: &str = "captured";

impl Payment {
    /// What is left to refund.
    pub fn refundable_cents(&self) -> i64 {
        self.amount_cents - self.refunded_cents
    }
}

/// Money returned on a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub refund_id: String,
    pub payment_id: String,
    pub amount_cents: i64,
    pub created_at_ms: i64,
}

/// A new, unique payment or refund id, with a prefix saying which it is.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
