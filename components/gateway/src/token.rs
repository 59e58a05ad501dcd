//! Access tokens: who a request comes from.
//!
//! auth signs EdDSA (Ed25519) JWTs; the gateway verifies them with
//! jwt-compact over ed25519-dalek, with the key auth's JWK Set names by the
//! token's `kid`. A token is accepted only when its header says `EdDSA`
//! (so `none` and every other algorithm are refused before any key is
//! looked at), its signature verifies, `iss` is auth, `exp` is in the future
//! and `iat` is not, both within a small clock skew. A token that passed
//! all that is remembered (see `verified`), so the same token on the next
//! request is recognised by its hash: neither decoded nor checked again,
//! but for its expiry and its key's place in auth's current set.
use chrono::{DateTime, Duration, Utc};
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt as _, TimeOptions, UntrustedToken, ValidationError};
use serde::Deserialize;

use shop_shared::api::ApiError;

use crate::clock::now_secs;
use crate::jwks::{self, KeyError};
use crate::kv::{self, Store};
use crate::reply::Reply;
use crate::trace::TraceContext;
use crate::verified;

/// The issuer auth writes into every access token.
const ISSUER: &str = "bazaar-auth";
/// The only algorithm auth signs with.
const ALGORITHM: &str = "EdDSA";
/// Clock differences tolerated between auth's host and the gateway's.
const CLOCK_SKEW_SECS: i64 = 30;

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    /// The role named `name` (as in tokens), if there is one.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

/// The claims the gateway relies on; `exp`, `iat` and `nbf` are
/// jwt-compact's standard claims.
#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    role: String,
    iss: String,
}

/// Why a request is not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header.
    Missing,
    /// A token was presented and is not valid; the reason goes to the client.
    Invalid(&'static str),
    /// The token cannot be checked now (auth unreachable, nothing cached).
    Unverifiable(String),
}

impl Rejection {
    /// The 401 (or 503) with the `WWW-Authenticate` challenge of RFC 6750 §3.
    pub fn reply(&self) -> Reply {
        match self {
            Rejection::Missing => Reply::from(ApiError::unauthorized("this route needs an access token"))
                .with_header("www-authenticate", "Bearer realm=\"bazaar\""),
            Rejection::Invalid(why) => Reply::from(ApiError::unauthorized(format!("invalid access token: {why}")))
                .with_header("www-authenticate", format!("Bearer realm=\"bazaar\", error=\"invalid_token\", error_description=\"{why}\"")),
            Rejection::Unverifiable(detail) => {
                eprintln!("gateway: cannot verify an access token: {detail}");
                Reply::from(ApiError::new(503, "auth_unavailable", "access tokens cannot be verified right now; retry shortly"))
                    .with_header("retry-after", "5")
            }
        }
    }
}

/// The identity in the request's `Authorization` header, if any.
pub async fn authenticate(authorization: Option<&str>, trace: &TraceContext, jwks_ttl_secs: u64) -> Result<Identity, Rejection> {
    let authorization = authorization.ok_or(Rejection::Missing)?;
    let token = bearer_token(authorization).ok_or(Rejection::Invalid("the Authorization header is not `Bearer <token>`"))?;
    // auth's key set and the token the claimed user last verified with, in
    // one read of the store (one round trip to Redis in production). The
    // claimed user is only trusted once the token matches the remembered one
    // or its signature verifies.
    let digest = verified::digest(token);
    let claimed = verified::claimed_user(token);
    let store = Store::open(kv::TOKENS).inspect_err(|e| eprintln!("gateway: {e}")).ok();
    let remembered_key = claimed.as_deref().map(verified::key);
    let [key_set, remembered] = match &store {
        Some(store) => store
            .get_many([jwks::STORE_KEY, remembered_key.as_deref().unwrap_or(jwks::STORE_KEY)])
            .unwrap_or_else(|e| {
                eprintln!("gateway: reading the cached JWKS and verified tokens failed: {e}");
                [None, None]
            }),
        None => [None, None],
    };
    let at_secs = now_secs();
    let recalled = match (&claimed, &remembered) {
        (Some(user_id), Some(stored)) => {
            verified::recall(stored, user_id, &digest, i64::try_from(at_secs).unwrap_or(i64::MAX), CLOCK_SKEW_SECS)
        }
        _ => None,
    };
    // The same bytes as a token that verified in full: only its key's place
    // in a fresh set is checked again (its expiry was, in `recall`).
    if let Some(recalled) = &recalled
        && key_set.as_deref().is_some_and(|set| jwks::lists_fresh(set, &recalled.kid, jwks_ttl_secs, at_secs))
    {
        return Ok(recalled.identity.clone());
    }
    let (untrusted, kid) = untrusted(token)?;
    let kid = kid.as_str();
    let key = jwks::signing_key(kid, key_set.as_deref(), store.as_ref(), trace, jwks_ttl_secs).await.map_err(|e| match e {
        KeyError::Unknown => Rejection::Invalid("the token's signing key is unknown"),
        KeyError::Unavailable(detail) => Rejection::Unverifiable(detail),
    })?;
    // A remembered token whose set was stale, and is fresh again now.
    if let Some(recalled) = recalled
        && recalled.kid == kid
    {
        return Ok(recalled.identity);
    }
    let key = key.verifying_key().ok_or(Rejection::Invalid("the token's signing key is unknown"))?;
    let token = Ed25519.validator::<AccessClaims>(&key).validate(&untrusted).map_err(|e| match e {
        ValidationError::MalformedClaims(_) => Rejection::Invalid("the token's claims are malformed"),
        _ => Rejection::Invalid("the token's signature does not verify"),
    })?;
    let claims = token.claims();
    let options = TimeOptions::new(Duration::seconds(CLOCK_SKEW_SECS), now);
    claims.validate_expiration(&options).map_err(|e| match e {
        ValidationError::Expired => Rejection::Invalid("the token has expired"),
        _ => Rejection::Invalid("the token has no expiry (exp)"),
    })?;
    let issued_at = claims.issued_at.ok_or(Rejection::Invalid("the token has no issue time (iat)"))?;
    if issued_at - options.leeway > now() {
        return Err(Rejection::Invalid("the token is issued in the future"));
    }
    if claims.not_before.is_some() && claims.validate_maturity(&options).is_err() {
        return Err(Rejection::Invalid("the token is not valid yet (nbf)"));
    }
    let AccessClaims { sub, role, iss } = &claims.custom;
    if iss != ISSUER {
        return Err(Rejection::Invalid("the token is not issued by auth"));
    }
    if sub.is_empty() {
        return Err(Rejection::Invalid("the token names no user (sub)"));
    }
    let role = Role::parse(role).ok_or(Rejection::Invalid("the token's role is unknown"))?;
    let identity = Identity { user_id: sub.clone(), role };
    if let Some(expiration) = claims.expiration {
        verified::remember(&identity, &digest, kid, expiration.timestamp());
    }
    Ok(identity)
}

