//! spin.toml: the Spin application manifest, version 2, read into the
//! [`Manifest`] the rest of bazaar works from.
//!
//! Reading checks everything that can be checked without touching other
//! files, so that a mistake is reported once, up front, naming the file,
//! the field and the fix (see [`ManifestError`]): the version, unknown
//! fields, names and ids, that triggers name existing components, that
//! component variable templates name declared app variables, and that HTTP
//! routes are valid and distinct. Whether Wasm sources and mounted
//! directories exist is the loader's business.
//!
//! The semantics are Spin's (`crates/manifest` and `crates/loader` in the
//! Spin repository): relative paths resolve against the manifest's
//! directory, and a component written inline in a trigger is given an id
//! the way Spin gives it one. bazaar runs local files only, so remote and
//! registry sources and component dependencies are rejected with a clear
//! error rather than half-supported.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod components;
mod error;
mod names;
mod raw;
pub mod template;
mod triggers;

pub use error::ManifestError;

/// The spin.toml version bazaar reads.
const SUPPORTED_VERSION: i64 = 2;
/// The trigger types bazaar runs.
const TRIGGER_TYPES: [&str; 2] = ["http", "redis"];

#[derive(Clone, Debug)]
pub struct Manifest {
    /// The spin.toml path, absolute.
    pub file: PathBuf,
    /// Its directory; relative paths in the manifest resolve against it.
    pub dir: PathBuf,
    pub application: Application,
    /// `[variables]`: the app variables, by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]`, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[[trigger.redis]]`, in manifest order.
    pub redis_triggers: Vec<RedisTrigger>,
    /// `[component.<id>]` and the components written inline in triggers, by id.
    pub components: BTreeMap<String, Component>,
}

/// `[application]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub authors: Vec<String>,
    /// `[application.trigger.http] base`: prefixed to every HTTP route; `/`
    /// when not set.
    pub http_base: String,
    /// `[application.trigger.redis] address`: the default Redis server.
    pub redis_address: Option<String>,
}

/// An app variable declared in `[variables]`. Exactly one of `required`
/// and `default` is set, as Spin requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    /// The value must not be logged.
    pub secret: bool,
}

/// `[[trigger.http]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTrigger {
    pub route: HttpRoute,
    /// The id of the component to run (a key of [`Manifest::components`]).
    pub component: String,
    /// `executor = { type = ... }`; `None` means the default, Spin's.
    pub executor: Option<HttpExecutor>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpRoute {
    /// `route = "/path"`, as written (see [`crate::routing`]).
    Route(String),
    /// `route = { private = true }`: reachable only by service chaining.
    Private,
}

/// How a component handles HTTP requests: `executor = { type = "..." }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpExecutor {
    /// `spin`: the component exports a Spin or wasi:http handler.
    Spin,
    /// `wasi`: the component exports wasi:http's incoming-handler.
    Wasi,
    /// `wagi`: a WASI command speaking CGI on stdin/stdout.
    Wagi { entrypoint: String, argv: String },
}

/// `[[trigger.redis]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTrigger {
    pub channel: String,
    /// The id of the component to run (a key of [`Manifest::components`]).
    pub component: String,
    /// The trigger's own `address`, or else the application's: one of them
    /// must be set.
    pub address: String,
}

/// `[component.<id>]`, or a component written inline in a trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub id: String,
    /// The Wasm file, resolved against the manifest directory.
    pub source: PathBuf,
    pub description: Option<String>,
    /// As written; the outbound-http capability parses them.
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    /// The guest's environment variables.
    pub environment: BTreeMap<String, String>,
    /// Component variable name → template over app variables, such as
    /// `"{{ api_host }}"` (see [`template`]).
    pub variables: BTreeMap<String, String>,
    pub files: Vec<FileMount>,
    /// `exclude_files` glob patterns, as written.
    pub exclude_files: Vec<String>,
    pub build: Option<ComponentBuild>,
}

/// A host directory (or file) the guest sees at `destination`.
///
/// `{ source = "assets", destination = "/www" }` is itself; a string entry
/// keeps its path relative to the app directory, so `"static"`,
/// `"static/**"` and `"static/**/*"` all mount `static` at `/static`
/// (bazaar mounts whole directories, so other globs are rejected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMount {
    /// Resolved against the manifest directory.
    pub source: PathBuf,
    pub destination: String,
}

/// `[component.<id>.build]`: how `bazaar build` builds the component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentBuild {
    /// `command = "..."`, or each of `command = ["...", "..."]` in order.
    pub commands: Vec<String>,
    /// Where the commands run, resolved against the manifest directory;
    /// `None` means the manifest directory.
    pub workdir: Option<PathBuf>,
    /// Globs (relative to the workdir) whose changes call for a rebuild.
    pub watch: Vec<String>,
}

/// Reads and checks the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ManifestError::Read { file: path.to_path_buf(), source })?;
    parse(&text, path)
}

