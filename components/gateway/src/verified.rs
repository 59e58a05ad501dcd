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
//! key id must still be in auth's key set (the caller looks the key up
//! first) and the expiry is checked on every use, as for a full check: a
//! key auth retires still signs out the tokens it signed, and an expired
//! token is refused. One entry per user keeps the store bounded like the
//! rate-limit counters; a user alternating between two tokens pays a full
//! check at each switch.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kv::{self, Store};
use crate::token::{Identity, Role};
use crate::trace::hex;

/// A verified token, as kept.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The token's SHA-256, hex.
    sha256: String,
    kid: String,
    role: String,
    /// The token's `exp`, seconds since the epoch.
    exp: i64,
}

/// The token's fingerprint.
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Where the `gateway-tokens` store keeps `user_id`'s last verified token.
pub fn key(user_id: &str) -> String {
    format!("gateway-tokens:verified:{user_id}")
}

/// The identity `token` (whose hash is `digest`) was verified as, if it was
/// and is still valid at `now_secs` give or take `skew_secs`. `stored` is
/// what the store holds under [`key`]`(user_id)`, read by the caller.
pub fn recall(stored: &[u8], user_id: &str, digest: &str, kid: &str, now_secs: i64, skew_secs: i64) -> Option<Identity> {
    let entry: Entry = serde_json::from_slice(stored).ok()?;
    if !matches(&entry, digest, kid, now_secs, skew_secs) {
        return None;
    }
    Some(Identity { user_id: user_id.to_owned(), role: Role::parse(&entry.role)? })
}

/// Whether `entry` vouches for a token with this hash and key id now.
fn matches(entry: &Entry, digest: &str, kid: &str, now_secs: i64, skew_secs: i64) -> bool {
    entry.sha256 == digest && entry.kid == kid && now_secs <= entry.exp.saturating_add(skew_secs)
}

/// Keeps a token that just verified in full as `identity`. A store that
/// cannot keep it costs the next request a full check, nothing else.
pub fn remember(identity: &Identity, digest: &str, kid: &str, exp: i64) {
    let entry = Entry { sha256: digest.to_owned(), kid: kid.to_owned(), role: identity.role.as_str().to_owned(), exp };
    let saved = Store::open(kv::TOKENS)
        .and_then(|store| store.set(&key(&identity.user_id), &serde_json::to_vec(&entry).expect("an entry serializes")));
    if let Err(e) = saved {
        eprintln!("gateway: keeping a verified token failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry { sha256: digest("a.b.c"), kid: "k1".into(), role: "customer".into(), exp: 1_000 }
    }

    #[test]
    fn only_the_same_token_under_the_same_key_before_expiry_matches() {
        let entry = entry();
        assert!(matches(&entry, &digest("a.b.c"), "k1", 900, 30));
        assert!(!matches(&entry, &digest("a.b.d"), "k1", 900, 30), "another token");
        assert!(!matches(&entry, &digest("a.b.c"), "k2", 900, 30), "another key");
        assert!(matches(&entry, &digest("a.b.c"), "k1", 1_030, 30), "within the clock skew");
        assert!(!matches(&entry, &digest("a.b.c"), "k1", 1_031, 30), "expired");
    }

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
