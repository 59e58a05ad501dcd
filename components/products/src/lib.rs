//! The products service: the shop's catalog and its inventory.
//!
//! - Catalog: products in categories, searched by text, category and price,
//!   sorted and paged (`GET /api/products...`, public); admins create,
//!   replace and delete products.
//! - Inventory: units available per SKU. The orders service checks them,
//!   reserves them for an order (all lines or none, idempotent per order
//!   id), then commits the reservation (a sale) or releases it, or sells
//!   them at once (reserve and commit in one call, once the order is paid)
//!   (`/internal/inventory/...`, private).
//!
//! The database is the one the `database_url` variable names (SQLite
//! embedded, Postgres in production); its schema and a seed catalog of 55
//! products in 6 categories are applied on first use. The contract is
//! components/CONTRACTS.md, "products".
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

mod catalog;
mod catalog_api;
mod database;
mod inventory;
mod inventory_api;
mod product;
mod routes;
mod search;
mod stock_request;
mod validation;

#[http_component]
fn handle(req: Request) -> Response {
    routes::handle(&req)
}
