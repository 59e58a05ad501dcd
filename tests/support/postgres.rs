//! A Postgres database of the test's own on the server at 127.0.0.1:5432,
//! created when the test asks for it and dropped (with its connections) when
//! the test ends, so tests run in parallel and leave nothing behind.
//!
//! The server must be running with trust auth for user `postgres`: tests
//! fail (never skip) with the command that starts it when it is not.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The server every test database lives on.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Connects to `url`; panics with how to start PostgreSQL when it is down.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}); this test needs it running with trust auth for user \
             postgres: start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    });
    tokio::spawn(connection);
    client
}

/// A database of the test's own, named `bazaar_test_…`, dropped (with its
/// connections) when this is dropped.
pub struct TestDatabase {
    pub name: String,
    /// A connection to it for setting up and checking, outside the guests.
    pub admin: tokio_postgres::Client,
}

impl TestDatabase {
    /// A new, empty database.
    pub async fn create() -> TestDatabase {
        Self::create_named("").await
    }

    /// A new, empty database whose name says which service it is for.
    pub async fn create_for(service: &str) -> TestDatabase {
        Self::create_named(&format!("{service}_")).await
    }

    async fn create_named(label: &str) -> TestDatabase {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("bazaar_test_{label}{}_{nanos}_{n}", std::process::id());
        let server = connect(&format!("{SERVER}/postgres")).await;
        server.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let admin = connect(&format!("{SERVER}/{name}")).await;
        TestDatabase { name, admin }
    }

    /// The address a guest (or a service's `database_url`) opens.
    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// Runs `sql` (one or more statements) through the admin connection.
    pub async fn setup(&self, sql: &str) {
        self.admin.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // drop the database from a thread with a runtime of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let server = connect(&format!("{SERVER}/postgres")).await;
                if let Err(e) = server.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
                    eprintln!("dropping test database {name}: {e}");
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// The databases of the checkout saga's three services (orders, products,
/// payments), each a [`TestDatabase`] of its own.
pub struct SagaDatabases {
    pub orders: TestDatabase,
    pub products: TestDatabase,
    pub payments: TestDatabase,
}

impl SagaDatabases {
    pub async fn create() -> SagaDatabases {
        SagaDatabases {
            orders: TestDatabase::create_for("orders").await,
            products: TestDatabase::create_for("products").await,
            payments: TestDatabase::create_for("payments").await,
        }
    }
}
