//! Secure randomness from the host (`wasi:random` on wasm32-wasip2): ids,
//! token ids, refresh tokens and generated signing keys.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shop_shared::api::ApiError;

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| ApiError::internal(format!("no randomness from the host: {e}")))?;
    Ok(buf)
}

/// A random (version 4) UUID, the shop's id format for users and tokens.
pub fn uuid() -> Result<String, ApiError> {
    Ok(uuid::Builder::from_random_bytes(bytes()?).into_uuid().to_string())
}

/// 256 random bits, URL-safe base64: a bearer secret nobody can guess.
pub fn secret_token() -> Result<String, ApiError> {
    Ok(URL_SAFE_NO_PAD.encode(bytes::<32>()?))
}
