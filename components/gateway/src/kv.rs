//! The gateway's key-value stores, through `wasi:keyvalue`: the one
//! interface with an atomic increment and compare-and-swap, which keep
//! rate-limit counters and the cache generation exact across hosts when
//! the store is Redis.
//!
//! Every key starts with its store's name (`gateway:`, `gateway-tokens:`,
//! `gateway-cache:`):
//! a Redis store is a whole Redis database, which an operator may share
//! with other stores.
use std::fmt;

use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};

/// Rate-limit counters: shared by every host (Redis in production), so
/// that a client's quota holds wherever it connects.
pub const GATEWAY: &str = "gateway";
/// The cached JWKS and the tokens verified lately: read on every
/// authenticated request, and worth keeping per host (each host fetches
/// the key set and verifies a token in full once), so a runtime config
/// may keep it in memory in production too.
pub const TOKENS: &str = "gateway-tokens";
/// Cached catalog responses and their generation counter.
pub const CACHE: &str = "gateway-cache";

/// A store failure, with the store's name for the log.
#[derive(Debug)]
pub struct KvError(String);

impl KvError {
    /// A value of store `name` this version cannot read.
    pub fn unreadable(name: &str, what: String) -> Self {
        KvError(format!("key-value store `{name}`: {what}"))
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Store {
    name: &'static str,
    bucket: store::Bucket,
}

impl Store {
    pub fn open(name: &'static str) -> Result<Self, KvError> {
        let bucket = store::open(name).map_err(|e| error(name, e))?;
        Ok(Self { name, bucket })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket.get(key).map_err(|e| error(self.name, e))
    }

    /// The values of `keys` (in their order; `None` where there is none),
    /// read in one call: one round trip to Redis (`MGET`), one read
    /// transaction of SQLite.
    pub fn get_many<const N: usize>(&self, keys: [&str; N]) -> Result<[Option<Vec<u8>>; N], KvError> {
        let found = batch::get_many(&self.bucket, &keys.map(str::to_owned)).map_err(|e| error(self.name, e))?;
        // A host may leave out the keys it has no value for, or answer them
        // in another order: each value is looked up by its key.
        let mut found: Vec<(String, Option<Vec<u8>>)> = found;
        Ok(keys.map(|key| found.iter().position(|(k, _)| k == key).and_then(|i| found.swap_remove(i).1)))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket.set(key, value).map_err(|e| error(self.name, e))
    }

    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.bucket.delete(key).map_err(|e| error(self.name, e))
    }

    /// Adds `delta` to the integer at `key` (missing counts as 0) and returns
    /// the new value, atomically.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| error(self.name, e))
    }

    /// Sets `key` to `change(its value)` atomically: a compare-and-swap,
    /// tried again on the new value while other writers get in first.
    /// Returns the value written.
    pub fn update(&self, key: &str, change: impl Fn(Option<&[u8]>) -> Vec<u8>) -> Result<Vec<u8>, KvError> {
        let mut cas = atomics::Cas::new(&self.bucket, key).map_err(|e| error(self.name, e))?;
        loop {
            let value = change(cas.current().map_err(|e| error(self.name, e))?.as_deref());
            match atomics::swap(cas, &value) {
                Ok(()) => return Ok(value),
                Err(atomics::CasError::CasFailed(now)) => cas = now,
                Err(atomics::CasError::StoreError(e)) => return Err(error(self.name, e)),
            }
        }
    }

    /// Every key in the store.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.bucket.list_keys(cursor.as_deref()).map_err(|e| error(self.name, e))?;
            keys.extend(page.keys);
            match page.cursor {
                // A cursor that does not move would loop forever.
                Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
                _ => return Ok(keys),
            }
        }
    }
}

fn error(name: &str, e: store::Error) -> KvError {
    KvError(match e {
        store::Error::NoSuchStore => format!("key-value store `{name}` does not exist"),
        store::Error::AccessDenied => format!("key-value store `{name}` is not granted to the gateway"),
        store::Error::Other(detail) => format!("key-value store `{name}`: {detail}"),
    })
}
