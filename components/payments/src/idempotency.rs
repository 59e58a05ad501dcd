//! `Idempotency-Key`, as Stripe and the IETF draft
//! (draft-ietf-httpapi-idempotency-key-header) define it: a client that
//! retries a write with the same key gets the first answer again instead of a
//! second charge or refund.
//!
//! - The key is required on every write (`400` without).
//! - Keys are scoped per endpoint ([`Scope`]): a charge key and a refund key
//!   never collide.
//! - A request is identified by a SHA-256 fingerprint of its canonical form
//!   (the validated, normalised request, see [`crate::validation`]). The same
//!   key with another fingerprint is a client bug: `422`.
//! - The key is claimed *before* any work, with an `INSERT` its primary key
//!   protects, as `in_flight`; a second request with the key meanwhile gets
//!   `409` (and `Retry-After`). The work finishes by storing its response
//!   under the key, in the same transaction as the write it made, so a
//!   payment and the record of having made it commit together.
//! - Replays return the stored status and body verbatim, with
//!   `Idempotent-Replayed: true`.
//! - Which answers are final: every response below 500 (including a decline
//!   or a refused refund — asking again would get the same answer). A 5xx
//!   means nothing was done (the processor was unavailable, the database
//!   failed): the key is released so the client can retry with it.
//! - A claim is a lease: a request that dies while in flight (a trap, a
//!   timeout) would otherwise hold its key for a day. After [`LEASE_MS`]
//!   another request may take the key over; the lost holder's final write
//!   then fails its token check and is rolled back.
//! - Keys are kept [`RETENTION_MS`] (24 h): a request whose key has
//!   expired is a new request. Expired keys are purged opportunistically,
//!   on one claim in [`PURGE_ONE_IN`] (chosen at random), so a claim is
//!   usually one statement, not two.
use std::cell::Cell;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shop_shared::api::ApiError;
use shop_shared::db::{Chain, Db, Param, Writes};
use spin_sdk::http::{Request, Response};

use crate::clock;
use crate::store;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a key is remembered: at least the day Stripe promises.
pub const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// One claim in this many purges every expired key (the others forget
/// only their own key, if it expired).
pub const PURGE_ONE_IN: u8 = 64;
/// How long an in-flight claim holds its key: above the host's request
/// deadline (30 s by default), so only a request that is surely dead loses it.
pub const LEASE_MS: i64 = 60_000;
/// Stripe's limit; enough for a UUID or `charge-<order id>`.
const MAX_KEY_LEN: usize = 255;

/// The endpoints whose keys are kept apart.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Charge,
    Refund,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Charge => "charge",
            Scope::Refund => "refund",
        }
    }
}

