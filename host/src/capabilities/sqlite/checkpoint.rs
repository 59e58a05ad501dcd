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
//!
//! A PASSIVE checkpoint alone does not let the log start over under steady
//! traffic. SQLite writes the log from its start again only when a writer
//! begins right after a checkpoint copied all of it and no reader is still
//! on the log; under load a writer is mid-transaction when the checkpoint
//! finishes, or a reader is on the log, and the writer appends. Under the
//! shop's benchmark mix orders.db's log grew by 23 MB a second, to half a
//! gigabyte in half a minute, though every PASSIVE checkpoint copied all it
//! saw: it would have filled the disk. So a RESTART one follows, run by a
//! database holding its write turn (`database`): no frame is added while
//! it copies the few written meanwhile and waits, briefly, for readers to
//! leave the log, after which the next commit writes the log from its
//! start.
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
    /// Whether it stopped short for a lock (a RESTART one, for a reader).
    pub busy: bool,
    pub log_pages: i64,
    pub copied_pages: i64,
}

impl Checkpointed {
    /// Whether the whole log is in the database file.
    pub fn complete(&self) -> bool {
        !self.busy && self.copied_pages == self.log_pages
    }
}

/// How a checkpoint treats the connections around it (SQLite's modes).
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Copies what no reader needs; never waits, never blocks a writer.
    Passive,
    /// Copies everything, waiting (busy handler) for writers and readers,
    /// and then for readers to leave the log, so that the next commit
    /// writes the log from its start.
    Restart,
}

impl Checkpoints {
    /// Counts a commit; whether a checkpoint is now due (and none is
    /// running), in which case the caller runs one and then calls
    /// [`Self::finished`] (or calls [`Self::run`]).
    pub fn committed(&self) -> bool {
        let commits = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        commits >= COMMITS_PER_CHECKPOINT && !self.running.swap(true, Ordering::AcqRel)
    }

    /// Runs a PASSIVE checkpoint on `connection` (it blocks), and ends the
    /// round.
    pub fn run(&self, connection: &Connection) -> rusqlite::Result<Checkpointed> {
        let result = self.checkpoint(connection, Mode::Passive);
        self.finished();
        result
    }

    /// Runs a checkpoint in `mode` on `connection` (it blocks); the round
    /// goes on until [`Self::finished`].
    pub fn checkpoint(&self, connection: &Connection, mode: Mode) -> rusqlite::Result<Checkpointed> {
        if matches!(mode, Mode::Passive) {
            self.commits.store(0, Ordering::Relaxed);
        }
        let sql = match mode {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
        };
        connection.query_row(sql, [], |row| {
            Ok(Checkpointed { busy: row.get::<_, i64>(0)? != 0, log_pages: row.get(1)?, copied_pages: row.get(2)? })
        })
    }

    /// Ends the round: the next due commit starts another.
    pub fn finished(&self) {
        self.running.store(false, Ordering::Release);
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
        assert!(done.log_pages > 0 && done.complete(), "{done:?}");
        let due = (0..COMMITS_PER_CHECKPOINT).filter(|_| checkpoints.committed()).count();
        assert_eq!(due, 1, "due again after a run");
    }
}
