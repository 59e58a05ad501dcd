//! Where one named SQLite database lives, and how a guest's connection to it
//! is opened.
//!
//! A file database is the file the runtime config names (created on first
//! use, in WAL mode so readers and a writer do not block each other). An
//! in-memory one must be one database for every instance of the app, so it
//! is a named `memdb` database, which SQLite shares between the connections
//! of a process, kept alive by a connection of our own.
//!
//! Every connection waits up to [`BUSY_TIMEOUT`] for another's lock rather
//! than failing at once, and may not `ATTACH` (or `VACUUM INTO`) a file:
//! SQL must not become a way around the sandbox to the host's file system.
//! Attaching a new temporary or `:memory:` database stays allowed, as in Spin.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use super::checkpoint::{Checkpoints, Mode};
use super::heavy::HeavyWrites;
use super::pool::{Idle, Lease, Pooled};
use super::turn::WriteTurns;
use crate::runtime_config::SqliteDatabaseConfig;

/// How long a statement waits for another connection's lock before failing
/// with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a RESTART checkpoint, holding the write turn, waits for
/// readers to leave the log before it gives up until the next round.
const RESTART_WAIT: Duration = Duration::from_millis(50);

/// The most a database's write-ahead log keeps on disk once it starts
/// over: several rounds of checkpoints' worth of the shop's writes (about
/// 9 MB a round for orders.db under the benchmark mix).
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Runs `f` with SQLite's busy handler off: a lock another process holds
/// (a `sqlite3` shell writing to the file) fails it at once with BUSY
/// instead of making it sleep up to [`BUSY_TIMEOUT`], which the async
/// worker must not. The handler is back on afterwards.
pub fn without_waiting<T>(connection: &Connection, f: impl FnOnce(&Connection) -> T) -> T {
    waiting_at_most(connection, Duration::ZERO, f)
}

/// Runs `f` with SQLite's busy handler waiting up to `wait` for another
/// connection's lock instead of [`BUSY_TIMEOUT`], which it is back to
/// afterwards.
fn waiting_at_most<T>(connection: &Connection, wait: Duration, f: impl FnOnce(&Connection) -> T) -> T {
    let _ = connection.busy_timeout(wait);
    let result = f(connection);
    let _ = connection.busy_timeout(BUSY_TIMEOUT);
    result
}

/// How a commit reaches the disk (SQLite's `synchronous`, in WAL mode).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// A commit is in the write-ahead log when it returns, synced to disk at
    /// checkpoints: it survives any crash of bazaar; a power cut or an OS
    /// crash may roll back the last commits (never corrupting the file).
    /// WAL's usual setting, and about ten times cheaper a commit.
    #[default]
    Normal,
    /// Every commit waits for the disk (an fsync): it survives a power cut.
    Full,
}

