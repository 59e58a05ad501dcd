//! A service's schema: its migrations, and when an instance checks that its
//! database has them all.
//!
//! A service's migrations are a list it only appends to: number N is
//! `migrations[N - 1]`, and the table `schema_migrations` records those
//! applied. A build must not read or write a database older than its
//! schema, and each request is served by a fresh instance that knows
//! nothing of the ones before it, so every instance checks.
//!
//! - On SQLite the check is a query in the host's process, made when the
//!   database is opened ([`Db::for_service`]).
//! - On Postgres a query is a round trip, which waits its turn on a busy
//!   machine: checking first made four of a checkout's twelve. So the check
//!   goes with the instance's first statement instead, which is sent
//!   *guarded* ([`guarded`]): a `WITH` part fails the whole statement, so
//!   that it writes nothing, when the schema is older than the build. A
//!   guarded statement that fails so, or finds no `schema_migrations` (a
//!   new database), or a table or column missing (a build whose statement
//!   uses what a migration it lacks adds), has written nothing: the
//!   migrations are applied and it is sent again. One that succeeds has shown
//!   the schema current, and the statements after it go unguarded.
//! - A statement no `WITH` part can go with (`BEGIN`, so every
//!   transaction, or DDL) is preceded by the check, as on SQLite: a guard
//!   failing inside a transaction would leave it aborted, with the work
//!   before it to do again.
use std::cell::Cell;

use spin_sdk::pg4;

use super::{Db, DbError, Engine, Param, Result, pg_params};

/// What a guarded statement fails with when the schema is older than the
/// build (the text Postgres is made to cast to an integer).
const SCHEMA_BEHIND: &str = "the database schema is older than this build";

/// The fewest tries [`Db::migrate`] makes (what every service had before
/// the migrations' retries moved here).
const MIN_MIGRATION_ATTEMPTS: usize = 5;

/// The schema a [`Db`] was opened for.
pub(super) struct Schema {
    migrations: &'static [&'static str],
    /// Whether this instance has seen the schema current (a guarded
    /// statement succeeded, or the migrations were applied): from then on
    /// statements go unguarded. Set while migrating, too, so that the
    /// migration's own statements go as they are.
    known_current: Cell<bool>,
}

