//! Key-value stores: `fermyon:spin/key-value@2.0.0` and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`.
//!
//! As in Spin, spin.toml grants each component store *labels*
//! (`key_value_stores = ["default", "carts"]`) and the runtime config says
//! where each label lives (`default` always exists: a SQLite file in the
//! state directory). Opening a label the component was not granted is
//! `access-denied`, whether or not the store exists; a granted label the
//! runtime config does not define is caught when the app loads.
//!
//! - [`backend`]: what a store must do, whatever it is stored in;
//! - [`sqlite_backend`]: Spin's `spin` store kind, a SQLite file, whose
//!   writes `group_commit` commits together;
//! - [`memory_backend`]: the `spin` kind without a `path`, in memory;
//! - [`redis_backend`]: Spin's `redis` store kind, a Redis server;
//! - `spin` and `wasi`: the two guest interfaces, over [`Backend`].
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::{Resource, ResourceTable, ResourceTableError};

use super::{BuildContext, GrantKind, check_grants};
use crate::runtime_config::KeyValueStoreConfig;

pub mod backend;
mod group_commit;
pub mod memory_backend;
pub mod redis_backend;
mod spin;
pub mod sqlite_backend;
mod wasi;

pub use backend::Backend;
use memory_backend::MemoryBackend;
use redis_backend::RedisBackend;
use sqlite_backend::SqliteBackend;

use super::redis::connection::redacted;

/// The manifest field this capability grants by, and the runtime-config
/// table that defines its names.
const GRANTS: GrantKind = GrantKind { field: "key_value_stores", table: "key_value_store" };

/// The key-value stores of an app and who may open them: built once at load.
pub struct KeyValue {
    /// Every store some component was granted, by label.
    stores: HashMap<String, Arc<dyn Backend>>,
    /// Component id → the labels it may open.
    grants: HashMap<String, Arc<HashSet<String>>>,
}

/// What one instance sees: its grants and the stores it has open.
pub struct KeyValueInstance {
    key_value: Arc<KeyValue>,
    granted: Arc<HashSet<String>>,
    /// What the guest's resource handles stand for: open stores
    /// (`Arc<dyn Backend>`) and pending compare-and-swaps. A handle's `rep`
    /// is its index here (bindgen's resource types are only markers).
    table: ResourceTable,
}

/// Why an instance may not open a store.
enum OpenError {
    AccessDenied,
    NoSuchStore,
    TooManyOpen,
}

impl KeyValue {
    /// Checks every component's grants against the runtime config and opens
    /// each store some component may use (creating its file if need be).
    pub fn new(ctx: &BuildContext<'_>) -> Result<Self> {
        let grants = ctx.manifest.components.values().map(|c| (c.id.as_str(), c.key_value_stores.as_slice()));
        check_grants(&ctx.manifest.file, GRANTS, grants.clone(), &ctx.runtime_config.key_value_stores)?;

        let mut stores: HashMap<String, Arc<dyn Backend>> = HashMap::new();
        for label in grants.clone().flat_map(|(_, labels)| labels) {
            if !stores.contains_key(label) {
                let store: Arc<dyn Backend> = match &ctx.runtime_config.key_value_stores[label] {
                    KeyValueStoreConfig::Spin { path: Some(path) } => {
                        Arc::new(SqliteBackend::open(path, label, ctx.sqlite_synchronous).with_context(|| {
                            format!("opening key-value store {label:?} at {}", path.display())
                        })?)
                    }
                    KeyValueStoreConfig::Spin { path: None } => Arc::new(MemoryBackend::new()),
                    KeyValueStoreConfig::Redis { url } => Arc::new(RedisBackend::new(url).with_context(|| {
                        format!("key-value store {label:?}: {:?} is not a Redis URL", redacted(url))
                    })?),
                };
                stores.insert(label.clone(), store);
            }
        }
        let grants = grants.map(|(id, labels)| (id.to_string(), Arc::new(labels.iter().cloned().collect()))).collect();
        Ok(Self { stores, grants })
    }

    pub fn instance(self: &Arc<Self>, component_id: &str) -> KeyValueInstance {
        KeyValueInstance {
            key_value: self.clone(),
            granted: self.grants.get(component_id).cloned().unwrap_or_default(),
            table: ResourceTable::new(),
        }
    }
}

