//! `GET /api/payments/{payment_id}` and `GET /api/payments?order_id=`.
use serde::Serialize;
use shop_shared::api::{ApiError, FieldError, json};
use shop_shared::db::Db;
use spin_sdk::http::{Request, Response};

use crate::access::Caller;
use crate::model::Payment;
use crate::store;

pub fn show(payment_id: &str, caller: &Caller) -> Result<Response, ApiError> {
    let db = store::open()?;
    Ok(json(200, &visible_payment(&db, payment_id, caller)?))
}

#[derive(Serialize)]
struct PaymentList {
    items: Vec<Payment>,
}

/// An order's payments the caller may see, oldest first.
pub fn list(req: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let order_id = form_urlencoded::parse(req.query().as_bytes())
        .find(|(name, _)| name == "order_id")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(vec![FieldError {
                field: "order_id".into(),
                message: "the query parameter order_id is required".into(),
            }])
        })?;
    let db = store::open()?;
    let items = store::payments_of_order(&db, &order_id)?.into_iter().filter(|p| caller.may_see(p)).collect();
    Ok(json(200, &PaymentList { items }))
}

/// The payment, if it exists and the caller may see it (`404` otherwise, so
/// a customer cannot learn which ids exist).
pub fn visible_payment(db: &Db, payment_id: &str, caller: &Caller) -> Result<Payment, ApiError> {
    store::find_payment(db, payment_id)?.filter(|p| caller.may_see(p)).ok_or_else(|| not_found(payment_id))
}

pub fn not_found(payment_id: &str) -> ApiError {
    ApiError::not_found(format!("no payment {payment_id:?}"))
}
