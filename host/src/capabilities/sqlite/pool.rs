//! Idle connections, kept for the next guest.
//!
//! Opening a connection costs more than most statements a request runs: the
//! file is opened, the WAL index mapped, the pragmas set, the whole schema
//! parsed again at the first statement, and every statement prepared anew.
//! Measured on the shop at 64 clients, that setup and teardown was the
//! largest part of SQLite's share of the host's CPU. So a guest's connection
//! goes back to its database when the guest closes it (or its instance
//! ends), and the next `open` takes it, prepared statements and all. Spin
//! goes further and shares one connection per database between every
//! instance.
//!
//! A connection goes back only if it carries nothing of its guest into the
//! next: a transaction left open is rolled back, `last_insert_rowid` is reset
//! to 0 as on a new connection, and a connection on which the guest changed
//! a setting (a `PRAGMA` assignment), made a temporary table, index, view or
//! trigger, attached or detached a database, or whose statement was
//! interrupted is closed instead. The authorizer (`database`) marks those as
//! statements are prepared.
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, ffi};

use super::database::Database;

/// Idle connections kept per database; more are closed when given back.
/// Enough for the guests of a busy database to find one ready, few enough
/// that their page caches stay small (up to 2 MiB each).
pub const MAX_IDLE: usize = 16;

/// A connection with the mark its authorizer sets when a guest leaves state
/// on it that the next guest must not see.
pub struct Pooled {
    pub connection: Connection,
    pub tainted: Arc<AtomicBool>,
}

/// The idle connections of one database.
#[derive(Default)]
pub struct Idle {
    connections: Mutex<Vec<Pooled>>,
}

impl Idle {
    pub fn take(&self) -> Option<Pooled> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Keeps `pooled` for the next guest if it is clean, else closes it.
    fn give_back(&self, pooled: Pooled) {
        if pooled.tainted.load(Ordering::Acquire) {
            return;
        }
        let connection = &pooled.connection;
        if !connection.is_autocommit() && connection.execute_batch("ROLLBACK").is_err() {
            return;
        }
        // SAFETY: the handle is this connection's own and open.
        unsafe { ffi::sqlite3_set_last_insert_rowid(connection.handle(), 0) };
        let mut idle = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(pooled);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A guest's connection, given back to its database when dropped.
pub struct Lease {
    pooled: Option<Pooled>,
    database: Arc<Database>,
}

impl Lease {
    pub fn new(pooled: Pooled, database: Arc<Database>) -> Self {
        Self { pooled: Some(pooled), database }
    }

    /// The database the connection goes back to.
    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    /// The mark that keeps the connection from going back when set.
    pub fn tainted(&self) -> Arc<AtomicBool> {
        self.pooled.as_ref().expect("a lease holds its connection until dropped").tainted.clone()
    }
}

impl Deref for Lease {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.pooled.as_ref().expect("a lease holds its connection until dropped").connection
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            self.database.idle().give_back(pooled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::memory_database;
    use super::*;

    fn lease(db: &Arc<Database>) -> Lease {
        db.lease().unwrap()
    }

    #[test]
    fn a_clean_connection_is_reused_with_its_statements() {
        let db = memory_database();
        let first = lease(&db);
        first.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        first.prepare_cached("SELECT x FROM t").unwrap();
        let address = first.handle_address();
        drop(first);
        assert_eq!(db.idle().len(), 1);
        let second = lease(&db);
        assert_eq!(second.handle_address(), address, "the same connection");
        assert_eq!(second.last_insert_rowid(), 0, "reset as on a new connection");
        assert_eq!(db.idle().len(), 0);
    }

    #[test]
    fn an_open_transaction_is_rolled_back_before_reuse() {
        let db = memory_database();
        let first = lease(&db);
        first.execute_batch("CREATE TABLE t (x); BEGIN; INSERT INTO t VALUES (1);").unwrap();
        drop(first);
        let second = lease(&db);
        assert!(second.is_autocommit());
        assert_eq!(second.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }

    #[test]
    fn a_connection_left_with_guest_state_is_closed_not_reused() {
        for sql in [
            "PRAGMA foreign_keys = ON",
            "PRAGMA synchronous = OFF",
            "CREATE TEMP TABLE scratch (x)",
            "CREATE TABLE t (x); CREATE TEMP VIEW v AS SELECT x FROM t",
            "ATTACH ':memory:' AS scratch",
        ] {
            let db = memory_database();
            let first = lease(&db);
            first.execute_batch(sql).unwrap();
            drop(first);
            assert_eq!(db.idle().len(), 0, "{sql}");
        }
        // Reading a setting or a table's columns leaves nothing behind.
        let db = memory_database();
        let first = lease(&db);
        first.execute_batch("CREATE TABLE t (x); PRAGMA foreign_keys; PRAGMA table_info(t);").unwrap();
        drop(first);
        assert_eq!(db.idle().len(), 1);
    }

    #[test]
    fn a_tainted_lease_is_closed() {
        let db = memory_database();
        let first = lease(&db);
        first.tainted().store(true, Ordering::Release);
        drop(first);
        assert_eq!(db.idle().len(), 0);
    }

    #[test]
    fn at_most_max_idle_connections_are_kept() {
        let db = memory_database();
        let leases: Vec<Lease> = (0..MAX_IDLE + 4).map(|_| lease(&db)).collect();
        drop(leases);
        assert_eq!(db.idle().len(), MAX_IDLE);
    }

    impl Lease {
        fn handle_address(&self) -> usize {
            // SAFETY: only the address is read.
            unsafe { self.handle() as usize }
        }
    }
}