impl KeyValueInstance {
    /// Opens store `label` for the guest, as a handle of resource type `T`.
    fn open_store<T: 'static>(&mut self, label: &str) -> wasmtime::Result<Result<Resource<T>, OpenError>> {
        if !self.granted.contains(label) {
            return Ok(Err(OpenError::AccessDenied));
        }
        let Some(store) = self.key_value.stores.get(label) else {
            return Ok(Err(OpenError::NoSuchStore));
        };
        match self.table.push(store.clone()) {
            Ok(handle) => Ok(Ok(Resource::new_own(handle.rep()))),
            Err(ResourceTableError::Full) => Ok(Err(OpenError::TooManyOpen)),
            Err(e) => Err(e.into()),
        }
    }

    /// The store behind a guest handle (a bad handle traps the guest).
    fn store<T>(&self, handle: &Resource<T>) -> wasmtime::Result<Arc<dyn Backend>> {
        Ok(self.table.get(&Resource::<Arc<dyn Backend>>::new_borrow(handle.rep()))?.clone())
    }

    fn close_store<T>(&mut self, handle: Resource<T>) -> wasmtime::Result<()> {
        self.table.delete(Resource::<Arc<dyn Backend>>::new_own(handle.rep()))?;
        Ok(())
    }
}

/// Adds the Spin and WASI key-value interfaces to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::state::InstanceState>) -> Result<()> {
    use crate::bindings::fermyon::spin2_0_0::key_value as spin_kv;
    use crate::bindings::wasi::keyvalue::{atomics, batch, store};
    use wasmtime::component::HasSelf;
    spin_kv::add_to_linker::<_, HasSelf<KeyValueInstance>>(linker, |s| &mut s.key_value)?;
    store::add_to_linker::<_, HasSelf<KeyValueInstance>>(linker, |s| &mut s.key_value)?;
    atomics::add_to_linker::<_, HasSelf<KeyValueInstance>>(linker, |s| &mut s.key_value)?;
    batch::add_to_linker::<_, HasSelf<KeyValueInstance>>(linker, |s| &mut s.key_value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use std::collections::BTreeMap;

    use super::*;

    /// An app whose components are granted `grants`, with stores
    /// `defined` (all in memory).
    pub(super) fn app(grants: &[(&str, &[&str])], defined: &[&str]) -> Arc<KeyValue> {
        let stores = defined
            .iter()
            .map(|label| (label.to_string(), Arc::new(MemoryBackend::new()) as Arc<dyn Backend>))
            .collect();
        let grants = grants
            .iter()
            .map(|(id, labels)| (id.to_string(), Arc::new(labels.iter().map(|l| l.to_string()).collect())))
            .collect();
        Arc::new(KeyValue { stores, grants })
    }

    #[test]
    fn undefined_labels_are_named_with_the_fix() {
        let defined = BTreeMap::from([("default".to_string(), KeyValueStoreConfig::Spin { path: None })]);
        let carts = ["carts".to_string()];
        let default = ["default".to_string()];
        let grants = [("cart", &carts[..]), ("web", &default[..])].into_iter();
        let e = check_grants(&PathBuf::from("spin.toml"), GRANTS, grants, &defined).unwrap_err().to_string();
        assert_eq!(
            e,
            "spin.toml: [component.cart] key_value_stores names \"carts\", which the runtime config does not define; \
             add [key_value_store.carts] with type = \"spin\" to the runtime config file, or use \"default\""
        );
        let grants = [("web", &default[..])].into_iter();
        check_grants(&PathBuf::from("spin.toml"), GRANTS, grants, &defined).unwrap();
    }

    #[tokio::test]
    async fn stores_are_shared_between_instances_and_components() {
        let kv = app(&[("a", &["default"]), ("b", &["default"])], &["default"]);
        let mut a = kv.instance("a");
        let handle = a.open_store::<()>("default").unwrap().ok().unwrap();
        a.store(&handle).unwrap().set("k".into(), b"v".to_vec()).await.unwrap();

        let mut b = kv.instance("b");
        let handle = b.open_store::<()>("default").unwrap().ok().unwrap();
        assert_eq!(b.store(&handle).unwrap().get("k".into()).await.unwrap().as_deref(), Some(&b"v"[..]));
        b.close_store(handle).unwrap();
    }
}
