//! `GET /api/orders` and `GET /api/orders/{id}`: a user's own orders.
use serde::Serialize;
use shop_shared::api::{ApiError, json};
use spin_sdk::http::{Request, Response};

use super::model::Order;
use super::store;
use crate::validation::Validator;
use crate::{caller, schema};

const DEFAULT_PER_PAGE: i64 = 20;
const MAX_PER_PAGE: i64 = 100;

/// A page of orders, in the shape every list of the shop has.
#[derive(Serialize)]
struct Page {
    items: Vec<Order>,
    page: i64,
    per_page: i64,
    total: i64,
}

/// The user's orders, newest first: `?page=1&per_page=20`.
pub fn list(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let (page, per_page) = paging(req.query())?;
    let db = schema::open()?;
    let (items, total) = store::page_for_user(&db, &user_id, per_page, (page - 1) * per_page)?;
    Ok(json(200, &Page { items, page, per_page, total }))
}

/// One of the user's orders; another user's is 404, as if it did not exist.
pub fn show(req: &Request, order_id: &str) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let db = schema::open()?;
    match store::find(&db, order_id)? {
        Some(order) if order.user_id == user_id => Ok(json(200, &order)),
        _ => Err(ApiError::not_found(format!("no order {order_id}"))),
    }
}

/// `page` (from 1) and `per_page` (1 to 100) from the query string.
fn paging(query: &str) -> Result<(i64, i64), ApiError> {
    let mut v = Validator::new();
    let mut page = 1;
    let mut per_page = DEFAULT_PER_PAGE;
    for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        let (slot, range) = match name {
            "page" => (&mut page, 1..=i64::from(u32::MAX)),
            "per_page" => (&mut per_page, 1..=MAX_PER_PAGE),
            _ => continue,
        };
        match value.parse::<i64>() {
            Ok(n) if range.contains(&n) => *slot = n,
            _ => v.reject(name, format!("must be an integer from {} to {}", range.start(), range.end())),
        }
    }
    v.finish()?;
    Ok((page, per_page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_bounds() {
        assert_eq!(paging("").unwrap(), (1, 20));
        assert_eq!(paging("page=3&per_page=5&other=x").unwrap(), (3, 5));
        let error = paging("page=0&per_page=101").unwrap_err();
        let fields: Vec<&str> = error.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["page", "per_page"]);
    }
}
