//! The Ed25519 key access tokens are signed with, and its public half as a
//! JSON Web Key Set.
//!
//! The seed comes from the secret variable `jwt_signing_key` (base64 of 32
//! bytes). Left empty, auth generates a seed on first use and keeps it in
//! its database, so every instance and every restart signs with the same
//! key and tokens stay verifiable.
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{SECRET_KEY_LENGTH, SigningKey, VerifyingKey};
use jwt_compact::jwk::JsonWebKey;
use serde_json::{Value, json};
use sha2::Sha256;
use shop_shared::api::ApiError;
use shop_shared::db::Db;

use crate::{clock, random, settings};

/// The signing key and the id verifiers find it under.
pub struct KeyPair {
    pub signing: SigningKey,
    /// The RFC 7638 thumbprint of the public key: it changes exactly when
    /// the key does, with nothing to store.
    pub kid: String,
}

impl KeyPair {
    /// The configured key, or the generated one.
    pub fn load(db: &Db) -> Result<KeyPair, ApiError> {
        let seed = match settings::jwt_signing_key()? {
            Some(configured) => configured,
            None => generated_seed(db)?,
        };
        let seed: [u8; SECRET_KEY_LENGTH] = STANDARD
            .decode(&seed)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| ApiError::internal("jwt_signing_key must be the base64 of a 32-byte Ed25519 seed"))?;
        Ok(KeyPair::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; SECRET_KEY_LENGTH]) -> KeyPair {
        let signing = SigningKey::from_bytes(seed);
        let kid = URL_SAFE_NO_PAD.encode(JsonWebKey::from(&signing.verifying_key()).thumbprint::<Sha256>());
        KeyPair { signing, kid }
    }

    /// `{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid", "x"}]}`
    /// (RFC 8037): the public key only.
    pub fn jwks(&self) -> Value {
        let public: VerifyingKey = self.signing.verifying_key();
        json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(public.as_bytes()),
            }]
        })
    }
}

/// The seed auth generated for itself, generating it on first use.
/// Concurrent first uses race on the primary key; all of them then read the
/// winner's seed.
fn generated_seed(db: &Db) -> Result<String, ApiError> {
    if let Some(seed) = stored_seed(db)? {
        return Ok(seed);
    }
    db.execute(
        "INSERT INTO signing_keys (id, seed, created_at_ms) VALUES ('current', $1, $2) ON CONFLICT (id) DO NOTHING",
        &[STANDARD.encode(random::bytes::<SECRET_KEY_LENGTH>()?).into(), clock::now_ms().into()],
    )?;
    stored_seed(db)?.ok_or_else(|| ApiError::internal("the generated signing key was not stored"))
}

fn stored_seed(db: &Db) -> Result<Option<String>, ApiError> {
    let rows = db.query("SELECT seed FROM signing_keys WHERE id = 'current'", &[])?;
    Ok(rows.first().map(|row| row.text("seed")).transpose()?)
}
