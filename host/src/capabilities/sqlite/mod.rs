//! SQLite databases: `fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.0.0`.
//!
//! As in Spin, spin.toml grants each component database *names*
//! (`sqlite_databases = ["default", "orders"]`) and the runtime config says
//! where each lives (`default` always exists: a file in the state
//! directory). Opening a name the component was not granted is
//! `access-denied`, whether or not the database exists; a granted name the
//! runtime config does not define is caught when the app loads.
//!
//! The interface is SQLite's own: synchronous, dynamically typed, one
//! connection per `open`. rusqlite maps it one to one.
//!
//! - `database`: where a named database lives, and opening connections;
//! - `pool`: connections guests gave back, kept for the next one;
//! - `turn`: one writer at a time per database, first come first served;
//! - `connection`: one guest connection, running statements;
//! - `host`: the two guest interfaces, over [`SqliteInstance`].
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::{Resource, ResourceTable, ResourceTableError};

use super::{BuildContext, GrantKind, check_grants};
use crate::bindings::spin::sqlite::sqlite::Error;

mod checkpoint;
mod connection;
mod database;
mod heavy;
mod host;
mod pool;
mod turn;

use connection::GuestConnection;
use database::Database;
pub use database::{BUSY_TIMEOUT, Synchronous, new_memdb_uri, without_waiting};
pub use checkpoint::Checkpoints;
pub use connection::multi_threaded;

/// The manifest field this capability grants by, and the runtime-config
/// table that defines its names.
const GRANTS: GrantKind = GrantKind { field: "sqlite_databases", table: "sqlite_database" };

/// Most connections one instance may have open at once (Spin's limit).
const MAX_CONNECTIONS: usize = 256;

/// The SQLite databases of an app and who may open them: built once at load.
pub struct Sqlite {
    /// Every database some component was granted, by name.
    databases: HashMap<String, Arc<Database>>,
    /// Component id → the database names it may open.
    grants: HashMap<String, Arc<HashSet<String>>>,
}

/// What one instance sees: its grants and its open connections.
pub struct SqliteInstance {
    sqlite: Arc<Sqlite>,
    granted: Arc<HashSet<String>>,
    /// When the instance's request runs out: its statements stop then.
    deadline: Instant,
    /// The guest's open connections; a handle's `rep` is its index here.
    connections: ResourceTable,
}

impl Sqlite {
    /// Checks every component's grants against the runtime config and
    /// prepares each database some component may use.
    pub fn new(ctx: &BuildContext<'_>) -> Result<Self> {
        let grants = ctx.manifest.components.values().map(|c| (c.id.as_str(), c.sqlite_databases.as_slice()));
        check_grants(&ctx.manifest.file, GRANTS, grants.clone(), &ctx.runtime_config.sqlite_databases)?;

        let mut databases = HashMap::new();
        for name in grants.clone().flat_map(|(_, names)| names) {
            if !databases.contains_key(name) {
                let database = Database::open(&ctx.runtime_config.sqlite_databases[name], ctx.sqlite_synchronous)
                    .with_context(|| format!("preparing SQLite database {name:?}"))?;
                databases.insert(name.clone(), Arc::new(database));
            }
        }
        let grants = grants.map(|(id, names)| (id.to_string(), Arc::new(names.iter().cloned().collect()))).collect();
        Ok(Self { databases, grants })
    }

    pub fn instance(self: &Arc<Self>, component_id: &str, deadline: Instant) -> SqliteInstance {
        let mut connections = ResourceTable::new();
        connections.set_max_capacity(MAX_CONNECTIONS);
        SqliteInstance {
            sqlite: self.clone(),
            granted: self.grants.get(component_id).cloned().unwrap_or_default(),
            deadline,
            connections,
        }
    }
}

