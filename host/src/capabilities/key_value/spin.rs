//! `fermyon:spin/key-value@2.0.0`: the interface spin-sdk's `key_value`
//! module calls.
use wasmtime::component::Resource;

use super::{KeyValueInstance, OpenError};
use crate::bindings::fermyon::spin2_0_0::key_value::{Error, Host, HostStore, Store};

/// A backend failure, as the guest sees it.
fn other(e: anyhow::Error) -> Error {
    Error::Other(format!("{e:#}"))
}

impl Host for KeyValueInstance {}

impl HostStore for KeyValueInstance {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<Store>, Error>> {
        Ok(self.open_store(&label)?.map_err(|e| match e {
            OpenError::AccessDenied => Error::AccessDenied,
            OpenError::NoSuchStore => Error::NoSuchStore,
            OpenError::TooManyOpen => Error::StoreTableFull,
        }))
    }

    async fn get(&mut self, store: Resource<Store>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.store(&store)?.get(key).await.map_err(other))
    }

    async fn set(
        &mut self,
        store: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&store)?.set(key, value).await.map_err(other))
    }

    async fn delete(&mut self, store: Resource<Store>, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&store)?.delete(key).await.map_err(other))
    }

    async fn exists(&mut self, store: Resource<Store>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.store(&store)?.exists(key).await.map_err(other))
    }

    async fn get_keys(&mut self, store: Resource<Store>) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(self.store(&store)?.keys().await.map_err(other))
    }

    async fn drop(&mut self, store: Resource<Store>) -> wasmtime::Result<()> {
        self.close_store(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::key_value::tests::app;

    #[tokio::test]
    async fn open_follows_the_grants() {
        let kv = app(&[("web", &["default", "undefined"])], &["default", "secret"]);
        let mut web = kv.instance("web");
        assert!(matches!(HostStore::open(&mut web, "secret".into()).await.unwrap(), Err(Error::AccessDenied)));
        assert!(matches!(HostStore::open(&mut web, "nope".into()).await.unwrap(), Err(Error::AccessDenied)));
        assert!(matches!(HostStore::open(&mut web, "undefined".into()).await.unwrap(), Err(Error::NoSuchStore)));
        assert!(HostStore::open(&mut web, "default".into()).await.unwrap().is_ok());
        let mut stranger = kv.instance("not-in-the-manifest");
        assert!(matches!(HostStore::open(&mut stranger, "default".into()).await.unwrap(), Err(Error::AccessDenied)));
    }

    #[tokio::test]
    async fn store_operations() {
        let kv = app(&[("web", &["default"])], &["default"]);
        let mut web = kv.instance("web");
        let store = HostStore::open(&mut web, "default".into()).await.unwrap().unwrap();
        let rep = store.rep();
        let s = || Resource::<Store>::new_borrow(rep);
        assert_eq!(web.get(s(), "k".into()).await.unwrap().unwrap(), None);
        web.delete(s(), "k".into()).await.unwrap().unwrap();
        web.set(s(), "k".into(), b"v".to_vec()).await.unwrap().unwrap();
        assert!(web.exists(s(), "k".into()).await.unwrap().unwrap());
        assert_eq!(web.get(s(), "k".into()).await.unwrap().unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(web.get_keys(s()).await.unwrap().unwrap(), ["k"]);
        HostStore::drop(&mut web, store).await.unwrap();
        // A closed handle is a host invariant broken: it traps.
        assert!(web.get(s(), "k".into()).await.is_err());
    }
}