impl Synchronous {
    /// The value of SQLite's `synchronous` pragma.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

pub struct Database {
    location: Location,
    synchronous: Synchronous,
    /// Who writes next (see `turn`).
    turns: WriteTurns,
    /// Connections guests gave back (see `pool`).
    idle: Idle,
    /// Writes that run off the async worker (see `heavy`).
    heavy: HeavyWrites,
    /// When to checkpoint (see `checkpoint`); only a file has a log.
    checkpoints: Checkpoints,
}

enum Location {
    File(PathBuf),
    /// A shared `memdb` database, which lives as long as `_keep_alive`.
    Memory {
        uri: String,
        _keep_alive: Mutex<Connection>,
    },
}

impl Database {
    /// Prepares the database `config` describes: creates a file's directory
    /// and turns on WAL, or creates the in-memory database.
    pub fn open(config: &SqliteDatabaseConfig, synchronous: Synchronous) -> Result<Self> {
        let SqliteDatabaseConfig::Spin { path } = config;
        match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                let connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
                connection.busy_timeout(BUSY_TIMEOUT)?;
                connection
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
                    .with_context(|| format!("turning on WAL in {}", path.display()))?;
                Ok(Database::at(Location::File(path.clone()), synchronous))
            }
            None => {
                let uri = new_memdb_uri();
                let keep_alive = Connection::open(&uri)?;
                let location = Location::Memory { uri, _keep_alive: Mutex::new(keep_alive) };
                Ok(Database::at(location, synchronous))
            }
        }
    }

    fn at(location: Location, synchronous: Synchronous) -> Self {
        Database {
            location,
            synchronous,
            turns: WriteTurns::default(),
            idle: Idle::default(),
            heavy: HeavyWrites::default(),
            checkpoints: Checkpoints::default(),
        }
    }

    pub fn heavy(&self) -> &HeavyWrites {
        &self.heavy
    }

    /// Called after a guest's commit: every so many, a checkpoint runs on
    /// the blocking pool (see `checkpoint`).
    pub fn committed(self: &Arc<Self>) {
        if !matches!(self.location, Location::File(_)) || !self.checkpoints.committed() {
            return;
        }
        let database = self.clone();
        tokio::spawn(async move {
            if let (Err(e), Location::File(path)) = (database.checkpoint().await, &database.location) {
                tracing::warn!(path = %path.display(), "checkpointing failed (the next one tries again): {e:#}");
            }
            database.checkpoints.finished();
        });
    }

    /// Copies the log into the database file: PASSIVE first, beside the
    /// guests' writes (the bulk of it); then RESTART in the write turn (the
    /// frames written meanwhile), so that the log starts over (see
    /// `checkpoint`).
    async fn checkpoint(self: &Arc<Self>) -> Result<()> {
        let database = self.clone();
        let passive = tokio::task::spawn_blocking(move || {
            // An idle connection when one waits: `wal_checkpoint` leaves no
            // setting behind, so the connection goes back to the pool.
            database.lease().and_then(|lease| database.checkpoints.checkpoint(&lease, Mode::Passive))
        })
        .await??;
        if passive.log_pages == 0 {
            return Ok(());
        }
        // Behind the writers already queued; none can start while it runs.
        let Some(turn) = self.turns.take(BUSY_TIMEOUT).await else {
            return Ok(());
        };
        let database = self.clone();
        let restarted = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let lease = database.lease()?;
            // Readers hold the log for a statement's time; one that holds it
            // longer makes this round give up rather than stall the writers.
            waiting_at_most(&lease, RESTART_WAIT, |connection| database.checkpoints.checkpoint(connection, Mode::Restart))
        })
        .await??;
        if let (false, Location::File(path)) = (restarted.complete(), &self.location) {
            tracing::debug!(path = %path.display(), ?restarted, "the log did not start over (a reader held it): the next round tries again");
        }
        Ok(())
    }

    /// A connection for a guest: an idle one (see `pool`), else a new one.
    /// Opening a new one blocks.
    pub fn lease(self: &Arc<Self>) -> rusqlite::Result<Lease> {
        let pooled = match self.idle.take() {
            Some(pooled) => pooled,
            None => self.connect()?,
        };
        Ok(Lease::new(pooled, self.clone()))
    }

    /// An idle connection, if one is waiting: never blocks.
    pub fn lease_idle(self: &Arc<Self>) -> Option<Lease> {
        self.idle.take().map(|pooled| Lease::new(pooled, self.clone()))
    }

    pub fn idle(&self) -> &Idle {
        &self.idle
    }

    /// A new connection, with the authorizer that keeps guests inside the
    /// sandbox and marks what must not outlive a guest.
    pub fn connect(&self) -> rusqlite::Result<Pooled> {
        let connection = match &self.location {
            Location::File(path) => Connection::open(path)?,
            Location::Memory { uri, .. } => Connection::open(uri)?,
        };
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "synchronous", self.synchronous.pragma())?;
        if matches!(self.location, Location::File(_)) {
            // The database checkpoints on the blocking pool instead (see
            // `checkpoint`).
            connection.pragma_update(None, "wal_autocheckpoint", 0)?;
            // A log that grew past this (a burst, or a build before the
            // RESTART checkpoints) is cut back when it starts over.
            connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        }
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // The query planner's stability guarantee: a cached statement keeps
        // its plan whatever is bound to it. Without it SQLite prepares a
        // statement with `x LIKE ?` again at every new pattern, in case a
        // prefix could use an index: in the shop's catalog searches
        // ('%word%', never a prefix) that was 4% of the host's CPU.
        connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let tainted = Arc::new(AtomicBool::new(false));
        let mark = tainted.clone();
        connection.authorizer(Some(move |context: AuthContext<'_>| authorize(context.action, &mark)));
        Ok(Pooled { connection, tainted })
    }
}

