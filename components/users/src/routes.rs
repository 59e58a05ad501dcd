//! Which endpoint a request is for. Unknown paths are 404 and known paths
//! with another method 405 (with `Allow`), both as the shop's JSON error.
use shop_shared::api::ApiError;
use spin_sdk::http::{Method, Request, Response};

use crate::handlers;

/// The resources the users service serves, by path.
enum Resource<'a> {
    /// `/internal/users`
    Profiles,
    /// `/internal/users/{user_id}`
    Profile(&'a str),
    /// `/internal/feed/relay`
    FeedRelay,
    /// `/api/users/me`
    Me,
    /// `/api/users/me/preferences`
    Preferences,
    /// `/api/users/me/addresses`
    Addresses,
    /// `/api/users/me/addresses/{id}`
    Address(&'a str),
}

impl Resource<'_> {
    fn for_path(path: &str) -> Option<Resource<'_>> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        Some(match segments.as_slice() {
            ["internal", "users"] => Resource::Profiles,
            ["internal", "users", id] if !id.is_empty() => Resource::Profile(id),
            ["internal", "feed", "relay"] => Resource::FeedRelay,
            ["api", "users", "me"] => Resource::Me,
            ["api", "users", "me", "preferences"] => Resource::Preferences,
            ["api", "users", "me", "addresses"] => Resource::Addresses,
            ["api", "users", "me", "addresses", id] if !id.is_empty() => Resource::Address(id),
            _ => return None,
        })
    }

    /// The `Allow` header of the resource.
    fn allowed(&self) -> &'static str {
        match self {
            Resource::Profiles => "POST",
            Resource::Profile(_) => "GET",
            Resource::FeedRelay => "POST",
            Resource::Me => "GET, PATCH",
            Resource::Preferences => "GET, PUT",
            Resource::Addresses => "GET, POST",
            Resource::Address(_) => "DELETE",
        }
    }
}

pub fn dispatch(req: &Request) -> Response {
    let Some(resource) = Resource::for_path(req.path()) else {
        return ApiError::not_found(format!("no such route: {}", req.path())).into_response();
    };
    let outcome = match (&resource, req.method()) {
        (Resource::Profiles, Method::Post) => handlers::create_profile(req),
        (Resource::Profile(user_id), Method::Get) => handlers::profile_of(user_id),
        (Resource::FeedRelay, Method::Post) => handlers::relay_feed(),
        (Resource::Me, Method::Get) => handlers::my_profile(req),
        (Resource::Me, Method::Patch) => handlers::update_my_profile(req),
        (Resource::Preferences, Method::Get) => handlers::my_preferences(req),
        (Resource::Preferences, Method::Put) => handlers::set_my_preferences(req),
        (Resource::Addresses, Method::Get) => handlers::my_addresses(req),
        (Resource::Addresses, Method::Post) => handlers::add_my_address(req),
        (Resource::Address(id), Method::Delete) => handlers::delete_my_address(req, id),
        _ => {
            let allowed = resource.allowed();
            let mut response =
                ApiError::new(405, "method_not_allowed", format!("{} takes {allowed}", req.path())).into_response();
            response.set_header("allow", allowed);
            return response;
        }
    };
    outcome.unwrap_or_else(ApiError::into_response)
}
