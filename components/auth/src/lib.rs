//! The shop's auth service: who a user is, proved by a password once and by
//! tokens afterwards.
//!
//! - Accounts live in auth's own database (`database_url`), with the
//!   password as an argon2id PHC string ([`password`]); registering also
//!   creates the user's profile in the users service ([`profiles`]), so an
//!   account becomes usable only once its profile exists ([`accounts`]).
//! - Access tokens are 15-minute EdDSA (Ed25519) JWTs ([`access_token`])
//!   signed with the key of [`signing_key`], whose public half anyone may
//!   fetch at `GET /internal/jwks` to verify tokens without calling auth.
//! - Refresh tokens are random, stored only as SHA-256 hashes, spent on
//!   use and grouped in families so a stolen one that is replayed revokes
//!   every token descended from the same login ([`refresh_tokens`]).
//!
//! Routes are in [`routes`]; each endpoint is a function of [`handlers`].
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

mod access_token;
mod accounts;
mod clock;
mod credentials;
mod handlers;
mod password;
mod profiles;
mod random;
mod refresh_tokens;
mod registration;
mod routes;
mod schema;
mod settings;
mod signing_key;

#[http_component]
async fn handle(req: Request) -> Response {
    routes::dispatch(req).await
}
