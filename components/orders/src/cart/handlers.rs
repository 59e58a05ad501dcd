//! The cart's routes: `GET /api/cart`, `POST /api/cart/items`,
//! `PATCH|DELETE /api/cart/items/{sku}`. Each answers with the whole cart.
use shop_shared::api::{ApiError, FieldError, json};
use spin_sdk::http::{Request, Response};

use super::requests::{AddItem, SetQuantity};
use super::store::CartStore;
use super::{Cart, CartItem, MAX_LINES, Put};
use crate::caller;
use crate::clients::{Upstream, products};

pub fn view(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let cart = CartStore::open()?.load(&user_id)?;
    Ok(json(200, &cart.view()))
}

/// Puts a product in the cart with the catalog's name and price: 201 for a
/// new line, 200 when the SKU's line was there (its quantity is replaced).
pub async fn add(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let AddItem { sku, quantity } = AddItem::from_request(req)?;
    let product = products::by_sku(&Upstream::for_request(req), &[&sku]).await?.remove(&sku).ok_or_else(|| {
        ApiError::invalid(vec![FieldError { field: "sku".into(), message: format!("no product has SKU {sku}") }])
    })?;
    let item = CartItem { sku: product.sku, name: product.name, unit_price_cents: product.price_cents, quantity };
    let (cart, status) = CartStore::open()?.change(&user_id, |cart| match cart.put(item.clone()) {
        Put::Added => Ok(201),
        Put::Replaced => Ok(200),
        Put::Full => Err(ApiError::new(409, "cart_full", format!("a cart holds at most {MAX_LINES} different products"))),
    })?;
    Ok(json(status, &cart.view()))
}

pub fn set_quantity(req: &Request, sku: &str) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let SetQuantity { quantity } = SetQuantity::from_request(req)?;
    update(&user_id, sku, |cart| cart.set_quantity(sku, quantity))
}

pub fn remove(req: &Request, sku: &str) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    update(&user_id, sku, |cart| cart.remove(sku))
}

/// Applies `change` to the line for `sku`: 404 if the cart has none.
fn update(user_id: &str, sku: &str, mut change: impl FnMut(&mut Cart) -> bool) -> Result<Response, ApiError> {
    let (cart, ()) = CartStore::open()?.change(user_id, |cart| {
        if change(cart) { Ok(()) } else { Err(ApiError::not_found(format!("the cart has no line for SKU {sku}"))) }
    })?;
    Ok(json(200, &cart.view()))
}
