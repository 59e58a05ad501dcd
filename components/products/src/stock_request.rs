//! The bodies of the inventory endpoints, checked: which SKUs, how many of
//! each, for which order.
use serde_json::{Map, Value};
use shop_shared::api::ApiError;

use crate::product::MAX_SKU_CHARS;
use crate::validation::{Checker, Object, TextRule};

const MAX_LINES: usize = 100;
const MAX_QUANTITY: i64 = 1_000_000;
const MAX_ORDER_ID_CHARS: usize = 128;

/// Units of one SKU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockLine {
    pub sku: String,
    pub quantity: i64,
}

/// `{items: [{sku, quantity}]}`.
pub fn check_body(body: &Map<String, Value>) -> Result<Vec<StockLine>, ApiError> {
    let top = Object::top(body);
    let mut check = Checker::new();
    check.no_other_fields(&top, &["items"]);
    let lines = lines(&mut check, &top);
    check.finish()?;
    Ok(lines)
}

/// `{order_id, items: [{sku, quantity}]}`.
pub fn reserve_body(body: &Map<String, Value>) -> Result<(String, Vec<StockLine>), ApiError> {
    let top = Object::top(body);
    let mut check = Checker::new();
    check.no_other_fields(&top, &["order_id", "items"]);
    let order_id = check.text(&top, "order_id", MAX_ORDER_ID_CHARS, TextRule::Any);
    let lines = lines(&mut check, &top);
    check.finish()?;
    Ok((order_id, lines))
}

/// `{order_id}`.
pub fn order_body(body: &Map<String, Value>) -> Result<String, ApiError> {
    let top = Object::top(body);
    let mut check = Checker::new();
    check.no_other_fields(&top, &["order_id"]);
    let order_id = check.text(&top, "order_id", MAX_ORDER_ID_CHARS, TextRule::Any);
    check.finish()?;
    Ok(order_id)
}

/// The `items`, one line per SKU (the quantities of a SKU listed twice are
/// added up), sorted by SKU: stock rows are then always locked in the same
/// order, so two reservations cannot deadlock each other.
fn lines(check: &mut Checker, top: &Object) -> Vec<StockLine> {
    let mut lines: Vec<StockLine> = Vec::new();
    for item in check.objects(top, "items", MAX_LINES) {
        check.no_other_fields(&item, &["sku", "quantity"]);
        let sku = check.text(&item, "sku", MAX_SKU_CHARS, TextRule::Code);
        let quantity = check.integer(&item, "quantity", 1..=MAX_QUANTITY);
        match lines.iter_mut().find(|line| line.sku == sku) {
            Some(line) => line.quantity += quantity,
            None => lines.push(StockLine { sku, quantity }),
        }
    }
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_sku_listed_twice_is_one_line_and_lines_are_sorted() {
        let (order, lines) = reserve_body(&body(json!({"order_id": "o1", "items": [
            {"sku": "B", "quantity": 1}, {"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 3}
        ]})))
        .unwrap();
        assert_eq!(order, "o1");
        assert_eq!(lines, [StockLine { sku: "A".into(), quantity: 2 }, StockLine { sku: "B".into(), quantity: 4 }]);
    }

    #[test]
    fn bad_lines_are_reported_by_index() {
        let error = check_body(&body(json!({"items": [{"sku": "A", "quantity": 0}, {"quantity": 1}]}))).unwrap_err();
        let fields: Vec<String> = error.fields.into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["items[0].quantity", "items[1].sku"]);
        let error = reserve_body(&body(json!({"items": []}))).unwrap_err();
        let fields: Vec<String> = error.fields.into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["order_id", "items"]);
    }
}
