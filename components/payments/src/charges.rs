//! `POST /api/payments/charges`: one card charge per Idempotency-Key.
use serde_json::Value;
use shop_shared::api::{ApiError, json, parse_json};
use shop_shared::db::Writes;
use spin_sdk::http::{Request, Response};

use crate::access::Caller;
use crate::idempotency::{self, Scope};
use crate::model::{CAPTURED, Payment, new_id};
use crate::processor::{self, Failure};
use crate::{clock, store, validation};

/// How long a client should wait before retrying a charge the processor
/// could not take.
const RETRY_AFTER_UNAVAILABLE_S: &str = "5";

/// Validates the charge, then captures it unless this key already did: `201`
/// with the payment, `402 card_declined`, or `503 processor_unavailable`
/// (nothing charged; the key may be retried).
pub fn create(req: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let key = idempotency::key(req)?;
    let charge = validation::charge_request(&parse_json::<Value>(req)?)?;
    let db = store::open()?;
    idempotency::run_once(
        &db,
        Scope::Charge,
        &key,
        &idempotency::fingerprint(&charge),
        |lease| match processor::charge(&charge.card, charge.amount_cents) {
            Ok(capture) => {
                let payment = Payment {
                    payment_id: new_id("pay"),
                    order_id: charge.order_id.clone(),
                    status: CAPTURED,
                    amount_cents: charge.amount_cents,
                    refunded_cents: 0,
                    currency: charge.currency.clone(),
                    card_last4: charge.card.last4().to_string(),
                    created_at_ms: clock::now_ms(),
                    user_id: caller.user_id().map(str::to_string),
                    processor_ref: capture.reference,
                };
                let response = json(201, &payment);
                // The key's answer and the payment: one round trip on
                // Postgres.
                let mut writes = Writes::default();
                store::insert_payment(&mut writes, &payment);
                lease.complete_with(&db, writes, &response)?;
                Ok(response)
            }
            Err(Failure::Declined) => Ok(ApiError::new(402, "card_declined", "the card was declined").into_response()),
            Err(Failure::Unavailable) => {
                let mut response = ApiError::new(
                    503,
                    "processor_unavailable",
                    "the card processor did not answer; nothing was charged, retry with the same Idempotency-Key",
                )
                .into_response();
                response.set_header("retry-after", RETRY_AFTER_UNAVAILABLE_S);
                Ok(response)
            }
        },
    )
}
