//! The simulated card processor: what a real acquirer (Stripe, Adyen, ...)
//! would decide about a charge, driven by the card number, so every outcome
//! the shop must handle can be reproduced on demand.
//!
//! | card number          | outcome                                                      |
//! |----------------------|--------------------------------------------------------------|
//! | `4000000000000002`   | declined: `402 card_declined`                                 |
//! | `4000000000009995`   | answers after 5 s that it is unavailable: `503 processor_unavailable` (nothing is charged; the same Idempotency-Key may be retried) |
//! | `4000000000000077`   | approved and captured after 2 s (a slow processor)            |
//! | any other valid card | approved and captured (e.g. `4242424242424242`)               |
//!
//! Card numbers reach this module already validated (digits, Luhn, expiry).
//!
//! Capture is immediate (no separate authorisation step), and refunds settle
//! at once, so a refund is a ledger entry in [`crate::store`] with no
//! processor call. A real processor would be sent the request's
//! Idempotency-Key as well, so that a charge retried after a crash (see
//! [`crate::idempotency`]'s lease) is not captured twice at the processor.
use std::time::Duration;

use crate::validation::Card;

/// The card that is always declined.
pub const DECLINED_CARD: &str = "4000000000000002";
/// The card whose processor times out.
pub const UNAVAILABLE_CARD: &str = "4000000000009995";
/// How long the processor takes to fail for [`UNAVAILABLE_CARD`].
const UNAVAILABLE_AFTER: Duration = Duration::from_secs(5);
/// The card whose processor approves, slowly.
pub const SLOW_CARD: &str = "4000000000000077";
/// How long the processor takes to approve [`SLOW_CARD`].
const SLOW_AFTER: Duration = Duration::from_secs(2);

/// A captured charge.
pub struct Capture {
    /// The processor's reference for the charge.
    pub reference: String,
}

/// Why the processor did not capture.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The issuer said no: final, the same request will be declined again.
    Declined,
    /// The processor could not be reached: nothing was charged, a retry may
    /// succeed.
    Unavailable,
}

/// Asks the processor to capture `amount_cents` from `card`.
pub fn charge(card: &Card, amount_cents: i64) -> Result<Capture, Failure> {
    match card.number.as_str() {
        DECLINED_CARD => Err(Failure::Declined),
        UNAVAILABLE_CARD => {
            // On wasm32-wasip2 this blocks on a wasi:clocks pollable: the
            // request stays in flight, as it would waiting on a slow network.
            std::thread::sleep(UNAVAILABLE_AFTER);
            Err(Failure::Unavailable)
        }
        number => {
            if number == SLOW_CARD {
                std::thread::sleep(SLOW_AFTER);
            }
            let reference = format!("ch_sim_{}", uuid::Uuid::new_v4().simple());
            println!("processor: captured {amount_cents} cents on the card ending {} as {reference}", card.last4());
            Ok(Capture { reference })
        }
    }
}
