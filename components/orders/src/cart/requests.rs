//! The bodies of the cart's write routes, validated.
use std::ops::RangeInclusive;

use shop_shared::api::ApiError;
use spin_sdk::http::Request;

use crate::validation::{Validator, body_object};

/// Units of one product a cart line may hold.
const QUANTITY: RangeInclusive<i64> = 1..=99;
/// Longest SKU accepted.
const MAX_SKU_LEN: usize = 64;

/// `POST /api/cart/items` `{sku, quantity}`.
pub struct AddItem {
    pub sku: String,
    pub quantity: u32,
}

/// `PATCH /api/cart/items/{sku}` `{quantity}`.
pub struct SetQuantity {
    pub quantity: u32,
}

impl AddItem {
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let body = body_object(req)?;
        let mut v = Validator::new();
        let sku = v.string(&body, "sku");
        if let Some(sku) = sku
            && !is_sku(sku)
        {
            v.reject("sku", sku_rule());
        }
        let quantity = v.integer(&body, "quantity", QUANTITY);
        v.finish()?;
        Ok(Self { sku: sku.unwrap_or_default().to_string(), quantity: quantity.map_or(0, to_u32) })
    }
}

impl SetQuantity {
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let body = body_object(req)?;
        let mut v = Validator::new();
        let quantity = v.integer(&body, "quantity", QUANTITY);
        v.finish()?;
        Ok(Self { quantity: quantity.map_or(0, to_u32) })
    }
}

/// Whether `s` can be a SKU. SKUs travel in URL paths (here and to
/// products), so they are restricted to characters that need no escaping.
fn is_sku(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SKU_LEN
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn sku_rule() -> String {
    format!("must be 1 to {MAX_SKU_LEN} letters, digits, '-', '_' or '.'")
}

/// Quantities are validated to [`QUANTITY`] before this is called.
fn to_u32(quantity: i64) -> u32 {
    u32::try_from(quantity).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_url_safe_and_bounded() {
        assert!(is_sku("ELEC-1001"));
        assert!(is_sku("a.b_c"));
        assert!(!is_sku(""));
        assert!(!is_sku("a/b"));
        assert!(!is_sku("a b"));
        assert!(!is_sku(&"x".repeat(MAX_SKU_LEN + 1)));
    }
}