/// The request's `Idempotency-Key`.
pub fn key(req: &Request) -> Result<String, ApiError> {
    let value = req.header(HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if value.is_empty() {
        return Err(ApiError::new(400, "idempotency_key_missing", "this request needs an Idempotency-Key header"));
    }
    match std::str::from_utf8(value) {
        Ok(key) if key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic()) => Ok(key.to_string()),
        _ => Err(ApiError::new(
            400,
            "idempotency_key_invalid",
            format!("the Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// The SHA-256 (hex) of a request's canonical JSON form. Struct fields
/// serialise in declaration order, so the form does not depend on how the
/// client ordered or spaced its body.
pub fn fingerprint(request: &impl Serialize) -> String {
    let canonical = serde_json::to_vec(request).expect("requests serialise to JSON");
    Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect()
}

/// A claimed key: the right to do the request's work and store its answer.
pub struct Lease {
    scope: Scope,
    key: String,
    token: String,
    completed: Cell<bool>,
}

impl Lease {
    /// Stores `response` as the key's answer. Call it inside the transaction
    /// that makes the request's write, so both commit or neither does.
    pub fn complete(&self, db: &Db, response: &Response) -> Result<(), ApiError> {
        let (sql, params) = self.completion(response);
        if db.execute(&sql, &params)? != 1 {
            return Err(outlived());
        }
        self.completed.set(true);
        Ok(())
    }

    /// [`Self::complete`] with the request's own `writes` (each an `INSERT
    /// ... SELECT`, see [`Chain::then`]), as a transaction of their own:
    /// the key's answer first, and the writes only if the claim still held
    /// (one round trip on Postgres, where `BEGIN`, the writes and `COMMIT`
    /// took three).
    pub fn complete_with(&self, db: &Db, writes: Writes, response: &Response) -> Result<(), ApiError> {
        let mut chain = Chain::default();
        let (sql, params) = self.completion(response);
        chain.link(sql, params, 1);
        *chain.then() = writes;
        if !db.commit_chain(chain)? {
            return Err(outlived());
        }
        self.completed.set(true);
        Ok(())
    }

    /// The key's update to `response`, which changes its row only while
    /// this lease still holds the claim.
    fn completion(&self, response: &Response) -> (String, Vec<Param>) {
        let body = String::from_utf8_lossy(response.body());
        store::complete_key(self.scope.as_str(), &self.key, &self.token, *response.status(), &body)
    }
}

/// Why a request whose claim was taken over recorded nothing.
fn outlived() -> ApiError {
    in_flight("this request outlived its claim on the Idempotency-Key, which another request took over; nothing was recorded")
}

/// Does `work` at most once for `key` and `fingerprint` in `scope`, or
/// answers as the first request with that key did (see the module doc).
pub fn run_once(
    db: &Db,
    scope: Scope,
    key: &str,
    fingerprint: &str,
    work: impl FnOnce(&Lease) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    let now = clock::now_ms();
    let token = uuid::Uuid::new_v4();
    // The token's random bits decide: a version 4 UUID's first byte is random.
    if token.as_bytes()[0] % PURGE_ONE_IN == 0 {
        store::purge_keys(db, now - RETENTION_MS)?;
    }
    let lease = match claim(db, scope, key, fingerprint, &token.simple().to_string(), now)? {
        Claim::Acquired(lease) => lease,
        Claim::Answered(response) => return Ok(response),
    };
    let outcome = work(&lease);
    match &outcome {
        Ok(response) if *response.status() < 500 => {
            if !lease.completed.get() {
                lease.complete(db, response)?;
            }
        }
        _ => {
            if let Err(e) = store::release_key(db, scope.as_str(), key, &lease.token) {
                eprintln!(
                    "payments: releasing {} key {key:?} failed ({e}); it frees itself after its lease",
                    scope.as_str()
                );
            }
        }
    }
    outcome
}

enum Claim {
    Acquired(Lease),
    /// A replay of the stored answer.
    Answered(Response),
}

fn claim(db: &Db, scope: Scope, key: &str, fingerprint: &str, token: &str, now: i64) -> Result<Claim, ApiError> {
    let acquired =
        || Claim::Acquired(Lease { scope, key: key.to_string(), token: token.to_string(), completed: Cell::new(false) });
    // A key can vanish between the failed insert and the read (released,
    // purged) or be taken over between the read and the reclaim: look again,
    // a bounded number of times.
    for _ in 0..3 {
        if store::insert_key(db, scope.as_str(), key, fingerprint, token, now)? {
            return Ok(acquired());
        }
        let Some(record) = store::find_key(db, scope.as_str(), key)? else { continue };
        if record.created_at_ms < now - RETENTION_MS {
            // Expired but not purged yet: forgotten, and claimed anew.
            store::forget_expired_key(db, scope.as_str(), key, now - RETENTION_MS)?;
            continue;
        }
        if record.fingerprint != fingerprint {
            return Err(ApiError::new(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request; use a new key for a new request",
            ));
        }
        if let Some((status, body)) = record.response {
            return Ok(Claim::Answered(replay(status, body)));
        }
        if record.locked_at_ms > now - LEASE_MS {
            let mut response =
                in_flight("a request with this Idempotency-Key is still in progress; retry later").into_response();
            response.set_header("retry-after", "1");
            return Ok(Claim::Answered(response));
        }
        if store::reclaim_key(db, scope.as_str(), key, record.locked_at_ms, token, now)? {
            eprintln!("payments: took over the {} key {key:?}, whose request left it in flight", scope.as_str());
            return Ok(acquired());
        }
    }
    Err(in_flight("the Idempotency-Key is contended; retry later"))
}

fn in_flight(message: &str) -> ApiError {
    ApiError::new(409, "idempotency_key_in_use", message)
}

fn replay(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(REPLAYED_HEADER, "true")
        .body(body)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Charge {
        order_id: &'static str,
        amount_cents: i64,
    }

    #[test]
    fn fingerprints_are_sha256_of_the_canonical_form() {
        let a = fingerprint(&Charge { order_id: "o1", amount_cents: 100 });
        assert_eq!(a.len(), 64);
        assert_eq!(a, fingerprint(&Charge { order_id: "o1", amount_cents: 100 }));
        assert_ne!(a, fingerprint(&Charge { order_id: "o1", amount_cents: 101 }));
    }
}
