//! The `redis` key-value store kind: a Redis server, laid out exactly as
//! Spin lays it out, so a store written by Spin reads under bazaar and back.
//!
//! Spin's layout (spinframework/spin, crates/key-value-redis/src/store.rs):
//! each key-value key is the Redis key of the same name, with no prefix, in
//! the database the URL selects, so the store is that whole database (two
//! labels with the same URL are one store); a value is a plain Redis string
//! holding the bytes; `increment` is `INCRBY`, so a counter is the decimal
//! text Redis keeps (`"42"`), not the SQLite kind's 8 little-endian bytes.
//!
//! Where Spin's implementation has rough edges we keep the data and fix the
//! behaviour: keys are listed with `SCAN` (Spin uses `KEYS *`, which blocks
//! the server), `get_many` is `MGET`, and compare-and-swap is one Lua script
//! (atomic on the server, so it needs no connection of its own for `WATCH`).
//! The connection is made on first use and shared by every instance (see
//! [`crate::capabilities::redis::connection`]).
use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Script};

use super::backend::{Backend, Entry};
use crate::capabilities::redis::connection::LazyConnection;

/// Sets KEYS[1] to ARGV[3] if its value is ARGV[2] (ARGV[1] = "1") or it is
/// not set (ARGV[1] = "0"); returns 1 if it did. `GET` of a missing key is
/// `false` in Lua, which equals no string.
const COMPARE_AND_SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// One store: a Redis database.
pub struct RedisBackend {
    connection: LazyConnection,
    compare_and_swap: Script,
}

impl RedisBackend {
    /// Checks `url` without connecting: the server need not be up until a
    /// component uses the store.
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(Self { connection: LazyConnection::new(url)?, compare_and_swap: Script::new(COMPARE_AND_SWAP) })
    }

    /// The shared connection, connecting on first use.
    async fn connection(&self) -> Result<ConnectionManager> {
        self.connection.get().await.map_err(|e| anyhow!(e))
    }

    /// A Redis error, naming the server.
    fn error(&self, e: RedisError) -> anyhow::Error {
        anyhow!("Redis at {}: {e}", self.connection.shown())
    }
}

