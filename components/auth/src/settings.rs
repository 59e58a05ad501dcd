//! The Spin variables that configure auth.
use shop_shared::api::ApiError;

/// The email that registers as `admin` (variable `admin_email`), if any.
pub fn admin_email() -> Result<Option<String>, ApiError> {
    optional("admin_email")
}

/// Base64 of the Ed25519 seed to sign with (secret variable
/// `jwt_signing_key`), if the operator provides one.
pub fn jwt_signing_key() -> Result<Option<String>, ApiError> {
    optional("jwt_signing_key")
}

/// A variable that may be left empty: `None` when it is. A variable the
/// manifest does not declare is a deployment error, not an empty setting.
fn optional(name: &str) -> Result<Option<String>, ApiError> {
    let value =
        spin_sdk::variables::get(name).map_err(|e| ApiError::internal(format!("reading the {name} variable: {e}")))?;
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_string()))
}
