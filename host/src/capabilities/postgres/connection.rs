//! One guest connection: a pooled Postgres connection running the guest's
//! statements, with 4.0.0's types (older versions convert in `compat`).
//!
//! Statements are prepared once per pooled connection and cached (one
//! round trip per query instead of two). A cached statement the schema has
//! since invalidated ("cached plan must not change result type", or one a
//! guest `DISCARD`ed) is prepared again and the statement retried once.
//! Query results are buffered (the interface returns whole row sets), up to
//! [`MAX_RESULT_BYTES`].
//!
//! When the guest drops the connection it goes back to its pool
//! (`pool::give_back`), except if the guest was stopped in the middle of a
//! statement (its request deadline): then it is closed, since its reply is
//! still on the way. A guest that ran only plain statements ([`is_plain`])
//! and ended every transaction it began leaves its connection owing the
//! reset of its session, which the next guest's first statement takes
//! with it, in one round trip ([`after_reset`]). Any other guest's
//! connection is reset at once (after a `ROLLBACK` if it began a
//! transaction), so an abandoned transaction or a session lock does not
//! wait in the pool. A reset that fails, or finds a transaction open that
//! the host did not see begin, closes the connection; what the next
//! guest's statement did then ran in that transaction, which closing rolls
//! back, and the guest is told nothing was run.
//!
//! A plain `BEGIN` is not sent on its own: it waits for the guest's next
//! statement and goes with it, both in one round trip (pipelined), so a
//! transaction costs one round trip less. A plain `BEGIN` cannot fail by
//! itself (inside a transaction it only warns), so the guest loses nothing
//! by getting its answer first; should the connection break, the next
//! statement reports it.

use std::future::Future;

use futures::TryStreamExt;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

use super::client::Session;
use super::convert::{self, Raw};
use super::pool::{self, Object, RESET_SQL, Release, ResetOutcome, error_chain};
use crate::bindings::spin::postgres4_0_0::postgres::{Column, DbError, Error, ParameterValue, QueryError, RowSet};
use crate::capabilities::driven::Driver;

/// The most a query result may hold in the host before it is refused.
pub const MAX_RESULT_BYTES: usize = 64 << 20;
/// Statements cached per pooled connection before the cache is emptied.
const MAX_CACHED_STATEMENTS: usize = 512;
/// What a row value costs beyond its bytes, for [`MAX_RESULT_BYTES`].
const VALUE_OVERHEAD: usize = 16;

/// A guest's open connection.
pub struct GuestConnection {
    /// `None` once closed: dropped, or closed early because the reset it
    /// owed was not clean (`closed` says why).
    client: Option<Object>,
    /// Why the connection was closed under the guest, for its later
    /// statements.
    closed: Option<String>,
    /// Whether every statement so far was plain ([`is_plain`]): only then
    /// may the reset wait for the next guest.
    plain: bool,
    /// Set once the guest ran `BEGIN`/`START TRANSACTION`: the connection
    /// is rolled back when the guest drops it, so a transaction left open
    /// does not hold its locks while the connection sits in the pool.
    may_be_in_transaction: bool,
    /// Set while a statement runs: still set when the connection is
    /// dropped means the guest was stopped mid-statement (its deadline),
    /// and the connection, its reply still in flight, is closed, not reused.
    busy: bool,
    /// A `BEGIN` answered but not sent yet: it goes out with the guest's
    /// next statement. Dropped unsent if the guest runs nothing more, since
    /// a transaction with no statement has nothing to keep or undo.
    pending_begin: Option<String>,
}

impl GuestConnection {
    pub fn new(client: Object) -> Self {
        Self { client: Some(client), closed: None, plain: true, may_be_in_transaction: false, busy: false, pending_begin: None }
    }

    /// The connection's session, the driver its replies come through and
    /// whether its last guest's reset is still owed (which the caller now
    /// sends); `Err` once it was closed under the guest.
    fn parts(&mut self) -> Result<(&Session, &mut Driver, bool), Error> {
        let Some(client) = self.client.as_mut() else {
            let why = self.closed.clone().unwrap_or_else(|| "the connection is closed".into());
            return Err(Error::ConnectionFailed(why));
        };
        let owed = client.take_owed_reset();
        let (session, driver) = client.parts();
        Ok((session, driver, owed))
    }

    pub async fn query(&mut self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
        if self.closed.is_none() && self.defer_begin(sql, params) {
            return Ok(RowSet { columns: Vec::new(), rows: Vec::new() });
        }
        let begin = self.start(sql);
        let (session, driver, owed) = self.parts()?;
        let run = with_begin(session, begin, run_query(session, sql, params));
        let (reset, result) = driver.drive(after_reset(session, owed, run)).await;
        self.busy = false;
        self.settle(reset, result)
    }

