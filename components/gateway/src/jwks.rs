//! auth's public signing keys, fetched from its JWK Set and cached in the
//! `gateway-tokens` store, so verifying a token costs no call to auth.
//!
//! The cached set is trusted for `jwks_ttl_seconds`. A token whose `kid` is
//! not in it triggers one fetch (auth rotated its key), but at most one per
//! [`REFETCH_COOLDOWN_SECS`]: tokens with made-up key ids must not turn the
//! gateway into a load generator against auth. When auth cannot be reached,
//! an expired cached set still verifies the keys it has: an outage of auth
//! should not sign everybody out.
use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Request, Response, send};

use crate::clock::now_secs;
use crate::kv::Store;
use crate::trace::TraceContext;

const JWKS_URL: &str = "http://auth.spin.internal/internal/jwks";
/// The cached set's key in the `gateway-tokens` store.
pub const STORE_KEY: &str = "gateway-tokens:jwks";
const REFETCH_COOLDOWN_SECS: u64 = 10;

/// Why no key verifies a token.
#[derive(Debug)]
pub enum KeyError {
    /// auth has no key with this id: the token was not signed by auth.
    Unknown,
    /// auth cannot be asked, and no cached key has this id.
    Unavailable(String),
}

/// One Ed25519 public key, as kept in the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PublicKey {
    kid: String,
    /// The 32-byte key, base64url.
    x: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeySet {
    fetched_at_secs: u64,
    keys: Vec<PublicKey>,
}

impl KeySet {
    fn find(&self, kid: &str) -> Option<Key> {
        self.keys.iter().find(|key| key.kid == kid).map(|key| Key { x: key.x.clone() })
    }
}

/// A key the set holds under the token's `kid`, not yet decoded: a token the
/// gateway remembers (see `verified`) needs to know only that its key is
/// still in the set, and decoding an Ed25519 key (a point decompression:
/// hundreds of field squarings in wasm) was about 18% of the gateway's own
/// code's CPU under the benchmark mix.
#[derive(Clone, Debug)]
pub struct Key {
    x: String,
}

impl Key {
    /// The key, to check a signature with; `None` if a cached set holds a
    /// key that does not decode (sets are checked when fetched, so only a
    /// damaged store entry).
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        decode(&self.x)
    }
}

/// Whether the cached set `stored` is fresh (younger than `ttl_secs` at
/// `now`) and holds a key under `kid`: all a token the gateway remembers
/// needs (see `verified`). Read without copying the set's strings; a set
/// that is stale, unreadable or without the key sends the caller to
/// [`signing_key`], which fetches it again when due.
pub fn lists_fresh(stored: &[u8], kid: &str, ttl_secs: u64, now: u64) -> bool {
    #[derive(Deserialize)]
    struct KeyIds<'a> {
        fetched_at_secs: u64,
        #[serde(borrow)]
        keys: Vec<KeyId<'a>>,
    }
    #[derive(Deserialize)]
    struct KeyId<'a> {
        #[serde(borrow)]
        kid: Cow<'a, str>,
    }
    serde_json::from_slice::<KeyIds>(stored)
        .is_ok_and(|set| now.saturating_sub(set.fetched_at_secs) < ttl_secs && set.keys.iter().any(|key| key.kid == kid))
}

/// A JWK as auth publishes it (RFC 8037 `OKP` keys).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    kid: Option<String>,
    x: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// The key auth signs tokens with under `kid`. `stored` is what the
