//! Pooled connections for the key-value store's Redis kind, each moved
//! along by the request using it.
//!
//! The shared connection ([`super::connection`]) runs its socket on a task
//! of its own, so every command's reply costs two trips through tokio's run
//! queue, and a catalog hit in production makes four commands. A pooled
//! connection is the redis crate's same multiplexed connection, built on a
//! socket we open, its socket's side polled by the request that holds it
//! ([`Driver`], see `capabilities::driven`): one trip per reply. The crate
//! still does the handshake (`AUTH`, `SELECT`), packs the commands, parses
//! the replies and times them out ([`RESPONSE_TIMEOUT`]).
//!
//! Only plain TCP addresses speaking RESP2 (`redis://`, the usual case) are
//! pooled ([`pool_for`]); `rediss://` and `redis+unix://` keep the shared
//! connection. A command cut off (its request's deadline) leaves its reply
//! to come: the connection matches replies to commands in order, and the
//! next user's polling reads and drops it. A connection the server closed
//! while it sat in the pool is dropped when the pool would hand it out.
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, Pipeline, ProtocolVersion, RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value};
use tokio::net::TcpStream;

use super::connection::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::capabilities::driven::Driver;

/// Most connections open to one address at once (as Postgres's pools).
pub const MAX_CONNECTIONS: usize = 16;
/// How long a command waits for a free connection when all are in use.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of connections to one Redis address.
pub type Pool = managed::Pool<Manager>;

/// A pool for `client`'s address, if it is one this module serves (plain
/// TCP, RESP2); `None` means: use the shared connection.
pub fn pool_for(client: &Client) -> Option<Pool> {
    let info = client.get_connection_info();
    let ConnectionAddr::Tcp(host, port) = &info.addr else { return None };
    if info.redis.protocol != ProtocolVersion::RESP2 {
        return None;
    }
    let manager = Manager { host: host.clone(), port: *port, redis: info.redis.clone() };
    Pool::builder(manager)
        .max_size(MAX_CONNECTIONS)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(ACQUIRE_TIMEOUT))
        .build()
        .ok()
}

/// Why the pool handed out no connection, for messages.
pub fn describe(e: managed::PoolError<RedisError>) -> String {
    match e {
        managed::PoolError::Timeout(managed::TimeoutType::Wait) => {
            format!("no free connection within {ACQUIRE_TIMEOUT:?}: all {MAX_CONNECTIONS} of its pool are in use")
        }
        managed::PoolError::Backend(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// One connection: the crate's handle and the socket's side.
pub struct Connection {
    handle: MultiplexedConnection,
    driver: Driver,
}

/// A connection out of its pool, back in it when dropped; commands run on
/// it through `redis::AsyncCommands` as on any connection.
pub struct Pooled(pub managed::Object<Manager>);

impl ConnectionLike for Pooled {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let Connection { handle, driver } = &mut *self.0;
        Box::pin(driver.drive(handle.req_packed_command(cmd)))
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        let Connection { handle, driver } = &mut *self.0;
        Box::pin(driver.drive(handle.req_packed_commands(pipeline, offset, count)))
    }

    fn get_db(&self) -> i64 {
        self.0.handle.get_db()
    }
}

/// Makes and checks one address's connections.
pub struct Manager {
    host: String,
    port: u16,
    /// Database, user and password, for the crate's handshake.
    redis: RedisConnectionInfo,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> RedisResult<Connection> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting took longer than {CONNECT_TIMEOUT:?}"),
            ))
        })??;
        stream.set_nodelay(true)?;
        let config = AsyncConnectionConfig::new().set_response_timeout(RESPONSE_TIMEOUT);
        let handshake = MultiplexedConnection::new_with_config(&self.redis, stream, config);
        let (handle, io) = tokio::time::timeout(CONNECT_TIMEOUT, handshake).await.map_err(|_| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the server did not answer the handshake within {CONNECT_TIMEOUT:?}"),
            ))
        })??;
        Ok(Connection { handle, driver: Driver::new(io) })
    }

    async fn recycle(&self, connection: &mut Connection, _: &Metrics) -> RecycleResult<RedisError> {
        if connection.driver.is_running() { Ok(()) } else { Err(RecycleError::message("the server closed it")) }
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;

    use super::*;
    use crate::capabilities::redis::test_support::{cleanup, direct, prefix, url};

    async fn pooled(pool: &Pool) -> Pooled {
        Pooled(pool.get().await.unwrap_or_else(|e| panic!("a connection to Redis at {}: {}", url(), describe(e))))
    }

    async fn client_id(connection: &mut Pooled) -> i64 {
        redis::cmd("CLIENT").arg("ID").query_async(connection).await.unwrap()
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_not_handed_out_again() {
        let mut raw = direct().await;
        let pool = pool_for(&redis::Client::open(url()).unwrap()).expect("a redis:// address is pooled");
        let mut first = pooled(&pool).await;
        let id = client_id(&mut first).await;
        drop(first);
        let () = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut raw).await.unwrap();

        let mut second = pooled(&pool).await;
        let second_id = client_id(&mut second).await;
        assert_ne!(second_id, id, "the closed connection was handed out again");
        assert_eq!(pool.status().size, 1, "the closed one left the pool");
    }

    #[tokio::test]
    async fn a_command_cut_off_leaves_no_reply_for_the_next_one() {
        let mut raw = direct().await;
        let p = prefix();
        let pool = pool_for(&redis::Client::open(url()).unwrap()).unwrap();
        let mut connection = pooled(&pool).await;
        let () = connection.set(format!("{p}k"), "the value").await.unwrap();
        // A blocking pop, abandoned before Redis answers it (a request's
        // deadline does the same), on the pool's only connection.
        let pop = connection.blpop::<_, Option<(String, String)>>(format!("{p}empty"), 0.2);
        assert!(tokio::time::timeout(Duration::from_millis(20), pop).await.is_err());
        drop(connection);

        let mut next = pooled(&pool).await;
        let value: String = next.get(format!("{p}k")).await.unwrap();
        assert_eq!(value, "the value", "the abandoned pop's (empty) reply went to its own command");
        assert_eq!(pool.status().size, 1);
        cleanup(&mut raw, &p).await;
    }

    #[test]
    fn only_plain_tcp_addresses_are_pooled() {
        let pooled = |url: &str| pool_for(&redis::Client::open(url).unwrap()).is_some();
        assert!(pooled("redis://127.0.0.1:6379/2"));
        assert!(!pooled("redis+unix:///run/redis.sock"));
        assert!(!pooled("redis://127.0.0.1:6379/?protocol=resp3"));
    }
}
