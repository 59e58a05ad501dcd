//! Group commit: the writes of a SQLite key-value store, committed together.
//!
//! Every commit of a SQLite file waits for the disk (an `fsync`, about a
//! third of a millisecond on our machines), and a store serves one write at
//! a time. A store written on every request, as the gateway's rate-limit
//! counters are, would queue every request behind that wait. So one thread
//! owns the store's write connection; writes queue for it, and each round
//! it takes every write waiting, applies each in a savepoint of its own,
//! and commits them in one transaction: one wait for the disk, however many
//! writes. Each write's caller is answered only after that commit, so a
//! write that returned is on disk, exactly as with one commit per write.
//! A write that fails rolls back its own savepoint and leaves the others be.
//!
//! When commits do not wait for the disk (`--sqlite-synchronous normal`, the
//! default), there is no wait to share, and the trip to the writer thread and
//! back (two thread wake-ups, and a wake-up from outside the runtime that
//! lands in its global queue) cost more than the write. Then a write runs
//! right on the async worker, in a transaction of its own, whenever the
//! connection is free and SQLite's write lock can be had at once; otherwise
//! (the writer thread is committing a group, another process writes the
//! file) it queues as before. SQLite's own checkpoints are off on such a
//! store; the store checkpoints every so many commits, never on the async
//! worker: after an inline write on the blocking pool, after a group on the
//! writer thread (see `sqlite::checkpoint`).
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use anyhow::{Result, anyhow};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::capabilities::sqlite::{Checkpoints, multi_threaded, without_waiting};

/// Most writes in one transaction: bounds how long a round holds the lock.
const MAX_BATCH: usize = 256;

/// One queued write.
trait Job: Send {
    /// Runs the write on the connection; whether it succeeded.
    fn apply(&mut self, connection: &Connection) -> bool;
    /// Answers the caller, once the transaction's fate is known (`Err`:
    /// nothing of the round was committed).
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

struct Write<T, F> {
    write: Option<F>,
    result: Option<Result<T>>,
    answer: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn apply(&mut self, connection: &Connection) -> bool {
        let Some(write) = self.write.take() else { return false };
        let result = catch_unwind(AssertUnwindSafe(|| write(connection)))
            .unwrap_or_else(|_| Err(anyhow!("a key-value write panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(anyhow!("the write was not run")),
            (Err(e), _) => Err(anyhow!("committing the write failed: {e}")),
        };
        let _ = self.answer.send(result);
    }
}

/// The queue to a store's writer thread. The thread ends when this is
/// dropped.
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    connection: Arc<Mutex<Connection>>,
    inline: Inline,
    checkpoints: Arc<Checkpoints>,
}

/// Whether writes may run on the async worker (see the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inline {
    /// Every write goes to the writer thread (commits wait for the disk).
    Never,
    /// When the connection is free; the store's log is then checkpointed by
    /// the writer itself.
    WhenFree,
}

impl Writer {
    /// Starts the writer thread, which shares `connection` with writes that
    /// run inline.
    pub fn start(name: &str, connection: Connection, inline: Inline) -> Result<Self> {
        let checkpointed = inline == Inline::WhenFree;
        if checkpointed {
            connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        let (jobs, queue) = mpsc::channel();
        let connection = Arc::new(Mutex::new(connection));
        let checkpoints = Arc::new(Checkpoints::default());
        // The writer's own rounds count towards checkpoints too, or a store
        // whose writes all queued would never be checkpointed.
        let thread_checkpoints = checkpointed.then(|| checkpoints.clone());
        let shared = connection.clone();
        std::thread::Builder::new()
            .name(format!("kv-writer {name}"))
            .spawn(move || run(&shared, &queue, thread_checkpoints.as_deref()))
            .map_err(|e| anyhow!("starting the writer thread of key-value store {name:?}: {e}"))?;
        Ok(Self { jobs, connection, inline, checkpoints })
    }

    /// Runs `write` in the next group and returns its result once the
    /// group has committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let write = match self.write_inline(write) {
            Ok(result) => return result,
            Err(write) => write,
        };
        let (answer, answered) = oneshot::channel();
        let job = Box::new(Write { write: Some(write), result: None, answer });
        self.jobs.send(job).map_err(|_| anyhow!("the key-value store's writer has stopped"))?;
        answered.await.map_err(|_| anyhow!("the key-value store's writer stopped before answering"))?
    }
}

impl Writer {
    /// Runs `write` here, in a transaction of its own, if this store allows
    /// it and the connection and SQLite's write lock are free at once; else
    /// gives `write` back, to be queued.
    fn write_inline<T, F>(&self, write: F) -> Result<Result<T>, F>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        if self.inline != Inline::WhenFree {
            return Err(write);
        }
        if !multi_threaded() {
            return Err(write);
        }
        let Ok(connection) = self.connection.try_lock() else { return Err(write) };
        // Another process holding the lock must not make this worker wait.
        if without_waiting(&connection, |connection| connection.execute_batch("BEGIN IMMEDIATE")).is_err() {
            return Err(write);
        }
        let result = catch_unwind(AssertUnwindSafe(|| write(&connection)))
            .unwrap_or_else(|_| Err(anyhow!("a key-value write panicked")));
        let ended = connection.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
        let result = match (result, ended) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => {
                let _ = connection.execute_batch("ROLLBACK");
                Err(anyhow!("committing the write failed: {e}"))
            }
            (Err(e), _) => Err(e),
        };
        drop(connection);
        if self.checkpoints.committed() {
            let (connection, schedule) = (self.connection.clone(), self.checkpoints.clone());
            tokio::task::spawn_blocking(move || {
                checkpoint(&schedule, &connection.lock().unwrap_or_else(PoisonError::into_inner));
            });
        }
        Ok(result)
    }
}

