//! The whole shop (the repo's spin.toml) on a host of its own, in either of
//! its two modes, with everything it stores private to this run:
//!
//! - embedded: SQLite files and the bus in a temporary directory;
//! - production: a new Postgres database per service (dropped afterwards),
//!   the key-value stores and the bus in one Redis database (flushed before
//!   and after).
//!
//! Also says where the data lives, for the consistency checker.
use std::path::Path;

use super::consistency::Source;
use super::postgres::TestDatabase;
use super::{Bazaar, Up, embedded_runtime_config, production_runtime_config, require_components, require_redis, root};

/// The shop's components, all needed to serve it.
pub const COMPONENTS: [&str; 7] = ["gateway", "auth", "users", "products", "orders", "payments", "notifications"];
/// The services that own a database.
pub const DATABASES: [&str; 6] = ["auth", "users", "products", "orders", "payments", "notifications"];

/// Which of the shop's configurations to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    /// Postgres and Redis; the number is the Redis database to use
    /// (flushed), distinct per concurrently running test.
    Production { redis_db: u8 },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Production { .. } => "production",
        }
    }
}

/// A running shop and what it must clean up when dropped.
pub struct Shop {
    pub bazaar: Bazaar,
    pub source: Source,
    state: tempfile::TempDir,
    _databases: Vec<TestDatabase>,
    redis_db: Option<u8>,
}

impl Shop {
    /// Starts the shop in `mode`, with `up`'s extra arguments and variables.
    pub async fn start(mode: Mode, up: Up) -> Shop {
        require_components(&COMPONENTS);
        let state = tempfile::tempdir().unwrap();
        let mut up = up.state_dir(state.path());
        let (config, source, databases, redis_db) = match mode {
            Mode::Embedded => (embedded_runtime_config(state.path()), Source::sqlite(state.path()), Vec::new(), None),
            Mode::Production { redis_db } => {
                require_redis();
                flush_redis(redis_db);
                let mut databases = Vec::new();
                for service in DATABASES {
                    let db = TestDatabase::create_for(service).await;
                    up = up.env(&format!("SPIN_VARIABLE_{}_DATABASE_URL", service.to_uppercase()), db.url());
                    databases.push(db);
                }
                let url = |service: &str| databases[DATABASES.iter().position(|s| *s == service).unwrap()].url();
                let source = Source::Postgres {
                    products: url("products"),
                    orders: url("orders"),
                    payments: url("payments"),
                    notifications: url("notifications"),
                };
                (production_runtime_config(state.path(), redis_db), source, databases, Some(redis_db))
            }
        };
        let bazaar = Bazaar::start(&root().join("spin.toml"), up.arg("--runtime-config-file").arg(config.to_str().unwrap()));
        Shop { bazaar, source, state, _databases: databases, redis_db }
    }

    /// The host's state directory (embedded mode: the SQLite files too).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Some(db) = self.redis_db {
            flush_redis(db);
        }
    }
}

fn flush_redis(db: u8) {
    let _ = std::process::Command::new("redis-cli").args(["-n", &db.to_string(), "FLUSHDB"]).output();
}
