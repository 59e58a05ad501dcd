//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`: the standard
//! interface, over the same stores and grants as Spin's own (a bucket
//! identifier is a store label).
//!
//! A compare-and-swap remembers the value its key had when the guest created
//! it; `swap` writes only if the key still has that value, and otherwise
//! hands back a fresh CAS holding the current value, so the guest can retry.
use std::sync::Arc;

use wasmtime::component::Resource;

use super::backend::{Backend, Entry};
use super::{KeyValueInstance, OpenError};
use crate::bindings::wasi::keyvalue::atomics::{self, Cas, CasError};
use crate::bindings::wasi::keyvalue::batch;
use crate::bindings::wasi::keyvalue::store::{self, Bucket, Error, KeyResponse};

/// A `cas` resource: the value `key` had when it was created.
struct CasHandle {
    store: Arc<dyn Backend>,
    key: String,
    expected: Option<Vec<u8>>,
}

/// A backend failure, as the guest sees it.
fn other(e: anyhow::Error) -> Error {
    Error::Other(format!("{e:#}"))
}

impl KeyValueInstance {
    /// Starts a compare-and-swap of `key`, remembering its current value.
    async fn start_cas(
        &mut self,
        store: Arc<dyn Backend>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let expected = match store.get(key.clone()).await {
            Ok(value) => value,
            Err(e) => return Ok(Err(other(e))),
        };
        let handle = self.table.push(CasHandle { store, key, expected })?;
        Ok(Ok(Resource::new_own(handle.rep())))
    }
}

impl store::Host for KeyValueInstance {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        Ok(self.open_store(&identifier)?.map_err(|e| match e {
            OpenError::AccessDenied => Error::AccessDenied,
            OpenError::NoSuchStore => Error::NoSuchStore,
            OpenError::TooManyOpen => Error::Other("too many stores open".into()),
        }))
    }
}

impl store::HostBucket for KeyValueInstance {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.store(&bucket)?.get(key).await.map_err(other))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&bucket)?.set(key, value).await.map_err(other))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&bucket)?.delete(key).await.map_err(other))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.store(&bucket)?.exists(key).await.map_err(other))
    }

    /// All keys in one response, as Spin does; Spin also rejects a cursor,
    /// since it never hands one out.
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let store = self.store(&bucket)?;
        if cursor.is_some() {
            return Ok(Err(Error::Other("list-keys: this host returns every key at once and takes no cursor".into())));
        }
        Ok(store.keys().await.map(|keys| KeyResponse { keys, cursor: None }).map_err(other))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.close_store(bucket)
    }
}

impl atomics::Host for KeyValueInstance {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        Ok(self.store(&bucket)?.increment(key, delta).await.map_err(other))
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> wasmtime::Result<Result<(), CasError>> {
        let CasHandle { store, key, expected } = self.table.delete(Resource::<CasHandle>::new_own(cas.rep()))?;
        match store.compare_and_swap(key.clone(), expected, value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(Err(match self.start_cas(store, key).await? {
                Ok(fresh) => CasError::CasFailed(fresh),
                Err(e) => CasError::StoreError(e),
            })),
            Err(e) => Ok(Err(CasError::StoreError(other(e)))),
        }
    }
}

impl atomics::HostCas for KeyValueInstance {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let store = self.store(&bucket)?;
        self.start_cas(store, key).await
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&Resource::<CasHandle>::new_borrow(cas.rep()))?.expected.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(Resource::<CasHandle>::new_own(cas.rep()))?;
        Ok(())
    }
}

