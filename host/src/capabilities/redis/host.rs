//! `fermyon:spin/redis@2.0.0` over [`RedisInstance`]: each function is the
//! Redis command of the same name, as Spin runs it
//! (crates/factor-outbound-redis/src/host.rs), with `execute`'s reply
//! flattened into `redis-result`s the way Spin flattens it.
//!
//! Commands run on the address's shared connection. A command that changes
//! connection state (`SELECT`, `MULTI`/`EXEC`, `WATCH`, `SUBSCRIBE`, ...)
//! through `execute` first moves that guest connection onto a connection of
//! its own, so it behaves as under Spin (where every `open` dials) without
//! affecting anyone else.
use std::future::Future;

use redis::{AsyncCommands, ErrorKind, RedisError, Value};
use wasmtime::component::Resource;

use super::RedisInstance;
use super::connection::GuestConnection;
use crate::bindings::fermyon::spin2_0_0::redis::{
    Connection, Error, Host, HostConnection, Payload, RedisParameter, RedisResult,
};

/// The most a reply may hold, counted as Spin counts it (spinframework/spin,
/// crates/world/src/lib.rs, `MAX_HOST_BUFFERED_BYTES`).
const MAX_RESULT_BYTES: usize = 128 << 20;

/// Commands whose effect outlives the command on the connection it ran on.
const CONNECTION_STATE: &[&str] = &[
    "SELECT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
    "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "CLIENT", "HELLO", "AUTH", "RESET", "READONLY",
    "READWRITE", "ASKING", "QUIT",
];

/// A Redis failure, as the guest sees it: Redis's own message, or
/// `type-error` for a value of the wrong type.
fn redis_error(e: RedisError) -> Error {
    if e.kind() == ErrorKind::TypeError || e.code() == Some("WRONGTYPE") {
        tracing::debug!("Redis type error: {e}");
        Error::TypeError
    } else {
        Error::Other(e.to_string())
    }
}

fn too_big(size: usize) -> Result<(), Error> {
    if size > MAX_RESULT_BYTES {
        return Err(Error::Other(format!("query result exceeds limit of {MAX_RESULT_BYTES} bytes")));
    }
    Ok(())
}

impl RedisInstance {
    /// Runs `f` on the connection behind `handle`, connecting if need be;
    /// `own` asks for the guest's own connection rather than the shared one.
    async fn run<T, F, Fut>(&mut self, handle: &Resource<Connection>, own: bool, f: F) -> wasmtime::Result<Result<T, Error>>
    where
        F: FnOnce(GuestConnection) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let open = self.connection(handle)?;
        let connection = match (&open.dedicated, own) {
            (Some(c), _) => GuestConnection::Dedicated(c.connection.clone()),
            (None, true) => match open.server.dedicated().await {
                Ok(c) => {
                    let connection = c.connection.clone();
                    open.dedicated = Some(c);
                    GuestConnection::Dedicated(connection)
                }
                Err(e) => return Ok(Err(Error::Other(e))),
            },
            (None, false) => match open.server.get().await {
                Ok(c) => GuestConnection::Shared(c),
                Err(e) => return Ok(Err(Error::Other(e))),
            },
        };
        Ok(f(connection).await)
    }
}

impl Host for RedisInstance {}

