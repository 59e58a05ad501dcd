//! The runtime config file (`--runtime-config-file`), in Spin's format.
//!
//! spin.toml says *which* stores and databases a component may use, by name;
//! the runtime config says *where* each name lives. Swapping the file moves
//! an app from local SQLite files to Postgres and Redis without touching a
//! component. Without a file, Spin's defaults apply: the `default` key-value
//! store and the `default` SQLite database are files in the state directory.
//!
//! ```toml
//! [key_value_store.cache]
//! type = "spin"              # a SQLite file; without `path`, in memory
//! path = ".bazaar/cache.db"  # relative to the app directory
//!
//! [key_value_store.sessions]
//! type = "redis"             # a Redis server, as Spin lays it out
//! url = "redis://localhost:6379"
//!
//! [sqlite_database.orders]
//! type = "spin"
//! path = ".bazaar/orders.db"
//!
//! [[config_provider]]        # where variable values come from
//! type = "env"
//! prefix = "SPIN_VARIABLE"
//! dotenv_path = ".env"
//!
//! [message_bus]              # bazaar's own: see crate::bus
//! type = "embedded"
//! ```
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// File name of the `default` key-value store in the state directory (Spin's).
pub const DEFAULT_KV_FILE: &str = "sqlite_key_value.db";
/// File name of the `default` SQLite database in the state directory (Spin's).
pub const DEFAULT_SQLITE_FILE: &str = "sqlite_db.db";

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The file this came from, if any (for error messages).
    pub file: Option<PathBuf>,
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    pub sqlite_databases: BTreeMap<String, SqliteDatabaseConfig>,
    /// In priority order, highest first.
    pub variable_providers: Vec<VariableProviderConfig>,
    /// `[message_bus]`: bazaar's own section; embedded when absent.
    pub message_bus: crate::bus::BusConfig,
}

/// Where a key-value store lives.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValueStoreConfig {
    /// A SQLite file (`None`: in memory, gone at exit).
    Spin { path: Option<PathBuf> },
    /// A Redis server (`url = "redis://host:port[/db]"`), laid out as Spin's
    /// `redis` store kind lays it out.
    Redis { url: String },
}

/// Where a SQLite database lives.
#[derive(Clone, Debug, PartialEq)]
pub enum SqliteDatabaseConfig {
    /// A SQLite file (`None`: in memory, gone at exit).
    Spin { path: Option<PathBuf> },
}

/// A source of variable values.
#[derive(Clone, Debug, PartialEq)]
pub enum VariableProviderConfig {
    /// `PREFIX_<NAME>` environment variables, then an optional dotenv file.
    Env { prefix: String, dotenv_path: Option<PathBuf> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawStore>,
    #[serde(default)]
    config_provider: Vec<RawProvider>,
    message_bus: Option<crate::bus::BusConfig>,
}

#[derive(Deserialize)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawProvider {
    #[serde(rename = "type")]
    kind: String,
    prefix: Option<String>,
    dotenv_path: Option<PathBuf>,
    #[serde(flatten)]
    rest: BTreeMap<String, toml::Value>,
}

impl RuntimeConfig {
    /// Spin's defaults, with no file.
    pub fn defaults(app_dir: &Path, state_dir: &Path) -> Self {
        let mut config = RuntimeConfig {
            file: None,
            key_value_stores: BTreeMap::new(),
            sqlite_databases: BTreeMap::new(),
            variable_providers: Vec::new(),
            message_bus: Default::default(),
        };
        config.fill_defaults(app_dir, state_dir);
        config
    }