impl Db {
    /// Opens the service's database (named by its `database_url` variable)
    /// for a build whose schema is `migrations`: on SQLite migrated at once,
    /// on Postgres checked by the first statement (see the [module
    /// docs](self)).
    pub fn for_service(migrations: &'static [&'static str]) -> Result<Db> {
        let mut db = Db::from_variable()?;
        db.schema = Some(Schema { migrations, known_current: Cell::new(false) });
        if let Engine::Sqlite(_) = db.engine {
            db.ensure_schema()?;
        }
        Ok(db)
    }

    /// Checks the schema, and migrates it when it is older than the build,
    /// unless this instance knows it current already.
    fn ensure_schema(&self) -> Result<()> {
        match &self.schema {
            Some(schema) if !schema.known_current.get() => self.migrate(schema.migrations),
            _ => Ok(()),
        }
    }

    /// Runs a Postgres statement through `run`: guarded while the schema is
    /// not known current, and again unguarded once migrated when the guard
    /// or a missing table or column failed it.
    pub(super) fn on_schema<T>(
        &self,
        sql: &str,
        params: &[Param],
        run: impl Fn(&str, &[pg4::ParameterValue]) -> Result<T>,
    ) -> Result<T> {
        let params = pg_params(params);
        let Some(schema) = self.schema.as_ref().filter(|schema| !schema.known_current.get()) else {
            return run(sql, &params);
        };
        let Some(guarded) = guarded(sql, schema.migrations.len()) else {
            self.ensure_schema()?;
            return run(sql, &params);
        };
        match run(&guarded, &params) {
            Ok(value) => {
                schema.known_current.set(true);
                Ok(value)
            }
            Err(e) if schema_behind(&e) => {
                self.ensure_schema()?;
                run(sql, &params)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies the migrations not applied yet, in order, each in its own
    /// transaction, recording them in `schema_migrations`.
    ///
    /// Instances serving the first requests after start-up may migrate a
    /// fresh database at once. The loser of such a race fails (`already
    /// exists`, a unique violation) only once the winner has committed that
    /// step, so it looks again and goes on from there: each step (creating
    /// `schema_migrations`, then each migration) can be lost at most once.
    /// Never fewer than [`MIN_MIGRATION_ATTEMPTS`] tries, though: SQLite's
    /// `database is locked` is no lost step and may come more than once.
    pub fn migrate(&self, migrations: &[&str]) -> Result<()> {
        let attempts = (migrations.len() + 2).max(MIN_MIGRATION_ATTEMPTS);
        let was_current = self.schema.as_ref().map(|schema| schema.known_current.replace(true));
        let mut attempt = 1;
        let result = loop {
            match self.migrate_once(migrations) {
                Err(e) if attempt < attempts && is_concurrent_migration(&e) => attempt += 1,
                result => break result,
            }
        };
        if let (Some(schema), Some(was_current)) = (&self.schema, was_current) {
            schema.known_current.set(was_current || result.is_ok());
        }
        result
    }

    fn migrate_once(&self, migrations: &[&str]) -> Result<()> {
        const APPLIED: &str = "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations";
        // Almost every check finds nothing to do: one read says so.
        // (`CREATE TABLE IF NOT EXISTS` first would count as a write every
        // time, in SQLite's queue and Postgres's locks.)
        let applied = match self.query(APPLIED, &[]) {
            Ok(applied) => applied,
            Err(_) => {
                self.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)", &[])?;
                self.query(APPLIED, &[])?
            }
        };
        let current = applied.first().and_then(|r| r.int("v").ok()).unwrap_or(0);
        for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
            let version = i as i64 + 1;
            self.transaction(|db| {
                // Claim the version first: a concurrent migrator fails here,
                // before running any statement twice.
                db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[Param::Int(version), Param::Int(0)],
                )?;
                for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    db.execute(statement, &[])?;
                }
                Ok::<_, DbError>(())
            })?;
        }
        Ok(())
    }
}

/// `sql` with a guard that fails it, whole, unless `schema_migrations`
/// holds version `version` or later; `None` for a statement that cannot
/// take a `WITH` part.
///
/// The guard is an `UPDATE` that changes nothing: a data-modifying `WITH`
/// part always runs, even when nothing reads it, where a `SELECT` part
/// would not. Its condition names no column, so Postgres evaluates it once,
/// before scanning anything: with the schema current it is false, and
/// nothing is scanned, locked for writing or logged; with the schema older
/// it casts a text that is no number, which fails the statement.
fn guarded(sql: &str, version: usize) -> Option<String> {
    let guard = format!(
        "bazaar_schema_guard AS (UPDATE schema_migrations SET version = version WHERE CAST(CASE WHEN \
         (SELECT MAX(version) FROM schema_migrations) >= {version} THEN '0' ELSE '{SCHEMA_BEHIND}' END AS INTEGER) = 1)"
    );
    let sql = sql.trim_start();
    let (first, rest) = first_word(sql);
    match first.to_ascii_uppercase().as_str() {
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" => Some(format!("WITH {guard} {sql}")),
        "WITH" => match first_word(rest) {
            (recursive, parts) if recursive.eq_ignore_ascii_case("RECURSIVE") => {
                Some(format!("WITH RECURSIVE {guard}, {parts}"))
            }
            _ => Some(format!("WITH {guard}, {rest}")),
        },
        _ => None,
    }
}

/// The leading keyword of `sql` and what follows it.
fn first_word(sql: &str) -> (&str, &str) {
    let sql = sql.trim_start();
    let end = sql.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(sql.len());
    (&sql[..end], sql[end..].trim_start())
}

