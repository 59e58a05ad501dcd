//! The public route table: which service answers a path, who may call it,
//! which rate limit it counts against, and whether it touches the catalog.
//!
//! Only `/api/<service>/...` is forwarded, so private routes
//! (`/internal/...`) are unreachable from outside; paths with dot segments
//! or encoded separators are refused before they could be normalised into
//! one.
use shop_shared::api::ApiError;

use crate::rate_limit::Class;

/// The gateway's own document.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// `/api/<prefix>` → the service that answers it.
const SERVICES: [(&str, &str); 7] = [
    ("auth", "auth"),
    ("users", "users"),
    ("products", "products"),
    ("cart", "orders"),
    ("orders", "orders"),
    ("payments", "payments"),
    ("notifications", "notifications"),
];

/// The auth routes anyone may call (with `POST`).
const PUBLIC_AUTH: [&str; 4] = ["/api/auth/register", "/api/auth/login", "/api/auth/refresh", "/api/auth/logout"];

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any valid access token.
    Authenticated,
    /// An access token with the `admin` role.
    Admin,
}

/// How a route relates to the catalog cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Catalog {
    None,
    /// A catalog read: through the shared cache.
    Read,
    /// A catalog write: invalidates the cache when it succeeds.
    Write,
}

/// A forwarded route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The service's component id, reached as `http://<service>.spin.internal`.
    pub service: &'static str,
    pub access: Access,
    pub class: Class,
    pub catalog: Catalog,
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Forward(Route),
    OpenApi,
}

/// Resolves a request; `Err` is the gateway's own 400, 404 or 405.
pub fn resolve(method: &str, path: &str) -> Result<Resolved, ApiError> {
    if has_unsafe_segments(path) {
        return Err(ApiError::bad_request("the path has dot segments or encoded separators"));
    }
    if path == OPENAPI_PATH {
        return match method {
            "GET" => Ok(Resolved::OpenApi),
            _ => Err(ApiError::new(405, "method_not_allowed", format!("{OPENAPI_PATH} only answers GET"))),
        };
    }
    let mut segments = path.strip_prefix('/').unwrap_or(path).splitn(3, '/');
    let (Some("api"), Some(prefix)) = (segments.next(), segments.next()) else {
        return Err(not_found(path));
    };
    let Some(&(_, service)) = SERVICES.iter().find(|(p, _)| *p == prefix) else {
        return Err(not_found(path));
    };
    let reads = matches!(method, "GET" | "HEAD" | "OPTIONS");
    let route = match service {
        "auth" => Route {
            service,
            access: if method == "POST" && PUBLIC_AUTH.contains(&path) { Access::Public } else { Access::Authenticated },
            class: Class::Auth,
            catalog: Catalog::None,
        },
        "products" if method == "GET" => Route { service, access: Access::Public, class: Class::Reads, catalog: Catalog::Read },
        "products" => Route { service, access: Access::Admin, class: Class::Writes, catalog: Catalog::Write },
        // Charges and refunds are the checkout saga's (orders calls payments
        // directly); through the gateway a customer may only read their
        // payments, and only support staff (admins) may refund.
        "payments" if !reads => Route { service, access: Access::Admin, class: Class::Writes, catalog: Catalog::None },
        _ => Route {
            service,
            access: Access::Authenticated,
            class: if reads { Class::Reads } else { Class::Writes },
            catalog: Catalog::None,
        },
    };
    Ok(Resolved::Forward(route))
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(format!("the gateway has no route for {path}"))
}

/// `.` or `..` segments (also percent-encoded), or encoded `/` and `\`,
/// which a service's router might normalise into a path the gateway never
/// checked.
fn has_unsafe_segments(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || lower.split('/').any(|segment| matches!(segment.replace("%2e", ".").as_str(), "." | ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        match resolve(method, path) {
            Ok(Resolved::Forward(route)) => route,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn status(method: &str, path: &str) -> u16 {
        resolve(method, path).expect_err(path).status
    }

    #[test]
    fn every_prefix_goes_to_its_service() {
        assert_eq!(route("GET", "/api/users/me").service, "users");
        assert_eq!(route("GET", "/api/cart").service, "orders");
        assert_eq!(route("POST", "/api/cart/items").service, "orders");
        assert_eq!(route("GET", "/api/orders/o1").service, "orders");
        assert_eq!(route("POST", "/api/payments/charges").service, "payments");
        assert_eq!(route("GET", "/api/notifications").service, "notifications");
        assert_eq!(route("GET", "/api/products").service, "products");
        assert_eq!(route("POST", "/api/auth/login").service, "auth");
    }

    #[test]
    fn only_the_sign_in_routes_and_catalog_reads_are_public() {
        for path in PUBLIC_AUTH {
            assert_eq!(route("POST", path).access, Access::Public, "{path}");
            assert_eq!(route("GET", path).access, Access::Authenticated, "{path}");
        }
        assert_eq!(route("POST", "/api/auth/other").access, Access::Authenticated);
        assert_eq!(route("GET", "/api/products/p1").access, Access::Public);
        assert_eq!(route("GET", "/api/products").catalog, Catalog::Read);
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let write = route(method, "/api/products/p1");
            assert_eq!((write.access, write.catalog, write.class), (Access::Admin, Catalog::Write, Class::Writes));
        }
        assert_eq!(route("GET", "/api/users/me").access, Access::Authenticated);
    }

    #[test]
    fn customers_read_payments_but_only_admins_write_them() {
        assert_eq!(route("GET", "/api/payments/p1").access, Access::Authenticated);
        assert_eq!(route("POST", "/api/payments/charges").access, Access::Admin);
        assert_eq!(route("POST", "/api/payments/p1/refunds").access, Access::Admin);
    }

    #[test]
    fn classes_follow_the_method_and_auth_has_its_own() {
        assert_eq!(route("POST", "/api/auth/login").class, Class::Auth);
        assert_eq!(route("GET", "/api/orders").class, Class::Reads);
        assert_eq!(route("POST", "/api/orders/checkout").class, Class::Writes);
        assert_eq!(route("DELETE", "/api/users/me/addresses/a1").class, Class::Writes);
    }

    #[test]
    fn unknown_and_internal_paths_are_not_found() {
        for path in ["/", "/api", "/api/", "/api/unknown", "/api/productsx", "/internal/jwks", "/internal/users/u1", "/apix/products"] {
            assert_eq!(status("GET", path), 404, "{path}");
        }
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_refused() {
        for path in ["/api/products/../../internal/jwks", "/api/products/%2e%2E/x", "/api/products/./p", "/api/products%2finternal", "/api/products/a%5Cb"] {
            assert_eq!(status("GET", path), 400, "{path}");
        }
        assert_eq!(route("GET", "/api/products/a.b").service, "products");
    }

    #[test]
    fn the_openapi_document_is_get_only() {
        assert_eq!(resolve("GET", OPENAPI_PATH).unwrap(), Resolved::OpenApi);
        assert_eq!(status("POST", OPENAPI_PATH), 405);
    }
}
