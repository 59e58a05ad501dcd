//! Connections to Redis servers, shared by every instance of an app.
//!
//! A component may `open` a connection on every request; dialing Redis each
//! time would dominate the request. Instead each distinct address gets one
//! [`redis::aio::ConnectionManager`] (a multiplexed connection that
//! reconnects by itself after an I/O error), created on first use and shared
//! by every instance that opens that address. The key-value store's Redis
//! backend uses the same [`LazyConnection`].
//!
//! Connecting is bounded: a refused connection fails at once (the next
//! command tries again), a server that does not answer after [`CONNECT_TIMEOUT`], and a
//! command whose reply does not come within [`RESPONSE_TIMEOUT`]. A down
//! server therefore costs a request a clear error, not a hang.
//!
//! [`Connections::usage`] counts them for `/metrics`: per address, whether
//! the shared connection is up and how many guests' own are open.
//!
//! A manager's background task lives on the tokio runtime it was created on,
//! so managers are owned by the app (never a process-wide cache) and are
//! created from within async calls.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::OnceCell;

use crate::metrics::RedisUsage;

/// How long one attempt to reach a server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command may wait for its reply.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts after the first before connecting gives up. redis-rs waits at
/// least a second before a retry, which a request should not pay: instead
/// every later command tries again, so a server that comes back is found.
const CONNECT_RETRIES: usize = 0;

/// One Redis server, connected on first use.
pub struct LazyConnection {
    client: Client,
    /// The address without its password, for messages.
    shown: String,
    manager: OnceCell<ConnectionManager>,
    /// Guests' own connections open now (see [`Dedicated`]).
    dedicated: Arc<AtomicUsize>,
}

impl LazyConnection {
    /// Checks that `address` is a Redis URL (`redis://`, `rediss://`,
    /// `redis+unix://`) without connecting.
    pub fn new(address: &str) -> Result<Self, RedisError> {
        Ok(Self {
            client: Client::open(address)?,
            shown: redacted(address),
            manager: OnceCell::new(),
            dedicated: Arc::default(),
        })
    }

    /// The address as it may be shown in logs and errors (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The shared connection, connecting if this is the first use (or every
    /// earlier attempt failed). The error names the server.
    pub async fn get(&self) -> Result<ConnectionManager, String> {
        let manager = self
            .manager
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    .set_number_of_retries(CONNECT_RETRIES);
                self.client.get_connection_manager_with_config(config)
            })
            .await
            .map_err(|e| format!("cannot connect to Redis at {}: {e}", self.shown))?;
        Ok(manager.clone())
    }
}

impl LazyConnection {
    /// A connection of its own, not shared, with the same timeouts: for a
    /// guest that changes connection state (`SELECT`, `MULTI`, `SUBSCRIBE`,
    /// ...), which must not leak to the other users of the shared one.
    pub async fn dedicated(&self) -> Result<Dedicated, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("cannot connect to Redis at {}: {e}", self.shown))?;
        self.dedicated.fetch_add(1, Ordering::Relaxed);
        Ok(Dedicated { connection, open: self.dedicated.clone() })
    }

    /// Whether the shared connection has connected (the manager then
    /// reconnects by itself).
    fn shared_connected(&self) -> bool {
        self.manager.initialized()
    }
}

/// A guest's own connection, counted as open until dropped.
pub struct Dedicated {
    pub connection: MultiplexedConnection,
    open: Arc<AtomicUsize>,
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one guest connection runs its commands on.
#[derive(Clone)]
pub enum GuestConnection {
    /// The address's shared connection (the usual case).
    Shared(ConnectionManager),
    /// The guest's own, once it changed connection state.
    Dedicated(MultiplexedConnection),
}

impl ConnectionLike for GuestConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Shared(c) => c.req_packed_command(cmd),
            Self::Dedicated(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Shared(c) => c.req_packed_commands(cmd, offset, count),
            Self::Dedicated(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Shared(c) => c.get_db(),
            Self::Dedicated(c) => c.get_db(),
        }
    }
}

/// The app's connections, by address exactly as components spell it.
#[derive(Default)]
pub struct Connections {
    by_address: Mutex<HashMap<String, Arc<LazyConnection>>>,
}