/// The writer thread: one transaction per round, until the queue closes.
fn run(connection: &Mutex<Connection>, queue: &mpsc::Receiver<Box<dyn Job>>, checkpoints: Option<&Checkpoints>) {
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        while round.len() < MAX_BATCH
            && let Ok(job) = queue.try_recv()
        {
            round.push(job);
        }
        let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
        commit_round(&connection, round);
        if let Some(checkpoints) = checkpoints
            && checkpoints.committed()
        {
            checkpoint(checkpoints, &connection);
        }
    }
}

/// Runs a checkpoint that is due (it blocks); a failure is only logged.
fn checkpoint(checkpoints: &Checkpoints, connection: &Connection) {
    if let Err(e) = checkpoints.run(connection) {
        tracing::warn!("checkpointing a key-value store failed (the next one tries again): {e}");
    }
}

fn commit_round(connection: &Connection, mut round: Vec<Box<dyn Job>>) {
    let sql = |statement: &str| connection.execute_batch(statement).map_err(|e| e.to_string());
    // IMMEDIATE takes the write lock up front, so another process writing
    // the same file makes this wait (busy timeout) rather than fail halfway.
    let mut outcome = sql("BEGIN IMMEDIATE");
    let began = outcome.is_ok();
    for job in &mut round {
        if outcome.is_err() {
            break;
        }
        outcome = sql("SAVEPOINT write").and_then(|()| {
            if job.apply(connection) {
                sql("RELEASE write")
            } else {
                sql("ROLLBACK TO write").and_then(|()| sql("RELEASE write"))
            }
        });
    }
    if began {
        outcome = outcome.and_then(|()| sql("COMMIT"));
        if outcome.is_err() {
            let _ = sql("ROLLBACK");
        }
    }
    for job in round {
        job.answer(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("kv.db")).unwrap();
        connection.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)").unwrap();
        (Writer::start("test", connection, Inline::Never).unwrap(), dir)
    }

    fn insert(k: &'static str, v: i64) -> impl FnOnce(&Connection) -> Result<usize> + Send + 'static {
        move |c: &Connection| Ok(c.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", rusqlite::params![k, v])?)
    }

    fn rows(dir: &tempfile::TempDir) -> Vec<(String, i64)> {
        let c = Connection::open(dir.path().join("kv.db")).unwrap();
        let mut s = c.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    }

    /// Writes queued together commit together, and one that fails (or
    /// panics) takes only itself back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_takes_back_only_itself() {
        let (writer, dir) = writer();
        let writer = Arc::new(writer);
        // Hold the writer busy so the next writes queue into one round.
        let busy = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer.write(|_| Ok(std::thread::sleep(Duration::from_millis(200)))).await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (a, dup, boom, b) = tokio::join!(
            writer.write(insert("a", 1)),
            writer.write(|c: &Connection| {
                c.execute("INSERT INTO t (k, v) VALUES ('z', 1)", [])?;
                // Fails after a change of its own: that change goes too.
                Ok(c.execute("INSERT INTO t (k, v) VALUES ('z', 2)", [])?)
            }),
            writer.write(|_: &Connection| -> Result<()> { panic!("boom") }),
            writer.write(insert("b", 2)),
        );
        busy.await.unwrap().unwrap();
        assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
        assert!(dup.unwrap_err().to_string().contains("UNIQUE"));
        assert!(boom.unwrap_err().to_string().contains("panicked"));
        assert_eq!(rows(&dir), [("a".to_string(), 1), ("b".to_string(), 2)]);
        // The writer goes on.
        writer.write(insert("c", 3)).await.unwrap();
        assert_eq!(rows(&dir).len(), 3);
    }

    /// With commits that do not wait for the disk, a write runs on the
    /// worker when it can; when another process holds the file's write lock,
    /// it queues for the writer thread instead of holding the worker, and
    /// lands once the lock is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_writes_commit_and_queue_behind_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let connection = Connection::open(&path).unwrap();
        connection.pragma_update(None, "journal_mode", "WAL").unwrap();
        connection.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)").unwrap();
        let writer = Writer::start("test", connection, Inline::WhenFree).unwrap();
        let autocheckpoint: i64 =
            writer.connection.lock().unwrap().query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(autocheckpoint, 0, "the writer checkpoints itself");
        writer.write(insert("a", 1)).await.unwrap();
        assert_eq!(rows(&dir), [("a".to_string(), 1)], "committed");
        assert!(writer.write(|_: &Connection| -> Result<()> { Err(anyhow!("no")) }).await.is_err());

        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let queued = tokio::spawn(async move { writer.write(insert("b", 2)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!queued.is_finished(), "it waits for the lock");
        other.execute_batch("COMMIT").unwrap();
        queued.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(rows(&dir), [("a".to_string(), 1), ("b".to_string(), 2)]);
    }
}
