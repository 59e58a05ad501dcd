//! Refresh tokens: long-lived, single-use, grouped in families.
//!
//! A login starts a family with one token. Each refresh spends the token
//! presented and issues its successor in the same family (rotation). A
//! spent token presented again means two parties hold the family's tokens,
//! one of them a thief, and auth cannot tell which: the whole family is
//! revoked and both must log in again (OAuth 2.0 Security BCP, RFC 9700
//! §4.14.2). Logout revokes the family too.
//!
//! Tokens are 256 random bits; only their SHA-256 is stored, so a leak of
//! the database does not leak usable tokens (a fast hash suffices: the
//! tokens are random, not guessable like passwords).
use sha2::{Digest as _, Sha256};
use shop_shared::api::ApiError;
use shop_shared::db::{Db, DbError};

use crate::{clock, random};

/// How long a refresh token stays usable if it is not spent.
const LIFETIME_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// What presenting a refresh token led to.
pub enum Rotation {
    /// The token was spent; `token` is its successor, for user `user_id`.
    Rotated { token: String, user_id: String },
    /// The token was spent before: its family is now revoked.
    Reused,
    /// Unknown, expired, or of a revoked family.
    Rejected,
}

/// Starts a family for a new login of `user_id`; returns its first token.
pub fn start_family(db: &Db, user_id: &str) -> Result<String, ApiError> {
    let family = random::uuid()?;
    let token = random::secret_token()?;
    db.transaction(|db| {
        db.execute(
            "INSERT INTO refresh_families (id, user_id, created_at_ms) VALUES ($1, $2, $3)",
            &[(&family).into(), user_id.into(), clock::now_ms().into()],
        )?;
        insert_token(db, &family, &token)
    })?;
    Ok(token)
}

/// Spends `presented` and issues its successor, or tells why not. A reuse
/// revokes the family before returning, in the same transaction.
///
/// The transaction starts by writing (spending the token if it is live),
/// so it holds the write lock before it reads: of concurrent refreshes with
/// one token exactly one spends it and the others then see it spent, on
/// SQLite (whose read-then-write transactions would fail as "database is
/// locked") and on Postgres alike.
pub fn rotate(db: &Db, presented: &str) -> Result<Rotation, ApiError> {
    let now = clock::now_ms();
    let hash = digest(presented);
    let successor = random::secret_token()?;
    let rotation = db.transaction(|db| {
        let spent_now = db.execute(
            "UPDATE refresh_tokens SET spent_at_ms = $1 WHERE token_hash = $2 AND spent_at_ms IS NULL \
             AND expires_at_ms > $1 AND family_id IN (SELECT id FROM refresh_families WHERE revoked_at_ms IS NULL)",
            &[now.into(), (&hash).into()],
        )? == 1;
        let rows = db.query(
            "SELECT t.family_id, t.spent_at_ms, f.user_id, f.revoked_at_ms \
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1",
            &[(&hash).into()],
        )?;
        let Some(row) = rows.first() else {
            return Ok(Rotation::Rejected);
        };
        let family = row.text("family_id")?;
        if spent_now {
            insert_token(db, &family, &successor)?;
            return Ok(Rotation::Rotated { token: successor, user_id: row.text("user_id")? });
        }
        if row.opt_int("revoked_at_ms")?.is_some() || row.opt_int("spent_at_ms")?.is_none() {
            // Revoked, or live but expired.
            return Ok(Rotation::Rejected);
        }
        revoke(db, &family, "reuse")?;
        Ok::<_, DbError>(Rotation::Reused)
    })?;
    Ok(rotation)
}

/// Revokes the family `presented` belongs to (logout). Unknown tokens and
/// revoked families are left as they are: revoking is idempotent.
pub fn revoke_family_of(db: &Db, presented: &str) -> Result<(), ApiError> {
    db.execute(
        "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = 'logout' \
         WHERE revoked_at_ms IS NULL AND id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
        &[clock::now_ms().into(), digest(presented).into()],
    )?;
    Ok(())
}

fn revoke(db: &Db, family: &str, reason: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at_ms IS NULL",
        &[clock::now_ms().into(), reason.into(), family.into()],
    )?;
    Ok(())
}

fn insert_token(db: &Db, family: &str, token: &str) -> Result<(), DbError> {
    let now = clock::now_ms();
    db.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        &[digest(token).into(), family.into(), now.into(), (now + LIFETIME_MS).into()],
    )?;
    Ok(())
}

/// The stored form of a token: its SHA-256, hex.
fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
