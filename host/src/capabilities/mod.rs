//! Host capabilities: what a component can reach beyond its own memory.
//!
//! Every capability has the same shape, so adding one means copying another:
//! 1. **Config**: an app-wide value built once from spin.toml and the runtime
//!    config (`X::new(..)`), holding which component was granted what.
//! 2. **Per-instance state**: `X::instance(component_id)` returns an
//!    `XInstance` that lives in [`InstanceState`] for one request.
//! 3. **Host implementation**: the `bindgen!` `Host` traits implemented for
//!    `XInstance`, plus `add_to_linker`.
//! 4. **Tests**: unit tests in the module; end-to-end tests in tests/.
//!
//! A component asking for something spin.toml did not grant it gets the
//! interface's own access-denied error, never data.
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::Linker;

use crate::manifest::Manifest;
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;

pub mod allowed_hosts;
/// A pooled connection's socket polled by its user (Postgres's).
pub mod driven;
pub mod key_value;
pub mod outbound_http;
pub mod postgres;
pub mod redis;
pub mod sqlite;
pub mod variables;
pub mod wasi;

/// Which runtime-config table defines the names a manifest field grants.
pub struct GrantKind {
    /// The `[component.X]` field, e.g. `key_value_stores`.
    pub field: &'static str,
    /// The runtime-config table, e.g. `key_value_store`.
    pub table: &'static str,
}

/// Fails, naming every offender, if a component is granted a name the
/// runtime config does not define (`default` is always defined).
pub fn check_grants<'a, V>(
    manifest_file: &Path,
    kind: GrantKind,
    grants: impl Iterator<Item = (&'a str, &'a [String])>,
    defined: &std::collections::BTreeMap<String, V>,
) -> Result<()> {
    let GrantKind { field, table } = kind;
    let problems: Vec<String> = grants
        .flat_map(|(id, names)| names.iter().map(move |name| (id, name)))
        .filter(|(_, name)| !defined.contains_key(*name))
        .map(|(id, name)| {
            format!(
                "{}: [component.{id}] {field} names {name:?}, which the runtime config does not define; \
                 add [{table}.{name}] with type = \"spin\" to the runtime config file, or use \"default\"",
                manifest_file.display()
            )
        })
        .collect();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// What capabilities are configured from.
pub struct BuildContext<'a> {
    pub manifest: &'a Manifest,
    pub runtime_config: &'a RuntimeConfig,
    pub state_dir: &'a Path,
    /// `bazaar up --sqlite-synchronous`.
    pub sqlite_synchronous: sqlite::Synchronous,
}

/// The app-wide half of every capability.
pub struct Capabilities {
    pub variables: Arc<variables::Variables>,
    pub outbound_http: Arc<outbound_http::OutboundHttp>,
    pub key_value: Arc<key_value::KeyValue>,
    pub sqlite: Arc<sqlite::Sqlite>,
    pub postgres: Arc<postgres::Postgres>,
    pub redis: Arc<redis::Redis>,
}

impl Capabilities {
    pub fn new(ctx: &BuildContext<'_>) -> Result<Self> {
        let variables = Arc::new(variables::Variables::new(ctx.manifest, ctx.runtime_config)?);
        let outbound_http = Arc::new(outbound_http::OutboundHttp::new(ctx.manifest, &variables)?);
        let redis = Arc::new(redis::Redis::new(ctx.manifest, &outbound_http));
        let postgres = Arc::new(postgres::Postgres::new(outbound_http.clone()));
        Ok(Self {
            variables,
            outbound_http,
            key_value: Arc::new(key_value::KeyValue::new(ctx)?),
            sqlite: Arc::new(sqlite::Sqlite::new(ctx)?),
            postgres,
            redis,
        })
    }

    /// Adds every capability's interfaces to the linker.
    pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
        variables::add_to_linker(linker)?;
        key_value::add_to_linker(linker)?;
        sqlite::add_to_linker(linker)?;
        postgres::add_to_linker(linker)?;
        redis::add_to_linker(linker)?;
        Ok(())
    }
}
