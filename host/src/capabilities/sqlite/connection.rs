//! One guest connection: runs statements and maps SQLite's dynamic types to
//! the interface's `value`.
//!
//! The connection is the guest's own from `open` until it drops the
//! resource, so `BEGIN` in one `execute` and `COMMIT` in a later one work.
//! Results are capped at Spin's limit, so one query cannot exhaust the
//! host's memory, and a statement still running when the instance's request
//! runs out of time is interrupted (SQLite's progress handler).
//!
//! Statements run right on the async worker. Most take a few microseconds,
//! and handing the worker to another thread costs more than that: a thread
//! wake-up and the blocking pool's lock per statement (in the shop
//! benchmark, the largest share of the host's context switches), and for a
//! write, the database's write turn held through the hand-over while every
//! writer behind it waited (checkouts took twice as long).
//!
//! A read runs within a budget of [`INLINE_STEPS`] virtual-machine steps;
//! one that runs out is interrupted, which leaves no trace (an interrupted
//! `SELECT` keeps its transaction), and runs again in `block_in_place`:
//! tokio hands this worker's other tasks to another thread, and the instance
//! carries on the moment the statement is done. A write cannot be
//! interrupted that way (inside a transaction, an interrupted write rolls
//! the whole transaction back), so one that outruns the budget finishes on
//! the worker, once, and its database remembers it: from then on that
//! statement runs in `block_in_place` (see `heavy`). Checkpoints, the one
//! slow part of a commit, run on the blocking pool (see `checkpoint`). A
//! current-thread runtime (unit tests) uses the blocking pool throughout.
//!
//! On the worker a statement never waits for a lock another process holds
//! (a `sqlite3` shell writing to the same file): SQLite's busy handler is
//! off for it, and one that SQLite answers BUSY runs again in
//! `block_in_place`, where the handler waits up to [`BUSY_TIMEOUT`].
//!
//! A statement that may write first waits for the database's write turn
//! (see `turn`), which the connection keeps until its transaction ends.
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, InterruptHandle};

use super::database::{BUSY_TIMEOUT, Database, without_waiting};
use super::pool::Lease;
use super::turn::{Turn, may_write};
use crate::bindings::spin::sqlite::sqlite::{Error, QueryResult, RowResult, Value};

/// The most a query result may hold, counted as Spin counts it
/// (spinframework/spin, crates/world/src/lib.rs, `MAX_HOST_BUFFERED_BYTES`).
const MAX_RESULT_BYTES: usize = 128 << 20;

/// SQLite calls the progress handler every this many virtual-machine steps.
const STEPS_PER_CHECK: i32 = 1000;
/// The steps, in progress-handler calls, a statement may run on the async
/// worker before it moves to a blocking thread: 50,000 steps, a few hundred
/// microseconds at most. A point lookup, a page of the catalog or an
/// order's insert takes a few thousand.
const INLINE_STEPS: u32 = 50;

/// The budget of the statement running on the async worker, if one is.
struct InlineBudget {
    /// Progress-handler calls left; `u32::MAX` when nothing runs inline.
    left: AtomicU32,
    overran: AtomicBool,
    /// Whether running out interrupts the statement (a read) or is only
    /// noted (a write).
    interrupts: AtomicBool,
}

impl InlineBudget {
    fn arm(&self, interrupts: bool) {
        self.overran.store(false, Ordering::Relaxed);
        self.interrupts.store(interrupts, Ordering::Relaxed);
        self.left.store(INLINE_STEPS, Ordering::Relaxed);
    }

    /// Whether the statement ran out of budget.
    fn disarm(&self) -> bool {
        self.left.store(u32::MAX, Ordering::Relaxed);
        self.overran.load(Ordering::Relaxed)
    }

    /// Called by the progress handler: whether to interrupt.
    fn spend(&self) -> bool {
        let left = self.left.load(Ordering::Relaxed);
        if left == u32::MAX {
            return false;
        }
        if left == 0 {
            self.overran.store(true, Ordering::Relaxed);
            if self.interrupts.load(Ordering::Relaxed) {
                return true;
            }
            self.left.store(u32::MAX, Ordering::Relaxed);
            return false;
        }
        self.left.store(left - 1, Ordering::Relaxed);
        false
    }
}

