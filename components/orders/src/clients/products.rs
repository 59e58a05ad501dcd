//! The products service: the catalog (a product's current name and price)
//! and its inventory endpoints, which a checkout uses to price its cart and
//! check its stock, and the saga to check, sell (or reserve and commit) and
//! release stock per order (each idempotent per order id).
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use shop_shared::events::OrderLine;

use super::{Unavailable, Upstream};

const BASE: &str = "http://products.spin.internal";

/// What the catalog says about a product now.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
}

/// A line the inventory cannot fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: String,
    pub requested: i64,
    pub in_stock: i64,
}

/// Whether every line can be (or was) had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stock {
    Available,
    Short(Vec<Shortage>),
}

/// Whether a reservation became a sale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// Products holds no reservation for the order any more (released or
    /// never made): there is nothing to sell.
    NoReservation,
}

#[derive(Serialize)]
struct Item<'a> {
    sku: &'a str,
    quantity: u32,
}

fn items(lines: &[OrderLine]) -> Vec<Item<'_>> {
    lines.iter().map(|line| Item { sku: &line.sku, quantity: line.quantity }).collect()
}

fn to_body(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// SKUs the catalog takes per listing call (its page maximum).
const PAGE_SIZE: usize = 100;

/// The catalog's listing, as far as a lookup needs it.
#[derive(Deserialize)]
struct Listing {
    items: Vec<Product>,
}

/// The catalog's products with these SKUs; a SKU it does not sell is
/// missing from the map. One call per hundred SKUs: the listing filtered by
/// SKU (`GET /api/products?sku=A,B`). SKUs are letters, digits, `-`, `_`
/// and `.` (products refuses others), so they need no escaping in the URL.
pub async fn by_sku(up: &Upstream, skus: &[&str]) -> Result<HashMap<String, Product>, Unavailable> {
    let mut found = HashMap::new();
    for chunk in skus.chunks(PAGE_SIZE) {
        let url = format!("{BASE}/api/products?sku={}&per_page={PAGE_SIZE}", chunk.join(","));
        let reply = up.get(&url).await?;
        if reply.status != 200 {
            return Err(reply.unexpected("reading the catalog"));
        }
        let listing: Listing =
            serde_json::from_value(reply.body).map_err(|e| Unavailable(format!("reading the catalog: {e}")))?;
        for product in listing.items {
            if chunk.contains(&product.sku.as_str()) {
                found.insert(product.sku.clone(), product);
            }
        }
    }
    Ok(found)
}

/// Whether the lines are in stock now (nothing is held).
pub async fn check(up: &Upstream, lines: &[OrderLine]) -> Result<Stock, Unavailable> {
    stock(&inventory_check(up, items(lines)).await?, "available", "checking stock")
}

/// A checkout's quote: which of the cart's SKUs the catalog sells, at their
/// name and price now, and whether the cart's quantities are in stock now.
pub struct Quote {
    pub products: HashMap<String, Product>,
    pub stock: Stock,
}

/// Prices `(sku, quantity)` and checks their stock in one call to products
/// (its inventory check answers both). A products that answers the check
/// without prices (a build from before they were added, during a rolling
/// upgrade) is asked for them with the catalog listing, as before.
pub async fn quote(up: &Upstream, cart: &[(&str, u32)]) -> Result<Quote, Unavailable> {
    let body = inventory_check(up, cart.iter().map(|&(sku, quantity)| Item { sku, quantity }).collect()).await?;
    let stock = stock(&body, "available", "checking stock")?;
    let products = match body.get("products") {
        Some(products) => serde_json::from_value::<Vec<Product>>(products.clone())
            .map_err(|e| Unavailable(format!("checking stock: unreadable prices: {e}")))?
            .into_iter()
            .map(|product| (product.sku.clone(), product))
            .collect(),
        None => by_sku(up, &cart.iter().map(|&(sku, _)| sku).collect::<Vec<_>>()).await?,
    };
    Ok(Quote { products, stock })
}

/// `POST /internal/inventory/check`: its answer.
async fn inventory_check(up: &Upstream, items: Vec<Item<'_>>) -> Result<serde_json::Value, Unavailable> {
    let reply = up.post(&format!("{BASE}/internal/inventory/check"), to_body(&json!({ "items": items })), &[]).await?;
    match reply.status {
        200 => Ok(reply.body),
        _ => Err(reply.unexpected("checking stock")),
    }
}

/// Reserves every line for `order_id`, or nothing. Asked again for the same
/// order, products answers as it did the first time.
pub async fn reserve(up: &Upstream, order_id: &str, lines: &[OrderLine]) -> Result<Stock, Unavailable> {
    let body = to_body(&json!({ "order_id": order_id, "items": items(lines) }));
    let reply = up.post(&format!("{BASE}/internal/inventory/reserve"), body, &[]).await?;
    match reply.status {
        200 | 409 => stock(&reply.body, "reserved", "reserving stock"),
        _ => Err(reply.unexpected("reserving stock")),
    }
}

/// Sells every line to `order_id` at once (reserve and commit in one call),
/// or nothing if any is short. Asked again for the same order, products
/// answers as it did the first time. `None`: this products has no `sell`
/// (a build from before it, during a rolling upgrade; its 404 is for the
/// route, as sell itself never answers 404), so the caller reserves, then
/// commits, as before.
pub async fn sell(up: &Upstream, order_id: &str, lines: &[OrderLine]) -> Result<Option<Stock>, Unavailable> {
    let body = to_body(&json!({ "order_id": order_id, "items": items(lines) }));
    let reply = up.post(&format!("{BASE}/internal/inventory/sell"), body, &[]).await?;
    match reply.status {
        200 | 409 => stock(&reply.body, "reserved", "selling stock").map(Some),
        404 => Ok(None),
        _ => Err(reply.unexpected("selling stock")),
    }
}

/// Turns the order's reservation into a sale.
pub async fn commit(up: &Upstream, order_id: &str) -> Result<Commit, Unavailable> {
    let body = to_body(&json!({ "order_id": order_id }));
    let reply = up.post(&format!("{BASE}/internal/inventory/commit"), body, &[]).await?;
    match reply.status {
        200 => Ok(Commit::Committed),
        404 | 409 => Ok(Commit::NoReservation),
        _ => Err(reply.unexpected("committing stock")),
    }
}

/// Gives the order's reserved units back (nothing happens if none are).
pub async fn release(up: &Upstream, order_id: &str) -> Result<(), Unavailable> {
    let body = to_body(&json!({ "order_id": order_id }));
    let reply = up.post(&format!("{BASE}/internal/inventory/release"), body, &[]).await?;
    match reply.status {
        200 => Ok(()),
        _ => Err(reply.unexpected("releasing stock")),
    }
}

/// Reads `{<flag>: bool, short: [...]}`.
fn stock(body: &serde_json::Value, flag: &str, what: &str) -> Result<Stock, Unavailable> {
    let unreadable = || Unavailable(format!("{what}: unreadable answer {body}"));
    let granted = body.get(flag).and_then(serde_json::Value::as_bool).ok_or_else(unreadable)?;
    if granted {
        return Ok(Stock::Available);
    }
    let short = body.get("short").cloned().unwrap_or_default();
    let short: Vec<Shortage> = serde_json::from_value(short).map_err(|_| unreadable())?;
    Ok(Stock::Short(short))
}
