//! Postgres: `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0`
//! and `spin:postgres/postgres@4.0.0`.
//!
//! As in Spin, a component opens a connection by address (a
//! `postgres://user:pass@host:port/db` URL or a `host=... dbname=...`
//! string) and may reach only the servers its `allowed_outbound_hosts`
//! lists as `postgres://host[:port]` (port 5432 if none). Anything else
//! fails `open` with `connection-failed("address postgres://host:port is not
//! permitted ...")`, Spin's message, and a warning in the host log naming
//! the component.
//!
//! - `pool`: one bounded connection pool per address, shared by all
//!   instances of all components, with connect and acquire timeouts;
//! - `client`: a pooled connection, its socket moved along by the request
//!   waiting on it rather than by a task of its own;
//! - `connection`: a guest's connection running statements (4.0.0 types);
//! - `convert` / `numeric`: values to and from Postgres's wire format;
//! - `compat`: 3.0.0 and 2.0.0 to and from 4.0.0, as Spin converts them;
//! - `host`: the three guest interfaces, over [`PostgresInstance`];
//! - `tls`: TLS for `sslmode=require`.
//!
//! Driver: tokio-postgres, pooled by deadpool, as Spin (but not through
//! deadpool-postgres: see `client`), rather than sqlx:
//! sqlx 0.8 cannot be in the same build as rusqlite 0.37 (its optional
//! `libsqlite3-sys 0.30`, `links = "sqlite3"`, conflicts with rusqlite's
//! 0.35 when Cargo resolves, even with sqlx's `sqlite` feature off), and
//! tokio-postgres lets Postgres infer each parameter's type, as Spin does.
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{Resource, ResourceTable, ResourceTableError};

use super::allowed_hosts::{AllowedHosts, Destination};
use super::outbound_http::OutboundHttp;
use crate::bindings::spin::postgres4_0_0::postgres::Error;

mod client;
mod compat;
mod connection;
mod convert;
mod host;
mod numeric;
pub mod pool;
mod tls;

use connection::GuestConnection;
pub use pool::{ACQUIRE_TIMEOUT, CONNECT_TIMEOUT, MAX_CONNECTIONS_PER_ADDRESS};

/// Most connections one instance may have open at once.
const MAX_CONNECTIONS_PER_INSTANCE: usize = 64;

/// App-wide: the pools, and where each component may connect.
pub struct Postgres {
    outbound_http: Arc<OutboundHttp>,
    pools: Arc<pool::Pools>,
}

/// What one instance sees: its allow-list and its open connections.
pub struct PostgresInstance {
    component_id: Arc<str>,
    allowed: Arc<AllowedHosts>,
    pools: Arc<pool::Pools>,
    /// The guest's open connections; a handle's `rep` is its index here.
    connections: ResourceTable,
}

impl Postgres {
    /// The allow-lists are the ones outbound HTTP parsed from spin.toml.
    pub fn new(outbound_http: Arc<OutboundHttp>) -> Self {
        Self { outbound_http, pools: Default::default() }
    }

    pub fn instance(&self, component_id: &str) -> PostgresInstance {
        let mut connections = ResourceTable::new();
        connections.set_max_capacity(MAX_CONNECTIONS_PER_INSTANCE);
        PostgresInstance {
            component_id: component_id.into(),
            allowed: self.outbound_http.allowed_hosts(component_id),
            pools: self.pools.clone(),
            connections,
        }
    }

    /// Each pool's connections, for `/metrics`.
    pub fn pool_usage(&self) -> Vec<crate::metrics::PoolUsage> {
        self.pools.usage()
    }

    /// The servers (`postgres://host:port`) pools are open to, for `/readyz`.
    pub fn servers_in_use(&self) -> Vec<String> {
        self.pools.servers()
    }
}

impl PostgresInstance {
    /// Opens a connection to `address` for the guest, as a handle of
    /// resource type `T`.
    async fn open<T: 'static>(&mut self, address: &str) -> wasmtime::Result<Result<Resource<T>, Error>> {
        let config: tokio_postgres::Config = match address.parse() {
            Ok(config) => config,
            Err(e) => return Ok(Err(Error::ConnectionFailed(format!("invalid address: {}", pool::error_chain(&e))))),
        };
        let target = match check_allowed(&self.allowed, &config) {
            Ok(target) => target,
            Err(Denied { destination, message }) => {
                tracing::warn!(
                    component = &*self.component_id,
                    "Postgres connection to {destination} denied: it is not in the component's allowed_outbound_hosts"
                );
                return Ok(Err(Error::ConnectionFailed(message)));
            }
        };
        let client = match self.pools.get(address, &config, &target).await {
            Ok(client) => client,
            Err(message) => return Ok(Err(Error::ConnectionFailed(message))),
        };
        match self.connections.push(GuestConnection::new(client)) {
            Ok(handle) => Ok(Ok(Resource::new_own(handle.rep()))),
            Err(ResourceTableError::Full) => Ok(Err(Error::ConnectionFailed(format!(
                "too many connections: an instance may have {MAX_CONNECTIONS_PER_INSTANCE} open at once"
            )))),
            Err(e) => Err(e.into()),
        }
    }

    /// The connection behind a guest handle (a bad handle traps the guest).
    fn connection<T>(&mut self, handle: &Resource<T>) -> wasmtime::Result<&mut GuestConnection> {
        Ok(self.connections.get_mut(&Resource::<GuestConnection>::new_borrow(handle.rep()))?)
    }

    /// Closes a connection: it goes back to its pool.
    fn close<T>(&mut self, handle: Resource<T>) -> wasmtime::Result<()> {
        self.connections.delete(Resource::<GuestConnection>::new_own(handle.rep()))?;
        Ok(())
    }
}

