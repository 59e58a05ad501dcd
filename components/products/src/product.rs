//! A product as the API shows it, and what an admin may write into one.
use serde::Serialize;
use serde_json::{Map, Value};
use shop_shared::api::ApiError;

use crate::validation::{Checker, Object, TextRule};

/// Limits on what a product holds, so one write cannot bloat the catalog.
pub const MAX_SKU_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 5000;
const MAX_CATEGORY_CHARS: usize = 50;
/// Ten million in the shop's currency.
const MAX_PRICE_CENTS: i64 = 1_000_000_000;
const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    /// Units available to order now (reserved units are not).
    pub stock: i64,
}

/// The fields an admin writes: the whole product on create, everything but
/// the SKU (a product's fixed business key) on update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductDraft {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    /// `None` on update: the stock is left as it is.
    pub stock: Option<i64>,
}

const CREATE_FIELDS: &[&str] = &["sku", "name", "description", "category", "price_cents", "stock"];
const UPDATE_FIELDS: &[&str] = &["id", "sku", "name", "description", "category", "price_cents", "stock"];

impl ProductDraft {
    /// The body of `POST /api/products`: `sku`, `name`, `category` and
    /// `price_cents` are required; `description` defaults to empty and
    /// `stock` to 0.
    pub fn for_create(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let top = Object::top(body);
        let mut check = Checker::new();
        check.no_other_fields(&top, CREATE_FIELDS);
        let sku = check.text(&top, "sku", MAX_SKU_CHARS, TextRule::Code);
        let mut draft = Self::common_fields(&mut check, &top, sku);
        draft.stock = Some(draft.stock.unwrap_or(0));
        check.finish()?;
        Ok(draft)
    }

    /// The body of `PUT /api/products/{id}`, which replaces `current`'s
    /// fields. A client may send back the product it read: `id` and `sku`
    /// are accepted if unchanged, and `stock`, if present, sets the units
    /// available.
    pub fn for_update(body: &Map<String, Value>, current: &Product) -> Result<Self, ApiError> {
        let top = Object::top(body);
        let mut check = Checker::new();
        check.no_other_fields(&top, UPDATE_FIELDS);
        if let Some(id) = check.optional_text(&top, "id", usize::MAX, TextRule::Any)
            && id != current.id
        {
            check.fail("id", "must be the id in the path, or absent");
        }
        if let Some(sku) = check.optional_text(&top, "sku", MAX_SKU_CHARS, TextRule::Code)
            && sku != current.sku
        {
            check.fail("sku", "a product's SKU cannot change: create a new product instead");
        }
        let draft = Self::common_fields(&mut check, &top, current.sku.clone());
        check.finish()?;
        Ok(draft)
    }

    fn common_fields(check: &mut Checker, top: &Object, sku: String) -> Self {
        Self {
            sku,
            name: check.text(top, "name", MAX_NAME_CHARS, TextRule::Any),
            description: check
                .optional_text(top, "description", MAX_DESCRIPTION_CHARS, TextRule::MayBeEmpty)
                .unwrap_or_default(),
            category: check.text(top, "category", MAX_CATEGORY_CHARS, TextRule::Slug),
            price_cents: check.integer(top, "price_cents", 0..=MAX_PRICE_CENTS),
            stock: check.optional_integer(top, "stock", 0..=MAX_STOCK),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn fields(error: ApiError) -> Vec<String> {
        assert_eq!(error.code, "validation_failed");
        error.fields.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn create_needs_sku_name_category_and_price() {
        let error = ProductDraft::for_create(&body(json!({"description": "x"}))).unwrap_err();
        assert_eq!(fields(error), ["sku", "name", "category", "price_cents"]);
        let draft = ProductDraft::for_create(&body(
            json!({"sku": "X-1", "name": " Kettle ", "category": "home-kitchen", "price_cents": 999}),
        ))
        .unwrap();
        assert_eq!((draft.name.as_str(), draft.description.as_str(), draft.stock), ("Kettle", "", Some(0)));
    }

    #[test]
    fn create_rejects_an_id_and_bad_values() {
        let error = ProductDraft::for_create(&body(json!({
            "id": "mine", "sku": "has space", "name": "K", "category": "Home", "price_cents": -1, "stock": 1.5
        })))
        .unwrap_err();
        assert_eq!(fields(error), ["id", "sku", "category", "price_cents", "stock"]);
    }

    #[test]
    fn update_keeps_the_sku_and_leaves_stock_alone_unless_given() {
        let current = Product {
            id: "p1".into(),
            sku: "X-1".into(),
            name: "Kettle".into(),
            description: String::new(),
            category: "home-kitchen".into(),
            price_cents: 999,
            stock: 3,
        };
        let same = json!({"id": "p1", "sku": "X-1", "name": "Kettle 2", "category": "home-kitchen", "price_cents": 5});
        let draft = ProductDraft::for_update(&body(same), &current).unwrap();
        assert_eq!((draft.sku.as_str(), draft.stock), ("X-1", None));
        let changed = json!({"id": "p2", "sku": "X-2", "name": "K", "category": "c", "price_cents": 5});
        assert_eq!(fields(ProductDraft::for_update(&body(changed), &current).unwrap_err()), ["id", "sku"]);
    }
}