    /// Reads `file` (if given) and fills in Spin's defaults for whatever it
    /// does not define.
    pub fn load(file: Option<&Path>, app_dir: &Path, state_dir: &Path) -> Result<Self> {
        let Some(file) = file else {
            return Ok(Self::defaults(app_dir, state_dir));
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading runtime config {}", file.display()))?;
        let mut config = Self::parse(&text, file, app_dir)?;
        config.fill_defaults(app_dir, state_dir);
        Ok(config)
    }

    fn parse(text: &str, file: &Path, app_dir: &Path) -> Result<Self> {
        let shown = file.display();
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start)).map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default();
            anyhow::anyhow!(
                "{shown}{at}: {}; a runtime config may have [key_value_store.NAME], [sqlite_database.NAME], [[config_provider]] and [message_bus] sections",
                e.message()
            )
        })?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { app_dir.join(p) };

        let mut key_value_stores = BTreeMap::new();
        for (name, store) in raw.key_value_store {
            let field = format!("[key_value_store.{name}]");
            let config = match store.kind.as_str() {
                "spin" => {
                    reject_extra(&shown, &field, &store.rest)?;
                    KeyValueStoreConfig::Spin { path: store.path.map(resolve) }
                }
                "redis" => {
                    let mut rest = store.rest;
                    if store.path.is_some() {
                        bail!("{shown}: {field} has type \"redis\", which takes `url`, not `path`");
                    }
                    let url = match rest.remove("url") {
                        Some(toml::Value::String(url)) => url,
                        Some(other) => bail!("{shown}: {field} `url` must be a string such as \"redis://localhost:6379\", not {other}"),
                        None => bail!("{shown}: {field} has type \"redis\" but no `url`; add url = \"redis://host:port\""),
                    };
                    reject_extra(&shown, &field, &rest)?;
                    KeyValueStoreConfig::Redis { url }
                }
                other => bail!(
                    "{shown}: {field} has type {other:?}, which bazaar does not support; use type = \"spin\" (a SQLite file) or type = \"redis\" (with url = \"redis://...\")"
                ),
            };
            key_value_stores.insert(name, config);
        }

        let mut sqlite_databases = BTreeMap::new();
        for (name, db) in raw.sqlite_database {
            let field = format!("[sqlite_database.{name}]");
            let config = match db.kind.as_str() {
                "spin" => {
                    reject_extra(&shown, &field, &db.rest)?;
                    SqliteDatabaseConfig::Spin { path: db.path.map(resolve) }
                }
                other => bail!(
                    "{shown}: {field} has type {other:?}, which bazaar does not support; use type = \"spin\" (a SQLite file)"
                ),
            };
            sqlite_databases.insert(name, config);
        }

        let mut variable_providers = Vec::new();
        for (i, provider) in raw.config_provider.into_iter().enumerate() {
            let field = format!("[[config_provider]] #{}", i + 1);
            match provider.kind.as_str() {
                "env" => {
                    reject_extra(&shown, &field, &provider.rest)?;
                    variable_providers.push(VariableProviderConfig::Env {
                        prefix: provider.prefix.unwrap_or_else(|| "SPIN_VARIABLE".into()),
                        dotenv_path: provider.dotenv_path.map(resolve),
                    });
                }
                other => bail!(
                    "{shown}: {field} has type {other:?}, which bazaar does not support; use type = \"env\" (environment variables and a dotenv file)"
                ),
            }
        }

        Ok(RuntimeConfig {
            file: Some(file.to_path_buf()),
            key_value_stores,
            sqlite_databases,
            variable_providers,
            message_bus: raw.message_bus.unwrap_or_default(),
        })
    }

    fn fill_defaults(&mut self, app_dir: &Path, state_dir: &Path) {
        self.key_value_stores
            .entry("default".into())
            .or_insert_with(|| KeyValueStoreConfig::Spin { path: Some(state_dir.join(DEFAULT_KV_FILE)) });
        self.sqlite_databases
            .entry("default".into())
            .or_insert_with(|| SqliteDatabaseConfig::Spin { path: Some(state_dir.join(DEFAULT_SQLITE_FILE)) });
        // Spin always consults the process environment first.
        if !self.variable_providers.iter().any(|p| matches!(p, VariableProviderConfig::Env { prefix, .. } if prefix == "SPIN_VARIABLE")) {
            let dotenv = app_dir.join(".env");
            self.variable_providers.insert(
                0,
                VariableProviderConfig::Env {
                    prefix: "SPIN_VARIABLE".into(),
                    dotenv_path: dotenv.is_file().then_some(dotenv),
                },
            );
        }
    }
}

fn reject_extra(shown: &impl std::fmt::Display, field: &str, rest: &BTreeMap<String, toml::Value>) -> Result<()> {
    if let Some(key) = rest.keys().next() {
        bail!("{shown}: {field} has an unknown field {key:?}; remove it");
    }
    Ok(())
}

