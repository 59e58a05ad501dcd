//! Spin's `spin` store kind without a `path`: the store lives in this
//! process's memory and is gone when it exits, as in Spin (which keeps such
//! a store in an in-memory SQLite database).
//!
//! Why a map rather than that in-memory database: what such a store holds
//! is kept only for as long as the process runs (rate-limit counters, caches
//! of verified tokens and of responses), and it is read and written on
//! every request. Through SQLite each of those operations was a statement,
//! a transaction and its locks; here it is a hash lookup under a mutex held
//! for that lookup alone, never across an await.
//!
//! The semantics are the SQLite kind's, so that a component cannot tell the
//! two apart: keys are listed in order, a batch read sees one moment, a
//! batch write lands whole, and a counter is the same 8 little-endian bytes
//! with the same errors.
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{Result, anyhow};
use futures::future::{BoxFuture, ready};

use super::backend::{Backend, Entry};
use super::sqlite_backend::counter;

/// One store in memory.
#[derive(Default)]
pub struct MemoryBackend {
    entries: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The map. No operation panics while holding it, and each leaves it
    /// whole, so a poisoned lock (a panic elsewhere in that thread) still
    /// guards a consistent map.
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the map and answers at once: nothing here waits.
    fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> Result<T>) -> BoxFuture<'_, Result<T>> {
        let result = f(&mut self.entries());
        Box::pin(ready(result))
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        self.with(move |entries| Ok(entries.get(&key).cloned()))
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        self.with(move |entries| {
            entries.insert(key, value);
            Ok(())
        })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<()>> {
        self.with(move |entries| {
            entries.remove(&key);
            Ok(())
        })
    }

    fn exists(&self, key: String) -> BoxFuture<'_, Result<bool>> {
        self.with(move |entries| Ok(entries.contains_key(&key)))
    }

    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        // Copied under the lock, sorted after it.
        let mut keys: Vec<String> = self.entries().keys().cloned().collect();
        keys.sort_unstable();
        Box::pin(ready(Ok(keys)))
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<Entry>>> {
        self.with(move |entries| {
            Ok(keys
                .into_iter()
                .map(|key| {
                    let value = entries.get(&key).cloned();
                    (key, value)
                })
                .collect())
        })
    }

    fn set_many(&self, new: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<()>> {
        self.with(move |entries| {
            entries.extend(new);
            Ok(())
        })
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<()>> {
        self.with(move |entries| {
            for key in keys {
                entries.remove(&key);
            }
            Ok(())
        })
    }

    fn increment(&self, key: String, delta: i64) -> BoxFuture<'_, Result<i64>> {
        self.with(move |entries| {
            let current = counter(&key, entries.get(&key).cloned())?;
            let new = current
                .checked_add(delta)
                .ok_or_else(|| anyhow!("cannot increment {key:?}: {current} + {delta} overflows a 64-bit integer"))?;
            entries.insert(key, new.to_le_bytes().to_vec());
            Ok(new)
        })
    }

    fn compare_and_swap(&self, key: String, expected: Option<Vec<u8>>, value: Vec<u8>) -> BoxFuture<'_, Result<bool>> {
        self.with(move |entries| {
            if entries.get(&key) != expected.as_ref() {
                return Ok(false);
            }
            entries.insert(key, value);
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn get_set_delete_exists_and_ordered_keys() {
        let kv = MemoryBackend::new();
        assert_eq!(kv.get("a".into()).await.unwrap(), None);
        assert!(!kv.exists("a".into()).await.unwrap());
        kv.delete("a".into()).await.unwrap();
        kv.set("b".into(), b"2".to_vec()).await.unwrap();
        kv.set("a".into(), b"1".to_vec()).await.unwrap();
        kv.set("c".into(), b"3".to_vec()).await.unwrap();
        kv.set("a".into(), b"one".to_vec()).await.unwrap();
        assert_eq!(kv.get("a".into()).await.unwrap().as_deref(), Some(&b"one"[..]));
        assert!(kv.exists("b".into()).await.unwrap());
        assert_eq!(kv.keys().await.unwrap(), ["a", "b", "c"]);
        kv.delete("b".into()).await.unwrap();
        assert_eq!(kv.keys().await.unwrap(), ["a", "c"]);
    }

    #[tokio::test]
    async fn batches() {
        let kv = MemoryBackend::new();
        kv.set_many(vec![("x".into(), b"1".to_vec()), ("y".into(), b"2".to_vec())]).await.unwrap();
        let got = kv.get_many(vec!["y".into(), "nope".into(), "x".into()]).await.unwrap();
        assert_eq!(got, vec![("y".into(), Some(b"2".to_vec())), ("nope".into(), None), ("x".into(), Some(b"1".to_vec()))]);
        kv.delete_many(vec!["x".into(), "nope".into()]).await.unwrap();
        assert_eq!(kv.keys().await.unwrap(), ["y"]);
    }

    #[tokio::test]
    async fn counters_are_the_sqlite_kinds_bytes_with_its_errors() {
        let kv = MemoryBackend::new();
        assert_eq!(kv.increment("n".into(), 0).await.unwrap(), 0);
        assert_eq!(kv.increment("n".into(), 5).await.unwrap(), 5);
        assert_eq!(kv.increment("n".into(), -7).await.unwrap(), -2);
        assert_eq!(kv.get("n".into()).await.unwrap(), Some((-2i64).to_le_bytes().to_vec()));

        kv.set("text".into(), b"12".to_vec()).await.unwrap();
        let e = kv.increment("text".into(), 1).await.unwrap_err().to_string();
        assert!(e.contains("2 bytes, not a 64-bit integer"), "{e}");
        assert_eq!(kv.get("text".into()).await.unwrap().as_deref(), Some(&b"12"[..]), "a failed increment changes nothing");

        kv.set("max".into(), i64::MAX.to_le_bytes().to_vec()).await.unwrap();
        let e = kv.increment("max".into(), 1).await.unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
    }

    #[tokio::test]
    async fn compare_and_swap_writes_only_over_what_was_read() {
        let kv = MemoryBackend::new();
        assert!(kv.compare_and_swap("k".into(), None, b"1".to_vec()).await.unwrap());
        assert!(!kv.compare_and_swap("k".into(), None, b"2".to_vec()).await.unwrap(), "set meanwhile");
        assert!(!kv.compare_and_swap("k".into(), Some(b"0".to_vec()), b"2".to_vec()).await.unwrap());
        assert!(kv.compare_and_swap("k".into(), Some(b"1".to_vec()), b"2".to_vec()).await.unwrap());
        assert_eq!(kv.get("k".into()).await.unwrap().as_deref(), Some(&b"2"[..]));
        kv.delete("k".into()).await.unwrap();
        assert!(!kv.compare_and_swap("k".into(), Some(b"2".to_vec()), b"3".to_vec()).await.unwrap(), "deleted meanwhile");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn increments_from_many_tasks_are_none_lost() {
        let kv = Arc::new(MemoryBackend::new());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                tokio::spawn(async move {
                    for _ in 0..500 {
                        kv.increment("n".into(), 1).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(kv.increment("n".into(), 0).await.unwrap(), 4000);
    }
}
