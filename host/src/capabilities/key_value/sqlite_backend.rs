//! The `spin` key-value store kind: a SQLite file, laid out exactly as Spin
//! lays it out, so a Spin state directory works under bazaar and back.
//!
//! Spin keeps every store in one table, `spin_key_value (store, key, value)`,
//! with the store's label in the `store` column, and `increment` stores the
//! counter as 8 little-endian bytes (spinframework/spin,
//! crates/key-value-spin/src/store.rs). We add WAL mode and a busy timeout so
//! several instances, or a bazaar and a `spin up` on the same files, wait for
//! each other instead of failing.
//!
//! Reads go through read connections, one per core: a lookup by key (or a
//! few, `get-many`) runs right on the async worker (a few microseconds of a
//! warm B-tree, less than a trip to tokio's blocking pool and back, which
//! also woke a thread per read), a scan of every key on the blocking pool.
//! With one read connection, two workers reading the same store at once
//! sent one of them to the blocking pool: under the benchmark mix that trip
//! was about 1% of the machine's CPU. Writes go to the store's writer
//! thread, which commits the writes waiting at the same moment in one
//! transaction ([`group_commit`](super::group_commit)).
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, anyhow};
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use super::backend::{Backend, Entry};
use super::group_commit::{Inline, Writer};
use crate::capabilities::sqlite::{BUSY_TIMEOUT, Synchronous};


const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,

    PRIMARY KEY (store, key)
)";
const GET: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const SET: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
    ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

/// One store in a SQLite database file.
pub struct SqliteBackend {
    store: Arc<str>,
    /// Read connections; a lookup takes whichever is free.
    readers: Arc<[Mutex<Connection>]>,
    writer: Writer,
}

impl SqliteBackend {
    /// Opens store `label` in the database file at `path`, creating the
    /// file, its directory and the table as needed; commits sync as
    /// `synchronous` says (`bazaar up --sqlite-synchronous`). A store without
    /// a path is a [`super::memory_backend::MemoryBackend`].
    pub fn open(path: &Path, label: &str, synchronous: Synchronous) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let writer = Connection::open(path)?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
        writer.pragma_update(None, "synchronous", synchronous.pragma())?;
        writer.execute(SCHEMA, [])?;
        let readers = (0..read_connections())
            .map(|_| {
                let reader = Connection::open(path)?;
                reader.busy_timeout(BUSY_TIMEOUT)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            store: label.into(),
            readers: readers.into(),
            writer: Writer::start(label, writer, match synchronous {
                Synchronous::Normal => Inline::WhenFree,
                Synchronous::Full => Inline::Never,
            })?,
        })
    }

    /// Runs `f`, a lookup by key, on a free read connection right here; on
    /// the blocking pool if scans or other workers hold them all.
    fn lookup<T, F>(&self, f: F) -> BoxFuture<'_, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> Result<T> + Send + 'static,
    {
        match self.readers.iter().find_map(|reader| reader.try_lock().ok()) {
            Some(connection) => {
                let result = f(&connection, &self.store);
                Box::pin(std::future::ready(result))
            }
            None => self.read(f),
        }
    }

    /// Runs `f` on the first read connection on the blocking pool.
    fn read<T, F>(&self, f: F) -> BoxFuture<'_, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let store = self.store.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let connection = readers[0].lock().unwrap_or_else(PoisonError::into_inner);
                f(&connection, &store)
            })
            .await?
        })
    }

    /// Runs `f` in the writer's next group commit.
    fn write<T, F>(&self, f: F) -> BoxFuture<'_, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        Box::pin(self.writer.write(move |connection| f(connection, &store)))
    }
}

/// Read connections per store: one per core, as many as tokio has workers
/// that may look up at the same moment, and at least two, so that a scan
/// (which holds one on the blocking pool) never sends lookups there too.
fn read_connections() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

/// A counter's value from its stored bytes (the `spin` kind's encoding,
/// in memory too).
pub(super) fn counter(key: &str, bytes: Option<Vec<u8>>) -> Result<i64> {
    match bytes {
        None => Ok(0),
        Some(bytes) => Ok(i64::from_le_bytes(bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow!("cannot increment {key:?}: its value is {} bytes, not a 64-bit integer (8 bytes)", bytes.len())
        })?)),
    }
}

impl Backend for SqliteBackend {
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        self.lookup(move |c, store| Ok(c.prepare_cached(GET)?.query_row(params![store, key], |r| r.get(0)).optional()?))
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        self.write(move |c, store| {
            c.prepare_cached(SET)?.execute(params![store, key, value])?;
            Ok(())
        })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<()>> {
        self.write(move |c, store| {
            c.prepare_cached(DELETE)?.execute(params![store, key])?;
            Ok(())
        })
    }

