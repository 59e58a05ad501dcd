//! The products database: opened from the `database_url` variable, with the
//! schema and the seed catalog applied on first use.
use shop_shared::api::ApiError;
use shop_shared::db::Db;

/// Append-only: a new schema change is a new file at the end.
const MIGRATIONS: &[&str] =
    &[include_str!("../migrations/0001_schema.sql"), include_str!("../migrations/0002_seed_catalog.sql")];

/// Opens the database, migrated.
///
/// Instances serving their first requests at once may migrate at once. A
/// loser fails (the table or the seed row exists) only once the winner has
/// committed that step, so migrating again goes on from where the winner
/// got to: each step (creating the migrations table, then each migration)
/// can be lost at most once.
pub fn open() -> Result<Db, ApiError> {
    let db = Db::from_variable().map_err(|e| ApiError::internal(format!("opening the products database: {e}")))?;
    let mut retries_left = MIGRATIONS.len() + 1;
    loop {
        match db.migrate(MIGRATIONS) {
            Ok(()) => return Ok(db),
            Err(_) if retries_left > 0 => retries_left -= 1,
            Err(e) => return Err(ApiError::internal(format!("migrating the products database: {e}"))),
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