/// Prepared statements a connection keeps (rusqlite's default is 16; the
/// shop's busiest services run a few dozen distinct statements).
const STATEMENT_CACHE: usize = 64;

/// Pragmas that take an argument but leave no setting behind: they read,
/// or (`wal_checkpoint`) act on the file.
const READING_PRAGMAS: [&str; 10] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "wal_checkpoint",
];

/// The authorizer: denies `ATTACH` of anything but a new temporary (`''`)
/// or `':memory:'` database (`VACUUM INTO` attaches its target, so it is
/// denied too), and marks the connection `tainted` when a statement leaves
/// state on it that a later guest would see. Everything else is allowed.
fn authorize(action: AuthAction<'_>, tainted: &AtomicBool) -> Authorization {
    let taint = || tainted.store(true, Ordering::Release);
    match action {
        AuthAction::Attach { filename } => {
            if !filename.is_empty() && filename != ":memory:" {
                return Authorization::Deny;
            }
            taint();
        }
        AuthAction::Pragma { pragma_name, pragma_value: Some(_) }
            if !READING_PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            taint()
        }
        AuthAction::Detach { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => taint(),
        _ => {}
    }
    Authorization::Allow
}

/// The URI of a new in-memory database that every connection opening the
/// URI shares (SQLite's `memdb` VFS; a plain `:memory:` database is one per
/// connection). memdb names are process-wide: each call names a new one.
pub fn new_memdb_uri() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("file:/bazaar-{}?vfs=memdb", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Database {
    /// The write turns every connection to this database shares.
    pub fn turns(&self) -> WriteTurns {
        self.turns.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_database_gets_its_directory_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/app.db");
        let db = Database::open(&SqliteDatabaseConfig::Spin { path: Some(path.clone()) }, Synchronous::Normal).unwrap();
        let c = db.connect().unwrap().connection;
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert!(path.is_file());
    }

    #[test]
    fn connections_sync_commits_as_told() {
        let dir = tempfile::tempdir().unwrap();
        for (synchronous, level) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let config = SqliteDatabaseConfig::Spin { path: Some(dir.path().join("app.db")) };
            let c = Database::open(&config, synchronous).unwrap().connect().unwrap().connection;
            assert_eq!(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap(), level);
        }
    }

    #[test]
    fn in_memory_databases_are_shared_between_connections_but_not_databases() {
        let db = Database::open(&SqliteDatabaseConfig::Spin { path: None }, Synchronous::Normal).unwrap();
        let other = Database::open(&SqliteDatabaseConfig::Spin { path: None }, Synchronous::Normal).unwrap();
        db.connect().unwrap().connection.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        // A later connection sees it even with no other guest connection open.
        let n: i64 = db.connect().unwrap().connection.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        assert!(other.connect().unwrap().connection.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).is_err());
    }

    #[test]
    fn a_statement_keeps_its_plan_whatever_is_bound() {
        let db = Database::open(&SqliteDatabaseConfig::Spin { path: None }, Synchronous::Normal).unwrap();
        let c = db.connect().unwrap().connection;
        assert!(c.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG).unwrap());
    }

    #[test]
    fn guests_cannot_reach_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&SqliteDatabaseConfig::Spin { path: Some(dir.path().join("app.db")) }, Synchronous::Normal).unwrap();
        let c = db.connect().unwrap().connection;
        let elsewhere = dir.path().join("elsewhere.db");
        for sql in [format!("ATTACH '{}' AS x", elsewhere.display()), format!("VACUUM INTO '{}'", elsewhere.display())]
        {
            let e = c.execute_batch(&sql).unwrap_err().to_string();
            assert!(e.contains("not authorized") || e.contains("authorization denied"), "{sql}: {e}");
        }
        assert!(!elsewhere.exists());
        c.execute_batch("ATTACH ':memory:' AS scratch; ATTACH '' AS temp2;").unwrap();
    }
}
