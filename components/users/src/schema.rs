//! The users database: its tables, and opening it.
use shop_shared::api::ApiError;
use shop_shared::db::Db;

/// Append-only: migration N is `MIGRATIONS[N - 1]` (see [`Db::migrate`]).
///
/// - `profiles`: one a user, keyed by the id auth gave them, with their
///   notification preferences (always present, so never a second lookup);
/// - `addresses`: a user's addresses; `idempotency_key` is the client's
///   `Idempotency-Key` of the request that created it, so a retried
///   creation finds the address instead of adding a copy (NULLs are
///   distinct, so addresses created without a key never collide);
/// - 2: a profile's `revision` (its changes counted, from 1) and the
///   revision last published on the bus (`published_revision`): a profile
///   whose two differ is due to the profile feed ([`crate::feed`]). Every
///   profile there was before is due once, so the feed's consumers learn of
///   it too.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE profiles (
        user_id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        name TEXT NOT NULL,
        phone TEXT,
        email_notifications INTEGER NOT NULL,
        sms_notifications INTEGER NOT NULL,
        push_notifications INTEGER NOT NULL,
        currency TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE addresses (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES profiles (user_id),
        line1 TEXT NOT NULL,
        line2 TEXT,
        city TEXT NOT NULL,
        postal_code TEXT NOT NULL,
        country TEXT NOT NULL,
        idempotency_key TEXT,
        created_at_ms BIGINT NOT NULL
    );
    CREATE INDEX addresses_by_user ON addresses (user_id, created_at_ms);
    CREATE UNIQUE INDEX addresses_by_idempotency_key ON addresses (user_id, idempotency_key)
",
    "
    ALTER TABLE profiles ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE profiles ADD COLUMN published_revision BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX profiles_unpublished ON profiles (user_id) WHERE published_revision < revision
",
];

/// Opens the database `database_url` names for this build's schema
/// (`Db::for_service`: migrated first on SQLite, checked by the first
/// statement on Postgres).
pub fn open() -> Result<Db, ApiError> {
    Ok(Db::for_service(MIGRATIONS)?)
}
