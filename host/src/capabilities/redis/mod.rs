//! Outbound Redis: `fermyon:spin/redis@2.0.0`.
//!
//! A component opens a connection to a Redis address and runs commands on
//! it: publish, get, set, incr, del, sadd, srem, smembers, and any command
//! through `execute`. As in Spin (crates/factor-outbound-redis):
//! - the address must match the component's `allowed_outbound_hosts`
//!   (`redis://host:port`, port 6379 if omitted); otherwise `open` fails with
//!   `invalid-address`, exactly what Spin returns, and the host log names the
//!   component and the address;
//! - errors from Redis reach the guest as `other(message)` with Redis's own
//!   text, except `WRONGTYPE` replies and non-integer `incr`s, which are the
//!   interface's `type-error`.
//!
//! Unlike Spin, `open` does not dial: connections are shared per address by
//! every instance (see [`connection`]) and made on first use, so the first
//! command, not `open`, reports an unreachable server. That is what lets
//! `publish` to the message bus work without any Redis server: before a real
//! `PUBLISH`, a [`PublishInterceptor`] (the durable message bus, installed
//! by `crate::bus` when the app has Redis triggers) may take the message
//! over. The allow-list is checked at `open`, so publishing to the bus's
//! address needs it granted, as under Spin.
//!
//! - [`connection`]: per-address shared connections with timeouts;
//! - `host`: the guest interface over [`RedisInstance`].
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use futures::future::BoxFuture;
use wasmtime::component::{Resource, ResourceTable, ResourceTableError};

use super::allowed_hosts::{AllowedHosts, Destination};
use super::outbound_http::OutboundHttp;
use crate::bindings::fermyon::spin2_0_0::redis::{Connection, Error};
use crate::manifest::Manifest;

pub mod connection;
mod host;

use connection::{Connections, Dedicated, LazyConnection, redacted};

/// Something that takes over `publish` for some addresses (the durable bus).
pub trait PublishInterceptor: Send + Sync {
    /// Some(result) if this publish was handled (address is the bus), None to fall through to real Redis PUBLISH.
    fn publish(&self, address: &str, channel: &str, payload: Vec<u8>) -> BoxFuture<'_, Option<anyhow::Result<()>>>;
}

/// App-wide: who may reach which addresses, the shared connections, and the
/// publish interceptor once the bus installs one.
pub struct Redis {
    /// Component id → its parsed `allowed_outbound_hosts`.
    allowed: HashMap<String, Arc<AllowedHosts>>,
    connections: Connections,
    interceptor: OnceLock<Arc<dyn PublishInterceptor>>,
}

/// What one instance sees: its grants and the connections it has open.
pub struct RedisInstance {
    redis: Arc<Redis>,
    component_id: Arc<str>,
    allowed: Arc<AllowedHosts>,
    /// What the guest's `connection` handles stand for.
    table: ResourceTable,
}

/// One guest `connection`: the address as the guest gave it, the shared
/// connection to it, and the guest's own once it changed connection state.
struct OpenConnection {
    address: String,
    server: Arc<LazyConnection>,
    dedicated: Option<Dedicated>,
}

impl Redis {
    /// Takes every component's allow-list from outbound HTTP, which parsed
    /// (and expanded the templates of) them when the app loaded.
    pub fn new(manifest: &Manifest, outbound_http: &OutboundHttp) -> Self {
        let allowed = manifest.components.keys().map(|id| (id.clone(), outbound_http.allowed_hosts(id))).collect();
        Self::with_allowed(allowed)
    }

    fn with_allowed(allowed: HashMap<String, Arc<AllowedHosts>>) -> Self {
        Self { allowed, connections: Connections::default(), interceptor: OnceLock::new() }
    }

    /// Installs the interceptor `publish` asks first. Only the first call
    /// has an effect.
    pub fn set_publish_interceptor(&self, interceptor: Arc<dyn PublishInterceptor>) {
        if self.interceptor.set(interceptor).is_err() {
            tracing::warn!("a Redis publish interceptor is already installed; ignoring another");
        }
    }

    /// Connections per server, for `/metrics`.
    pub fn connection_usage(&self) -> Vec<crate::metrics::RedisUsage> {
        self.connections.usage()
    }

    pub fn instance(self: &Arc<Self>, component_id: &str) -> RedisInstance {
        RedisInstance {
            redis: self.clone(),
            component_id: component_id.into(),
            allowed: self.allowed.get(component_id).cloned().unwrap_or_default(),
            table: ResourceTable::new(),
        }
    }
}

