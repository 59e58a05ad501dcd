//! Access tokens: short-lived EdDSA JWTs that services (through the
//! gateway) verify with the public key alone, without calling auth.
use chrono::{DateTime, TimeDelta, Utc};
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt as _, Claims, Header, TimeOptions};
use serde::Serialize;
use shop_shared::api::ApiError;

use crate::accounts::Account;
use crate::signing_key::KeyPair;
use crate::{clock, random};

/// Short enough that a stolen or revoked-by-logout token is useful only
/// briefly: access tokens are not checked against auth once issued.
pub const LIFETIME_SECS: i64 = 15 * 60;
pub const ISSUER: &str = "bazaar-auth";

/// The claims besides `iat` and `exp` (which [`Claims`] carries).
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'static str,
    sub: &'a str,
    email: &'a str,
    role: &'static str,
    /// Unique per token, for audit and for any future deny list.
    jti: String,
}

/// A signed access token for `account`, valid for [`LIFETIME_SECS`].
pub fn issue(key: &KeyPair, account: &Account) -> Result<String, ApiError> {
    let custom = AccessClaims {
        iss: ISSUER,
        sub: &account.id,
        email: &account.email,
        role: account.role.as_str(),
        jti: random::uuid()?,
    };
    let now = DateTime::<Utc>::from_timestamp_millis(clock::now_ms()).unwrap_or_default();
    let time = TimeOptions::new(TimeDelta::zero(), move || now);
    let claims = Claims::new(custom).set_duration_and_issuance(&time, TimeDelta::seconds(LIFETIME_SECS));
    let header = Header::empty().with_key_id(&key.kid).with_token_type("JWT");
    Ed25519
        .token(&header, &claims, &key.signing)
        .map_err(|e| ApiError::internal(format!("signing the access token: {e}")))
}