    pub async fn execute(&mut self, sql: &str, params: &[ParameterValue]) -> Result<u64, Error> {
        if self.closed.is_none() && self.defer_begin(sql, params) {
            return Ok(0);
        }
        let begin = self.start(sql);
        let (session, driver, owed) = self.parts()?;
        let run = with_begin(session, begin, run_execute(session, sql, params));
        let (reset, result) = driver.drive(after_reset(session, owed, run)).await;
        self.busy = false;
        self.settle(reset, result)
    }

    /// The statement's result, given what the reset sent before it found.
    /// A reset that was not clean closes the connection: one found inside
    /// a transaction ran the statement in it, uncommitted, and closing rolls
    /// it back, so the guest is told nothing was run; a failed reset with a
    /// failed statement likewise. A statement that succeeded after a failed
    /// reset did run: its result stands, and only later statements fail.
    fn settle<T>(&mut self, reset: Option<ResetOutcome>, result: Result<T, Error>) -> Result<T, Error> {
        let (why, stands) = match reset {
            None | Some(ResetOutcome::Clean) => return result,
            Some(ResetOutcome::TransactionOpen) => ("a transaction was still open on it".to_string(), false),
            Some(ResetOutcome::Failed(e)) => (format!("its reset failed: {e}"), result.is_ok()),
        };
        tracing::warn!("Postgres: a pooled connection could not be reset for its next guest ({why}); closing it");
        let closed = format!("the pooled connection could not be reset for this guest ({why}) and was closed; open another");
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
        self.closed = Some(closed.clone());
        if stands { result } else { Err(Error::ConnectionFailed(format!("{closed}; nothing was run"))) }
    }

    /// Holds back `sql` if it is a plain `BEGIN` (and none is held yet):
    /// answered at once, sent with the next statement.
    fn defer_begin(&mut self, sql: &str, params: &[ParameterValue]) -> bool {
        if self.pending_begin.is_some() || !params.is_empty() || !is_plain_begin(sql) {
            return false;
        }
        self.pending_begin = Some(sql.to_string());
        true
    }

    /// Marks a statement as running; the held-back `BEGIN` to send with it.
    fn start(&mut self, sql: &str) -> Option<String> {
        let begin = self.pending_begin.take();
        if let Some(begin) = &begin {
            self.note_transaction(begin);
        }
        self.note_transaction(sql);
        self.plain &= is_plain(sql) && begin.as_deref().is_none_or(is_plain);
        self.busy = true;
        begin
    }

    fn note_transaction(&mut self, sql: &str) {
        if let Some(open) = opens_transaction(sql) {
            self.may_be_in_transaction = open;
        }
    }
}

impl Drop for GuestConnection {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if self.busy {
            drop(Object::take(client));
            return;
        }
        let release = if self.plain && !self.may_be_in_transaction {
            Release::ResetOnReuse
        } else {
            Release::ResetNow { rollback_first: self.may_be_in_transaction }
        };
        pool::give_back(client, release);
    }
}

/// Runs `statement` after the reset the connection owes, when it owes one
/// (`owed`), both in one round trip: requests go out in the order they are
/// first polled, and the server answers them in that order. `None`: no
/// reset was owed.
async fn after_reset<T>(
    session: &Session,
    owed: bool,
    statement: impl Future<Output = Result<T, Error>>,
) -> (Option<ResetOutcome>, Result<T, Error>) {
    if !owed {
        return (None, statement.await);
    }
    let (reset, result) = tokio::join!(session.client.simple_query(RESET_SQL), statement);
    (Some(ResetOutcome::of(reset)), result)
}

/// Runs `statement`, after `begin` when there is one, both in one round
/// trip: the client sends each request as it is first polled and
/// answers them in order, so the two go out together.
async fn with_begin<T>(
    session: &Session,
    begin: Option<String>,
    statement: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let Some(begin) = begin else { return statement.await };
    let (began, result) = tokio::join!(session.client.batch_execute(&begin), statement);
    began.map_err(|e| query_failed(&e))?;
    result
}

