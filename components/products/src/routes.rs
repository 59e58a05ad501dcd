//! Which endpoint a request is for, and who may call it.
//!
//! Routes are matched on the whole URI path, so the component answers the
//! same whether it is mounted at `/...` or reached privately through
//! `http://products.spin.internal/...`.
use shop_shared::api::{ApiError, USER_ID, USER_ROLE};
use spin_sdk::http::{Method, Request, Response};

use crate::{catalog_api, inventory_api};

#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    Search,
    Categories,
    Get(&'a str),
    Create,
    Update(&'a str),
    Delete(&'a str),
    Check,
    Reserve,
    Sell,
    Release,
    Commit,
}

/// Why no endpoint answers.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    NotFound,
    /// The path exists; these methods (the `allow` header) do.
    MethodNotAllowed(&'static str),
}

pub fn handle(req: &Request) -> Response {
    let endpoint = match resolve(req.method(), req.path()) {
        Ok(endpoint) => endpoint,
        Err(Miss::NotFound) => {
            return ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).into_response();
        }
        Err(Miss::MethodNotAllowed(allow)) => {
            let message = format!("{} is not allowed here: use {allow}", req.method());
            let mut response = ApiError::new(405, "method_not_allowed", message).into_response();
            response.set_header("allow", allow);
            return response;
        }
    };
    serve(req, endpoint).unwrap_or_else(ApiError::into_response)
}

fn serve(req: &Request, endpoint: Endpoint) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::Search => catalog_api::search(req),
        Endpoint::Categories => catalog_api::categories(),
        Endpoint::Get(id) => catalog_api::get(id),
        Endpoint::Create => require_admin(req).and_then(|()| catalog_api::create(req)),
        Endpoint::Update(id) => require_admin(req).and_then(|()| catalog_api::update(req, id)),
        Endpoint::Delete(id) => require_admin(req).and_then(|()| catalog_api::delete(id)),
        Endpoint::Check => inventory_api::check(req),
        Endpoint::Reserve => inventory_api::reserve(req),
        Endpoint::Sell => inventory_api::sell(req),
        Endpoint::Release => inventory_api::release(req),
        Endpoint::Commit => inventory_api::commit(req),
    }
}

fn resolve<'a>(method: &Method, path: &'a str) -> Result<Endpoint<'a>, Miss> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (segments.as_slice(), method) {
        (["api", "products"], Method::Get) => Ok(Endpoint::Search),
        (["api", "products"], Method::Post) => Ok(Endpoint::Create),
        (["api", "products"], _) => Err(Miss::MethodNotAllowed("GET, POST")),
        (["api", "products", "categories"], Method::Get) => Ok(Endpoint::Categories),
        (["api", "products", "categories"], _) => Err(Miss::MethodNotAllowed("GET")),
        (["api", "products", id], Method::Get) => Ok(Endpoint::Get(id)),
        (["api", "products", id], Method::Put) => Ok(Endpoint::Update(id)),
        (["api", "products", id], Method::Delete) => Ok(Endpoint::Delete(id)),
        (["api", "products", _], _) => Err(Miss::MethodNotAllowed("GET, PUT, DELETE")),
        (["internal", "inventory", action], Method::Post) => match *action {
            "check" => Ok(Endpoint::Check),
            "reserve" => Ok(Endpoint::Reserve),
            "sell" => Ok(Endpoint::Sell),
            "release" => Ok(Endpoint::Release),
            "commit" => Ok(Endpoint::Commit),
            _ => Err(Miss::NotFound),
        },
        (["internal", "inventory", "check" | "reserve" | "sell" | "release" | "commit"], _) => {
            Err(Miss::MethodNotAllowed("POST"))
        }
        _ => Err(Miss::NotFound),
    }
}

/// Catalog writes are for admins. The gateway authenticates and sets
/// `x-user-id` / `x-user-role`, which this private service trusts: no user
/// is a 401, a user who is not an admin a 403.
fn require_admin(req: &Request) -> Result<(), ApiError> {
    let header = |name| req.header(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    if header(USER_ID).is_none() {
        return Err(ApiError::unauthorized("sign in as an admin to change the catalog"));
    }
    if header(USER_ROLE) != Some("admin") {
        return Err(ApiError::forbidden("only admins may change the catalog"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_route_resolves() {
        let cases = [
            (Method::Get, "/api/products", Endpoint::Search),
            (Method::Get, "/api/products/", Endpoint::Search),
            (Method::Post, "/api/products", Endpoint::Create),
            (Method::Get, "/api/products/categories", Endpoint::Categories),
            (Method::Get, "/api/products/prd_1", Endpoint::Get("prd_1")),
            (Method::Put, "/api/products/prd_1", Endpoint::Update("prd_1")),
            (Method::Delete, "/api/products/prd_1", Endpoint::Delete("prd_1")),
            (Method::Post, "/internal/inventory/check", Endpoint::Check),
            (Method::Post, "/internal/inventory/reserve", Endpoint::Reserve),
            (Method::Post, "/internal/inventory/sell", Endpoint::Sell),
            (Method::Post, "/internal/inventory/release", Endpoint::Release),
            (Method::Post, "/internal/inventory/commit", Endpoint::Commit),
        ];
        for (method, path, endpoint) in cases {
            assert_eq!(resolve(&method, path), Ok(endpoint), "{method} {path}");
        }
    }

    #[test]
    fn misses() {
        assert_eq!(resolve(&Method::Delete, "/api/products"), Err(Miss::MethodNotAllowed("GET, POST")));
        assert_eq!(resolve(&Method::Patch, "/api/products/p1"), Err(Miss::MethodNotAllowed("GET, PUT, DELETE")));
        assert_eq!(resolve(&Method::Get, "/internal/inventory/reserve"), Err(Miss::MethodNotAllowed("POST")));
        assert_eq!(resolve(&Method::Post, "/internal/inventory/steal"), Err(Miss::NotFound));
        assert_eq!(resolve(&Method::Get, "/api/products/p1/reviews"), Err(Miss::NotFound));
        assert_eq!(resolve(&Method::Get, "/"), Err(Miss::NotFound));
    }
}