impl batch::Host for KeyValueInstance {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Entry>, Error>> {
        Ok(self.store(&bucket)?.get_many(keys).await.map_err(other))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&bucket)?.set_many(entries).await.map_err(other))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&bucket)?.delete_many(keys).await.map_err(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::wasi::keyvalue::atomics::{Host as _, HostCas as _};
    use crate::bindings::wasi::keyvalue::batch::Host as _;
    use crate::bindings::wasi::keyvalue::store::{Host as _, HostBucket as _};
    use crate::capabilities::key_value::tests::app;

    async fn open(kv: &mut KeyValueInstance) -> impl Fn() -> Resource<Bucket> + use<> {
        let rep = kv.open("default".into()).await.unwrap().unwrap().rep();
        move || Resource::new_borrow(rep)
    }

    #[tokio::test]
    async fn open_follows_the_grants() {
        let kv = app(&[("web", &["default", "undefined"])], &["default", "secret"]);
        let mut web = kv.instance("web");
        assert!(matches!(web.open("secret".into()).await.unwrap(), Err(Error::AccessDenied)));
        assert!(matches!(web.open("undefined".into()).await.unwrap(), Err(Error::NoSuchStore)));
        assert!(web.open("default".into()).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn bucket_operations_and_batches() {
        let kv = app(&[("web", &["default"])], &["default"]);
        let mut web = kv.instance("web");
        let b = open(&mut web).await;
        web.set_many(b(), vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]).await.unwrap().unwrap();
        assert_eq!(web.get(b(), "a".into()).await.unwrap().unwrap().as_deref(), Some(&b"1"[..]));
        let many = web.get_many(b(), vec!["b".into(), "z".into()]).await.unwrap().unwrap();
        assert_eq!(many, [("b".into(), Some(b"2".to_vec())), ("z".into(), None)]);
        let listed = web.list_keys(b(), None).await.unwrap().unwrap();
        assert_eq!((listed.keys, listed.cursor), (vec!["a".to_string(), "b".to_string()], None));
        assert!(web.list_keys(b(), Some("a".into())).await.unwrap().is_err());
        web.delete_many(b(), vec!["a".into(), "z".into()]).await.unwrap().unwrap();
        assert!(!web.exists(b(), "a".into()).await.unwrap().unwrap());
        assert_eq!(web.increment(b(), "n".into(), 2).await.unwrap().unwrap(), 2);
        assert_eq!(web.increment(b(), "n".into(), 40).await.unwrap().unwrap(), 42);
    }

    #[tokio::test]
    async fn swap_succeeds_on_an_unchanged_value() {
        let kv = app(&[("web", &["default"])], &["default"]);
        let mut web = kv.instance("web");
        let b = open(&mut web).await;
        web.set(b(), "k".into(), b"old".to_vec()).await.unwrap().unwrap();
        let cas = web.new(b(), "k".into()).await.unwrap().unwrap();
        assert_eq!(web.current(Resource::new_borrow(cas.rep())).await.unwrap().unwrap().as_deref(), Some(&b"old"[..]));
        web.swap(cas, b"new".to_vec()).await.unwrap().unwrap();
        assert_eq!(web.get(b(), "k".into()).await.unwrap().unwrap().as_deref(), Some(&b"new"[..]));

        // A key that does not exist yet: the swap creates it.
        let cas = web.new(b(), "fresh".into()).await.unwrap().unwrap();
        web.swap(cas, b"1".to_vec()).await.unwrap().unwrap();
        assert_eq!(web.get(b(), "fresh".into()).await.unwrap().unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[tokio::test]
    async fn swap_fails_on_a_changed_value_and_offers_a_fresh_cas() {
        let kv = app(&[("web", &["default"])], &["default"]);
        let mut web = kv.instance("web");
        let mut other = kv.instance("web");
        let b = open(&mut web).await;
        let ob = open(&mut other).await;
        web.set(b(), "k".into(), b"1".to_vec()).await.unwrap().unwrap();
        let cas = web.new(b(), "k".into()).await.unwrap().unwrap();
        other.set(ob(), "k".into(), b"2".to_vec()).await.unwrap().unwrap();

        let Err(CasError::CasFailed(fresh)) = web.swap(cas, b"from-1".to_vec()).await.unwrap() else {
            panic!("expected cas-failed");
        };
        assert_eq!(web.get(b(), "k".into()).await.unwrap().unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(web.current(Resource::new_borrow(fresh.rep())).await.unwrap().unwrap().as_deref(), Some(&b"2"[..]));
        web.swap(fresh, b"from-2".to_vec()).await.unwrap().unwrap();
        assert_eq!(web.get(b(), "k".into()).await.unwrap().unwrap().as_deref(), Some(&b"from-2"[..]));
    }
}
