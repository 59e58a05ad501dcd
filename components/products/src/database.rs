//! The products database: opened from the `database_url` variable, with the
//! schema and the seed catalog applied on first use.
use shop_shared::api::ApiError;
use shop_shared::db::{Db, DbError};

/// Append-only: a new schema change is a new file at the end.
const MIGRATIONS: &[&str] =
    &[include_str!("../migrations/0001_schema.sql"), include_str!("../migrations/0002_seed_catalog.sql")];

/// The schema version this build reads and writes: its migrations' count.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the database for this build's schema (`Db::for_service`: migrated
/// first on SQLite, checked by the first statement on Postgres).
pub fn open() -> Result<Db, ApiError> {
    Db::for_service(MIGRATIONS).map_err(|e| ApiError::internal(format!("opening the products database: {e}")))
}

/// A column a read adds to its rows: the schema version they were read
/// under, so [`read`] needs no query of its own to know it.
pub const SCHEMA_VERSION_COLUMN: &str = "(SELECT COALESCE(MAX(version), 0) FROM schema_migrations) AS schema_version";

/// A read's result, and the schema version its rows carried
/// ([`SCHEMA_VERSION_COLUMN`]); `None` when no row came back to tell.
pub struct Read<T> {
    pub value: T,
    pub schema_version: Option<i64>,
}

/// Runs `read` on the database as it is, and keeps its result when the read
/// itself shows the schema is this build's: the hot read paths check the
/// schema in the query they run anyway, where [`open`] spends a query (a
/// round trip to Postgres) on every request. A read that fails (a table
/// missing), finds an older schema, or returns no row to tell, migrates
/// and reads again.
pub fn read<T>(read: impl Fn(&Db) -> Result<Read<T>, DbError>) -> Result<T, ApiError> {
    let db = connect()?;
    if let Ok(Read { value, schema_version: Some(version) }) = read(&db)
        && version >= SCHEMA_VERSION
    {
        return Ok(value);
    }
    migrate(&db)?;
    Ok(read(&db)?.value)
}

fn connect() -> Result<Db, ApiError> {
    Db::from_variable().map_err(|e| ApiError::internal(format!("opening the products database: {e}")))
}

/// Applies the migrations `db` lacks.
fn migrate(db: &Db) -> Result<(), ApiError> {
    db.migrate(MIGRATIONS).map_err(|e| ApiError::internal(format!("migrating the products database: {e}")))
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
