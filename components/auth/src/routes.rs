//! Which endpoint a request is for. Unknown paths are 404 and known paths
//! with another method 405 (with `Allow`), both as the shop's JSON error.
use shop_shared::api::ApiError;
use spin_sdk::http::{Method, Request, Response};

use crate::handlers;

enum Endpoint {
    Register,
    Login,
    Refresh,
    Logout,
    Jwks,
}

impl Endpoint {
    fn for_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/api/auth/register" => Endpoint::Register,
            "/api/auth/login" => Endpoint::Login,
            "/api/auth/refresh" => Endpoint::Refresh,
            "/api/auth/logout" => Endpoint::Logout,
            "/internal/jwks" => Endpoint::Jwks,
            _ => return None,
        })
    }

    /// Every endpoint answers one method.
    fn method(&self) -> Method {
        match self {
            Endpoint::Jwks => Method::Get,
            _ => Method::Post,
        }
    }
}

pub async fn dispatch(req: Request) -> Response {
    let Some(endpoint) = Endpoint::for_path(req.path()) else {
        return ApiError::not_found(format!("no such route: {}", req.path())).into_response();
    };
    if *req.method() != endpoint.method() {
        let allowed = endpoint.method().to_string();
        let mut response =
            ApiError::new(405, "method_not_allowed", format!("{} takes {allowed}", req.path())).into_response();
        response.set_header("allow", allowed);
        return response;
    }
    let outcome = match endpoint {
        Endpoint::Register => handlers::register(&req).await,
        Endpoint::Login => handlers::login(&req),
        Endpoint::Refresh => handlers::refresh(&req),
        Endpoint::Logout => handlers::logout(&req),
        Endpoint::Jwks => handlers::jwks(),
    };
    outcome.unwrap_or_else(ApiError::into_response)
}