impl RedisInstance {
    /// Checks `address` against the grants and the URL syntax, and opens a
    /// guest handle for it (without connecting).
    fn open_connection(&mut self, address: String) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if !self.is_allowed(&address) {
            tracing::warn!(
                component = %self.component_id,
                "outbound Redis connection denied: {} is not in allowed_outbound_hosts; \
                 add \"redis://host:port\" for it to [component.{}] allowed_outbound_hosts",
                redacted(&address),
                self.component_id,
            );
            return Ok(Err(Error::InvalidAddress));
        }
        let server = match self.redis.connections.get(&address) {
            Ok(server) => server,
            Err(e) => {
                tracing::debug!(component = %self.component_id, "invalid Redis address {}: {e}", redacted(&address));
                return Ok(Err(Error::InvalidAddress));
            }
        };
        match self.table.push(OpenConnection { address, server, dedicated: None }) {
            Ok(handle) => Ok(Ok(Resource::new_own(handle.rep()))),
            Err(ResourceTableError::Full) => Ok(Err(Error::TooManyConnections)),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the component may reach `address`, as Spin decides: the URL's
    /// scheme, host and port against `allowed_outbound_hosts`.
    fn is_allowed(&self, address: &str) -> bool {
        let Ok(url) = url::Url::parse(address) else { return false };
        let Some(host) = url.host_str() else { return false };
        self.allowed.allows(&Destination { scheme: url.scheme(), host, port: url.port() })
    }

    /// The guest connection behind a handle (a bad handle traps the guest).
    fn connection(&mut self, handle: &Resource<Connection>) -> wasmtime::Result<&mut OpenConnection> {
        Ok(self.table.get_mut(&Resource::<OpenConnection>::new_borrow(handle.rep()))?)
    }

    fn close_connection(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(Resource::<OpenConnection>::new_own(handle.rep()))?;
        Ok(())
    }

    /// The interceptor, if one is installed.
    fn interceptor(&self) -> Option<Arc<dyn PublishInterceptor>> {
        self.redis.interceptor.get().cloned()
    }
}

/// Adds the Redis interface to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::state::InstanceState>) -> Result<()> {
    use crate::bindings::fermyon::spin2_0_0::redis as spin_redis;
    use wasmtime::component::HasSelf;
    spin_redis::add_to_linker::<_, HasSelf<RedisInstance>>(linker, |s| &mut s.redis)?;
    Ok(())
}

/// Helpers for tests that need the real Redis at 127.0.0.1:6379
/// (`BAZAAR_TEST_REDIS_URL` overrides it).
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use redis::AsyncCommands;
    use redis::aio::MultiplexedConnection;

    /// The Redis server the tests use.
    pub fn url() -> String {
        std::env::var("BAZAAR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A direct connection to the test server; fails the test, saying how to
    /// start Redis, if it is not running.
    pub async fn direct() -> MultiplexedConnection {
        let url = url();
        let connect = async {
            let mut c = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            let () = redis::cmd("PING").query_async(&mut c).await?;
            Ok::<_, redis::RedisError>(c)
        };
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("{}", unreachable_message(&url, &e.to_string())),
            Err(_) => panic!("{}", unreachable_message(&url, "no answer within 5s")),
        }
    }

    fn unreachable_message(url: &str, why: &str) -> String {
        format!(
            "these tests need a Redis server at {url} ({why}); start one with \
             `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no` \
             (or point BAZAAR_TEST_REDIS_URL at one)"
        )
    }

    /// A key prefix no other test (or test run) uses.
    pub fn prefix() -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        format!("bazaar-test-{}-{nanos:x}-{}:", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
    }

    /// Deletes every key starting with `prefix`.
    pub async fn cleanup(c: &mut MultiplexedConnection, prefix: &str) {
        let keys: Vec<String> = c.keys(format!("{prefix}*")).await.unwrap();
        if !keys.is_empty() {
            let _: () = c.del(keys).await.unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_as_spin_checks_them() {
        let allowed = AllowedHosts::parse(&["redis://cache:6380".into(), "redis://store".into()], |_| None).unwrap();
        let redis = Arc::new(Redis::with_allowed(HashMap::from([("web".to_string(), Arc::new(allowed))])));
        let web = redis.instance("web");
        assert!(web.is_allowed("redis://cache:6380"));
        assert!(web.is_allowed("redis://user:pw@cache:6380/2"));
        assert!(!web.is_allowed("redis://cache"), "the default port is 6379, not 6380");
        assert!(web.is_allowed("redis://store"));
        assert!(web.is_allowed("redis://store:6379"));
        assert!(!web.is_allowed("redis://store:6380"));
        assert!(!web.is_allowed("rediss://store"), "another scheme");
        assert!(!web.is_allowed("redis://elsewhere:6379"));
        assert!(!web.is_allowed("not a url"));
        assert!(!redis.instance("stranger").is_allowed("redis://cache:6380"));
    }
}
