//! Connection pools: one per address, shared by every instance of every
//! component, so a request opens a connection in one round trip instead of
//! a TCP + authentication handshake.
//!
//! Each pool is bounded ([`MAX_CONNECTIONS_PER_ADDRESS`]) and every wait is
//! bounded too, so a down or overloaded server gives the guest a clear
//! `connection-failed` quickly instead of hanging its request:
//! - connecting (TCP + TLS + authentication) times out after
//!   [`CONNECT_TIMEOUT`]; a refused connection fails at once;
//! - waiting for a free connection when all are in use times out after
//!   [`ACQUIRE_TIMEOUT`];
//! - a connection a guest is done with is reset before another guest runs
//!   anything on it ([`give_back`], [`RESET_SQL`]: session state, temp
//!   tables, locks and listeners dropped; one left in a transaction closed)
//!   so nothing one guest did leaks to the next. Usually the reset goes out
//!   with the next guest's first statement, in the same round trip
//!   ([`Release::ResetOnReuse`]): a reset is a round trip of its own
//!   otherwise, a third of all the round trips of the shop's mix, and
//!   skipping that trip (unsafely, as an experiment) made production 14%
//!   faster. Spin's pool (deadpool's `Clean`) resets on reuse too, as a
//!   trip of its own. A guest that may have left a transaction open, or
//!   ran anything but plain queries, gets its connection reset at once
//!   instead, on a task of its own, so no lock waits in the pool for the
//!   next guest ([`Release::ResetNow`]). Either reset times out after
//!   [`RESET_TIMEOUT`], and a connection that fails it is closed.
//!
//! At most [`MAX_POOLS`] addresses keep a pool; the least recently used is
//! closed to make room.
//!
//! [`Pools::usage`] reports each pool's size, idle and waiting counts for
//! `/metrics`, by server and database (`postgres://host:port/db`): never
//! the user or password, which the address a guest opens may carry.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{PoolError, TimeoutType};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::config::SslMode;

use super::client::Manager;
use super::tls;
use crate::metrics::PoolUsage;

/// Most connections open to one address at once.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 16;
/// How long connecting to the server (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `open` waits for a free connection when all are in use.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long resetting a connection before reuse may take.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Most addresses with a pool at once.
pub const MAX_POOLS: usize = 32;

/// Run on a guest's connection before it goes back to the pool: what
/// deadpool's `Clean` (and so Spin) does, everything `DISCARD ALL` does
/// except forgetting prepared statements, which the statement cache keeps;
/// first, whether a transaction is still open. A transaction started by
/// this very query string has `now() = statement_timestamp()`; one the
/// guest left open is older and reads `f` (an aborted one fails any
/// statement), and the connection is closed, which rolls it back. (A plain
/// `ROLLBACK` would do, but puts a "no transaction in progress" warning in
/// the server's log at every reuse; a PL/pgSQL check costs more than the
/// whole reset besides.)
pub const RESET_SQL: &str = "SELECT now() = statement_timestamp(); \
     CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;";

/// How a guest's connection goes back to its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Reset at once, on a task of its own, after a `ROLLBACK` when
    /// `rollback_first` (the guest began a transaction and may not have
    /// ended it): whatever the guest holds (a transaction's locks, a session
    /// lock) is let go before the connection waits in the pool.
    ResetNow { rollback_first: bool },
    /// Straight back, owing the reset to the next guest's first statement:
    /// the guest ran only plain statements, outside any transaction, so
    /// what it may have left (settings, a sequence's last value) binds
    /// nobody while the connection waits.
    ResetOnReuse,
}

/// What a reset found.
#[derive(Debug, PartialEq, Eq)]
pub enum ResetOutcome {
    Clean,
    /// A transaction was still open: the reset (and anything sent after it)
    /// ran inside it, uncommitted; the connection must be closed, which
    /// rolls it all back.
    TransactionOpen,
    /// The reset failed (the message says why) or timed out.
    Failed(String),
}

impl ResetOutcome {
    /// Reads the replies to [`RESET_SQL`]: clean when its first row is `t`.
    pub fn of(reset: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>) -> Self {
        match reset {
            Err(e) => Self::Failed(error_chain(&e)),
            Ok(messages) => {
                let fresh = messages.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
                    _ => None,
                });
                if fresh == Some(true) { Self::Clean } else { Self::TransactionOpen }
            }
        }
    }
}

