//! The shape of a Spin manifest version 2 file, as serde reads it.
//!
//! These types follow Spin's own schema (`crates/manifest/src/schema/v2.rs`
//! and `common.rs`), denying unknown fields where Spin does. Fields that may
//! be one of several shapes (`source`, `files` entries, a trigger's
//! `component` and `route`, `build.command`) are read as [`toml::Value`] and
//! interpreted afterwards, so their errors can name the field and the fix
//! rather than serde's "data did not match any variant".
use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// Checked before this type is read.
    #[serde(rename = "spin_manifest_version")]
    pub _version: IgnoredAny,
    pub application: RawApplication,
    #[serde(default)]
    pub variables: BTreeMap<String, RawVariable>,
    pub trigger: Option<RawTriggers>,
    #[serde(default)]
    pub component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApplication {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: RawAppTriggers,
    /// Settings for other tools; Spin ignores them too.
    #[serde(default, rename = "tool")]
    pub _tool: IgnoredAny,
}

/// `[application.trigger.*]`: settings shared by all triggers of a type.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppTriggers {
    pub http: Option<RawAppHttp>,
    pub redis: Option<RawAppRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppHttp {
    pub base: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppRedis {
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariable {
    #[serde(default)]
    pub required: bool,
    pub default: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

/// `[[trigger.*]]`. Other trigger types are rejected before this is read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTriggers {
    #[serde(default)]
    pub http: Vec<RawHttpTrigger>,
    #[serde(default)]
    pub redis: Vec<RawRedisTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTrigger {
    pub id: Option<String>,
    /// A component id, or an inline component table.
    pub component: Option<toml::Value>,
    /// A route string, or `{ private = true }`.
    pub route: Option<toml::Value>,
    pub executor: Option<RawHttpExecutor>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawHttpExecutor {
    Spin,
    Wasi,
    Wagi { entrypoint: Option<String>, argv: Option<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisTrigger {
    pub id: Option<String>,
    pub component: Option<toml::Value>,
    pub channel: String,
    pub address: Option<String>,
    /// Accepted and unused, as in Spin.
    #[serde(default, rename = "executor")]
    pub _executor: IgnoredAny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    /// A path string, or a `{ url, digest }` / registry table.
    pub source: toml::Value,
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Each a path or glob string, or a `{ source, destination }` table.
    #[serde(default)]
    pub files: Vec<toml::Value>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Deprecated in Spin 2; rejected with the replacement.
    pub allowed_http_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    /// Not provided by bazaar; rejected.
    pub ai_models: Option<Vec<String>>,
    pub build: Option<RawBuild>,
    #[serde(default, rename = "tool")]
    pub _tool: IgnoredAny,
    /// Component composition; not supported by bazaar, rejected.
    pub dependencies: Option<toml::Table>,
    pub dependencies_inherit_configuration: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    /// A command string, or an array of them.
    pub command: toml::Value,
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}
