//! Tokens the gateway has verified, so the next request with the same token
//! costs a hash and a lookup instead of an Ed25519 signature check: in wasm
//! that check was the largest single cost of a gateway request (about 8% of
//! the whole shop's CPU under the benchmark mix). Envoy's JWT filter keeps a
//! cache of verified tokens for the same reason.
//!
//! One entry per user, `gateway-tokens:verified:<sub>` in the
//! `gateway-tokens` store: the
//! SHA-256 of the last token of theirs that verified in full, with its key
//! id, role and expiry. A token is taken from it only if its hash is that
//! one, so a token whose claims or signature differ in one bit is verified
//! in full; its `sub`, read before verification, only picks the entry. The
//! key id must still be in auth's key set (the caller checks it) and the
//! expiry is checked on every use, as for a full check: a key auth retires
//! still signs out the tokens it signed, and an expired token is refused.
//! One entry per user keeps the store bounded like the rate-limit
//! counters; a user alternating between two tokens pays a full check at
//! each switch.
//!
//! A token that matches is the very string that verified, header and all,
//! so nothing else of it is decoded: only its `sub`, to find the entry
//! ([`claimed_user`]). Decoding the whole token (its three base64 parts and
//! two JSON documents, with jwt-compact's flattened claims) on every request
//! was the largest part of a cached catalog read's time in the gateway.
use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kv::{self, Store};
use crate::token::{Identity, Role};
use crate::trace::hex;

/// A verified token, as kept (read without copying its strings).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry<'a> {
    /// The token's SHA-256, hex.
    #[serde(borrow)]
    sha256: Cow<'a, str>,
    #[serde(borrow)]
    kid: Cow<'a, str>,
    #[serde(borrow)]
    role: Cow<'a, str>,
    /// The token's `exp`, seconds since the epoch.
    exp: i64,
}

/// A token recalled as verified.
#[derive(Debug, PartialEq, Eq)]
pub struct Recalled {
    pub identity: Identity,
    /// The key it was verified with, which must still be in auth's set.
    pub kid: String,
}

/// The user a token claims to be (its `sub`), unverified: it only picks
/// the entry to compare the token with. `None` when the claims do not
/// decode; the full check then says what is wrong with the token.
pub fn claimed_user(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claimed {
        sub: String,
    }
    let claims = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(claims).ok()?;
    serde_json::from_slice::<Claimed>(&json).ok().map(|claimed| claimed.sub)
}

/// The token's fingerprint.
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Where the `gateway-tokens` store keeps `user_id`'s last verified token.
pub fn key(user_id: &str) -> String {
    format!("gateway-tokens:verified:{user_id}")
}

/// The identity a token (whose hash is `digest`) was verified as, and the
/// key it was verified with, if it was and is still valid at `now_secs`
/// give or take `skew_secs`. `stored` is what the store holds under
/// [`key`]`(user_id)`, read by the caller, who checks the key.
pub fn recall(stored: &[u8], user_id: &str, digest: &str, now_secs: i64, skew_secs: i64) -> Option<Recalled> {
    let entry: Entry = serde_json::from_slice(stored).ok()?;
    if !matches(&entry, digest, now_secs, skew_secs) {
        return None;
    }
    let identity = Identity { user_id: user_id.to_owned(), role: Role::parse(&entry.role)? };
    Some(Recalled { identity, kid: entry.kid.into_owned() })
}

/// Whether `entry` vouches for a token with this hash now.
fn matches(entry: &Entry, digest: &str, now_secs: i64, skew_secs: i64) -> bool {
    entry.sha256 == digest && now_secs <= entry.exp.saturating_add(skew_secs)
}

/// Keeps a token that just verified in full as `identity`. A store that
/// cannot keep it costs the next request a full check, nothing else.
pub fn remember(identity: &Identity, digest: &str, kid: &str, exp: i64) {
    let entry = Entry { sha256: digest.into(), kid: kid.into(), role: identity.role.as_str().into(), exp };
    let saved = Store::open(kv::TOKENS)
        .and_then(|store| store.set(&key(&identity.user_id), &serde_json::to_vec(&entry).expect("an entry serializes")));
    if let Err(e) = saved {
        eprintln!("gateway: keeping a verified token failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry { sha256: digest("a.b.c").into(), kid: "k1".into(), role: "customer".into(), exp: 1_000 }
    }

    #[test]
    fn only_the_same_token_before_expiry_matches() {
        let entry = entry();
        assert!(matches(&entry, &digest("a.b.c"), 900, 30));
        assert!(!matches(&entry, &digest("a.b.d"), 900, 30), "another token");
        assert!(matches(&entry, &digest("a.b.c"), 1_030, 30), "within the clock skew");
        assert!(!matches(&entry, &digest("a.b.c"), 1_031, 30), "expired");
    }

    #[test]
    fn a_recalled_token_comes_with_its_identity_and_key() {
        let stored = serde_json::to_vec(&entry()).unwrap();
        let recalled = recall(&stored, "u1", &digest("a.b.c"), 900, 30).unwrap();
        assert_eq!(recalled, Recalled { identity: Identity { user_id: "u1".into(), role: Role::Customer }, kid: "k1".into() });
        assert_eq!(recall(&stored, "u1", &digest("a.b.d"), 900, 30), None, "another token");
        assert_eq!(recall(b"not json", "u1", &digest("a.b.c"), 900, 30), None, "an unreadable entry");
    }

    #[test]
    fn the_claimed_user_is_read_from_the_claims_alone() {
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"u1","role":"customer","iss":"bazaar-auth","exp":1}"#);
        assert_eq!(claimed_user(&format!("not-even-base64!.{claims}.sig")), Some("u1".into()));
        assert_eq!(claimed_user("abc"), None, "no claims part");
        assert_eq!(claimed_user("a.!!!.c"), None, "claims not base64url");
        assert_eq!(claimed_user(&format!("a.{}.c", URL_SAFE_NO_PAD.encode(r#"{"role":"x"}"#))), None, "no sub");
    }

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
