//! Auth's database: its tables, and opening it.
use shop_shared::api::ApiError;
use shop_shared::db::Db;

/// Append-only: migration N is `MIGRATIONS[N - 1]` (see [`Db::migrate`]).
///
/// - `accounts`: one a registered email; `status` is `pending` from the
///   moment registration reserves the email until the user's profile exists
///   in the users service, then `active` (only active accounts log in).
/// - `refresh_families`: one a login; revoking a family (logout, or a spent
///   token presented again) ends every refresh token of that login.
/// - `refresh_tokens`: SHA-256 of each refresh token issued, never the token;
///   `spent_at_ms` is set when it is exchanged for a new pair.
/// - `signing_keys`: the Ed25519 seed auth generated for itself when the
///   `jwt_signing_key` variable is empty, so restarts keep signing (and
///   verifiers keep accepting) with the same key.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE refresh_families (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES accounts (id),
        created_at_ms BIGINT NOT NULL,
        revoked_at_ms BIGINT,
        revoked_reason TEXT
    );
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        family_id TEXT NOT NULL REFERENCES refresh_families (id),
        issued_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        spent_at_ms BIGINT
    );
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
    CREATE TABLE signing_keys (
        id TEXT PRIMARY KEY,
        seed TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )
"];

/// Opens the database `database_url` names for this build's schema
/// (`Db::for_service`: migrated first on SQLite, checked by the first
/// statement on Postgres).
pub fn open() -> Result<Db, ApiError> {
    Ok(Db::for_service(MIGRATIONS)?)
}