    fn exists(&self, key: String) -> BoxFuture<'_, Result<bool>> {
        self.lookup(move |c, store| Ok(c.prepare_cached(GET)?.exists(params![store, key])?))
    }

    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.read(|c, store| {
            let mut statement = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
            let keys = statement.query_map([store], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok(keys)
        })
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<Entry>>> {
        self.lookup(move |c, store| {
            // One read transaction, so the values are of one moment.
            let tx = c.unchecked_transaction()?;
            let mut statement = tx.prepare_cached(GET)?;
            keys.into_iter()
                .map(|key| {
                    let value = statement.query_row(params![store, key], |r| r.get(0)).optional()?;
                    Ok((key, value))
                })
                .collect()
        })
    }

    // A batch is one write: all of it commits, or none.
    fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<()>> {
        self.write(move |c, store| {
            for (key, value) in entries {
                c.prepare_cached(SET)?.execute(params![store, key, value])?;
            }
            Ok(())
        })
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<()>> {
        self.write(move |c, store| {
            for key in keys {
                c.prepare_cached(DELETE)?.execute(params![store, key])?;
            }
            Ok(())
        })
    }

    fn increment(&self, key: String, delta: i64) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            // Adding nothing to an existing counter is a read: no commit.
            if delta == 0 {
                let read = key.clone();
                let bytes = self
                    .lookup(move |c, store| Ok(c.prepare_cached(GET)?.query_row(params![store, read], |r| r.get(0)).optional()?))
                    .await?;
                if bytes.is_some() {
                    return counter(&key, bytes);
                }
            }
            self.write(move |c, store| {
                // The writer's transaction holds the write lock: nobody
                // changes the counter between this read and the write.
                let current = counter(&key, c.prepare_cached(GET)?.query_row(params![store, key], |r| r.get(0)).optional()?)?;
                let new = current
                    .checked_add(delta)
                    .ok_or_else(|| anyhow!("cannot increment {key:?}: {current} + {delta} overflows a 64-bit integer"))?;
                c.prepare_cached(SET)?.execute(params![store, key, new.to_le_bytes()])?;
                Ok(new)
            })
            .await
        })
    }

    fn compare_and_swap(&self, key: String, expected: Option<Vec<u8>>, value: Vec<u8>) -> BoxFuture<'_, Result<bool>> {
        self.write(move |c, store| {
            let changed = match expected {
                Some(expected) => c
                    .prepare_cached("UPDATE spin_key_value SET value = ?3 WHERE store = ?1 AND key = ?2 AND value = ?4")?
                    .execute(params![store, key, value, expected])?,
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (store, key) DO NOTHING",
                    )?
                    .execute(params![store, key, value])?,
            };
            Ok(changed == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a file of its own, with the directory that holds it.
    fn fresh() -> (tempfile::TempDir, SqliteBackend) {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteBackend::open(&dir.path().join("kv.db"), "default", Synchronous::Normal).unwrap();
        (dir, kv)
    }

    #[tokio::test]
    async fn a_lookup_takes_any_free_read_connection_and_waits_when_none_is() {
        let (_dir, kv) = fresh();
        let kv = Arc::new(kv);
        kv.set("k".into(), b"v".to_vec()).await.unwrap();
        assert!(kv.readers.len() >= 2, "one read connection per core, at least two");
        let value = || kv.get("k".into());

        // Every connection but the last busy: answered at once, on this worker.
        let held: Vec<_> = kv.readers[..kv.readers.len() - 1].iter().map(|r| r.lock().unwrap()).collect();
        let mut now = std::pin::pin!(value());
        let answered = futures::poll!(now.as_mut());
        assert!(matches!(answered, std::task::Poll::Ready(Ok(Some(ref v))) if v == b"v"), "{answered:?}");
        drop(held);

        // All of them busy: the lookup waits on the blocking pool, then answers.
        let held: Vec<_> = kv.readers.iter().map(|r| r.lock().unwrap()).collect();
        let waiting = tokio::spawn({
            let kv = kv.clone();
            async move { kv.get("k".into()).await.unwrap() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "answered while every read connection was held");
        drop(held);
        assert_eq!(waiting.await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn get_set_delete_exists_keys() {
        let (_dir, kv) = fresh();
        assert_eq!(kv.get("a".into()).await.unwrap(), None);
        assert!(!kv.exists("a".into()).await.unwrap());
        kv.delete("a".into()).await.unwrap();
        kv.set("b".into(), b"2".to_vec()).await.unwrap();
        kv.set("a".into(), b"1".to_vec()).await.unwrap();
        kv.set("a".into(), b"one".to_vec()).await.unwrap();
        assert_eq!(kv.get("a".into()).await.unwrap().as_deref(), Some(&b"one"[..]));
        assert!(kv.exists("a".into()).await.unwrap());
        assert_eq!(kv.keys().await.unwrap(), ["a", "b"]);
        kv.delete("a".into()).await.unwrap();
        assert_eq!(kv.keys().await.unwrap(), ["b"]);
    }

    #[tokio::test]
    async fn a_file_store_persists_and_matches_spins_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet/kv.db");
        let kv = SqliteBackend::open(&path, "cache", Synchronous::Normal).unwrap();
        kv.set("k".into(), b"v".to_vec()).await.unwrap();
        kv.increment("n".into(), 5).await.unwrap();
        drop(kv);

        let kv = SqliteBackend::open(&path, "cache", Synchronous::Normal).unwrap();
        assert_eq!(kv.get("k".into()).await.unwrap().as_deref(), Some(&b"v"[..]));
        // Another label in the same file is another store.
        let other = SqliteBackend::open(&path, "other", Synchronous::Normal).unwrap();
        assert_eq!(other.keys().await.unwrap(), Vec::<String>::new());

        // The rows are Spin's: (store, key, value), counters as i64 LE.
        let raw = Connection::open(&path).unwrap();
        let rows: Vec<(String, String, Vec<u8>)> = raw
            .prepare("SELECT store, key, value FROM spin_key_value ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [("cache".into(), "k".into(), b"v".to_vec()), ("cache".into(), "n".into(), 5i64.to_le_bytes().to_vec())]
        );
    }

    #[tokio::test]
    async fn a_file_store_syncs_commits_as_told() {
        let dir = tempfile::tempdir().unwrap();
        for (synchronous, level) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let kv = SqliteBackend::open(&dir.path().join("kv.db"), "s", synchronous).unwrap();
            let read = kv.write(|c, _| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?));
            assert_eq!(read.await.unwrap(), level, "{synchronous:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        // Two connections to one file, as two processes would have.
        let stores = [
            Arc::new(SqliteBackend::open(&path, "default", Synchronous::Normal).unwrap()),
            Arc::new(SqliteBackend::open(&path, "default", Synchronous::Normal).unwrap()),
        ];
        let (tasks, increments) = (8, 50);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let kv = stores[t % 2].clone();
                tokio::spawn(async move {
                    for _ in 0..increments {
                        kv.increment("hits".into(), 1).await.unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(stores[0].increment("hits".into(), 0).await.unwrap(), (tasks * increments) as i64);
    }

    #[tokio::test]
    async fn increment_starts_at_zero_and_rejects_non_counters() {
        let (_dir, kv) = fresh();
        assert_eq!(kv.increment("n".into(), 3).await.unwrap(), 3);
        assert_eq!(kv.increment("n".into(), -10).await.unwrap(), -7);
        kv.set("s".into(), b"hello".to_vec()).await.unwrap();
        let e = kv.increment("s".into(), 1).await.unwrap_err().to_string();
        assert!(e.contains("\"s\"") && e.contains("5 bytes"), "{e}");
        kv.set("max".into(), i64::MAX.to_le_bytes().to_vec()).await.unwrap();
        assert!(kv.increment("max".into(), 1).await.unwrap_err().to_string().contains("overflows"));
    }

    #[tokio::test]
    async fn compare_and_swap_checks_the_expected_value() {
        let (_dir, kv) = fresh();
        // Absent expected: only inserts.
        assert!(kv.compare_and_swap("k".into(), None, b"1".to_vec()).await.unwrap());
        assert!(!kv.compare_and_swap("k".into(), None, b"2".to_vec()).await.unwrap());
        // Present expected: only replaces that value.
        assert!(!kv.compare_and_swap("k".into(), Some(b"0".to_vec()), b"2".to_vec()).await.unwrap());
        assert!(kv.compare_and_swap("k".into(), Some(b"1".to_vec()), b"2".to_vec()).await.unwrap());
        assert_eq!(kv.get("k".into()).await.unwrap().as_deref(), Some(&b"2"[..]));
        kv.delete("k".into()).await.unwrap();
        assert!(!kv.compare_and_swap("k".into(), Some(b"2".to_vec()), b"3".to_vec()).await.unwrap());
    }

    #[tokio::test]
    async fn batches() {
        let (_dir, kv) = fresh();
        kv.set_many(vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec()), ("c".into(), b"3".to_vec())])
            .await
            .unwrap();
        let got = kv.get_many(vec!["c".into(), "missing".into(), "a".into()]).await.unwrap();
        assert_eq!(
            got,
            [("c".into(), Some(b"3".to_vec())), ("missing".into(), None), ("a".into(), Some(b"1".to_vec()))]
        );
        kv.delete_many(vec!["a".into(), "c".into(), "missing".into()]).await.unwrap();
        assert_eq!(kv.keys().await.unwrap(), ["b"]);
    }
}
