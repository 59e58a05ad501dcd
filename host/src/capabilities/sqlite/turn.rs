//! Write turns: one writing connection at a time per database, in the order
//! they asked.
//!
//! SQLite itself lets one connection write at a time and makes the others
//! poll: a waiting connection sleeps, up to 100 ms at a time, and tries
//! again, so under load a newcomer can take the lock ahead of a connection
//! that has waited for seconds, which then fails with "database is locked"
//! when its busy timeout runs out. And in WAL mode a transaction that read
//! first cannot write at all if another connection committed since its read
//! (`SQLITE_BUSY_SNAPSHOT`, reported as "database is locked" at once, with
//! no waiting).
//!
//! So the host hands out write turns itself, first come first served, and a
//! connection takes one before any statement that may write, or that starts
//! a transaction, and keeps it until it is back in autocommit mode. Writers
//! then queue without polling and without holding a thread, a transaction
//! never sees another's commit between its first read and its write, and
//! plain `SELECT`s outside a transaction still run beside the writer (WAL).
//! SQLite's own busy timeout stays as the fallback for other processes
//! using the same file (a `spin up`, the `sqlite3` shell).
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// The turns of one database.
#[derive(Clone, Default)]
pub struct WriteTurns {
    // tokio's mutex is fair: waiters get it in the order they asked.
    lock: Arc<Mutex<()>>,
}

/// A connection's turn to write, until dropped.
pub struct Turn {
    _guard: OwnedMutexGuard<()>,
}

impl WriteTurns {
    /// Waits for the turn, up to `timeout`; `None` if it did not come.
    pub async fn take(&self, timeout: Duration) -> Option<Turn> {
        let guard = tokio::time::timeout(timeout, self.lock.clone().lock_owned()).await.ok()?;
        Some(Turn { _guard: guard })
    }
}

/// Whether `sql` may write or start a transaction: everything but a plain
/// `SELECT`, `VALUES` or `EXPLAIN`. Erring towards "may write" only costs
/// some concurrency; the other way would let a write skip the queue.
pub fn may_write(sql: &str) -> bool {
    let keyword = first_keyword(sql);
    !["SELECT", "VALUES", "EXPLAIN"].iter().any(|read| keyword.eq_ignore_ascii_case(read))
}

/// The statement's first word, past white space and comments.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_everything_else() {
        for read in ["SELECT 1", "  select * from t", "-- note\nSELECT 1", "/* a */ /* b */ Select 1", "VALUES (1)", "EXPLAIN SELECT 1"] {
            assert!(!may_write(read), "{read}");
        }
        for write in [
            "INSERT INTO t VALUES (1)",
            "update t set x = 1",
            "DELETE FROM t",
            "BEGIN",
            "begin immediate",
            "SAVEPOINT a",
            "CREATE TABLE t (x)",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "PRAGMA user_version = 3",
            "-- only a comment",
            "",
            "SELECTED", // not a keyword we know: assume the worst
        ] {
            assert!(may_write(write), "{write}");
        }
    }

    #[tokio::test]
    async fn turns_are_given_in_the_order_they_were_asked() {
        let turns = WriteTurns::default();
        let first = turns.take(Duration::from_secs(1)).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (turns, order) = (turns.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = turns.take(Duration::from_secs(5)).await.unwrap();
                order.lock().unwrap().push(i);
            }));
            // Let waiter i queue before waiter i + 1 asks.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(first);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_turn_that_does_not_come_in_time_is_none() {
        let turns = WriteTurns::default();
        let _held = turns.take(Duration::from_secs(1)).await.unwrap();
        assert!(turns.take(Duration::from_millis(50)).await.is_none());
    }
}