impl Backend for RedisBackend {
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        Box::pin(async move { self.connection().await?.get(key).await.map_err(|e| self.error(e)) })
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.connection().await?.set(key, value).await.map_err(|e| self.error(e)) })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.connection().await?.del(key).await.map_err(|e| self.error(e)) })
    }

    fn exists(&self, key: String) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move { self.connection().await?.exists(key).await.map_err(|e| self.error(e)) })
    }

    /// Every key of the database, sorted (as the SQLite kind returns them).
    /// `SCAN` may return a key twice; a key that is not UTF-8 cannot be named
    /// by a component, so it is left out.
    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let mut keys = BTreeSet::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.error(e))?;
                keys.extend(batch.into_iter().filter_map(|key| String::from_utf8(key).ok()));
                if next == 0 {
                    return Ok(keys.into_iter().collect());
                }
                cursor = next;
            }
        })
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<Entry>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            // MGET of one key answers a bare value; a command answers a list.
            let values: Vec<Option<Vec<u8>>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut self.connection().await?).await.map_err(|e| self.error(e))?;
            Ok(keys.into_iter().zip(values).collect())
        })
    }

    /// One `MSET`: all or nothing.
    fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            self.connection().await?.mset(&entries).await.map_err(|e| self.error(e))
        })
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            self.connection().await?.del(keys).await.map_err(|e| self.error(e))
        })
    }

    /// `INCRBY`, as Spin: Redis keeps the counter as decimal text and refuses
    /// a value that is not one, or a result that overflows.
    fn increment(&self, key: String, delta: i64) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            connection.incr(&key, delta).await.map_err(|e| anyhow!("cannot increment {key:?}: {}", self.error(e)))
        })
    }

    fn compare_and_swap(&self, key: String, expected: Option<Vec<u8>>, value: Vec<u8>) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let swapped: i64 = self
                .compare_and_swap
                .key(key)
                .arg(if expected.is_some() { "1" } else { "0" })
                .arg(expected.unwrap_or_default())
                .arg(value)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.error(e))?;
            Ok(swapped == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redis::aio::MultiplexedConnection;

    use super::*;
    use crate::capabilities::redis::test_support::{cleanup, direct, prefix, url};

    /// A store on the test server, a direct connection to check what it
    /// wrote, and this test's key prefix.
    async fn setup() -> (RedisBackend, MultiplexedConnection, String) {
        let direct = direct().await;
        (RedisBackend::new(&url()).unwrap(), direct, prefix())
    }

    /// The store's keys that belong to this test, without the prefix.
    async fn own_keys(kv: &RedisBackend, prefix: &str) -> Vec<String> {
        let keys = kv.keys().await.unwrap();
        keys.iter().filter_map(|k| k.strip_prefix(prefix)).map(str::to_string).collect()
    }

    #[tokio::test]
    async fn get_set_delete_exists_keys() {
        let (kv, mut raw, p) = setup().await;
        let k = |name: &str| format!("{p}{name}");
        assert_eq!(kv.get(k("a")).await.unwrap(), None);
        assert!(!kv.exists(k("a")).await.unwrap());
        kv.delete(k("a")).await.unwrap();
        kv.set(k("b"), b"2".to_vec()).await.unwrap();
        kv.set(k("a"), b"1".to_vec()).await.unwrap();
        kv.set(k("a"), b"one".to_vec()).await.unwrap();
        assert_eq!(kv.get(k("a")).await.unwrap().as_deref(), Some(&b"one"[..]));
        assert!(kv.exists(k("a")).await.unwrap());
        assert_eq!(own_keys(&kv, &p).await, ["a", "b"]);
        kv.delete(k("a")).await.unwrap();
        assert_eq!(own_keys(&kv, &p).await, ["b"]);

        // Binary values round-trip, and are stored as-is under the bare key
        // (Spin's layout).
        let bytes = vec![0u8, 255, 10, 13, 0];
        kv.set(k("bin"), bytes.clone()).await.unwrap();
        assert_eq!(kv.get(k("bin")).await.unwrap(), Some(bytes.clone()));
        let stored: Vec<u8> = raw.get(k("bin")).await.unwrap();
        assert_eq!(stored, bytes);
        let () = raw.set(k("from-spin"), "written elsewhere").await.unwrap();
        assert_eq!(kv.get(k("from-spin")).await.unwrap().as_deref(), Some(&b"written elsewhere"[..]));
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn keys_scans_past_one_page() {
        let (kv, mut raw, p) = setup().await;
        let entries: Vec<(String, Vec<u8>)> = (0..2500).map(|i| (format!("{p}{i:05}"), vec![1])).collect();
        kv.set_many(entries).await.unwrap();
        let keys = own_keys(&kv, &p).await;
        assert_eq!(keys.len(), 2500);
        assert_eq!(keys.first().map(String::as_str), Some("00000"));
        assert_eq!(keys.last().map(String::as_str), Some("02499"));
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn increment_is_incrby_like_spin() {
        let (kv, mut raw, p) = setup().await;
        let n = format!("{p}n");
        assert_eq!(kv.increment(n.clone(), 3).await.unwrap(), 3);
        assert_eq!(kv.increment(n.clone(), -10).await.unwrap(), -7);
        // Stored as Redis's decimal text, as Spin's INCRBY stores it.
        assert_eq!(kv.get(n.clone()).await.unwrap().as_deref(), Some(&b"-7"[..]));
        let () = raw.set(&n, "41").await.unwrap();
        assert_eq!(kv.increment(n.clone(), 1).await.unwrap(), 42);

        let s = format!("{p}s");
        kv.set(s.clone(), b"hello".to_vec()).await.unwrap();
        let e = kv.increment(s.clone(), 1).await.unwrap_err().to_string();
        assert!(e.contains(&format!("{s:?}")) && e.contains("not an integer"), "{e}");
        let max = format!("{p}max");
        kv.set(max.clone(), i64::MAX.to_string().into_bytes()).await.unwrap();
        assert!(kv.increment(max, 1).await.unwrap_err().to_string().contains("overflow"));
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_are_not_lost() {
        let (_, mut raw, p) = setup().await;
        // Two stores, so two connections, as two processes would have.
        let stores = [Arc::new(RedisBackend::new(&url()).unwrap()), Arc::new(RedisBackend::new(&url()).unwrap())];
        let key = format!("{p}hits");
        let (tasks, increments) = (16, 50);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (kv, key) = (stores[t % 2].clone(), key.clone());
                tokio::spawn(async move {
                    for _ in 0..increments {
                        kv.increment(key.clone(), 1).await.unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(stores[0].increment(key, 0).await.unwrap(), (tasks * increments) as i64);
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn compare_and_swap_checks_the_expected_value() {
        let (kv, mut raw, p) = setup().await;
        let k = format!("{p}k");
        // Absent expected: only inserts.
        assert!(kv.compare_and_swap(k.clone(), None, b"1".to_vec()).await.unwrap());
        assert!(!kv.compare_and_swap(k.clone(), None, b"2".to_vec()).await.unwrap());
        // Present expected: only replaces that value.
        assert!(!kv.compare_and_swap(k.clone(), Some(b"0".to_vec()), b"2".to_vec()).await.unwrap());
        assert!(kv.compare_and_swap(k.clone(), Some(b"1".to_vec()), b"2".to_vec()).await.unwrap());
        assert_eq!(kv.get(k.clone()).await.unwrap().as_deref(), Some(&b"2"[..]));
        kv.delete(k.clone()).await.unwrap();
        assert!(!kv.compare_and_swap(k.clone(), Some(b"2".to_vec()), b"3".to_vec()).await.unwrap());
        // An empty value is a value, not "not set".
        kv.set(k.clone(), Vec::new()).await.unwrap();
        assert!(!kv.compare_and_swap(k.clone(), None, b"x".to_vec()).await.unwrap());
        assert!(kv.compare_and_swap(k.clone(), Some(Vec::new()), b"\0bin".to_vec()).await.unwrap());
        assert!(kv.compare_and_swap(k.clone(), Some(b"\0bin".to_vec()), b"y".to_vec()).await.unwrap());
        cleanup(&mut raw, &p).await;
    }

    /// Many writers doing read / compare-and-swap / retry: every conflict is
    /// detected, so no update is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn compare_and_swap_conflicts_lose_no_update() {
        let (kv, mut raw, p) = setup().await;
        let kv = Arc::new(kv);
        let key = format!("{p}cas-counter");
        let (tasks, updates) = (8, 25);
        let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (kv, key, conflicts) = (kv.clone(), key.clone(), conflicts.clone());
                tokio::spawn(async move {
                    for _ in 0..updates {
                        loop {
                            let current = kv.get(key.clone()).await.unwrap();
                            let n: u64 = current.as_deref().map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                            if kv.compare_and_swap(key.clone(), current, (n + 1).to_string().into_bytes()).await.unwrap() {
                                break;
                            }
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let total = kv.get(key).await.unwrap().unwrap();
        assert_eq!(std::str::from_utf8(&total).unwrap(), (tasks * updates).to_string());
        eprintln!("{} compare-and-swap conflicts detected", conflicts.load(std::sync::atomic::Ordering::Relaxed));
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn batches() {
        let (kv, mut raw, p) = setup().await;
        let k = |name: &str| format!("{p}{name}");
        kv.set_many(vec![(k("a"), b"1".to_vec()), (k("b"), b"2".to_vec()), (k("c"), b"3".to_vec())]).await.unwrap();
        let got = kv.get_many(vec![k("c"), k("missing"), k("a")]).await.unwrap();
        assert_eq!(got, [(k("c"), Some(b"3".to_vec())), (k("missing"), None), (k("a"), Some(b"1".to_vec()))]);
        assert_eq!(kv.get_many(vec![k("a")]).await.unwrap(), [(k("a"), Some(b"1".to_vec()))]);
        kv.delete_many(vec![k("a"), k("c"), k("missing")]).await.unwrap();
        assert_eq!(own_keys(&kv, &p).await, ["b"]);
        // Empty batches are no-ops, not Redis syntax errors.
        assert_eq!(kv.get_many(vec![]).await.unwrap(), []);
        kv.set_many(vec![]).await.unwrap();
        kv.delete_many(vec![]).await.unwrap();
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn a_down_server_is_a_clear_error_not_a_hang() {
        let kv = RedisBackend::new("redis://127.0.0.1:1").unwrap();
        let started = std::time::Instant::now();
        let e = kv.get("k".into()).await.unwrap_err().to_string();
        assert!(e.contains("cannot connect to Redis at redis://127.0.0.1:1"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn bad_urls_fail_when_the_app_loads() {
        assert!(RedisBackend::new("http://localhost").is_err());
        assert!(RedisBackend::new("redis://localhost:6379/0").is_ok());
    }
}
