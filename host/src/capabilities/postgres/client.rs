//! A pooled Postgres connection: tokio-postgres's `Client` and its
//! `Connection` (the socket's side), which the request waiting on a
//! statement polls itself ([`Driver`], see `capabilities::driven` for why)
//! instead of a task of its own, as deadpool-postgres (and so Spin) spawns.
//! The pool ([`Manager`]) checks that a connection is still open each time
//! it hands it out ([`PgConnection::is_open`]).
//!
//! Each connection keeps its prepared statements ([`Session::prepare_cached`]),
//! so a statement costs one round trip instead of two.
//!
//! A connection may go back to its pool still owing the reset that clears
//! its last guest's session ([`PgConnection::owe_reset`]); the next guest's
//! first statement then takes the reset with it (see `connection`).
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio_postgres::{Client, Statement};

use super::tls;
use crate::capabilities::driven::Driver;

/// What the pool hands out: a session to run statements on, and the
/// driver its replies arrive through.
pub struct PgConnection {
    session: Session,
    driver: Driver,
    /// Whether the last guest's session is still to be reset
    /// (`pool::RESET_SQL`) before the next guest's first statement.
    reset_owed: bool,
}

/// The requests' side of a connection.
pub struct Session {
    pub client: Client,
    /// Prepared statements by SQL text. A mutex (never contended: one
    /// guest uses a connection at a time) so statements run through `&self`.
    statements: Mutex<HashMap<String, Statement>>,
}

impl PgConnection {
    fn new(client: Client, io: impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static) -> Self {
        let io = async move {
            if let Err(e) = io.await {
                tracing::debug!("Postgres: a pooled connection broke: {}", super::pool::error_chain(&e));
            }
        };
        Self { session: Session { client, statements: Mutex::new(HashMap::new()) }, driver: Driver::new(io), reset_owed: false }
    }

    /// Goes back to the pool with its last guest's session as it is: the
    /// next guest's first statement resets it first.
    pub fn owe_reset(&mut self) {
        self.reset_owed = true;
    }

    /// Whether a reset is owed, which the caller now runs (or has run).
    pub fn take_owed_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_owed)
    }

    /// Its session, to run statements on, and the driver to run them
    /// through (`driver.drive(session.client.query(..))`).
    pub fn parts(&mut self) -> (&Session, &mut Driver) {
        (&self.session, &mut self.driver)
    }

    /// Whether the connection is still open: reads what the server sent
    /// while it sat idle (a notice, or the end of the connection, when the
    /// server shut down or an administrator terminated it).
    pub fn is_open(&mut self) -> bool {
        self.driver.is_running() && !self.session.client.is_closed()
    }
}

impl Session {
    /// `sql` prepared on this connection, from the cache when it was
    /// prepared before; the cache is emptied when it holds `max` statements.
    pub async fn prepare_cached(&self, sql: &str, max: usize) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.cached().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut cached = self.cached();
        if cached.len() >= max {
            cached.clear();
        }
        cached.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Forgets the statement prepared for `sql` (the schema changed under
    /// it, or the guest deallocated it).
    pub fn forget(&self, sql: &str) {
        self.cached().remove(sql);
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes and checks the pool's connections.
pub struct Manager {
    config: tokio_postgres::Config,
    /// `Some` for `sslmode=require`.
    tls: Option<tls::Connector>,
}

impl Manager {
    pub fn new(config: tokio_postgres::Config, tls: Option<tls::Connector>) -> Self {
        Self { config, tls }
    }
}

impl managed::Manager for Manager {
    type Type = PgConnection;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<PgConnection, tokio_postgres::Error> {
        Ok(match &self.tls {
            Some(tls) => {
                let (client, io) = self.config.connect(tls.clone()).await?;
                PgConnection::new(client, io)
            }
            None => {
                let (client, io) = self.config.connect(tokio_postgres::NoTls).await?;
                PgConnection::new(client, io)
            }
        })
    }

    async fn recycle(&self, connection: &mut PgConnection, _: &Metrics) -> RecycleResult<tokio_postgres::Error> {
        if connection.is_open() { Ok(()) } else { Err(RecycleError::message("the connection was closed")) }
    }
}