impl SqliteInstance {
    /// Opens a new connection to database `name` for the guest.
    async fn open<T: 'static>(&mut self, name: String) -> wasmtime::Result<Result<Resource<T>, Error>> {
        if !self.granted.contains(&name) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(database) = self.sqlite.databases.get(&name).cloned() else {
            return Ok(Err(Error::NoSuchDatabase));
        };
        // An idle connection when one is waiting; opening a new one blocks.
        let lease = match database.lease_idle() {
            Some(lease) => lease,
            None => match tokio::task::spawn_blocking(move || database.lease()).await? {
                Ok(lease) => lease,
                Err(e) => return Ok(Err(Error::Io(e.to_string()))),
            },
        };
        let connection = GuestConnection::new(lease, self.deadline);
        match self.connections.push(connection) {
            Ok(handle) => Ok(Ok(Resource::new_own(handle.rep()))),
            Err(ResourceTableError::Full) => Ok(Err(Error::Io("too many connections opened".into()))),
            Err(e) => Err(e.into()),
        }
    }

    /// The connection behind a guest handle (a bad handle traps the guest).
    fn connection<T>(&self, handle: &Resource<T>) -> wasmtime::Result<GuestConnection> {
        Ok(self.connections.get(&Resource::<GuestConnection>::new_borrow(handle.rep()))?.clone())
    }

    /// Closes a connection: a transaction left open rolls back, and the
    /// connection goes back to its database for the next guest.
    fn close<T>(&mut self, handle: Resource<T>) -> wasmtime::Result<()> {
        self.connections.delete(Resource::<GuestConnection>::new_own(handle.rep()))?;
        Ok(())
    }
}

/// Adds both SQLite interfaces to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::state::InstanceState>) -> Result<()> {
    use crate::bindings::fermyon::spin2_0_0::sqlite as v2;
    use crate::bindings::spin::sqlite::sqlite as v3;
    use wasmtime::component::HasSelf;
    v2::add_to_linker::<_, HasSelf<SqliteInstance>>(linker, |s| &mut s.sqlite)?;
    v3::add_to_linker::<_, HasSelf<SqliteInstance>>(linker, |s| &mut s.sqlite)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use std::collections::BTreeMap;

    use super::*;
    use crate::runtime_config::SqliteDatabaseConfig;

    /// A deadline far enough away for any test statement.
    pub(super) fn in_a_minute() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    /// A new in-memory database.
    pub(super) fn memory_database() -> Arc<Database> {
        Arc::new(Database::open(&SqliteDatabaseConfig::Spin { path: None }, Synchronous::Normal).unwrap())
    }

    /// An app whose components are granted `grants`, with databases
    /// `defined` (in memory, or files under `dir`).
    pub(super) fn app(grants: &[(&str, &[&str])], defined: &[(&str, Option<PathBuf>)]) -> Arc<Sqlite> {
        let databases = defined
            .iter()
            .map(|(name, path)| {
                let config = SqliteDatabaseConfig::Spin { path: path.clone() };
                (name.to_string(), Arc::new(Database::open(&config, Synchronous::Normal).unwrap()))
            })
            .collect();
        let grants = grants
            .iter()
            .map(|(id, names)| (id.to_string(), Arc::new(names.iter().map(|n| n.to_string()).collect())))
            .collect();
        Arc::new(Sqlite { databases, grants })
    }

    #[test]
    fn undefined_databases_are_named_with_the_fix() {
        let defined = BTreeMap::from([("default".to_string(), SqliteDatabaseConfig::Spin { path: None })]);
        let orders = ["orders".to_string()];
        let default = ["default".to_string()];
        let grants = [("shop", &orders[..]), ("web", &default[..])].into_iter();
        let e = check_grants(&PathBuf::from("spin.toml"), GRANTS, grants, &defined).unwrap_err().to_string();
        assert_eq!(
            e,
            "spin.toml: [component.shop] sqlite_databases names \"orders\", which the runtime config does not define; \
             add [sqlite_database.orders] with type = \"spin\" to the runtime config file, or use \"default\""
        );
        check_grants(&PathBuf::from("spin.toml"), GRANTS, [("web", &default[..])].into_iter(), &defined).unwrap();
    }
}