impl Connections {
    /// The connection for `address` (not yet connected if it is new).
    pub fn get(&self, address: &str) -> Result<Arc<LazyConnection>, RedisError> {
        let mut by_address = self.by_address.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(connection) = by_address.get(address) {
            return Ok(connection.clone());
        }
        let connection = Arc::new(LazyConnection::new(address)?);
        by_address.insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    /// Connections per server (`redis://host:port/db`, no credentials),
    /// sorted; addresses spelled differently for one server are added up.
    pub fn usage(&self) -> Vec<RedisUsage> {
        let by_address = self.by_address.lock().unwrap_or_else(PoisonError::into_inner);
        let mut servers: std::collections::BTreeMap<String, RedisUsage> = Default::default();
        for (address, connection) in by_address.iter() {
            let shown = server_of(address);
            let usage = servers.entry(shown.clone()).or_insert_with(|| RedisUsage { address: shown, ..Default::default() });
            usage.shared += usize::from(connection.shared_connected());
            usage.dedicated += connection.dedicated.load(Ordering::Relaxed);
        }
        servers.into_values().collect()
    }
}

/// `scheme://host:port[/db]` of a Redis address: no user, no password, the
/// default port filled in.
pub fn server_of(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(url) => {
            let port = url.port().unwrap_or(6379);
            let db = url.path().trim_matches('/');
            let db = if db.is_empty() { String::new() } else { format!("/{db}") };
            format!("{}://{}:{port}{db}", url.scheme(), url.host_str().unwrap_or_default())
        }
        Err(_) => redacted(address),
    }
}

#[cfg(test)]
impl Connections {
    pub fn count(&self) -> usize {
        self.by_address.lock().unwrap().len()
    }
}

/// `address` with any password replaced by `***`.
pub fn redacted(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn servers_are_shown_without_credentials() {
        assert_eq!(server_of("redis://user:hunter2@cache/1"), "redis://cache:6379/1");
        assert_eq!(server_of("rediss://cache:6380"), "rediss://cache:6380");
    }

    #[tokio::test]
    async fn usage_counts_shared_and_dedicated_connections() {
        let connections = Connections::default();
        let url = crate::capabilities::redis::test_support::url();
        let server = connections.get(&url).unwrap();
        let usage = || connections.usage().into_iter().next().unwrap();
        assert_eq!((usage().shared, usage().dedicated), (0, 0), "not connected before first use");
        server.get().await.unwrap_or_else(|e| panic!("this test needs Redis at {url}: {e}"));
        let own = server.dedicated().await.unwrap();
        assert_eq!((usage().shared, usage().dedicated), (1, 1));
        drop(own);
        assert_eq!(usage().dedicated, 0);
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redacted("redis://user:hunter2@cache:6380/1"), "redis://user:***@cache:6380/1");
        assert_eq!(redacted("redis://cache:6380"), "redis://cache:6380");
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn addresses_are_checked_without_connecting() {
        assert!(LazyConnection::new("redis://127.0.0.1:1").is_ok());
        assert!(LazyConnection::new("http://127.0.0.1:6379").is_err());
        assert!(LazyConnection::new("nonsense").is_err());
    }

    #[tokio::test]
    async fn a_down_server_fails_fast_with_its_address() {
        // Nothing listens on port 1.
        let connection = LazyConnection::new("redis://:pw@127.0.0.1:1").unwrap();
        let started = Instant::now();
        let e = connection.get().await.err().unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(e.contains("redis://:***@127.0.0.1:1") && !e.contains("pw"), "{e}");
    }

    /// A private `redis-server` on a free port, killed when dropped.
    struct PrivateServer(std::process::Child);

    impl PrivateServer {
        fn start(port: u16) -> Self {
            let child = std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("this test starts its own redis-server, which must be on PATH (apt-get install redis-server)");
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start on port {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Self(child)
        }
    }

    impl Drop for PrivateServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn the_shared_connection_survives_a_server_restart() {
        use redis::AsyncCommands;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = PrivateServer::start(port);
        let connection = LazyConnection::new(&format!("redis://127.0.0.1:{port}")).unwrap();
        let () = connection.get().await.unwrap().set("k", "before").await.unwrap();

        drop(server);
        let started = Instant::now();
        let result: Result<Option<String>, _> = connection.get().await.unwrap().get("k").await;
        assert!(result.is_err(), "the server is down");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

        let _server = PrivateServer::start(port);
        let started = Instant::now();
        loop {
            // The manager reconnects in the background after a failure.
            let result: Result<(), _> = connection.get().await.unwrap().set("k", "after").await;
            if result.is_ok() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no reconnect: {result:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let value: String = connection.get().await.unwrap().get("k").await.unwrap();
        assert_eq!(value, "after");
    }

    #[tokio::test]
    async fn one_connection_per_address() {
        let connections = Connections::default();
        let a = connections.get("redis://127.0.0.1:6379").unwrap();
        let b = connections.get("redis://127.0.0.1:6379").unwrap();
        let c = connections.get("redis://127.0.0.1:6379/1").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
