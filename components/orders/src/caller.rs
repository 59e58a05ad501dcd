//! Who is asking. The gateway authenticates users and passes the user id on
//! in `x-user-id`; this service is private, so it trusts that header, and
//! refuses user-scoped requests that come without one.
use shop_shared::api::{ApiError, USER_ID};
use spin_sdk::http::Request;

/// Longest user id accepted: ids are opaque, but a key-value key and an
/// indexed column should stay small.
const MAX_USER_ID_LEN: usize = 128;

/// The id of the user making `req`, or 401.
pub fn user_id(req: &Request) -> Result<String, ApiError> {
    let id = req.header(USER_ID).and_then(|v| v.as_str()).map(str::trim).unwrap_or_default();
    if id.is_empty() {
        return Err(ApiError::unauthorized("this route needs an authenticated user (x-user-id)"));
    }
    if id.len() > MAX_USER_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::unauthorized("x-user-id is not a valid user id"));
    }
    Ok(id.to_string())
}
