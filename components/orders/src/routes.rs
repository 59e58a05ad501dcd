//! Which handler answers which method and path. An unknown path is 404, a
//! known path with another method 405 (with `Allow`), both in the shop's
//! JSON error shape.
use shop_shared::api::ApiError;
use spin_sdk::http::{Method, Request, Response};

use crate::{cart, checkout, internal, orders};

/// The paths this service serves.
enum Route<'a> {
    Cart,
    CartItems,
    CartItem(&'a str),
    Orders,
    Checkout,
    Order(&'a str),
    ResumeSagas,
    RelayOutbox,
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.strip_prefix('/')?.trim_end_matches('/').split('/').collect();
        Some(match segments.as_slice() {
            ["api", "cart"] => Route::Cart,
            ["api", "cart", "items"] => Route::CartItems,
            ["api", "cart", "items", sku] if !sku.is_empty() => Route::CartItem(sku),
            ["api", "orders"] => Route::Orders,
            ["api", "orders", "checkout"] => Route::Checkout,
            ["api", "orders", id] if !id.is_empty() => Route::Order(id),
            ["internal", "sagas", "resume"] => Route::ResumeSagas,
            ["internal", "outbox", "relay"] => Route::RelayOutbox,
            _ => return None,
        })
    }

    fn allowed(&self) -> &'static str {
        match self {
            Route::Cart | Route::Orders | Route::Order(_) => "GET",
            Route::CartItems | Route::Checkout | Route::ResumeSagas | Route::RelayOutbox => "POST",
            Route::CartItem(_) => "PATCH, DELETE",
        }
    }
}

pub async fn handle(req: Request) -> Response {
    let Some(route) = Route::of(req.path()) else {
        return ApiError::not_found(format!("no route for {}", req.path())).into_response();
    };
    let result = match (&route, req.method()) {
        (Route::Cart, Method::Get) => cart::handlers::view(&req),
        (Route::CartItems, Method::Post) => cart::handlers::add(&req).await,
        (Route::CartItem(sku), Method::Patch) => cart::handlers::set_quantity(&req, sku),
        (Route::CartItem(sku), Method::Delete) => cart::handlers::remove(&req, sku),
        (Route::Orders, Method::Get) => orders::handlers::list(&req),
        (Route::Checkout, Method::Post) => checkout::checkout(&req).await,
        (Route::Order(id), Method::Get) => orders::handlers::show(&req, id),
        (Route::ResumeSagas, Method::Post) => internal::resume_sagas(&req).await,
        (Route::RelayOutbox, Method::Post) => internal::relay_outbox(),
        _ => Ok(method_not_allowed(route.allowed())),
    };
    result.unwrap_or_else(|e| {
        if e.status >= 500 {
            eprintln!("orders: {} {} failed: {}", req.method(), req.path(), e.message);
        }
        e.into_response()
    })
}

fn method_not_allowed(allow: &str) -> Response {
    let mut response =
        ApiError::new(405, "method_not_allowed", format!("this path only accepts {allow}")).into_response();
    response.set_header("allow", allow);
    response
}