impl HostConnection for RedisInstance {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        self.open_connection(address)
    }

    /// The interceptor (the message bus) first: it may own this address.
    async fn publish(
        &mut self,
        connection: Resource<Connection>,
        channel: String,
        payload: Payload,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Some(interceptor) = self.interceptor() {
            let address = self.connection(&connection)?.address.clone();
            if let Some(result) = interceptor.publish(&address, &channel, payload.clone()).await {
                return Ok(result.map_err(|e| Error::Other(format!("{e:#}"))));
            }
        }
        self.run(&connection, false, |mut c| async move {
            let () = c.publish(channel, payload).await.map_err(redis_error)?;
            Ok(())
        })
        .await
    }

    async fn get(&mut self, connection: Resource<Connection>, key: String) -> wasmtime::Result<Result<Option<Payload>, Error>> {
        self.run(&connection, false, |mut c| async move {
            let value: Option<Vec<u8>> = c.get(key).await.map_err(redis_error)?;
            too_big(value.as_ref().map_or(0, Vec::len))?;
            Ok(value)
        })
        .await
    }

    async fn set(&mut self, connection: Resource<Connection>, key: String, value: Payload) -> wasmtime::Result<Result<(), Error>> {
        self.run(&connection, false, |mut c| async move {
            let () = c.set(key, value).await.map_err(redis_error)?;
            Ok(())
        })
        .await
    }

    async fn incr(&mut self, connection: Resource<Connection>, key: String) -> wasmtime::Result<Result<i64, Error>> {
        self.run(&connection, false, |mut c| async move {
            c.incr(key, 1).await.map_err(|e: RedisError| {
                // "value is not an integer or out of range": the WIT's type-error.
                if e.kind() == ErrorKind::ResponseError && e.detail().is_some_and(|d| d.contains("not an integer")) {
                    Error::TypeError
                } else {
                    redis_error(e)
                }
            })
        })
        .await
    }

    async fn del(&mut self, connection: Resource<Connection>, keys: Vec<String>) -> wasmtime::Result<Result<u32, Error>> {
        self.run(&connection, false, |mut c| async move { c.del(keys).await.map_err(redis_error) }).await
    }

    async fn sadd(
        &mut self,
        connection: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run(&connection, false, |mut c| async move { c.sadd(key, values).await.map_err(redis_error) }).await
    }

    async fn smembers(&mut self, connection: Resource<Connection>, key: String) -> wasmtime::Result<Result<Vec<String>, Error>> {
        self.run(&connection, false, |mut c| async move { c.smembers(key).await.map_err(redis_error) }).await
    }

    async fn srem(
        &mut self,
        connection: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        self.run(&connection, false, |mut c| async move { c.srem(key, values).await.map_err(redis_error) }).await
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let own = CONNECTION_STATE.iter().any(|c| c.eq_ignore_ascii_case(command.trim()));
        self.run(&connection, own, |mut c| async move {
            let mut cmd = redis::cmd(&command);
            for argument in arguments {
                match argument {
                    RedisParameter::Int64(i) => cmd.arg(i),
                    RedisParameter::Binary(b) => cmd.arg(b),
                };
            }
            let value: Value = cmd.query_async(&mut c).await.map_err(redis_error)?;
            let mut results = Vec::new();
            flatten(value, &mut results)?;
            too_big(results.iter().map(size).sum())?;
            Ok(results)
        })
        .await
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.close_connection(connection)
    }
}

/// Appends a reply to `out` as `redis-result`s, as Spin does: arrays and
/// sets are flattened; doubles and big numbers become their decimal text,
/// booleans 0 or 1. Spin refuses maps; we flatten them into key, value,
/// key, value (which is what RESP2 sends for the same commands).
fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(i) => out.push(RedisResult::Int64(i)),
        Value::BulkString(bytes) => out.push(RedisResult::Binary(bytes)),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".into())),
        Value::Array(values) | Value::Set(values) => {
            for value in values {
                flatten(value, out)?;
            }
        }
        Value::Map(pairs) => {
            for (key, value) in pairs {
                flatten(key, out)?;
                flatten(value, out)?;
            }
        }
        Value::Attribute { data, .. } => flatten(*data, out)?,
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        Value::BigNumber(n) => out.push(RedisResult::Binary(n.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => out.push(RedisResult::Binary(text.into_bytes())),
        Value::Push { .. } => return Err(Error::Other("Redis pub/sub messages are not supported by execute".into())),
        Value::ServerError(e) => return Err(redis_error(RedisError::from(e))),
    }
    Ok(())
}