/// An address the component may not reach.
#[derive(Debug, PartialEq)]
struct Denied {
    /// `postgres://host:port`, for the log.
    destination: String,
    /// The guest's error message.
    message: String,
}

/// Checks every host (and `hostaddr`) of a connection string against the
/// allow-list, as Spin does; on success, names the server for messages
/// (without credentials).
fn check_allowed(allowed: &AllowedHosts, config: &tokio_postgres::Config) -> Result<String, Denied> {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    // The port of the i-th host: its own, or the only one given (Spin's rule).
    let port = |i: usize| ports.get(i).or(if ports.len() == 1 { ports.first() } else { None }).copied();
    let mut hosts: Vec<(String, Option<u16>)> = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            Host::Tcp(name) => hosts.push((name.clone(), port(i))),
            #[cfg(unix)]
            Host::Unix(_) => {
                return Err(Denied {
                    destination: "a Unix socket".into(),
                    message: "Unix sockets are not supported on WebAssembly".into(),
                });
            }
        }
    }
    // A `hostaddr` is where tokio-postgres really connects: check it too.
    for (i, ip) in config.get_hostaddrs().iter().enumerate() {
        hosts.push((ip.to_string(), port(i)));
    }
    for (host, port) in &hosts {
        let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        if !allowed.allows(&Destination { scheme: "postgres", host, port: *port }) {
            // Spin's message: the port only if the address gave one.
            let url = match port {
                Some(p) => format!("postgres://{bracketed}:{p}"),
                None => format!("postgres://{bracketed}"),
            };
            return Err(Denied {
                destination: format!("postgres://{bracketed}:{}", port.unwrap_or(5432)),
                message: format!(
                    "address {url} is not permitted: add \"postgres://{bracketed}:{}\" to the component's allowed_outbound_hosts",
                    port.unwrap_or(5432)
                ),
            });
        }
    }
    Ok(match hosts.first() {
        Some((host, port)) => format!("postgres://{host}:{}", port.unwrap_or(5432)),
        None => "the Postgres server".into(),
    })
}

/// Adds the three Postgres interfaces to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::state::InstanceState>) -> Result<()> {
    use crate::bindings::fermyon::spin2_0_0::{postgres as v2, rdbms_types};
    use crate::bindings::spin::postgres3_0_0::postgres as v3;
    use crate::bindings::spin::postgres4_0_0::postgres as v4;
    use wasmtime::component::HasSelf;
    rdbms_types::add_to_linker::<_, HasSelf<PostgresInstance>>(linker, |s| &mut s.postgres)?;
    v2::add_to_linker::<_, HasSelf<PostgresInstance>>(linker, |s| &mut s.postgres)?;
    v3::add_to_linker::<_, HasSelf<PostgresInstance>>(linker, |s| &mut s.postgres)?;
    v4::add_to_linker::<_, HasSelf<PostgresInstance>>(linker, |s| &mut s.postgres)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries, |_| None).unwrap()
    }

    fn check(allowed: &AllowedHosts, address: &str) -> Result<String, Denied> {
        check_allowed(allowed, &address.parse().unwrap())
    }

    #[test]
    fn urls_and_key_value_strings_are_checked_with_the_default_port() {
        let a = allowed(&["postgres://db.test"]);
        assert_eq!(check(&a, "postgres://u:p@db.test/shop").unwrap(), "postgres://db.test:5432");
        assert_eq!(check(&a, "host=db.test dbname=shop user=u").unwrap(), "postgres://db.test:5432");
        assert!(check(&a, "postgres://db.test:5433/shop").is_err());
        assert!(check(&a, "postgres://other.test/shop").is_err());
    }

    #[test]
    fn the_denial_is_spins_message_plus_the_fix() {
        let a = allowed(&["postgres://127.0.0.1:5432"]);
        let denied = check(&a, "postgres://postgres@127.0.0.1:6543/db").unwrap_err();
        assert_eq!(
            denied.message,
            "address postgres://127.0.0.1:6543 is not permitted: \
             add \"postgres://127.0.0.1:6543\" to the component's allowed_outbound_hosts"
        );
        // tokio-postgres gives a URL without a port the default one.
        let denied = check(&allowed(&[]), "postgres://db.test/x").unwrap_err();
        assert!(denied.message.starts_with("address postgres://db.test:5432 is not permitted"), "{denied:?}");
        // A key-value string without a port has none.
        let denied = check(&allowed(&[]), "host=db.test").unwrap_err();
        assert!(denied.message.starts_with("address postgres://db.test is not permitted"), "{denied:?}");
        assert_eq!(denied.destination, "postgres://db.test:5432");
    }

    #[test]
    fn every_host_and_hostaddr_must_be_allowed() {
        let a = allowed(&["postgres://a.test", "postgres://b.test:6000"]);
        assert!(check(&a, "host=a.test,b.test port=5432,6000").is_ok());
        assert!(check(&a, "host=a.test,c.test port=5432,5432").is_err());
        // hostaddr is where the connection really goes.
        assert!(check(&a, "host=a.test hostaddr=10.0.0.1").is_err());
        assert!(check(&allowed(&["postgres://a.test", "postgres://10.0.0.1"]), "host=a.test hostaddr=10.0.0.1").is_ok());
    }

    #[test]
    fn unix_sockets_are_refused() {
        let denied = check(&allowed(&["insecure:allow-all"]), "host=/var/run/postgresql").unwrap_err();
        assert_eq!(denied.message, "Unix sockets are not supported on WebAssembly");
    }
}
