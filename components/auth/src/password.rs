//! Passwords, stored as argon2id PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! The cost is OWASP's minimum for argon2id: 19 MiB of memory, 2 passes,
//! 1 lane. Measured through the bazaar host (a fresh instance per request,
//! no SIMD, no threads), a whole `POST /api/auth/login` takes a median of
//! about 44 ms, nearly all of it argon2; RFC 9106's 64 MiB with 3 passes
//! took 275 ms. A login's cost is paid on every attempt, and each login in
//! flight holds its memory, so a higher cost buys offline-cracking margin
//! with login capacity (the target of credential-stuffing floods); the
//! minimum OWASP accepts is where that trade is already sound. Each PHC
//! string names its own parameters, so raising the cost later keeps old
//! hashes verifiable.
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use shop_shared::api::ApiError;

/// Memory in KiB, passes, lanes.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn hasher() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| ApiError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string to store for `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, ApiError> {
    hasher()?
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::internal(format!("hashing the password: {e}")))
}

/// Whether `password` is the one `stored` (a PHC string) was made from,
/// with the parameters `stored` names.
pub fn verify(password: &str, stored: &str) -> bool {
    hasher().is_ok_and(|argon2| argon2.verify_password(password.as_bytes(), stored).is_ok())
}

/// Spends the time a verification would when there is no account to verify
/// against, so a login's duration does not tell whether an email is
/// registered.
pub fn waste_equal_time(password: &str) {
    let _ = hash(password);
}