/// 1-based line and column of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig> {
        let mut c = RuntimeConfig::parse(text, Path::new("rc.toml"), Path::new("/app"))?;
        c.fill_defaults(Path::new("/app"), Path::new("/app/.bazaar"));
        Ok(c)
    }

    #[test]
    fn defaults_put_default_stores_in_the_state_dir() {
        let c = RuntimeConfig::defaults(Path::new("/app"), Path::new("/state"));
        assert_eq!(c.key_value_stores["default"], KeyValueStoreConfig::Spin { path: Some("/state/sqlite_key_value.db".into()) });
        assert_eq!(c.sqlite_databases["default"], SqliteDatabaseConfig::Spin { path: Some("/state/sqlite_db.db".into()) });
    }

    #[test]
    fn named_stores_resolve_relative_to_the_app_dir() {
        let c = parse("[key_value_store.cache]\ntype = \"spin\"\npath = \"data/cache.db\"\n[sqlite_database.orders]\ntype = \"spin\"\n").unwrap();
        assert_eq!(c.key_value_stores["cache"], KeyValueStoreConfig::Spin { path: Some("/app/data/cache.db".into()) });
        assert_eq!(c.sqlite_databases["orders"], SqliteDatabaseConfig::Spin { path: None });
        assert!(c.key_value_stores.contains_key("default"));
    }

    #[test]
    fn redis_stores_take_a_url() {
        let c = parse("[key_value_store.sessions]\ntype = \"redis\"\nurl = \"redis://cache:6380/2\"\n").unwrap();
        assert_eq!(c.key_value_stores["sessions"], KeyValueStoreConfig::Redis { url: "redis://cache:6380/2".into() });
        // `default` may live in Redis too.
        let c = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://localhost\"\n").unwrap();
        assert_eq!(c.key_value_stores["default"], KeyValueStoreConfig::Redis { url: "redis://localhost".into() });

        let e = parse("[key_value_store.s]\ntype = \"redis\"\n").unwrap_err().to_string();
        assert!(e.contains("[key_value_store.s]") && e.contains("no `url`"), "{e}");
        let e = parse("[key_value_store.s]\ntype = \"redis\"\nurl = 6379\n").unwrap_err().to_string();
        assert!(e.contains("must be a string"), "{e}");
        let e = parse("[key_value_store.s]\ntype = \"redis\"\nurl = \"redis://x\"\npassword = \"p\"\n").unwrap_err().to_string();
        assert!(e.contains("[key_value_store.s]") && e.contains("\"password\""), "{e}");
        let e = parse("[key_value_store.s]\ntype = \"redis\"\nurl = \"redis://x\"\npath = \"x.db\"\n").unwrap_err().to_string();
        assert!(e.contains("not `path`"), "{e}");
        // A `spin` store takes no url.
        let e = parse("[key_value_store.s]\ntype = \"spin\"\nurl = \"redis://x\"\n").unwrap_err().to_string();
        assert!(e.contains("\"url\""), "{e}");
    }

    #[test]
    fn unknown_types_and_fields_are_explained() {
        let e = parse("[key_value_store.x]\ntype = \"azure_cosmos\"\n").unwrap_err().to_string();
        assert!(e.contains("rc.toml") && e.contains("[key_value_store.x]") && e.contains("azure_cosmos"), "{e}");
        assert!(e.contains("type = \"spin\"") && e.contains("type = \"redis\""), "{e}");
        let e = parse("[sqlite_database.x]\ntype = \"spin\"\nurl = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("[sqlite_database.x]") && e.contains("url"), "{e}");
        let e = parse("[mystery]\n").unwrap_err().to_string();
        assert!(e.contains("rc.toml:1:") && e.contains("mystery"), "{e}");
        let e = parse("[[config_provider]]\ntype = \"vault\"\n").unwrap_err().to_string();
        assert!(e.contains("vault") && e.contains("#1"), "{e}");
    }

    #[test]
    fn malformed_toml_names_line_and_column() {
        let e = parse("[key_value_store.x]\ntype = \n").unwrap_err().to_string();
        assert!(e.starts_with("rc.toml:2:"), "{e}");
    }
}
