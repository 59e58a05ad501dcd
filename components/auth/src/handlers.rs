//! The endpoints: each reads its request, does its work through the
//! modules that own it, and answers per components/CONTRACTS.md.
use serde_json::json;
use shop_shared::api::{self, ApiError, parse_json};
use spin_sdk::http::{Request, Response};

use crate::accounts::{self, Account};
use crate::credentials::{LoginBody, RefreshTokenBody, RegisterBody};
use crate::refresh_tokens::{self, Rotation};
use crate::signing_key::KeyPair;
use crate::{access_token, password, registration, schema};

/// `POST /api/auth/register` → 201 `{user_id, email, role}`.
pub async fn register(req: &Request) -> Result<Response, ApiError> {
    let registration = parse_json::<RegisterBody>(req)?.validate()?;
    let db = schema::open()?;
    let account = registration::register(&db, registration, api::propagated_headers(req)).await?;
    Ok(api::json(201, &json!({ "user_id": account.id, "email": account.email, "role": account.role.as_str() })))
}

/// `POST /api/auth/login` → 200 a token pair; 401 on bad credentials,
/// without saying which part was wrong.
pub fn login(req: &Request) -> Result<Response, ApiError> {
    let credentials = parse_json::<LoginBody>(req)?.validate()?;
    let db = schema::open()?;
    let account = match accounts::find_by_email(&db, &credentials.email)? {
        Some(account) if account.active => account,
        _ => {
            password::waste_equal_time(&credentials.password);
            return Err(bad_credentials());
        }
    };
    if !password::verify(&credentials.password, &account.password_hash) {
        return Err(bad_credentials());
    }
    let refresh_token = refresh_tokens::start_family(&db, &account.id)?;
    token_pair(&KeyPair::load(&db)?, &account, refresh_token)
}

/// `POST /api/auth/refresh` → 200 a new pair; the presented token is spent.
pub fn refresh(req: &Request) -> Result<Response, ApiError> {
    let presented = parse_json::<RefreshTokenBody>(req)?.validate()?;
    let db = schema::open()?;
    let (refresh_token, user_id) = match refresh_tokens::rotate(&db, &presented)? {
        Rotation::Rotated { token, user_id } => (token, user_id),
        Rotation::Reused => {
            return Err(ApiError::new(
                401,
                "refresh_token_reused",
                "this refresh token was already used: every session descended from its login is revoked; log in again",
            ));
        }
        Rotation::Rejected => return Err(ApiError::unauthorized("the refresh token is invalid, expired or revoked")),
    };
    let account = accounts::find_by_id(&db, &user_id)?
        .filter(|account| account.active)
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    token_pair(&KeyPair::load(&db)?, &account, refresh_token)
}

/// `POST /api/auth/logout` → 204, whether or not the token was still live:
/// as in OAuth token revocation (RFC 7009 §2.2), revoking is idempotent and
/// says nothing about the token.
pub fn logout(req: &Request) -> Result<Response, ApiError> {
    let presented = parse_json::<RefreshTokenBody>(req)?.validate()?;
    refresh_tokens::revoke_family_of(&schema::open()?, &presented)?;
    Ok(Response::builder().status(204).build())
}

/// `GET /internal/jwks` → the public signing key as a JWK Set.
pub fn jwks() -> Result<Response, ApiError> {
    let keys = KeyPair::load(&schema::open()?)?.jwks();
    Ok(api::json(200, &keys))
}

/// The body of a successful login or refresh. Tokens must not be cached
/// (RFC 6749 §5.1).
fn token_pair(key: &KeyPair, account: &Account, refresh_token: String) -> Result<Response, ApiError> {
    let body = json!({
        "access_token": access_token::issue(key, account)?,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": access_token::LIFETIME_SECS,
    });
    let mut response = api::json(200, &body);
    response.set_header("cache-control", "no-store");
    Ok(response)
}

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("the email or password is wrong")
}