/// The token decoded, not yet verified, with the id of the key it names;
/// refused when it is not a JWT, not signed with EdDSA (so `none` and every
/// other algorithm are refused before any key is looked at) or names no
/// key.
fn untrusted(token: &str) -> Result<(UntrustedToken<'_>, String), Rejection> {
    let untrusted = UntrustedToken::new(token).map_err(|_| Rejection::Invalid("the token is not a well-formed JWT"))?;
    if untrusted.algorithm() != ALGORITHM {
        return Err(Rejection::Invalid("the token is not signed with EdDSA"));
    }
    let kid = untrusted.header().key_id.clone().ok_or(Rejection::Invalid("the token names no signing key (kid)"))?;
    Ok((untrusted, kid))
}

/// The token of a `Bearer` credential (RFC 6750 §2.1; the scheme is
/// case-insensitive).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(i64::try_from(now_secs()).unwrap_or(i64::MAX), 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    /// A token with this header and claims, signed with garbage.
    fn token(header: serde_json::Value) -> String {
        use base64::Engine as _;
        let encode = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = serde_json::json!({"sub": "u1", "role": "admin", "iss": ISSUER, "iat": 1, "exp": 4_000_000_000u64});
        format!("{}.{}.c2ln", encode(header), encode(claims))
    }

    /// Checks that fail before any key is looked up (a token no check in
    /// full has vouched for: one that did is these very bytes).
    fn reject(authorization: &str) -> Rejection {
        let token = bearer_token(authorization).ok_or(Rejection::Invalid("not bearer"));
        token.and_then(untrusted).err().expect("refused")
    }

    #[test]
    fn refuses_alg_none_and_every_algorithm_but_eddsa() {
        for alg in ["none", "None", "HS256", "RS256", "ES256", "Ed25519"] {
            let rejection = reject(&format!("Bearer {}", token(serde_json::json!({"alg": alg, "kid": "k1"}))));
            assert_eq!(rejection, Rejection::Invalid("the token is not signed with EdDSA"), "{alg}");
        }
        // An unsigned token (empty signature part) is refused the same way.
        let unsigned = token(serde_json::json!({"alg": "none"}));
        let unsigned = format!("Bearer {}.", unsigned.rsplit_once('.').unwrap().0);
        assert_eq!(reject(&unsigned), Rejection::Invalid("the token is not signed with EdDSA"));
    }

    #[test]
    fn refuses_malformed_tokens_and_tokens_without_kid() {
        for bad in ["Bearer abc", "Bearer a.b", "Bearer !!!.???.###", "Token abc.def.ghi"] {
            assert!(matches!(reject(bad), Rejection::Invalid(_)), "{bad}");
        }
        let no_kid = token(serde_json::json!({"alg": "EdDSA"}));
        assert_eq!(reject(&format!("Bearer {no_kid}")), Rejection::Invalid("the token names no signing key (kid)"));
    }

    #[test]
    fn rejections_carry_the_bearer_challenge() {
        let missing = Rejection::Missing.reply();
        assert_eq!(missing.status, 401);
        assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"bazaar\""));
        let invalid = Rejection::Invalid("the token has expired").reply();
        assert_eq!(invalid.status, 401);
        assert!(invalid.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
        assert_eq!(Rejection::Unverifiable("down".into()).reply().status, 503);
    }
}