/// What a result costs in host memory, as Spin counts it.
fn size(result: &RedisResult) -> usize {
    std::mem::size_of::<RedisResult>()
        + match result {
            RedisResult::Nil | RedisResult::Int64(_) => 0,
            RedisResult::Binary(b) => b.len(),
            RedisResult::Status(s) => s.len(),
        }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use futures::future::BoxFuture;
    use redis::aio::MultiplexedConnection;

    use super::*;
    use crate::capabilities::allowed_hosts::AllowedHosts;
    use crate::capabilities::redis::test_support::{cleanup, direct, prefix, url};
    use crate::capabilities::redis::{PublishInterceptor, Redis};

    /// The address of the bus in these tests: no server listens there.
    const BUS: &str = "redis://bus.bazaar.test:6379";
    /// Granted, but nothing listens on port 1.
    const DOWN: &str = "redis://127.0.0.1:1";

    /// An app whose component `web` may reach the test server, the bus and
    /// [`DOWN`]; `bare` may reach nothing.
    fn app() -> Arc<Redis> {
        let web = AllowedHosts::parse(&[test_entry(), BUS.into(), DOWN.into()], |_| None).unwrap();
        Arc::new(Redis::with_allowed(HashMap::from([("web".to_string(), Arc::new(web))])))
    }

    /// The test server as an `allowed_outbound_hosts` entry.
    fn test_entry() -> String {
        let url = url::Url::parse(&url()).unwrap();
        format!("redis://{}:{}", url.host_str().unwrap(), url.port().unwrap_or(6379))
    }

    /// A fresh `web` instance with a connection open to the test server.
    async fn open(redis: &Arc<Redis>) -> (RedisInstance, Resource<Connection>) {
        let mut web = redis.instance("web");
        let handle = web.open(url()).await.unwrap().expect("open is granted");
        (web, handle)
    }

    fn h(handle: &Resource<Connection>) -> Resource<Connection> {
        Resource::new_borrow(handle.rep())
    }

    async fn setup() -> (RedisInstance, Resource<Connection>, MultiplexedConnection, String) {
        let raw = direct().await;
        let (web, handle) = open(&app()).await;
        (web, handle, raw, prefix())
    }

    #[tokio::test]
    async fn open_follows_allowed_outbound_hosts() {
        let redis = app();
        let mut web = redis.instance("web");
        for denied in ["redis://127.0.0.1:6380", "redis://elsewhere.test", "rediss://127.0.0.1:6379"] {
            assert!(matches!(web.open(denied.into()).await.unwrap(), Err(Error::InvalidAddress)), "{denied}");
        }
        // Not a Redis URL at all: Spin's invalid-address too.
        assert!(matches!(web.open("127.0.0.1:6379".into()).await.unwrap(), Err(Error::InvalidAddress)));
        assert!(web.open(url()).await.unwrap().is_ok());
        // A component with no grant, or not in the manifest, reaches nothing.
        let mut bare = redis.instance("bare");
        assert!(matches!(bare.open(url()).await.unwrap(), Err(Error::InvalidAddress)));
    }

    #[tokio::test]
    async fn get_set_incr_del() {
        let (mut web, c, mut raw, p) = setup().await;
        let k = |name: &str| format!("{p}{name}");
        assert_eq!(web.get(h(&c), k("a")).await.unwrap().unwrap(), None);
        web.set(h(&c), k("a"), b"\0binary\xff".to_vec()).await.unwrap().unwrap();
        assert_eq!(web.get(h(&c), k("a")).await.unwrap().unwrap().as_deref(), Some(&b"\0binary\xff"[..]));
        let stored: Vec<u8> = raw.get(k("a")).await.unwrap();
        assert_eq!(stored, b"\0binary\xff");

        assert_eq!(web.incr(h(&c), k("n")).await.unwrap().unwrap(), 1);
        assert_eq!(web.incr(h(&c), k("n")).await.unwrap().unwrap(), 2);
        // The WIT's type-error for a value that is not an integer.
        assert!(matches!(web.incr(h(&c), k("a")).await.unwrap(), Err(Error::TypeError)));

        assert_eq!(web.del(h(&c), vec![k("a"), k("n"), k("missing")]).await.unwrap().unwrap(), 2);
        let exists: bool = raw.exists(k("a")).await.unwrap();
        assert!(!exists);
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn sets() {
        let (mut web, c, mut raw, p) = setup().await;
        let s = format!("{p}set");
        let v = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(web.sadd(h(&c), s.clone(), v(&["a", "b", "c"])).await.unwrap().unwrap(), 3);
        assert_eq!(web.sadd(h(&c), s.clone(), v(&["c", "d"])).await.unwrap().unwrap(), 1);
        assert_eq!(web.srem(h(&c), s.clone(), v(&["a", "zzz"])).await.unwrap().unwrap(), 1);
        let mut members = web.smembers(h(&c), s.clone()).await.unwrap().unwrap();
        members.sort();
        assert_eq!(members, ["b", "c", "d"]);
        let mut direct_members: Vec<String> = raw.smembers(&s).await.unwrap();
        direct_members.sort();
        assert_eq!(direct_members, members);

        // WRONGTYPE is the WIT's type-error.
        let string = format!("{p}string");
        let () = raw.set(&string, "x").await.unwrap();
        assert!(matches!(web.smembers(h(&c), string.clone()).await.unwrap(), Err(Error::TypeError)));
        assert!(matches!(web.sadd(h(&c), string, v(&["a"])).await.unwrap(), Err(Error::TypeError)));
        assert!(matches!(web.get(h(&c), s).await.unwrap(), Err(Error::TypeError)));
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn execute_maps_parameters_and_results() {
        let (mut web, c, mut raw, p) = setup().await;
        let k = format!("{p}x");
        let bin = |s: &str| RedisParameter::Binary(s.as_bytes().to_vec());
        let r = web.execute(h(&c), "SET".into(), vec![bin(&k), bin("10")]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Status(s)] if s == "OK"), "{r:?}");
        let r = web.execute(h(&c), "incrby".into(), vec![bin(&k), RedisParameter::Int64(5)]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Int64(15)]), "{r:?}");
        let r = web.execute(h(&c), "GET".into(), vec![bin(&k)]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Binary(b)] if b == b"15"), "{r:?}");
        let r = web.execute(h(&c), "GET".into(), vec![bin(&format!("{p}missing"))]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Nil]), "{r:?}");
        // Arrays are flattened; nils inside them are kept.
        let list = format!("{p}list");
        web.execute(h(&c), "RPUSH".into(), vec![bin(&list), bin("a"), bin("b")]).await.unwrap().unwrap();
        let r = web.execute(h(&c), "LRANGE".into(), vec![bin(&list), RedisParameter::Int64(0), RedisParameter::Int64(-1)]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Binary(a), RedisResult::Binary(b)] if a == b"a" && b == b"b"), "{r:?}");
        let r = web.execute(h(&c), "MGET".into(), vec![bin(&k), bin(&format!("{p}missing"))]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Binary(_), RedisResult::Nil]), "{r:?}");
        // Redis's own message reaches the guest.
        let e = web.execute(h(&c), "NOSUCHCOMMAND".into(), vec![]).await.unwrap().unwrap_err();
        assert!(matches!(&e, Error::Other(m) if m.contains("unknown command")), "{e:?}");
        let e = web.execute(h(&c), "INCR".into(), vec![bin(&list)]).await.unwrap().unwrap_err();
        assert!(matches!(e, Error::TypeError), "{e:?}");
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn connection_state_stays_with_the_guest_connection() {
        let redis = app();
        let mut raw = direct().await;
        let p = prefix();
        let k = format!("{p}in-db-1");
        let bin = |s: &str| RedisParameter::Binary(s.as_bytes().to_vec());
        let (mut a, ca) = open(&redis).await;
        let (mut b, cb) = open(&redis).await;
        // Share the connection first, then SELECT on it.
        a.set(h(&ca), format!("{p}warm"), b"1".to_vec()).await.unwrap().unwrap();
        a.execute(h(&ca), "SELECT".into(), vec![RedisParameter::Int64(1)]).await.unwrap().unwrap();
        a.set(h(&ca), k.clone(), b"1".to_vec()).await.unwrap().unwrap();
        assert!(a.get(h(&ca), k.clone()).await.unwrap().unwrap().is_some());
        // The other instance, on the shared connection, is still on database 0.
        assert_eq!(b.get(h(&cb), k.clone()).await.unwrap().unwrap(), None);
        // MULTI ... EXEC across calls works on the guest's own connection.
        a.execute(h(&ca), "MULTI".into(), vec![]).await.unwrap().unwrap();
        a.execute(h(&ca), "INCR".into(), vec![bin(&format!("{p}tx"))]).await.unwrap().unwrap();
        let r = a.execute(h(&ca), "EXEC".into(), vec![]).await.unwrap().unwrap();
        assert!(matches!(&r[..], [RedisResult::Int64(1)]), "{r:?}");
        a.execute(h(&ca), "DEL".into(), vec![bin(&k), bin(&format!("{p}tx"))]).await.unwrap().unwrap();
        cleanup(&mut raw, &p).await;
    }

    #[tokio::test]
    async fn publish_reaches_subscribers() {
        let (mut web, c, _raw, p) = setup().await;
        let channel = format!("{p}channel");
        let mut pubsub = redis::Client::open(url()).unwrap().get_async_pubsub().await.unwrap();
        pubsub.subscribe(&channel).await.unwrap();
        web.publish(h(&c), channel.clone(), b"hello".to_vec()).await.unwrap().unwrap();
        let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next()).await.unwrap().unwrap();
        assert_eq!(message.get_channel_name(), channel);
        assert_eq!(message.get_payload_bytes(), b"hello");
    }

    /// Takes over publishes to [`BUS`], recording them.
    #[derive(Default)]
    struct Bus {
        published: Mutex<Vec<(String, String, Vec<u8>)>>,
    }

    impl PublishInterceptor for Bus {
        fn publish(&self, address: &str, channel: &str, payload: Vec<u8>) -> BoxFuture<'_, Option<anyhow::Result<()>>> {
            let handled = address == BUS;
            if handled {
                self.published.lock().unwrap().push((address.into(), channel.into(), payload));
            }
            let full = channel == "full";
            Box::pin(async move {
                match (handled, full) {
                    (false, _) => None,
                    (true, true) => Some(Err(anyhow::anyhow!("the bus is full"))),
                    (true, false) => Some(Ok(())),
                }
            })
        }
    }

    #[tokio::test]
    async fn the_interceptor_takes_publishes_it_handles() {
        let redis = app();
        let bus = Arc::new(Bus::default());
        redis.set_publish_interceptor(bus.clone());
        let mut web = redis.instance("web");

        // The bus address needs no Redis server behind it.
        let c = web.open(BUS.into()).await.unwrap().unwrap();
        web.publish(h(&c), "orders".into(), b"o-1".to_vec()).await.unwrap().unwrap();
        assert_eq!(*bus.published.lock().unwrap(), [(BUS.to_string(), "orders".to_string(), b"o-1".to_vec())]);
        let e = web.publish(h(&c), "full".into(), b"x".to_vec()).await.unwrap().unwrap_err();
        assert!(matches!(&e, Error::Other(m) if m == "the bus is full"), "{e:?}");
        // Other commands on the bus address go to Redis, and fail there.
        assert!(matches!(web.get(h(&c), "k".into()).await.unwrap(), Err(Error::Other(_))));

        // Other addresses fall through to a real PUBLISH.
        let p = prefix();
        let channel = format!("{p}channel");
        let mut pubsub = redis::Client::open(url()).unwrap().get_async_pubsub().await.unwrap();
        pubsub.subscribe(&channel).await.unwrap();
        let real = web.open(url()).await.unwrap().unwrap();
        web.publish(h(&real), channel.clone(), b"real".to_vec()).await.unwrap().unwrap();
        let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next()).await.unwrap().unwrap();
        assert_eq!(message.get_payload_bytes(), b"real");
        assert_eq!(bus.published.lock().unwrap().len(), 2, "the interceptor saw only its own address");

        // The allow-list applies before the interceptor.
        let mut bare = redis.instance("bare");
        assert!(matches!(bare.open(BUS.into()).await.unwrap(), Err(Error::InvalidAddress)));
    }

    #[tokio::test]
    async fn a_down_server_is_a_quick_clear_error() {
        let redis = app();
        let mut web = redis.instance("web");
        let c = web.open(DOWN.into()).await.unwrap().unwrap();
        let started = Instant::now();
        let e = web.get(h(&c), "k".into()).await.unwrap().unwrap_err();
        assert!(matches!(&e, Error::Other(m) if m.contains("cannot connect to Redis at redis://127.0.0.1:1")), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        let e = web.publish(h(&c), "ch".into(), vec![]).await.unwrap().unwrap_err();
        assert!(matches!(e, Error::Other(_)));
    }

    #[tokio::test]
    async fn connections_are_shared_and_handles_are_the_guests() {
        let redis = app();
        let (mut a, ca) = open(&redis).await;
        let (mut b, cb) = open(&redis).await;
        let p = prefix();
        let mut raw = direct().await;
        a.set(h(&ca), format!("{p}k"), b"v".to_vec()).await.unwrap().unwrap();
        assert_eq!(b.get(h(&cb), format!("{p}k")).await.unwrap().unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(redis.connections.count(), 1);
        let rep = ca.rep();
        HostConnection::drop(&mut a, ca).await.unwrap();
        // A closed handle is a host invariant broken: it traps.
        assert!(a.get(Resource::new_borrow(rep), format!("{p}k")).await.is_err());
        cleanup(&mut raw, &p).await;
    }
}
