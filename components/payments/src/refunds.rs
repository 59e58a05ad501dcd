//! `POST /api/payments/{payment_id}/refunds`: full or partial refunds, one
//! per Idempotency-Key, never more in total than was captured.
use serde_json::{Value, json as json_value};
use shop_shared::api::{ApiError, json, parse_json};
use shop_shared::db::Db;
use spin_sdk::http::{Request, Response};

use crate::access::Caller;
use crate::idempotency::{self, Lease, Scope};
use crate::model::{Payment, Refund, new_id};
use crate::reads::{not_found, visible_payment};
use crate::{clock, store, validation};

/// Refunds `amount_cents` (the rest when absent) of the payment: `201` with
/// the refund, or `422 refund_exceeds_captured`.
pub fn create(req: &Request, payment_id: &str, caller: &Caller) -> Result<Response, ApiError> {
    let key = idempotency::key(req)?;
    let body = if req.body().iter().all(u8::is_ascii_whitespace) { json_value!({}) } else { parse_json::<Value>(req)? };
    let request = validation::refund_request(&body)?;
    let db = store::open()?;
    visible_payment(&db, payment_id, caller)?;
    // The payment is part of what is asked: the same key and amount on
    // another payment is another request.
    let fingerprint = idempotency::fingerprint(&(payment_id, &request));
    idempotency::run_once(&db, Scope::Refund, &key, &fingerprint, |lease| {
        refund(&db, lease, payment_id, request.amount_cents)
    })
}

/// Rounds of "read the balance, then take from it" before giving up: a round
/// fails only when a concurrent refund took from the same payment.
const ATTEMPTS: usize = 8;

fn refund(db: &Db, lease: &Lease, payment_id: &str, requested: Option<i64>) -> Result<Response, ApiError> {
    for _ in 0..ATTEMPTS {
        let payment = store::find_payment(db, payment_id)?.ok_or_else(|| not_found(payment_id))?;
        let amount_cents = requested.unwrap_or(payment.refundable_cents());
        if amount_cents == 0 || amount_cents > payment.refundable_cents() {
            return Ok(exceeds(&payment, amount_cents));
        }
        let refund = Refund {
            refund_id: new_id("re"),
            payment_id: payment_id.to_string(),
            amount_cents,
            created_at_ms: clock::now_ms(),
        };
        let response = json(201, &refund);
        let recorded = db.transaction(|db| {
            if !store::insert_refund(db, &refund)? {
                return Ok(false);
            }
            lease.complete(db, &response)?;
            Ok::<_, ApiError>(true)
        })?;
        if recorded {
            return Ok(response);
        }
    }
    Err(ApiError::conflict("the payment is being refunded concurrently; retry with the same Idempotency-Key"))
}

fn exceeds(payment: &Payment, amount_cents: i64) -> Response {
    let message = if payment.refundable_cents() == 0 {
        format!("payment {} is already fully refunded", payment.payment_id)
    } else {
        format!(
            "cannot refund {amount_cents} cents: {} of the {} captured are left to refund",
            payment.refundable_cents(),
            payment.amount_cents
        )
    };
    ApiError::new(422, "refund_exceeds_captured", message).into_response()
}
