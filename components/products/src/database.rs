//! The products database: opened from the `database_url` variable, with the
//! schema and the seed catalog applied on first use.
use shop_shared::api::ApiError;
use shop_shared::db::Db;

/// Append-only: a new schema change is a new file at the end.
const MIGRATIONS: &[&str] =
    &[include_str!("../migrations/0001_schema.sql"), include_str!("../migrations/0002_seed_catalog.sql")];

/// Opens the database for this build's schema (`Db::for_service`: migrated
/// first on SQLite, checked by the first statement on Postgres, the
/// catalog's reads included).
pub fn open() -> Result<Db, ApiError> {
    Db::for_service(MIGRATIONS).map_err(|e| ApiError::internal(format!("opening the products database: {e}")))
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