/// Puts a guest's connection back in its pool, reset at once or owing the
/// reset to its next guest (see [`Release`]). A connection whose reset
/// fails or finds a transaction still open is closed instead. Outside a
/// runtime (no task to run the reset on) the connection is closed.
pub fn give_back(mut client: Object, release: Release) {
    let rollback_first = match release {
        Release::ResetOnReuse => {
            client.owe_reset();
            return;
        }
        Release::ResetNow { rollback_first } => rollback_first,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        drop(Object::take(client));
        return;
    };
    runtime.spawn(async move {
        let mut client = client;
        // This reset stands for one still owed too.
        client.take_owed_reset();
        let sql = if rollback_first { format!("ROLLBACK; {RESET_SQL}") } else { RESET_SQL.to_string() };
        let (session, driver) = client.parts();
        let reset = tokio::time::timeout(RESET_TIMEOUT, driver.drive(session.client.simple_query(&sql))).await;
        let outcome = match reset {
            Ok(reset) => ResetOutcome::of(reset),
            Err(_) => ResetOutcome::Failed(format!("timed out after {RESET_TIMEOUT:?}")),
        };
        match outcome {
            ResetOutcome::Clean => return,
            ResetOutcome::TransactionOpen => tracing::warn!("Postgres: a guest left a transaction open on its connection; closing it"),
            ResetOutcome::Failed(e) => tracing::debug!("Postgres: resetting a connection failed, closing it: {e}"),
        }
        drop(Object::take(client));
    });
}

/// A pool of connections to one address.
pub type Pool = deadpool::managed::Pool<Manager>;
/// A connection out of its pool; back in it when dropped.
pub type Object = deadpool::managed::Object<Manager>;

/// The pools of the host, by address.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    pool: Pool,
    last_used: Instant,
    /// `postgres://host:port/db`, for metrics.
    shown: String,
}

impl Pools {
    /// A connection to `address` (already parsed as `config`), from its pool.
    /// The error is the guest's `connection-failed` message; `target`
    /// names the server without credentials.
    pub async fn get(&self, address: &str, config: &tokio_postgres::Config, target: &str) -> Result<Object, String> {
        let pool = self.pool(address, config, target)?;
        pool.get().await.map_err(|e| match e {
            PoolError::Timeout(TimeoutType::Wait) => format!(
                "no free connection to {target} within {ACQUIRE_TIMEOUT:?}: \
                 all {MAX_CONNECTIONS_PER_ADDRESS} connections of its pool are in use"
            ),
            PoolError::Timeout(TimeoutType::Create) => {
                format!("connecting to {target} timed out after {CONNECT_TIMEOUT:?}")
            }
            PoolError::Timeout(TimeoutType::Recycle) => {
                format!("checking a pooled connection to {target} timed out after {RESET_TIMEOUT:?}")
            }
            PoolError::Backend(e) => format!("connecting to {target}: {}", error_chain(&e)),
            other => format!("connecting to {target}: {other}"),
        })
    }

    /// The pool for `address`, created on first use.
    fn pool(&self, address: &str, config: &tokio_postgres::Config, target: &str) -> Result<Pool, String> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pools.get_mut(address) {
            entry.last_used = Instant::now();
            return Ok(entry.pool.clone());
        }
        if pools.len() >= MAX_POOLS {
            let oldest = pools.iter().min_by_key(|(_, entry)| entry.last_used).map(|(a, _)| a.clone());
            if let Some(entry) = oldest.and_then(|a| pools.remove(&a)) {
                entry.pool.close();
            }
        }
        let pool = new_pool(config.clone())?;
        let shown = format!("{target}/{}", config.get_dbname().unwrap_or_default());
        pools.insert(address.to_string(), Entry { pool: pool.clone(), last_used: Instant::now(), shown });
        Ok(pool)
    }

    /// Every pool's usage, those of one server and database (opened with
    /// different credentials, say) added up, sorted by address.
    pub fn usage(&self) -> Vec<PoolUsage> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_address: std::collections::BTreeMap<&str, PoolUsage> = Default::default();
        for entry in pools.values() {
            let status = entry.pool.status();
            let usage = by_address
                .entry(&entry.shown)
                .or_insert_with(|| PoolUsage { address: entry.shown.clone(), ..Default::default() });
            usage.size += status.size;
            usage.available += status.available;
            usage.waiting += status.waiting;
            usage.max_size += status.max_size;
        }
        by_address.into_values().collect()
    }

    /// The servers pools are open to, `postgres://host:port`.
    pub fn servers(&self) -> Vec<String> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut servers: Vec<String> =
            pools.values().map(|e| e.shown.rsplit_once('/').map_or(e.shown.clone(), |(s, _)| s.to_string())).collect();
        servers.sort();
        servers.dedup();
        servers
    }
}

