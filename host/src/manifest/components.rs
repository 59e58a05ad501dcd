//! `[component.<id>]` tables (and components written inline in triggers)
//! checked and turned into [`Component`]s: sources and mounts resolved
//! against the manifest directory, names checked, variable templates checked
//! against the app variables, and what bazaar does not run rejected.
use std::collections::BTreeMap;

use super::raw::{RawBuild, RawComponent};
use super::template::{self, Part};
use super::{Component, ComponentBuild, Context, FileMount, ManifestError, VariableDecl, names};

/// Converts the `[component.<id>]` tables.
pub(super) fn convert_all(
    raw: BTreeMap<String, RawComponent>,
    variables: &BTreeMap<String, VariableDecl>,
    ctx: &Context,
) -> Result<BTreeMap<String, Component>, ManifestError> {
    let mut components = BTreeMap::new();
    for (id, component) in raw {
        let field = format!("component.{id}");
        names::check_component_id(&id).map_err(|why| ctx.error(&field, format!("invalid component id: {why}")))?;
        let component = convert(&id, component, &field, variables, ctx)?;
        components.insert(id, component);
    }
    Ok(components)
}

/// Converts one component; `field` names it in errors (`component.cart`, or
/// `[[trigger.http]] #1 component` for an inline one).
pub(super) fn convert(
    id: &str,
    raw: RawComponent,
    field: &str,
    variables: &BTreeMap<String, VariableDecl>,
    ctx: &Context,
) -> Result<Component, ManifestError> {
    let at = |name: &str| format!("{field}.{name}");
    if raw.dependencies.is_some() || raw.dependencies_inherit_configuration.is_some() {
        return Err(ctx.error(
            at("dependencies"),
            "component dependencies (composition) are not supported by bazaar; compose the component \
             ahead of time (for example with `wac plug`) and point `source` at the result",
        ));
    }
    if raw.ai_models.is_some() {
        return Err(ctx.error(at("ai_models"), "bazaar does not provide Serverless AI models; remove `ai_models`"));
    }
    if let Some(hosts) = raw.allowed_http_hosts {
        let suggestion: Vec<String> = hosts.iter().map(|h| format!("\"https://{h}\"")).collect();
        return Err(ctx.error(
            at("allowed_http_hosts"),
            format!(
                "was replaced by `allowed_outbound_hosts` in Spin 2; write allowed_outbound_hosts = [{}]",
                suggestion.join(", ")
            ),
        ));
    }
    for (name, stores) in [("key_value_stores", &raw.key_value_stores), ("sqlite_databases", &raw.sqlite_databases)] {
        for store in stores {
            names::check_store_name(store).map_err(|why| ctx.error(at(name), format!("{store:?}: {why}")))?;
        }
    }
    for (name, value) in &raw.variables {
        let field = at(&format!("variables.{name}"));
        names::check_variable_name(name).map_err(|why| ctx.error(&field, format!("invalid name: {why}")))?;
        check_template(value, variables).map_err(|why| ctx.error(&field, why))?;
    }
    let files = raw.files.iter().map(|entry| file_mount(entry, ctx).map_err(|why| ctx.error(at("files"), why)));
    Ok(Component {
        id: id.to_string(),
        source: source(&raw.source, ctx).map_err(|why| ctx.error(at("source"), why))?,
        description: raw.description,
        allowed_outbound_hosts: raw.allowed_outbound_hosts,
        key_value_stores: raw.key_value_stores,
        sqlite_databases: raw.sqlite_databases,
        environment: raw.environment,
        variables: raw.variables,
        files: files.collect::<Result<_, _>>()?,
        exclude_files: raw.exclude_files,
        build: raw.build.map(|b| build(b, ctx).map_err(|why| ctx.error(at("build.command"), why))).transpose()?,
    })
}

fn source(value: &toml::Value, ctx: &Context) -> Result<std::path::PathBuf, String> {
    match value {
        toml::Value::String(path) => Ok(ctx.dir.join(path)),
        toml::Value::Table(t) if t.contains_key("url") => Err(format!(
            "bazaar runs local Wasm files only; download {} and set source = \"path/to/file.wasm\"",
            t["url"]
        )),
        toml::Value::Table(t) if t.contains_key("package") => {
            Err("bazaar runs local Wasm files only, not registry packages; fetch the package and set \
             source = \"path/to/file.wasm\""
                .to_string())
        }
        _ => Err("must be the path of a Wasm file, such as \"target/wasm32-wasip2/release/cart.wasm\"".to_string()),
    }
}

/// One `files` entry as a directory mount (see [`FileMount`]).
fn file_mount(entry: &toml::Value, ctx: &Context) -> Result<FileMount, String> {
    match entry {
        toml::Value::String(pattern) => {
            let path = whole_tree(pattern).ok_or_else(|| {
                format!(
                    "{pattern:?}: bazaar mounts whole directories, so a glob must take a whole tree, such as \
                     \"static/**/*\"; or write {{ source = \"static\", destination = \"/static\" }}"
                )
            })?;
            Ok(FileMount { source: ctx.dir.join(path), destination: format!("/{path}") })
        }
        toml::Value::Table(t) => match (t.get("source"), t.get("destination"), t.len()) {
            (Some(toml::Value::String(source)), Some(toml::Value::String(destination)), 2) => {
                Ok(FileMount { source: ctx.dir.join(source), destination: destination.clone() })
            }
            _ => Err(format!("{entry} must be {{ source = \"dir\", destination = \"/path\" }}")),
        },
        _ => Err(format!("{entry} must be a path, a glob such as \"static/**/*\", or {{ source, destination }}")),
    }
}

/// The directory a `files` string mounts, relative to the app directory
/// (`""` for the app directory itself), if it names a whole tree.
fn whole_tree(pattern: &str) -> Option<&str> {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let path = ["**/*", "**"]
        .iter()
        .find_map(|tail| pattern.strip_suffix(tail))
        .map_or(pattern, |dir| dir.strip_suffix('/').unwrap_or(dir));
    let is_literal = glob::Pattern::escape(path) == path;
    is_literal.then(|| path.trim_matches('/'))
}

fn build(raw: RawBuild, ctx: &Context) -> Result<ComponentBuild, String> {
    let commands = match raw.command {
        toml::Value::String(command) => vec![command],
        toml::Value::Array(commands) => commands
            .into_iter()
            .map(|c| match c {
                toml::Value::String(c) => Ok(c),
                other => Err(format!("{other} is not a command string")),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("{other} must be a command string or an array of them")),
    };
    Ok(ComponentBuild { commands, workdir: raw.workdir.map(|w| ctx.dir.join(w)), watch: raw.watch })
}

/// A component variable's value must be a well-formed template over
/// declared app variables.
fn check_template(value: &str, variables: &BTreeMap<String, VariableDecl>) -> Result<(), String> {
    let parts = template::parse(value).map_err(|why| format!("template {value:?}: {why}"))?;
    for part in parts {
        if let Part::Variable(name) = part
            && !variables.contains_key(name)
        {
            return Err(format!(
                "template {value:?} uses {name:?}, which is not declared; declare it in [variables] or fix the name"
            ));
        }
    }
    Ok(())
}