/// Whether a guarded statement failed because the schema is older than the
/// build (the guard's own failure, no `schema_migrations` at all, or a
/// table, SQLSTATE 42P01, or column, 42703, the statement uses missing), or
/// because the guard may not update `schema_migrations` (42501: a table
/// another role owns, its migrations run by that role): then the schema is
/// checked the plain way and the statement sent again as it is.
fn schema_behind(e: &DbError) -> bool {
    match e {
        DbError::Query(text) => ["42P01", "42703", "42501", SCHEMA_BEHIND].iter().any(|sign| text.contains(sign)),
        _ => false,
    }
}

/// Whether `e` is what losing a race with another migrator looks like.
fn is_concurrent_migration(e: &DbError) -> bool {
    match e {
        DbError::Duplicate(_) => true,
        DbError::Query(m) => m.contains("already exists") || m.contains("23505") || m.contains("database is locked"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: &str = "bazaar_schema_guard AS (UPDATE schema_migrations SET version = version WHERE CAST(CASE WHEN \
         (SELECT MAX(version) FROM schema_migrations) >= 3 THEN '0' ELSE 'the database schema is older than this build' \
         END AS INTEGER) = 1)";

    #[test]
    fn a_plain_statement_gets_the_guard_as_a_with_part_of_its_own() {
        for sql in ["SELECT a FROM t WHERE b = $1", "INSERT INTO t (a) VALUES ($1)", "update t SET a = $1", "DELETE FROM t"] {
            assert_eq!(guarded(&format!("\n  {sql}"), 3), Some(format!("WITH {GUARD} {sql}")), "{sql}");
        }
        // Placeholders keep their numbers: the guard has no parameters.
        assert_eq!(guarded("SELECT($1)", 3), Some(format!("WITH {GUARD} SELECT($1)")));
    }

    #[test]
    fn a_statement_with_a_with_clause_gets_the_guard_as_its_first_part() {
        assert_eq!(
            guarded("WITH w1 AS (INSERT INTO a (x) VALUES ($1)) INSERT INTO b (y) VALUES ($2)", 3),
            Some(format!("WITH {GUARD}, w1 AS (INSERT INTO a (x) VALUES ($1)) INSERT INTO b (y) VALUES ($2)"))
        );
        assert_eq!(
            guarded("with recursive r(n) AS (SELECT 1) SELECT n FROM r", 3),
            Some(format!("WITH RECURSIVE {GUARD}, r(n) AS (SELECT 1) SELECT n FROM r"))
        );
        assert_eq!(
            guarded("WITH\nrecent AS (SELECT 1) SELECT * FROM recent", 3),
            Some(format!("WITH {GUARD}, recent AS (SELECT 1) SELECT * FROM recent"))
        );
    }

    #[test]
    fn statements_no_with_part_can_go_with_are_not_guarded() {
        for sql in ["BEGIN", "COMMIT", "CREATE TABLE t (a BIGINT)", "VALUES (1)", "(SELECT 1) UNION (SELECT 2)", ""] {
            assert_eq!(guarded(sql, 3), None, "{sql}");
        }
    }

    #[test]
    fn what_counts_as_the_schema_being_behind() {
        let query = |text: &str| DbError::Query(text.to_string());
        assert!(schema_behind(&query(&format!("invalid input syntax for type integer: \\\"{SCHEMA_BEHIND}\\\""))));
        assert!(schema_behind(&query("QueryFailed(DbError(DbError { code: \"42P01\", message: \"relation does not exist\" }))")));
        assert!(schema_behind(&query("QueryFailed(DbError(DbError { code: \"42703\", message: \"column does not exist\" }))")));
        assert!(schema_behind(&query("QueryFailed(DbError(DbError { code: \"42501\", message: \"permission denied\" }))")));
        assert!(!schema_behind(&query("QueryFailed(DbError(DbError { code: \"22P02\", message: \"invalid input syntax\" }))")));
        assert!(!schema_behind(&DbError::Duplicate(format!("23505 {SCHEMA_BEHIND}"))));
    }
}
