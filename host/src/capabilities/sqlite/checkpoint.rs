//! Checkpoints, off the async worker.
//!
//! SQLite copies its write-ahead log into the database file (a checkpoint)
//! inside whichever commit makes the log pass 1,000 pages: two fsyncs and a
//! few megabytes written. Guests' writes run on the async worker (see
//! `connection`), so that commit would hold the worker, and the database's
//! write turn, for all of it. Guest connections to a file therefore turn
//! SQLite's automatic checkpoints off (`wal_autocheckpoint = 0`), and the
//! database runs one itself on the blocking pool every
//! [`COMMITS_PER_CHECKPOINT`] commits. It is a PASSIVE checkpoint: it copies
//! what no reader still needs, never waits for a lock and never blocks a
//! writer; what it leaves is copied by the next one.
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rusqlite::Connection;

/// Commits between checkpoints. The shop's transactions write a few pages
/// each, so the log stays around SQLite's own 1,000-page threshold.
pub const COMMITS_PER_CHECKPOINT: u32 = 256;

/// The checkpoint schedule of one database file.
#[derive(Default)]
pub struct Checkpoints {
    commits: AtomicU32,
    running: AtomicBool,
}

/// What a checkpoint did, in pages of the log (SQLite's `wal_checkpoint`).
#[derive(Debug, PartialEq, Eq)]
pub struct Checkpointed {
    pub log_pages: i64,
    pub copied_pages: i64,
}

impl Checkpoints {
    /// Counts a commit; whether a checkpoint is now due (and none is
    /// running), in which case the caller runs [`Self::run`].
    pub fn committed(&self) -> bool {
        let commits = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        commits >= COMMITS_PER_CHECKPOINT && !self.running.swap(true, Ordering::AcqRel)
    }

    /// Runs a PASSIVE checkpoint on `connection` (it blocks).
    pub fn run(&self, connection: &Connection) -> rusqlite::Result<Checkpointed> {
        self.commits.store(0, Ordering::Relaxed);
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok(Checkpointed { log_pages: row.get(1)?, copied_pages: row.get(2)? })
        });
        self.running.store(false, Ordering::Release);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_every_so_many_commits_one_at_a_time() {
        let checkpoints = Checkpoints::default();
        let due = (0..COMMITS_PER_CHECKPOINT).filter(|_| checkpoints.committed()).count();
        assert_eq!(due, 1, "due once the count is reached");
        assert!(!checkpoints.committed(), "not again while the first runs");
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("db")).unwrap();
        connection.pragma_update(None, "journal_mode", "WAL").unwrap();
        connection.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        connection.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        let done = checkpoints.run(&connection).unwrap();
        assert!(done.log_pages > 0 && done.copied_pages == done.log_pages, "{done:?}");
        let due = (0..COMMITS_PER_CHECKPOINT).filter(|_| checkpoints.committed()).count();
        assert_eq!(due, 1, "due again after a run");
    }
}
