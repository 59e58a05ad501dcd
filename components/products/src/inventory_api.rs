//! The inventory's HTTP endpoints, for the orders service (private).
use serde_json::json;
use shop_shared::api::{self, ApiError};
use spin_sdk::http::{Request, Response};

use crate::database;
use crate::inventory::{self, Then};
use crate::stock_request;
use crate::validation::object_body;

/// `POST /internal/inventory/check` → `{available, short, products}`: the
/// lines that cannot be had now, and the name and price now of each asked
/// SKU the catalog sells (a checkout's quote).
pub fn check(req: &Request) -> Result<Response, ApiError> {
    let lines = stock_request::check_body(&object_body(req)?)?;
    let db = database::open()?;
    let check = inventory::check(&db, &lines)?;
    Ok(api::json(200, &json!({ "available": check.short.is_empty(), "short": check.short, "products": check.products })))
}

/// `POST /internal/inventory/reserve` → 200 `{order_id, reserved: true,
/// status, short: []}`, or 409 with `reserved: false`, the `short` lines and
/// the usual `error` (its code `insufficient_stock`, or
/// `reservation_released` when the order was released before it reserved).
pub fn reserve(req: &Request) -> Result<Response, ApiError> {
    reserve_then(req, Then::Hold)
}

/// `POST /internal/inventory/sell`: the same body and answers as reserve,
/// but the units are sold at once (`status: "committed"`): a checkout whose
/// payment is captured reserves and commits in one call. Asked again for
/// the same order, it answers as the first time; asked for an order whose
/// units are only reserved, it commits them.
pub fn sell(req: &Request) -> Result<Response, ApiError> {
    reserve_then(req, Then::Sell)
}

fn reserve_then(req: &Request, then: Then) -> Result<Response, ApiError> {
    let (order_id, lines) = stock_request::reserve_body(&object_body(req)?)?;
    let db = database::open()?;
    let reservation = inventory::reserve(&db, &order_id, &lines, then)?;
    if reservation.reserved {
        return Ok(api::json(200, &reservation));
    }
    let (code, message) = if reservation.short.is_empty() {
        ("reservation_released", format!("order {order_id} was released: nothing can be reserved for it"))
    } else {
        ("insufficient_stock", "not enough stock for every line: nothing was reserved".to_string())
    };
    let mut body = serde_json::to_value(&reservation).map_err(|e| ApiError::internal(e.to_string()))?;
    body["error"] = ApiError::new(409, code, message).body()["error"].clone();
    Ok(api::json(409, &body))
}

/// `POST /internal/inventory/release` → `{order_id, status}`.
pub fn release(req: &Request) -> Result<Response, ApiError> {
    let order_id = stock_request::order_body(&object_body(req)?)?;
    let db = database::open()?;
    let status = inventory::release(&db, &order_id)?;
    Ok(api::json(200, &json!({ "order_id": order_id, "status": status })))
}

/// `POST /internal/inventory/commit` → `{order_id, status: "committed"}`.
pub fn commit(req: &Request) -> Result<Response, ApiError> {
    let order_id = stock_request::order_body(&object_body(req)?)?;
    let db = database::open()?;
    let status = inventory::commit(&db, &order_id)?;
    Ok(api::json(200, &json!({ "order_id": order_id, "status": status })))
}
