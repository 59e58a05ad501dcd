//! The test cards of payments' simulated processor
//! (components/payments/src/processor.rs), named by what a charge of them
//! does, and the card object a checkout or a charge carries.
use serde_json::{Value, json};

/// Approved and captured.
pub const GOOD: &str = "4242424242424242";
/// Declined: `402 card_declined`, nothing charged.
pub const DECLINED: &str = "4000000000000002";
/// Approved and captured, after 2 s.
pub const SLOW: &str = "4000000000000077";
/// The processor is down: a charge takes 5 s to answer
/// `503 processor_unavailable`, nothing charged.
pub const UNAVAILABLE: &str = "4000000000009995";

/// The card object with this number, valid until 2099.
pub fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"})
}

pub fn good() -> Value {
    card(GOOD)
}

pub fn declined() -> Value {
    card(DECLINED)
}

pub fn unavailable() -> Value {
    card(UNAVAILABLE)
}
