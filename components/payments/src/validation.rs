//! Request bodies, checked field by field so a client learns everything that
//! is wrong at once (`400 validation_failed` with one entry per field).
//!
//! Bodies are read as JSON values first (malformed JSON is a plain `400`) and
//! then into the typed requests below, which are also what the idempotency
//! fingerprint hashes: two bodies that mean the same charge (`"usd"` and
//! `"USD"`, a card number with or without spaces, fields in any order) are
//! the same request.
use serde::Serialize;
use serde_json::{Map, Value};
use shop_shared::api::{ApiError, FieldError};

use crate::clock;

/// The largest single charge: a guard against a mistyped amount, far above
/// any basket the shop sells.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000;
const MAX_ORDER_ID_LEN: usize = 128;

/// A validated `POST /api/payments/charges` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChargeRequest {
    pub order_id: String,
    pub amount_cents: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub card: Card,
}

/// A card as given by the client. Only its last four digits are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Card {
    /// Digits only.
    pub number: String,
    pub exp_month: u32,
    pub exp_year: i64,
    pub cvc: String,
}

impl Card {
    pub fn last4(&self) -> &str {
        &self.number[self.number.len() - 4..]
    }
}

/// A validated `POST /api/payments/{id}/refunds` body; `None` refunds what
/// is left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefundRequest {
    pub amount_cents: Option<i64>,
}

/// Collects field errors while a body is read.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_string(), message: message.into() });
    }

    fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ApiError> {
        if self.0.is_empty() { Ok(value()) } else { Err(ApiError::invalid(self.0)) }
    }
}

pub fn charge_request(body: &Value) -> Result<ChargeRequest, ApiError> {
    let body = object(body, "body")?;
    let mut errors = Errors::default();

    let order_id = match body.get("order_id") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_ORDER_ID_LEN => s.clone(),
        Some(Value::String(_)) => {
            errors.add("order_id", format!("must be a non-empty string of at most {MAX_ORDER_ID_LEN} characters"));
            String::new()
        }
        _ => {
            errors.add("order_id", "is required and must be a string");
            String::new()
        }
    };
    let amount_cents = match body.get("amount_cents").and_then(Value::as_i64) {
        Some(n) if (1..=MAX_AMOUNT_CENTS).contains(&n) => n,
        _ => {
            errors.add("amount_cents", format!("is required: an integer number of cents from 1 to {MAX_AMOUNT_CENTS}"));
            0
        }
    };
    let currency = match body.get("currency").and_then(Value::as_str) {
        Some(c) if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => c.to_ascii_uppercase(),
        _ => {
            errors.add("currency", "is required: a three-letter ISO 4217 code such as \"USD\"");
            String::new()
        }
    };
    let card = match body.get("card") {
        Some(Value::Object(card)) => card_fields(card, &mut errors),
        _ => {
            errors.add("card", "is required: an object {number, exp_month, exp_year, cvc}");
            None
        }
    };
    errors.finish(|| ChargeRequest {
        order_id,
        amount_cents,
        currency,
        card: card.expect("a card without errors is complete"),
    })
}