#[derive(Clone)]
pub struct GuestConnection {
    /// Given back to its database (or closed) when the last clone drops.
    connection: Arc<Mutex<Lease>>,
    interrupt: Arc<InterruptHandle>,
    /// Set when a statement was interrupted from outside: the connection
    /// is then closed rather than given to another guest.
    tainted: Arc<AtomicBool>,
    budget: Arc<InlineBudget>,
    /// Its write turns, heavy statements and checkpoints.
    database: Arc<Database>,
    /// The write turn while this connection holds it. Declared after the
    /// connection: a connection dropped mid-transaction rolls back (as it
    /// goes back to its database) before the next writer gets its turn.
    turn: Arc<Mutex<Option<Turn>>>,
}

impl GuestConnection {
    /// A guest's connection, whose statements stop at `deadline`.
    pub fn new(connection: Lease, deadline: Instant) -> Self {
        let budget = Arc::new(InlineBudget {
            left: AtomicU32::new(u32::MAX),
            overran: AtomicBool::new(false),
            interrupts: AtomicBool::new(false),
        });
        let database = connection.database().clone();
        let spend = budget.clone();
        // Checked every thousand virtual machine steps: a few microseconds.
        connection.progress_handler(STEPS_PER_CHECK, Some(move || spend.spend() || Instant::now() >= deadline));
        let interrupt = Arc::new(connection.get_interrupt_handle());
        let tainted = connection.tainted();
        Self { connection: Arc::new(Mutex::new(connection)), interrupt, tainted, budget, database, turn: Arc::default() }
    }

    /// Runs one statement with positional parameters (`?`, `?NNN`), in the
    /// write turn if it may write.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let writes = may_write(&statement);
        if !writes
            && let Some(result) = self.read_inline(&statement, &parameters)
        {
            return Ok(result);
        }
        if !self.holds_turn() && writes {
            let Some(turn) = self.database.turns().take(BUSY_TIMEOUT).await else {
                return Ok(Err(Error::Io(format!(
                    "database is locked: another connection kept writing for more than {}s",
                    BUSY_TIMEOUT.as_secs()
                ))));
            };
            *self.turn.lock().unwrap_or_else(PoisonError::into_inner) = Some(turn);
        }
        let inline = if writes && multi_threaded() && !self.database.heavy().contains(&statement) {
            self.write_inline(&statement, &parameters)
        } else {
            None
        };
        let (result, autocommit) = match inline {
            Some(done) => done,
            None => {
                let mut abandoned = InterruptOnDrop(Some((&self.interrupt, &self.tainted)));
                let result = self.run(move |c| (query(c, &statement, &parameters), c.is_autocommit())).await;
                abandoned.0 = None;
                result?
            }
        };
        if autocommit {
            // The statement (or the transaction it ended) is over.
            self.turn.lock().unwrap_or_else(PoisonError::into_inner).take();
            if writes {
                self.database.committed();
            }
        }
        Ok(result)
    }

    /// Runs a write on this thread; one that outruns [`INLINE_STEPS`]
    /// finishes here and is remembered as heavy. Also says whether the
    /// connection is back in autocommit mode. `None` if another process
    /// holds the lock the write needs: run it again where waiting is allowed.
    fn write_inline(&self, statement: &str, parameters: &[Value]) -> Option<(Result<QueryResult, Error>, bool)> {
        let connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        self.budget.arm(false);
        let result = query_without_waiting(&connection, statement, parameters);
        if self.budget.disarm() {
            self.database.heavy().remember(statement);
        }
        Some((result?, connection.is_autocommit()))
    }

    /// Runs a read on this thread, unless it outruns [`INLINE_STEPS`] or
    /// would wait for another process's lock (`None`: run it again where
    /// blocking is allowed).
    fn read_inline(&self, statement: &str, parameters: &[Value]) -> Option<Result<QueryResult, Error>> {
        if !multi_threaded() {
            return None;
        }
        let connection = self.connection.try_lock().ok()?;
        self.budget.arm(true);
        let result = query_without_waiting(&connection, statement, parameters);
        if self.budget.disarm() {
            return None;
        }
        result
    }

    fn holds_turn(&self) -> bool {
        self.turn.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    // The two counters are fields of the connection: reading one never
    // blocks, so it needs no other thread (the shop reads `changes` after
    // every write, inside the write turn).

    pub fn last_insert_rowid(&self) -> i64 {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).last_insert_rowid()
    }

    pub fn changes(&self) -> u64 {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).changes()
    }

    /// Runs `f` on the connection, where blocking is allowed.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> T + Send + 'static) -> wasmtime::Result<T> {
        let connection = self.connection.clone();
        let run = move || f(&connection.lock().unwrap_or_else(PoisonError::into_inner));
        if multi_threaded() { Ok(tokio::task::block_in_place(run)) } else { Ok(tokio::task::spawn_blocking(run).await?) }
    }
}