/// Checks manifest `text` as if read from `file`, which is only used to
/// resolve relative paths and name the file in errors.
pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
    let table: toml::Table = text.parse().map_err(|e| ManifestError::from_toml(file, text, &e, true))?;
    check_version(&table, file)?;
    check_trigger_types(&table, file)?;
    let raw: raw::RawManifest = toml::from_str(text).map_err(|e| ManifestError::from_toml(file, text, &e, false))?;

    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let ctx = Context { file, dir: &dir };

    let application = application(raw.application, &ctx)?;
    let variables = variables(raw.variables, &ctx)?;
    let mut components = components::convert_all(raw.component, &variables, &ctx)?;
    let Some(raw_triggers) = raw.trigger.filter(|t| !t.http.is_empty() || !t.redis.is_empty()) else {
        return Err(
            ctx.error("trigger", "the app has no triggers; add a [[trigger.http]] with a route and a component")
        );
    };
    let triggers = triggers::convert(raw_triggers, &application, &mut components, &variables, &ctx)?;

    Ok(Manifest {
        file: absolute,
        dir,
        application,
        variables,
        http_triggers: triggers.http,
        redis_triggers: triggers.redis,
        components,
    })
}

/// What every part of the conversion needs: where the manifest is.
struct Context<'a> {
    /// As given, for errors.
    file: &'a Path,
    /// The manifest's directory, absolute.
    dir: &'a Path,
}

impl Context<'_> {
    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::field(self.file, field, message)
    }
}

/// The version is checked on the bare TOML table, before the manifest is
/// read as version 2, so a version 1 manifest gets this error and not a
/// list of unknown fields.
fn check_version(table: &toml::Table, file: &Path) -> Result<(), ManifestError> {
    let error = |problem: String| {
        ManifestError::field(
            file,
            "spin_manifest_version",
            format!("{problem}; bazaar reads Spin manifest version {SUPPORTED_VERSION}"),
        )
    };
    let version = table.get("spin_manifest_version");
    // Version 1 manifests may say `spin_version = "1"` instead.
    match version.or_else(|| table.get("spin_version")) {
        Some(toml::Value::Integer(SUPPORTED_VERSION)) if version.is_some() => Ok(()),
        Some(toml::Value::String(s)) => Err(error(format!("must be {SUPPORTED_VERSION} (found {s})"))),
        Some(other) => Err(error(format!("must be {SUPPORTED_VERSION} (found {other})"))),
        None => Err(error(format!("is missing; add `spin_manifest_version = {SUPPORTED_VERSION}` at the top"))),
    }
}

/// Unsupported trigger types get their own error rather than "unknown field".
fn check_trigger_types(table: &toml::Table, file: &Path) -> Result<(), ManifestError> {
    let tables = [
        (table.get("trigger"), "trigger"),
        (table.get("application").and_then(|a| a.get("trigger")), "application.trigger"),
    ];
    for (value, prefix) in tables {
        let Some(toml::Value::Table(types)) = value else { continue };
        if let Some(kind) = types.keys().find(|k| !TRIGGER_TYPES.contains(&k.as_str())) {
            return Err(ManifestError::field(
                file,
                format!("{prefix}.{kind}"),
                format!(
                    "bazaar supports the http and redis triggers, not {kind:?}; remove it or run this app with Spin"
                ),
            ));
        }
    }
    Ok(())
}

fn application(raw: raw::RawApplication, ctx: &Context) -> Result<Application, ManifestError> {
    let http_base = match raw.trigger.http.and_then(|h| h.base) {
        None => "/".to_string(),
        Some(base) if base.starts_with('/') && !base.split('/').any(is_route_syntax) => base,
        Some(base) => {
            return Err(ctx.error(
                "application.trigger.http.base",
                format!("{base:?} is not a base path; write a path starting with \"/\", such as \"/shop\""),
            ));
        }
    };
    Ok(Application {
        name: raw.name,
        version: raw.version,
        description: raw.description,
        authors: raw.authors,
        http_base,
        redis_address: raw.trigger.redis.and_then(|r| r.address),
    })
}

/// A path segment that means something in a route, so not in a base.
fn is_route_syntax(segment: &str) -> bool {
    segment.starts_with(':') || segment.starts_with('*') || segment == "..."
}

fn variables(
    raw: BTreeMap<String, raw::RawVariable>,
    ctx: &Context,
) -> Result<BTreeMap<String, VariableDecl>, ManifestError> {
    let mut variables = BTreeMap::new();
    for (name, var) in raw {
        let field = format!("variables.{name}");
        names::check_variable_name(&name).map_err(|why| ctx.error(&field, format!("invalid name: {why}")))?;
        match (var.required, &var.default) {
            (true, Some(_)) => {
                return Err(ctx.error(
                    field,
                    "is `required` and has a `default`; a variable is either required or has a default, so remove one",
                ));
            }
            (false, None) => {
                return Err(ctx.error(field, "needs `required = true` or a `default = \"...\"`"));
            }
            _ => {}
        }
        variables.insert(name, VariableDecl { default: var.default, required: var.required, secret: var.secret });
    }
    Ok(variables)
}

#[cfg(test)]
mod tests;
