//! The checkout request: `{card, address_id?}` and an optional
//! `Idempotency-Key` header, validated before any order exists, so a typo
//! is a 400 the client can fix rather than a cancelled order.
use serde::Serialize;
use serde_json::{Map, Value};
use shop_shared::api::ApiError;
use spin_sdk::http::Request;

use crate::clock::{now_ms, year_month};
use crate::validation::{Validator, body_object};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Stripe's limit, which payments uses too.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_ADDRESS_ID_LEN: usize = 128;

pub struct CheckoutRequest {
    pub card: Card,
    /// One of the user's addresses (kept with the order as given: users
    /// owns addresses).
    pub address_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A payment card, as payments takes it.
#[derive(Clone, Serialize)]
pub struct Card {
    /// Digits only.
    pub number: String,
    pub exp_month: u32,
    pub exp_year: i64,
    pub cvc: String,
}

/// Shows the last four digits only, so a card never ends up in a log whole.
impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last4 = &self.number[self.number.len().saturating_sub(4)..];
        write!(f, "Card(****{last4}, {:02}/{})", self.exp_month, self.exp_year)
    }
}

impl CheckoutRequest {
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let body = body_object(req)?;
        let mut v = Validator::new();
        let card = v.object(&body, "card").and_then(|card| read_card(&mut v, card));
        let address_id = v.optional_string(&body, "address_id");
        if address_id.is_some_and(|id| id.len() > MAX_ADDRESS_ID_LEN) {
            v.reject("address_id", format!("must be at most {MAX_ADDRESS_ID_LEN} characters"));
        }
        let idempotency_key = idempotency_key(req, &mut v);
        v.finish()?;
        let card = card.ok_or_else(|| ApiError::internal("a card without errors is complete"))?;
        Ok(Self { card, address_id: address_id.map(str::to_string), idempotency_key })
    }
}

/// The optional `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(req: &Request, v: &mut Validator) -> Option<String> {
    let value = req.header(IDEMPOTENCY_KEY)?;
    match value.as_str() {
        Some(key)
            if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(key.to_string())
        }
        _ => {
            v.reject("Idempotency-Key", format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"));
            None
        }
    }
}

/// Reads a card, rejecting every bad field; `None` if any was bad.
fn read_card(v: &mut Validator, card: &Map<String, Value>) -> Option<Card> {
    let number = v.string(card, "card.number").and_then(|raw| {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            v.reject("card.number", "must be 12 to 19 digits");
            None
        } else if !luhn_valid(&digits) {
            v.reject("card.number", "is not a valid card number (checksum mismatch)");
            None
        } else {
            Some(digits)
        }
    });
    let exp_month = v.integer(card, "card.exp_month", 1..=12).and_then(|m| u32::try_from(m).ok());
    let exp_year = v.integer(card, "card.exp_year", 2000..=2099);
    if let (Some(month), Some(year)) = (exp_month, exp_year) {
        // A card is good through the last day of its expiry month.
        if (year, month) < year_month(now_ms()) {
            v.reject("card.exp_year", format!("the card expired in {month:02}/{year}"));
        }
    }
    let cvc = v.string(card, "card.cvc").and_then(|cvc| {
        if (3..=4).contains(&cvc.len()) && cvc.bytes().all(|b| b.is_ascii_digit()) {
            Some(cvc.to_string())
        } else {
            v.reject("card.cvc", "must be 3 or 4 digits");
            None
        }
    });
    Some(Card { number: number?, exp_month: exp_month?, exp_year: exp_year?, cvc: cvc? })
}

/// The Luhn (mod 10) check digit every card number carries: it catches a
/// mistyped digit before an order is placed.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            // Every second digit from the right is doubled, its digits summed.
            if i % 2 == 0 {
                d
            } else if d > 4 {
                d * 2 - 9
            } else {
                d * 2
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(value: Value) -> Result<Option<Card>, Vec<String>> {
        let mut v = Validator::new();
        let card = read_card(&mut v, value.as_object().unwrap());
        v.finish().map(|()| card).map_err(|e| e.fields.into_iter().map(|f| f.field).collect())
    }

    #[test]
    fn the_test_cards_pass_luhn_and_a_typo_does_not() {
        for number in ["4242424242424242", "4000000000000002", "4000000000009995"] {
            assert!(luhn_valid(number), "{number}");
        }
        assert!(!luhn_valid("4242424242424241"));
    }

    #[test]
    fn a_good_card_is_normalised() {
        let c = card(json!({"number": "4242 4242-4242 4242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}))
            .unwrap()
            .unwrap();
        assert_eq!(c.number, "4242424242424242");
        assert_eq!(format!("{c:?}"), "Card(****4242, 12/2099)");
    }

    #[test]
    fn every_bad_card_field_is_named() {
        let fields =
            card(json!({"number": "4242424242424241", "exp_month": 13, "exp_year": 2099, "cvc": 123})).unwrap_err();
        assert_eq!(fields, ["card.number", "card.exp_month", "card.cvc"]);
        let fields =
            card(json!({"number": "4242424242424242", "exp_month": 1, "exp_year": 2020, "cvc": "123"})).unwrap_err();
        assert_eq!(fields, ["card.exp_year"]);
    }
}
