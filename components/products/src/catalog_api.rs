//! The catalog's HTTP endpoints: browsing and searching for everyone,
//! writes for admins (the router checks the role). A read answers the same
//! whoever asks, and says so (`Cache-Control: public`), so the gateway's
//! cache serves signed-in customers too.
use shop_shared::api::{self, ApiError};
use spin_sdk::http::{Request, Response};

use crate::catalog;
use crate::database;
use crate::product::ProductDraft;
use crate::search::SearchQuery;
use crate::validation::object_body;

/// `GET /api/products?q=&category=&min_price_cents=&max_price_cents=&sort=&page=&per_page=`
pub fn search(req: &Request) -> Result<Response, ApiError> {
    let query = SearchQuery::parse(req.query())?;
    let db = database::open()?;
    let page = catalog::search(&db, &query)?;
    Ok(api::public_json(&page))
}

/// `GET /api/products/categories`
pub fn categories() -> Result<Response, ApiError> {
    let db = database::open()?;
    Ok(api::public_json(&catalog::categories(&db)?))
}

/// `GET /api/products/{id}`
pub fn get(id: &str) -> Result<Response, ApiError> {
    let db = database::open()?;
    let product = catalog::get(&db, id)?.ok_or_else(|| no_such_product(id))?;
    Ok(api::public_json(&product))
}

/// `POST /api/products`: 201 with the product and its `location`.
pub fn create(req: &Request) -> Result<Response, ApiError> {
    let draft = ProductDraft::for_create(&object_body(req)?)?;
    let db = database::open()?;
    let id = format!("prd_{}", uuid::Uuid::new_v4().simple());
    let product = catalog::create(&db, &id, &draft)?;
    let mut response = api::json(201, &product);
    response.set_header("location", format!("/api/products/{id}"));
    Ok(response)
}

/// `PUT /api/products/{id}`: the product as it now is.
pub fn update(req: &Request, id: &str) -> Result<Response, ApiError> {
    let body = object_body(req)?;
    let db = database::open()?;
    let current = catalog::get(&db, id)?.ok_or_else(|| no_such_product(id))?;
    let draft = ProductDraft::for_update(&body, &current)?;
    let product = catalog::update(&db, id, &draft)?.ok_or_else(|| no_such_product(id))?;
    Ok(api::json(200, &product))
}

/// `DELETE /api/products/{id}`: 204.
pub fn delete(id: &str) -> Result<Response, ApiError> {
    let db = database::open()?;
    if !catalog::delete(&db, id)? {
        return Err(no_such_product(id));
    }
    Ok(Response::new(204, ()))
}

fn no_such_product(id: &str) -> ApiError {
    ApiError::not_found(format!("no product {id}"))
}
