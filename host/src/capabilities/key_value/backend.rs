//! What a key-value store must do, whatever it is stored in.
//!
//! The host interfaces (`fermyon:spin/key-value`, `wasi:keyvalue/*`) are
//! written once against this trait; a store kind (the SQLite file Spin uses
//! by default, Redis, ...) is one implementation of it. A backend serves one
//! named store and is shared by every instance that opens it, so each method
//! must be safe to call concurrently.
use anyhow::Result;
use futures::future::BoxFuture;

/// A key and its value (`None`: not set).
pub type Entry = (String, Option<Vec<u8>>);

/// One named key-value store. Errors are I/O-level failures; the guest sees
/// them as the interface's `other(message)` error.
pub trait Backend: Send + Sync {
    /// The value of `key`, or `None` if it is not set.
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Vec<u8>>>>;

    /// Sets `key` to `value`, replacing any previous value.
    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'_, Result<()>>;

    /// Removes `key`; removing a key that is not set is not an error.
    fn delete(&self, key: String) -> BoxFuture<'_, Result<()>>;

    fn exists(&self, key: String) -> BoxFuture<'_, Result<bool>>;

    /// Every key in the store.
    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>>>;

    /// The value of each of `keys`, in the order asked.
    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<Entry>>>;

    fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<()>>;

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<()>>;

    /// Atomically adds `delta` to the integer stored at `key` (a key that is
    /// not set counts as 0) and returns the new value. How the integer is
    /// encoded is the backend's, matching what Spin's backend of the same
    /// kind writes.
    fn increment(&self, key: String, delta: i64) -> BoxFuture<'_, Result<i64>>;

    /// Atomically sets `key` to `value` if its value is still `expected`
    /// (`None`: not set). Returns whether it did.
    fn compare_and_swap(&self, key: String, expected: Option<Vec<u8>>, value: Vec<u8>) -> BoxFuture<'_, Result<bool>>;
}
