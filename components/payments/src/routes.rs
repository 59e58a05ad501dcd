//! The HTTP API: which handler answers which method and path. Unknown paths
//! are `404`, known paths with another method `405` (with `Allow`), both in
//! the shop's JSON error shape.
use shop_shared::api::ApiError;
use spin_sdk::http::{Method, Request, Response};

use crate::access::Caller;
use crate::{charges, reads, refunds};

pub fn handle(req: &Request) -> Result<Response, ApiError> {
    let caller = Caller::of(req);
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    let method = req.method();
    match segments.as_slice() {
        ["api", "payments"] => match method {
            Method::Get => reads::list(req, &caller),
            _ => Ok(method_not_allowed("GET")),
        },
        ["api", "payments", "charges"] => match method {
            Method::Post => charges::create(req, &caller),
            _ => Ok(method_not_allowed("POST")),
        },
        ["api", "payments", payment_id] => match method {
            Method::Get => reads::show(payment_id, &caller),
            _ => Ok(method_not_allowed("GET")),
        },
        ["api", "payments", payment_id, "refunds"] => match method {
            Method::Post => refunds::create(req, payment_id, &caller),
            _ => Ok(method_not_allowed("POST")),
        },
        _ => Err(ApiError::not_found(format!("no route for {}", req.path()))),
    }
}

fn method_not_allowed(allow: &str) -> Response {
    let mut response =
        ApiError::new(405, "method_not_allowed", format!("this path only accepts {allow}")).into_response();
    response.set_header("allow", allow);
    response
}