async fn run_query(session: &Session, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
    let mut retried = false;
    loop {
        let (statement, params) = prepare(session, sql, params).await?;
        let stream = match session.client.query_raw(&statement, params.iter()).await {
            Ok(stream) => stream,
            Err(e) if !retried && is_stale(session, &e, sql) => {
                retried = true;
                continue;
            }
            Err(e) => return Err(query_failed(&e)),
        };
        let columns = statement
            .columns()
            .iter()
            .map(|c| Column { name: c.name().to_string(), data_type: convert::data_type(c.type_()) })
            .collect();
        let types: Vec<_> = statement.columns().iter().map(|c| c.type_().clone()).collect();
        let mut rows = Vec::new();
        let mut size = 0usize;
        futures::pin_mut!(stream);
        while let Some(row) = stream.try_next().await.map_err(|e| query_failed(&e))? {
            let mut values = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                let raw: Option<Raw<'_>> = row.try_get(i).map_err(|e| query_failed(&e))?;
                size += raw.as_ref().map_or(0, |r| r.0.len()) + VALUE_OVERHEAD;
                values.push(convert::decode(ty, raw.map(|r| r.0)));
            }
            if size > MAX_RESULT_BYTES {
                return Err(Error::QueryFailed(QueryError::Text(format!(
                    "the query result is larger than the host's limit of {} MiB; \
                     select fewer rows (LIMIT/OFFSET) or columns",
                    MAX_RESULT_BYTES >> 20
                ))));
            }
            rows.push(values);
        }
        return Ok(RowSet { columns, rows });
    }
}

async fn run_execute(session: &Session, sql: &str, params: &[ParameterValue]) -> Result<u64, Error> {
    let mut retried = false;
    loop {
        let (statement, params) = prepare(session, sql, params).await?;
        return match session.client.execute_raw(&statement, params.iter()).await {
            Ok(n) => Ok(n),
            Err(e) if !retried && is_stale(session, &e, sql) => {
                retried = true;
                continue;
            }
            Err(e) => Err(query_failed(&e)),
        };
    }
}

/// Prepares `sql` (from the cache if it can) and encodes the
/// parameters for the types it expects.
async fn prepare(session: &Session, sql: &str, params: &[ParameterValue]) -> Result<(Statement, Vec<convert::Encoded>), Error> {
    let statement = session.prepare_cached(sql, MAX_CACHED_STATEMENTS).await.map_err(|e| query_failed(&e))?;
    let params = convert::encode_params(params, statement.params()).map_err(Error::BadParameter)?;
    Ok((statement, params))
}

/// Whether `e` says the cached statement for `sql` is out of date; if
/// so, it is forgotten so the next attempt prepares it again.
fn is_stale(session: &Session, e: &tokio_postgres::Error, sql: &str) -> bool {
    let stale = match e.code() {
        Some(code) if *code == SqlState::INVALID_SQL_STATEMENT_NAME => true,
        Some(code) if *code == SqlState::FEATURE_NOT_SUPPORTED => {
            e.as_db_error().is_some_and(|db| db.message().contains("cached plan"))
        }
        _ => false,
    };
    if stale {
        tracing::debug!("Postgres: preparing a stale cached statement again: {e}");
        session.forget(sql);
    }
    stale
}

/// Whether a statement opens a transaction (`BEGIN`, `START`, and an end
/// `AND CHAIN`, which opens the next: `Some(true)`) or ends one (`COMMIT`,
/// `END`, `ABORT`, `ROLLBACK` but not `ROLLBACK TO`: `Some(false)`), from
/// its words.
fn opens_transaction(sql: &str) -> Option<bool> {
    // Runs on every statement: only transaction control, which is short,
    // has its words looked at past the first.
    let mut words = sql.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty());
    let first = words.next()?.to_ascii_lowercase();
    if matches!(first.as_str(), "begin" | "start") {
        return Some(true);
    }
    if !matches!(first.as_str(), "commit" | "end" | "abort" | "rollback") {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    if first == "rollback" && rest.first().is_some_and(|w| w.eq_ignore_ascii_case("to")) {
        return None;
    }
    Some(rest.windows(2).any(|w| w[0].eq_ignore_ascii_case("and") && w[1].eq_ignore_ascii_case("chain")))
}

/// Whether `sql` can leave nothing behind that binds anyone while its
/// connection waits in the pool, so the session's reset may wait for the
/// next guest: a query or data change (`SELECT`, `WITH`, `INSERT`,
/// `UPDATE`, `DELETE`, `VALUES`, `TABLE`) or transaction control, by its
/// first word, which nothing (no comment) may hide; and no advisory lock,
/// which would outlast the statement. Settings changed with `set_config`
/// or a sequence's last value are left for the reset, which the next
/// guest's first statement runs first. A function that takes a session
/// lock itself holds it until the connection's next use, as in Spin, whose
/// pool resets a connection when it hands it out again.
fn is_plain(sql: &str) -> bool {
    let first = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default().to_ascii_lowercase();
    let plain = matches!(
        first.as_str(),
        "select"
            | "with"
            | "insert"
            | "update"
            | "delete"
            | "values"
            | "table"
            | "begin"
            | "start"
            | "commit"
            | "end"
            | "abort"
            | "rollback"
            | "savepoint"
            | "release"
    );
    plain && !sql.as_bytes().windows(8).any(|w| w.eq_ignore_ascii_case(b"advisory"))
}

