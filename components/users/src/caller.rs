//! Who is asking: the user the gateway authenticated.
use shop_shared::api::{ApiError, USER_ID};
use spin_sdk::http::Request;

/// The `x-user-id` the gateway set, or 401: without it the request did not
/// come through the gateway's authentication.
pub fn user_id(req: &Request) -> Result<String, ApiError> {
    req.header(USER_ID)
        .and_then(|value| value.as_str())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::unauthorized(format!("the {USER_ID} header is missing: sign in through the gateway")))
}