/// Whether this runtime can give the worker's other tasks to another
/// thread (`block_in_place`): a current-thread one (unit tests) cannot, and
/// there a statement on the worker would stall the only thread.
pub fn multi_threaded() -> bool {
    tokio::runtime::Handle::current().runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread
}

/// Interrupts the connection's running statement if dropped while armed:
/// when the future awaiting the statement is dropped before it completes.
struct InterruptOnDrop<'a>(Option<(&'a InterruptHandle, &'a AtomicBool)>);

impl Drop for InterruptOnDrop<'_> {
    fn drop(&mut self) {
        if let Some((handle, tainted)) = self.0 {
            tainted.store(true, Ordering::Release);
            handle.interrupt();
        }
    }
}

fn query(connection: &Connection, sql: &str, parameters: &[Value]) -> Result<QueryResult, Error> {
    run_statement(connection, sql, parameters).map_err(Failure::into_error)
}

/// Runs a statement on the async worker, where it must not wait for a lock
/// another process holds (a `sqlite3` shell in a write transaction, say):
/// SQLite's busy handler would sleep on the worker for up to
/// [`BUSY_TIMEOUT`]. `None` when SQLite answered BUSY: the statement took no
/// lock and did nothing, and runs again where waiting is allowed.
fn query_without_waiting(connection: &Connection, sql: &str, parameters: &[Value]) -> Option<Result<QueryResult, Error>> {
    match without_waiting(connection, |connection| run_statement(connection, sql, parameters)) {
        Err(failure) if failure.is_busy() => None,
        result => Some(result.map_err(Failure::into_error)),
    }
}

/// Why a statement failed: SQLite's own error (kept whole, so that BUSY can
/// be told apart), or a result over [`MAX_RESULT_BYTES`].
enum Failure {
    Sqlite(rusqlite::Error),
    TooLarge,
}

impl Failure {
    fn is_busy(&self) -> bool {
        matches!(self, Failure::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy))
    }

    fn into_error(self) -> Error {
        match self {
            Failure::Sqlite(e) => Error::Io(e.to_string()),
            Failure::TooLarge => Error::Io(format!("query result exceeds limit of {MAX_RESULT_BYTES} bytes")),
        }
    }
}

fn run_statement(connection: &Connection, sql: &str, parameters: &[Value]) -> Result<QueryResult, Failure> {
    let mut statement = connection.prepare_cached(sql).map_err(Failure::Sqlite)?;
    let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = statement.query(rusqlite::params_from_iter(parameters.iter().map(to_sql))).map_err(Failure::Sqlite)?;
    let mut result = QueryResult { columns, rows: Vec::new() };
    let mut bytes = 0;
    while let Some(row) = rows.next().map_err(Failure::Sqlite)? {
        let values = (0..result.columns.len())
            .map(|i| row.get_ref(i).map(from_sql))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Failure::Sqlite)?;
        bytes += values.iter().map(size).sum::<usize>();
        if bytes > MAX_RESULT_BYTES {
            return Err(Failure::TooLarge);
        }
        result.rows.push(RowResult { values });
    }
    Ok(result)
}