/// Whether `sql` is a `BEGIN` with nothing that could make it fail:
/// `BEGIN`, `BEGIN WORK`, `BEGIN TRANSACTION` or `START TRANSACTION`, in any
/// case, with or without a `;`. Anything more (an isolation level, a
/// comment) is sent at once, so its own errors are its own.
fn is_plain_begin(sql: &str) -> bool {
    let sql = sql.trim().to_ascii_lowercase();
    let words: Vec<&str> = sql.strip_suffix(';').unwrap_or(&sql).split_ascii_whitespace().collect();
    matches!(words[..], ["begin"] | ["begin", "work" | "transaction"] | ["start", "transaction"])
}

/// A failed statement as 4.0.0 reports it: Postgres's own error, with its
/// SQLSTATE, when the server sent one.
pub fn query_failed(e: &tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return Error::QueryFailed(QueryError::Text(error_chain(e)));
    };
    let mut as_text = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        as_text.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        as_text.push_str(&format!("\nHINT: {hint}"));
    }
    // The same extras, under the same names, as Spin.
    let mut extras = Vec::new();
    let mut extra = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            extras.push((name.to_string(), value));
        }
    };
    extra("column", db.column().map(str::to_string));
    extra("constraint", db.constraint().map(str::to_string));
    extra("routine", db.routine().map(str::to_string));
    extra("hint", db.hint().map(str::to_string));
    extra("table", db.table().map(str::to_string));
    extra("datatype", db.datatype().map(str::to_string));
    extra("schema", db.schema().map(str::to_string));
    extra("file", db.file().map(str::to_string));
    extra("line", db.line().map(|l| l.to_string()));
    extra("where_", db.where_().map(str::to_string));
    Error::QueryFailed(QueryError::DbError(DbError {
        as_text,
        severity: db.severity().to_string(),
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        extras,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_statements_are_recognised() {
        for (sql, want) in [
            ("BEGIN", Some(true)),
            ("  begin isolation level serializable", Some(true)),
            ("START TRANSACTION", Some(true)),
            ("COMMIT", Some(false)),
            ("end;", Some(false)),
            ("ROLLBACK", Some(false)),
            ("rollback to savepoint a", None),
            ("COMMIT AND CHAIN", Some(true)),
            ("rollback and chain", Some(true)),
            ("COMMIT AND NO CHAIN", Some(false)),
            ("SELECT 1", None),
            ("", None),
        ] {
            assert_eq!(opens_transaction(sql), want, "{sql}");
        }
    }

    #[test]
    fn only_plain_statements_leave_the_reset_to_the_next_guest() {
        for sql in [
            "SELECT 1",
            "  with w AS (SELECT 1) SELECT * FROM w",
            "INSERT INTO t VALUES (1)",
            "update t SET x = 1",
            "DELETE FROM t",
            "BEGIN",
            "COMMIT",
            "ROLLBACK TO SAVEPOINT a",
            "SELECT set_config('search_path', 'x', false)",
        ] {
            assert!(is_plain(sql), "{sql}");
        }
        for sql in [
            "SET search_path TO x",
            "CREATE TEMP TABLE t (x int)",
            "LISTEN c",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "/* hidden */ BEGIN",
            "-- a comment\nSELECT 1",
            "SELECT pg_advisory_lock(1)",
            "select PG_TRY_ADVISORY_LOCK(1)",
            "LOCK TABLE t",
            "CALL p()",
            "DO $$ BEGIN END $$",
            "",
        ] {
            assert!(!is_plain(sql), "{sql}");
        }
    }

    #[test]
    fn only_a_plain_begin_waits_for_the_next_statement() {
        for sql in ["BEGIN", "begin;", "  Begin Work ", "BEGIN TRANSACTION", "start transaction;"] {
            assert!(is_plain_begin(sql), "{sql}");
        }
        for sql in [
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION READ ONLY",
            "/* hidden */ BEGIN",
            "BEGIN; INSERT INTO t VALUES (1)",
            "BEGINX",
            "COMMIT",
            "",
        ] {
            assert!(!is_plain_begin(sql), "{sql}");
        }
    }
}