fn new_pool(mut config: tokio_postgres::Config) -> Result<Pool, String> {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("bazaar");
    }
    // Connections come back reset, or owing the reset to their next
    // guest's first statement (`give_back`): handing one out again only
    // checks that it is still open.
    let manager = match config.get_ssl_mode() {
        // `prefer` (the default) without verification would be TLS in name
        // only; with it, a local server's self-signed certificate would
        // fail. So TLS only when asked for, and then verified.
        SslMode::Require => Manager::new(config, Some(tls::connector())),
        _ => Manager::new(config, None),
    };
    Pool::builder(manager)
        .max_size(MAX_CONNECTIONS_PER_ADDRESS)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(ACQUIRE_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(RESET_TIMEOUT))
        .build()
        .map_err(|e| format!("creating a connection pool: {e}"))
}

/// An error and its causes, `: `-separated (tokio-postgres's own `Display`
/// names only the outermost, such as "db error").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The server the tests use (trust auth for user postgres).
    fn address() -> String {
        std::env::var("BAZAAR_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    #[tokio::test]
    async fn usage_counts_open_idle_and_waiting_connections() {
        let address = address();
        let config: tokio_postgres::Config = address.parse().unwrap();
        let pools = Arc::new(Pools::default());
        let target = "postgres://127.0.0.1:5432";
        let get = |pools: Arc<Pools>| {
            let (address, config) = (address.clone(), config.clone());
            async move { pools.get(&address, &config, target).await }
        };
        let first = get(pools.clone()).await.unwrap_or_else(|e| {
            panic!("this test needs PostgreSQL at {address} with trust auth for user postgres: {e}")
        });
        let usage = |pools: &Pools| pools.usage().into_iter().next().unwrap();
        let shown = "postgres://127.0.0.1:5432/postgres".to_string();
        let one = PoolUsage { address: shown.clone(), size: 1, available: 0, waiting: 0, max_size: MAX_CONNECTIONS_PER_ADDRESS };
        assert_eq!(usage(&pools), one, "no credentials in the address");
        drop(first);
        assert_eq!(usage(&pools).available, 1, "back in the pool, idle");
        assert_eq!(pools.servers(), [target]);

        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_ADDRESS {
            held.push(get(pools.clone()).await.unwrap());
        }
        let waiter = tokio::spawn(get(pools.clone()));
        let started = Instant::now();
        while usage(&pools).waiting == 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", usage(&pools));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let full = usage(&pools);
        assert_eq!((full.size, full.available, full.waiting), (MAX_CONNECTIONS_PER_ADDRESS, 0, 1));
        drop(held);
        assert!(waiter.await.unwrap().is_ok(), "the waiter gets a freed connection");
        assert_eq!(usage(&pools).waiting, 0);
    }

    /// The backend process id of a pooled connection.
    async fn backend_pid(connection: &mut Object) -> i32 {
        let (session, driver) = connection.parts();
        let row = driver.drive(session.client.query_one("SELECT pg_backend_pid()", &[])).await;
        row.expect("SELECT pg_backend_pid()").get(0)
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_not_handed_out_again() {
        let address = address();
        let config: tokio_postgres::Config = address.parse().unwrap();
        let pools = Pools::default();
        let target = "postgres://127.0.0.1:5432";
        let mut first = pools.get(&address, &config, target).await.unwrap_or_else(|e| {
            panic!("this test needs PostgreSQL at {address} with trust auth for user postgres: {e}")
        });
        let pid = backend_pid(&mut first).await;
        drop(first);
        let started = Instant::now();
        while pools.usage()[0].available == 0 {
            assert!(started.elapsed() < RESET_TIMEOUT, "the connection never came back to its pool");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // An administrator ends that backend while the connection is idle
        // (nobody is reading its socket then).
        let (admin, io) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(io);
        let ended: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
        assert!(ended);
        let started = Instant::now();
        while admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap().get::<_, i64>(0) > 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "backend {pid} did not exit");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let mut second = pools.get(&address, &config, target).await.expect("a fresh connection");
        let second_pid = backend_pid(&mut second).await;
        assert_ne!(second_pid, pid, "the closed connection was handed out again");
        assert_eq!(pools.usage()[0].size, 1, "the closed one left the pool");
    }
}
