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
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use anyhow::{Result, anyhow};
use rusqlite::Connection;
use tokio::sync::oneshot;

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
}

impl Writer {
    /// Starts the writer thread, which owns `connection`.
    pub fn start(name: &str, connection: Connection) -> Result<Self> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("kv-writer {name}"))
            .spawn(move || run(&connection, &queue))
            .map_err(|e| anyhow!("starting the writer thread of key-value store {name:?}: {e}"))?;
        Ok(Self { jobs })
    }

    /// Runs `write` in the next group and returns its result once the
    /// group has committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job = Box::new(Write { write: Some(write), result: None, answer });
        self.jobs.send(job).map_err(|_| anyhow!("the key-value store's writer has stopped"))?;
        answered.await.map_err(|_| anyhow!("the key-value store's writer stopped before answering"))?
    }
}

/// The writer thread: one transaction per round, until the queue closes.
fn run(connection: &Connection, queue: &mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        while round.len() < MAX_BATCH
            && let Ok(job) = queue.try_recv()
        {
            round.push(job);
        }
        commit_round(connection, round);
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
        (Writer::start("test", connection).unwrap(), dir)
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
}