/// Reads a card; `None` when any of its fields is wrong (each is reported).
fn card_fields(card: &Map<String, Value>, errors: &mut Errors) -> Option<Card> {
    let number = match card.get("number").and_then(Value::as_str) {
        Some(raw) => {
            let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            if !(12..=19).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
                errors.add("card.number", "must be 12 to 19 digits");
                None
            } else if !luhn_valid(&digits) {
                errors.add("card.number", "is not a valid card number (checksum mismatch)");
                None
            } else {
                Some(digits)
            }
        }
        None => {
            errors.add("card.number", "is required and must be a string of digits");
            None
        }
    };
    let exp_month = match card.get("exp_month").and_then(Value::as_u64) {
        Some(m @ 1..=12) => Some(m as u32),
        _ => {
            errors.add("card.exp_month", "is required: a month from 1 to 12");
            None
        }
    };
    let exp_year = match card.get("exp_year").and_then(Value::as_i64) {
        Some(y @ 2000..=2099) => Some(y),
        _ => {
            errors.add("card.exp_year", "is required: a four-digit year");
            None
        }
    };
    if let (Some(month), Some(year)) = (exp_month, exp_year) {
        let (this_year, this_month) = clock::year_month(clock::now_ms());
        // A card is valid through the last day of its expiry month.
        if (year, month) < (this_year, this_month) {
            let field = if year < this_year { "card.exp_year" } else { "card.exp_month" };
            errors.add(field, format!("the card expired in {month:02}/{year}"));
        }
    }
    let cvc = match card.get("cvc").and_then(Value::as_str) {
        Some(c) if (3..=4).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_digit()) => Some(c.to_string()),
        _ => {
            errors.add("card.cvc", "is required: a string of 3 or 4 digits");
            None
        }
    };
    Some(Card { number: number?, exp_month: exp_month?, exp_year: exp_year?, cvc: cvc? })
}

/// The Luhn (mod 10) checksum every payment card number carries: it catches
/// every single-digit typo and most transpositions before a processor is
/// asked.
pub fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A refund body (`{}` when the client sent none).
pub fn refund_request(body: &Value) -> Result<RefundRequest, ApiError> {
    let body = object(body, "body")?;
    let mut errors = Errors::default();
    let amount_cents = match body.get("amount_cents") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=MAX_AMOUNT_CENTS).contains(&n) => Some(n),
            _ => {
                errors.add("amount_cents", "must be a positive integer number of cents (omit it to refund the rest)");
                None
            }
        },
    };
    errors.finish(|| RefundRequest { amount_cents })
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value.as_object().ok_or_else(|| {
        ApiError::invalid(vec![FieldError { field: field.into(), message: "must be a JSON object".into() }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(err: ApiError) -> Vec<String> {
        err.fields.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn luhn_accepts_the_test_cards_and_rejects_a_typo() {
        for number in ["4242424242424242", "4000000000000002", "4000000000009995", "5555555555554444"] {
            assert!(luhn_valid(number), "{number}");
        }
        assert!(!luhn_valid("4242424242424241"));
    }

    #[test]
    fn a_valid_charge_is_normalised() {
        let body = json!({"order_id": "o1", "amount_cents": 1250, "currency": "usd",
            "card": {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}});
        let charge = charge_request(&body).unwrap();
        assert_eq!(charge.currency, "USD");
        assert_eq!(charge.card.number, "4242424242424242");
        assert_eq!(charge.card.last4(), "4242");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let body = json!({"amount_cents": 0, "currency": "dollars",
            "card": {"number": "4242424242424241", "exp_month": 13, "exp_year": 2099, "cvc": 123}});
        let err = charge_request(&body).unwrap_err();
        assert_eq!(err.code, "validation_failed");
        assert_eq!(fields(err), ["order_id", "amount_cents", "currency", "card.number", "card.exp_month", "card.cvc"]);
    }

    #[test]
    fn an_expired_card_names_the_expiry() {
        let body = json!({"order_id": "o1", "amount_cents": 1, "currency": "EUR",
            "card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2020, "cvc": "123"}});
        assert_eq!(fields(charge_request(&body).unwrap_err()), ["card.exp_year"]);
    }

    #[test]
    fn refund_bodies() {
        assert_eq!(refund_request(&json!({})).unwrap().amount_cents, None);
        assert_eq!(refund_request(&json!({"amount_cents": null})).unwrap().amount_cents, None);
        assert_eq!(refund_request(&json!({"amount_cents": 500})).unwrap().amount_cents, Some(500));
        assert_eq!(fields(refund_request(&json!({"amount_cents": -1})).unwrap_err()), ["amount_cents"]);
        assert_eq!(fields(refund_request(&json!([1])).unwrap_err()), ["body"]);
    }
}