/// `gateway-tokens` store holds under [`STORE_KEY`] (read by the caller with the
/// other things it needs); a set fetched afresh is kept in `store`.
pub async fn signing_key(
    kid: &str,
    stored: Option<&[u8]>,
    store: Option<&Store>,
    trace: &TraceContext,
    ttl_secs: u64,
) -> Result<Key, KeyError> {
    let cached: Option<KeySet> = stored.and_then(|bytes| serde_json::from_slice(bytes).ok());
    let now = now_secs();
    if let Some(cached) = &cached {
        let age = now.saturating_sub(cached.fetched_at_secs);
        if age < ttl_secs {
            if let Some(key) = cached.find(kid) {
                return Ok(key);
            }
            if age < REFETCH_COOLDOWN_SECS {
                return Err(KeyError::Unknown);
            }
        }
    }
    match fetch(trace).await {
        Ok(keys) => {
            let fresh = KeySet { fetched_at_secs: now, keys };
            if let Some(store) = store {
                let saved = store.set(STORE_KEY, &serde_json::to_vec(&fresh).expect("a key set serializes"));
                if let Err(e) = saved {
                    eprintln!("gateway: caching the JWKS failed: {e}");
                }
            }
            fresh.find(kid).ok_or(KeyError::Unknown)
        }
        Err(e) => {
            eprintln!("gateway [{}]: fetching the JWKS failed: {e}", trace.request_id);
            cached.and_then(|cached| cached.find(kid)).ok_or(KeyError::Unavailable(e))
        }
    }
}

/// auth's current Ed25519 signing keys.
async fn fetch(trace: &TraceContext) -> Result<Vec<PublicKey>, String> {
    let request = Request::get(JWKS_URL).headers(trace.headers()).build();
    let response: Response = send(request).await.map_err(|e| format!("GET {JWKS_URL}: {e}"))?;
    if *response.status() != 200 {
        return Err(format!("GET {JWKS_URL} answered {}", response.status()));
    }
    let jwks: Jwks = serde_json::from_slice(response.body()).map_err(|e| format!("GET {JWKS_URL}: not a JWK Set: {e}"))?;
    Ok(signing_keys(jwks))
}

/// The Ed25519 signature keys of a set, valid ones only.
fn signing_keys(jwks: Jwks) -> Vec<PublicKey> {
    jwks.keys
        .into_iter()
        .filter(|jwk| {
            jwk.kty == "OKP"
                && jwk.crv.as_deref() == Some("Ed25519")
                && jwk.alg.as_deref().is_none_or(|alg| alg == "EdDSA")
                && jwk.usage.as_deref().is_none_or(|usage| usage == "sig")
        })
        .filter_map(|jwk| match (jwk.kid, jwk.x) {
            (Some(kid), Some(x)) if decode(&x).is_some() => Some(PublicKey { kid, x }),
            _ => None,
        })
        .collect()
}

fn decode(x: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(x).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public key of RFC 8037's example (Appendix A.2).
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: serde_json::Value) -> Vec<PublicKey> {
        signing_keys(serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap())
    }

    #[test]
    fn keeps_ed25519_signature_keys() {
        let keys = set(serde_json::json!([{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "x": X}]));
        assert_eq!(keys.len(), 1);
        let key_set = KeySet { fetched_at_secs: 0, keys };
        assert!(key_set.find("k1").and_then(|key| key.verifying_key()).is_some());
        assert!(key_set.find("k2").is_none());
    }

    #[test]
    fn a_fresh_set_lists_its_keys_and_a_stale_one_none() {
        let stored = serde_json::to_vec(&KeySet { fetched_at_secs: 1_000, keys: vec![PublicKey { kid: "k1".into(), x: X.into() }] }).unwrap();
        assert!(lists_fresh(&stored, "k1", 60, 1_059));
        assert!(!lists_fresh(&stored, "k2", 60, 1_059), "another key");
        assert!(!lists_fresh(&stored, "k1", 60, 1_060), "stale");
        assert!(!lists_fresh(b"{}", "k1", 60, 1_000), "unreadable");
    }

    #[test]
    fn skips_other_algorithms_curves_uses_and_broken_keys() {
        let keys = set(serde_json::json!([
            {"kty": "RSA", "kid": "rsa", "n": "x", "e": "AQAB"},
            {"kty": "OKP", "crv": "X25519", "kid": "ecdh", "x": X},
            {"kty": "OKP", "crv": "Ed25519", "alg": "none", "kid": "none", "x": X},
            {"kty": "OKP", "crv": "Ed25519", "use": "enc", "kid": "enc", "x": X},
            {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"},
            {"kty": "OKP", "crv": "Ed25519", "x": X},
        ]));
        assert!(keys.is_empty(), "{keys:?}");
    }
}