fn to_sql(value: &Value) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match value {
        Value::Integer(i) => ValueRef::Integer(*i),
        Value::Real(r) => ValueRef::Real(*r),
        Value::Text(t) => ValueRef::Text(t.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
        Value::Null => ValueRef::Null,
    })
}

fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        // SQLite does not check that TEXT is UTF-8; a WIT string must be.
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Null => Value::Null,
    }
}

/// A value's share of [`MAX_RESULT_BYTES`], as Spin counts it.
fn size(value: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match value {
            Value::Text(t) => t.len(),
            Value::Blob(b) => b.len(),
            Value::Integer(_) | Value::Real(_) | Value::Null => 0,
        }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::tests::{in_a_minute, memory_database};
    use super::*;

    fn memory() -> GuestConnection {
        GuestConnection::new(memory_database().lease().unwrap(), in_a_minute())
    }

    async fn exec(c: &GuestConnection, sql: &str, params: Vec<Value>) -> Result<QueryResult, Error> {
        c.execute(sql.into(), params).await.unwrap()
    }

    #[tokio::test]
    async fn every_type_round_trips() {
        let c = memory();
        exec(&c, "CREATE TABLE t (i, r, s, b, n)", vec![]).await.unwrap();
        let params = vec![
            Value::Integer(-7),
            Value::Real(2.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
        ];
        exec(&c, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", params).await.unwrap();
        assert_eq!((c.changes(), c.last_insert_rowid()), (1, 1));

        let result = exec(&c, "SELECT i, r, s, b, n, i + 1 AS next FROM t", vec![]).await.unwrap();
        assert_eq!(result.columns, ["i", "r", "s", "b", "n", "next"]);
        assert!(matches!(
            result.rows[0].values.as_slice(),
            [Value::Integer(-7), Value::Real(2.5), Value::Text(s), Value::Blob(b), Value::Null, Value::Integer(-6)]
                if s == "héllo" && b == &[0, 255]
        ));
    }

    #[tokio::test]
    async fn columns_come_back_with_no_rows() {
        let c = memory();
        exec(&c, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)", vec![]).await.unwrap();
        let result = exec(&c, "SELECT id, name FROM t WHERE id = ?", vec![Value::Integer(1)]).await.unwrap();
        assert_eq!(result.columns, ["id", "name"]);
        assert!(result.rows.is_empty());
    }

    #[tokio::test]
    async fn errors_carry_sqlites_message() {
        let c = memory();
        let Err(Error::Io(message)) = exec(&c, "SELECT * FROM missing", vec![]).await else { panic!() };
        assert!(message.contains("no such table: missing"), "{message}");
    }

    #[tokio::test]
    async fn a_transaction_spans_execute_calls() {
        let c = memory();
        exec(&c, "CREATE TABLE t (x)", vec![]).await.unwrap();
        exec(&c, "BEGIN", vec![]).await.unwrap();
        exec(&c, "INSERT INTO t VALUES (1)", vec![]).await.unwrap();
        exec(&c, "ROLLBACK", vec![]).await.unwrap();
        exec(&c, "BEGIN", vec![]).await.unwrap();
        exec(&c, "INSERT INTO t VALUES (2)", vec![]).await.unwrap();
        exec(&c, "COMMIT", vec![]).await.unwrap();
        let result = exec(&c, "SELECT x FROM t", vec![]).await.unwrap();
        assert!(matches!(result.rows.as_slice(), [RowResult { values }] if matches!(values[..], [Value::Integer(2)])));
    }

    #[tokio::test]
    async fn oversized_results_are_refused() {
        let c = memory();
        let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) SELECT zeroblob(1048576) FROM n";
        let Err(Error::Io(message)) = exec(&c, sql, vec![]).await else { panic!() };
        assert!(message.contains("exceeds limit"), "{message}");
    }

    #[tokio::test]
    async fn an_abandoned_statement_is_interrupted() {
        let c = memory();
        let forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        assert!(tokio::time::timeout(Duration::from_millis(100), c.execute(forever.into(), vec![])).await.is_err());
        // The connection is free again soon, not after the heat death of the universe.
        let started = Instant::now();
        exec(&c, "SELECT 1", vec![]).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A database file (WAL) in a new directory.
    fn file_database() -> (Arc<Database>, tempfile::TempDir) {
        use super::super::database::Synchronous;
        let dir = tempfile::tempdir().unwrap();
        let config = crate::runtime_config::SqliteDatabaseConfig::Spin { path: Some(dir.path().join("t.db")) };
        (Arc::new(Database::open(&config, Synchronous::Full).unwrap()), dir)
    }

    /// Two guests' connections to one database file (WAL), with a table `t`.
    async fn two_connections_to_a_file_with_a_table() -> (GuestConnection, GuestConnection, tempfile::TempDir) {
        let (database, dir) = file_database();
        let connect = || GuestConnection::new(database.lease().unwrap(), in_a_minute());
        let (a, b) = (connect(), connect());
        exec(&a, "CREATE TABLE t (x INTEGER)", vec![]).await.unwrap();
        (a, b, dir)
    }

    /// In WAL mode, a transaction that read before another connection
    /// committed cannot write any more: SQLite fails it at once with
    /// "database is locked". With write turns the other connection waits
    /// for the transaction instead, and both succeed.
    #[tokio::test]
    async fn a_transaction_that_reads_then_writes_is_not_overtaken() {
        let (a, b, _dir) = two_connections_to_a_file_with_a_table().await;

        exec(&a, "BEGIN", vec![]).await.unwrap();
        exec(&a, "SELECT count(*) FROM t", vec![]).await.unwrap();
        let other = tokio::spawn(async move { exec(&b, "INSERT INTO t VALUES (2)", vec![]).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!other.is_finished(), "the other writer waits for the transaction");
        exec(&a, "INSERT INTO t VALUES (1)", vec![]).await.unwrap();
        exec(&a, "COMMIT", vec![]).await.unwrap();
        other.await.unwrap().unwrap();

        let rows = exec(&a, "SELECT x FROM t ORDER BY x", vec![]).await.unwrap().rows;
        let xs: Vec<_> = rows.iter().map(|r| matches!(r.values[..], [Value::Integer(x)] if x > 0)).collect();
        assert_eq!(xs, [true, true]);
    }

    #[tokio::test]
    async fn a_dropped_connection_gives_its_turn_back_and_rolls_back() {
        let (a, b, _dir) = two_connections_to_a_file_with_a_table().await;
        exec(&a, "BEGIN", vec![]).await.unwrap();
        exec(&a, "INSERT INTO t VALUES (1)", vec![]).await.unwrap();
        drop(a);
        exec(&b, "INSERT INTO t VALUES (2)", vec![]).await.unwrap();
        let rows = exec(&b, "SELECT x FROM t", vec![]).await.unwrap().rows;
        assert!(matches!(rows.as_slice(), [RowResult { values }] if matches!(values[..], [Value::Integer(2)])));
    }

    /// A read longer than the inline budget is interrupted on the worker and
    /// run again where blocking is allowed: the guest sees one whole answer,
    /// and the transaction it runs in goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_moves_off_the_worker_and_still_answers_in_full() {
        let c = memory();
        exec(&c, "CREATE TABLE t (x)", vec![]).await.unwrap();
        exec(&c, "BEGIN", vec![]).await.unwrap();
        exec(&c, "INSERT INTO t VALUES (1)", vec![]).await.unwrap();
        let long = "SELECT count(*) + (SELECT count(*) FROM t) FROM \
                    (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT i FROM n)";
        let result = exec(&c, long, vec![]).await.unwrap();
        assert!(matches!(result.rows[0].values[..], [Value::Integer(300_001)]), "{:?}", result.rows);
        assert!(c.budget.overran.load(Ordering::Relaxed), "it outran the inline budget");
        exec(&c, "COMMIT", vec![]).await.unwrap();
        let rows = exec(&c, "SELECT count(*) FROM t", vec![]).await.unwrap().rows;
        assert!(matches!(rows[0].values[..], [Value::Integer(1)]), "the transaction committed its insert");
    }

    #[test]
    fn the_inline_budget_interrupts_only_reads_and_only_while_armed() {
        let budget = InlineBudget {
            left: AtomicU32::new(u32::MAX),
            overran: AtomicBool::new(false),
            interrupts: AtomicBool::new(false),
        };
        assert!(!(0..1000).any(|_| budget.spend()), "disarmed: never");
        budget.arm(true);
        assert_eq!((0..=INLINE_STEPS).filter(|_| !budget.spend()).count(), INLINE_STEPS as usize);
        assert!(budget.disarm(), "it ran out");
        budget.arm(true);
        budget.spend();
        assert!(!budget.disarm());
        budget.arm(false);
        assert!(!(0..INLINE_STEPS * 3).any(|_| budget.spend()), "a write is never interrupted");
        assert!(budget.disarm(), "but its overrun is noted");
    }

    /// A write that outruns the inline budget finishes (a write cannot be
    /// interrupted and run again), and its database remembers it, so that
    /// next time it runs off the worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_write_finishes_and_is_remembered_as_heavy() {
        let c = memory();
        exec(&c, "CREATE TABLE t (x)", vec![]).await.unwrap();
        let long = "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
                    SELECT i FROM n";
        exec(&c, "INSERT INTO t VALUES (0)", vec![]).await.unwrap();
        assert!(!c.database.heavy().contains("INSERT INTO t VALUES (0)"), "a short write is not");
        exec(&c, long, vec![]).await.unwrap();
        assert!(c.database.heavy().contains(long));
        exec(&c, long, vec![]).await.unwrap();
        let rows = exec(&c, "SELECT count(*) FROM t", vec![]).await.unwrap().rows;
        assert!(matches!(rows[0].values[..], [Value::Integer(200_001)]), "both ran in full: {:?}", rows);
    }

    /// Guest connections leave checkpoints to the database, which runs them
    /// every so many commits: the log is copied into the database file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_checkpointed_into_the_database_file() {
        use super::super::checkpoint::COMMITS_PER_CHECKPOINT;
        let (database, dir) = file_database();
        let c = GuestConnection::new(database.lease().unwrap(), in_a_minute());
        let rows = exec(&c, "PRAGMA wal_autocheckpoint", vec![]).await.unwrap().rows;
        assert!(matches!(rows[0].values[..], [Value::Integer(0)]), "SQLite's own are off: {:?}", rows);
        exec(&c, "CREATE TABLE t (x)", vec![]).await.unwrap();
        for _ in 0..COMMITS_PER_CHECKPOINT {
            exec(&c, "INSERT INTO t VALUES (zeroblob(4096))", vec![]).await.unwrap();
        }
        let file = dir.path().join("t.db");
        let started = Instant::now();
        while std::fs::metadata(&file).unwrap().len() < u64::from(COMMITS_PER_CHECKPOINT) * 4096 {
            assert!(started.elapsed() < Duration::from_secs(10), "the log was never copied into {}", file.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Under a steady stream of commits, with readers on the log all the
    /// while, the log starts over after each round of checkpoints instead
    /// of growing: with PASSIVE checkpoints alone it grew by every commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_while_guests_keep_writing_and_reading() {
        use super::super::checkpoint::COMMITS_PER_CHECKPOINT;
        const ROUNDS: u32 = 16;
        const WRITERS: u32 = 4;
        let (database, dir) = file_database();
        let connect = || GuestConnection::new(database.lease().unwrap(), in_a_minute());
        exec(&connect(), "CREATE TABLE t (x)", vec![]).await.unwrap();
        let writing = Arc::new(AtomicBool::new(true));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (c, writing) = (connect(), writing.clone());
                tokio::spawn(async move {
                    while writing.load(Ordering::Relaxed) {
                        exec(&c, "SELECT count(*) FROM t", vec![]).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let c = connect();
                tokio::spawn(async move {
                    for _ in 0..COMMITS_PER_CHECKPOINT * ROUNDS / WRITERS {
                        // More than a page of the log a commit.
                        exec(&c, "INSERT INTO t VALUES (zeroblob(3000))", vec![]).await.unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        writing.store(false, Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        let page = 4096 + 24;
        let log = std::fs::metadata(dir.path().join("t.db-wal")).unwrap().len();
        // Without RESTART checkpoints it held every commit: 51 MB here. With
        // them it holds one round (3.3 MB), or two when a round's RESTART
        // did not make the log start over (6.4 MB, about one run in five of
        // this test): the bound, half a page a commit, lets two rounds
        // through and not a sixth of what the commits wrote.
        let appended = u64::from(COMMITS_PER_CHECKPOINT * ROUNDS) * page;
        assert!(log < appended / 2, "the log is {log} bytes, for at least {appended} bytes of commits: it did not start over");
        let rows = exec(&connect(), "SELECT count(*) FROM t", vec![]).await.unwrap().rows;
        assert!(matches!(rows[0].values[..], [Value::Integer(n)] if n == i64::from(COMMITS_PER_CHECKPOINT * ROUNDS)));
    }

    /// A lock held outside bazaar's connections (here a plain connection,
    /// as a `sqlite3` shell would hold it) does not stall the async worker:
    /// the guest's write waits for it where waiting is allowed, while the
    /// worker's other tasks go on, and succeeds once the lock is let go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_lock_held_by_another_process_is_waited_for_off_the_worker() {
        let (database, dir) = file_database();
        let c = GuestConnection::new(database.lease().unwrap(), in_a_minute());
        exec(&c, "CREATE TABLE t (x INTEGER)", vec![]).await.unwrap();
        let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)").unwrap();
        let (let_go, go) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            go.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
        });
        // Both on the one worker (the test's own body runs on another
        // thread): the second lets the lock go, so it can only run while the
        // write waits somewhere other than the worker.
        let started = Instant::now();
        let write = tokio::spawn(async move {
            let written = exec(&c, "INSERT INTO t VALUES (2)", vec![]).await;
            (c, written)
        });
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let_go.send(()).unwrap();
        });
        let (c, written) = write.await.unwrap();
        written.unwrap();
        // Had it waited on the worker, SQLite's busy handler would have given
        // up first (the lock is let go only once the worker is free).
        assert!(started.elapsed() < BUSY_TIMEOUT, "the write waited on the worker: {:?}", started.elapsed());
        holder.join().unwrap();
        let rows = exec(&c, "SELECT group_concat(x) FROM (SELECT x FROM t ORDER BY x)", vec![]).await.unwrap().rows;
        assert!(matches!(&rows[0].values[..], [Value::Text(both)] if both == "1,2"), "{rows:?}");
    }

    /// A write running on the worker stops at the request's deadline too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_stops_when_the_request_runs_out_of_time() {
        let deadline = Instant::now() + Duration::from_millis(200);
        let c = GuestConnection::new(memory_database().lease().unwrap(), deadline);
        exec(&c, "CREATE TABLE t (x)", vec![]).await.unwrap();
        let forever = "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n";
        let Err(Error::Io(message)) = exec(&c, forever, vec![]).await else { panic!("it ended") };
        assert!(message.contains("interrupted"), "{message}");
        let rows = exec(&c, "SELECT count(*) FROM t", vec![]).await.unwrap().rows;
        assert!(matches!(rows[0].values[..], [Value::Integer(0)]), "nothing of it stays: {:?}", rows);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_stops_when_the_request_runs_out_of_time() {
        let deadline = Instant::now() + Duration::from_millis(200);
        let c = GuestConnection::new(memory_database().lease().unwrap(), deadline);
        let forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let Err(Error::Io(message)) = exec(&c, forever, vec![]).await else { panic!("it ended") };
        assert!(message.contains("interrupted"), "{message}");
        assert!(Instant::now() < deadline + Duration::from_secs(5));
    }
}
