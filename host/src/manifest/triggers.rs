//! `[[trigger.http]]` and `[[trigger.redis]]` checked and turned into
//! [`HttpTrigger`]s and [`RedisTrigger`]s.
//!
//! A trigger's `component` is an id or a component written inline. Inline
//! components get ids the way Spin gives them (`crates/manifest/src/normalize.rs`):
//! first each trigger without an `id` gets one, `<component>-<type>-trigger`
//! when it references a component by id and that is free, else
//! `<type>-trigger<N>` with the lowest free N (counting per trigger type);
//! then an inline component is `<trigger id>-component` if that is a valid,
//! free component id, else `inline-component<N>` with the lowest free N.
//! Triggers are numbered from 1 per type in errors (`[[trigger.http]] #2`).
//!
//! HTTP routes are checked with the [`Router`] that will serve them, so a
//! route that cannot be served is a manifest error naming its trigger.
use std::collections::{BTreeMap, BTreeSet};

use super::raw::{RawComponent, RawHttpExecutor, RawTriggers};
use super::{
    Application, Component, Context, HttpExecutor, HttpRoute, HttpTrigger, ManifestError, RedisTrigger, VariableDecl,
    components, names,
};
use crate::routing::{RouteError, Router};

pub(super) struct Triggers {
    pub http: Vec<HttpTrigger>,
    pub redis: Vec<RedisTrigger>,
}

/// A trigger of either type, during conversion.
struct Trigger {
    /// `[[trigger.<kind>]] #<n>`, for errors.
    name: String,
    kind: &'static str,
    id: Option<String>,
    component: Option<toml::Value>,
    settings: Settings,
}

/// What only one trigger type has.
enum Settings {
    Http { route: Option<toml::Value>, executor: Option<RawHttpExecutor> },
    Redis { channel: String, address: Option<String> },
}

pub(super) fn convert(
    raw: RawTriggers,
    application: &Application,
    components: &mut BTreeMap<String, Component>,
    variables: &BTreeMap<String, VariableDecl>,
    ctx: &Context,
) -> Result<Triggers, ManifestError> {
    let http = raw.http.into_iter().enumerate().map(|(n, t)| Trigger {
        name: format!("[[trigger.http]] #{}", n + 1),
        kind: "http",
        id: t.id,
        component: t.component,
        settings: Settings::Http { route: t.route, executor: t.executor },
    });
    let redis = raw.redis.into_iter().enumerate().map(|(n, t)| Trigger {
        name: format!("[[trigger.redis]] #{}", n + 1),
        kind: "redis",
        id: t.id,
        component: t.component,
        settings: Settings::Redis { channel: t.channel, address: t.address },
    });
    let triggers: Vec<Trigger> = http.chain(redis).collect();

    // Inline components first, so references may name them (as in Spin).
    let trigger_ids = assign_trigger_ids(&triggers);
    let mut component_ids = Vec::with_capacity(triggers.len());
    for (trigger, trigger_id) in triggers.iter().zip(&trigger_ids) {
        component_ids.push(component_of(trigger, trigger_id, components, variables, ctx)?);
    }

    let mut converted = Triggers { http: Vec::new(), redis: Vec::new() };
    for (trigger, component) in triggers.into_iter().zip(component_ids) {
        if !components.contains_key(&component) {
            return Err(ctx.error(
                format!("{} component", trigger.name),
                format!("{component:?} names no component; define [component.{component}] or fix the id"),
            ));
        }
        match trigger.settings {
            Settings::Http { route, executor } => converted.http.push(HttpTrigger {
                route: route_of(route, &trigger.name, ctx)?,
                component,
                executor: executor.map(executor_of),
            }),
            Settings::Redis { channel, address } => {
                let address = address.or_else(|| application.redis_address.clone()).ok_or_else(|| {
                    ctx.error(
                        format!("{} address", trigger.name),
                        "no Redis address; set address = \"redis://host:6379\" on the trigger or in \
                         [application.trigger.redis]",
                    )
                })?;
                converted.redis.push(RedisTrigger { channel, component, address });
            }
        }
    }
    check_routes(&converted.http, &application.http_base, ctx)?;
    Ok(converted)
}

/// Each trigger's id: its own, or one generated as Spin does.
fn assign_trigger_ids(triggers: &[Trigger]) -> Vec<String> {
    let mut taken: BTreeSet<String> = triggers.iter().filter_map(|t| t.id.clone()).collect();
    let mut counters: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids = Vec::with_capacity(triggers.len());
    for trigger in triggers {
        if let Some(id) = &trigger.id {
            ids.push(id.clone());
            continue;
        }
        let natural = match &trigger.component {
            Some(toml::Value::String(component)) => Some(format!("{component}-{}-trigger", trigger.kind)),
            _ => None,
        };
        let id = match natural.filter(|id| !taken.contains(id)) {
            Some(id) => id,
            None => {
                let counter = counters.entry(trigger.kind).or_insert(1);
                while taken.contains(&format!("{}-trigger{counter}", trigger.kind)) {
                    *counter += 1;
                }
                format!("{}-trigger{counter}", trigger.kind)
            }
        };
        taken.insert(id.clone());
        ids.push(id);
    }
    ids
}

/// The id of the component a trigger runs, adding an inline one to
/// `components`. References are checked once all inline components exist.
fn component_of(
    trigger: &Trigger,
    trigger_id: &str,
    components: &mut BTreeMap<String, Component>,
    variables: &BTreeMap<String, VariableDecl>,
    ctx: &Context,
) -> Result<String, ManifestError> {
    let field = format!("{} component", trigger.name);
    match &trigger.component {
        Some(toml::Value::String(id)) => Ok(id.clone()),
        Some(toml::Value::Table(table)) => {
            let raw: RawComponent = toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| ctx.error(&field, e.message().trim_end()))?;
            let id = inline_component_id(trigger_id, components);
            let component = components::convert(&id, raw, &field, variables, ctx)?;
            components.insert(id.clone(), component);
            Ok(id)
        }
        Some(other) => Err(ctx.error(field, format!("{other} must be a component id or an inline component table"))),
        None => Err(ctx.error(&trigger.name, "has no component; add component = \"<id>\" naming a [component.<id>]")),
    }
}

fn inline_component_id(trigger_id: &str, components: &BTreeMap<String, Component>) -> String {
    let natural = format!("{trigger_id}-component");
    if names::check_component_id(&natural).is_ok() && !components.contains_key(&natural) {
        return natural;
    }
    (1..).map(|n| format!("inline-component{n}")).find(|id| !components.contains_key(id)).expect("ids are unbounded")
}

fn route_of(route: Option<toml::Value>, trigger: &str, ctx: &Context) -> Result<HttpRoute, ManifestError> {
    let field = format!("{trigger} route");
    match route {
        Some(toml::Value::String(route)) => Ok(HttpRoute::Route(route)),
        Some(toml::Value::Table(t)) if t.len() == 1 && t.get("private") == Some(&toml::Value::Boolean(true)) => {
            Ok(HttpRoute::Private)
        }
        Some(other) => {
            Err(ctx.error(field, format!("{other} must be a route such as \"/api/...\" or {{ private = true }}")))
        }
        None => Err(ctx.error(trigger, "has no route; add route = \"/path\" (or route = { private = true })")),
    }
}

fn executor_of(raw: RawHttpExecutor) -> HttpExecutor {
    match raw {
        RawHttpExecutor::Spin => HttpExecutor::Spin,
        RawHttpExecutor::Wasi => HttpExecutor::Wasi,
        RawHttpExecutor::Wagi { entrypoint, argv } => HttpExecutor::Wagi {
            entrypoint: entrypoint.unwrap_or_else(|| "_start".to_string()),
            argv: argv.unwrap_or_else(|| "${SCRIPT_NAME} ${ARGS}".to_string()),
        },
    }
}

/// Builds the router the HTTP trigger will use, to report routes it cannot
/// serve against their triggers.
fn check_routes(http: &[HttpTrigger], base: &str, ctx: &Context) -> Result<(), ManifestError> {
    let mut numbers = Vec::new();
    let mut routes = Vec::new();
    for (n, trigger) in http.iter().enumerate() {
        if let HttpRoute::Route(route) = &trigger.route {
            numbers.push(n + 1);
            routes.push((route.clone(), trigger.component.clone()));
        }
    }
    Router::build(base, &routes).map(drop).map_err(|e| match e {
        RouteError::Invalid { index, route, reason, .. } => ctx
            .error(format!("[[trigger.http]] #{} route", numbers[index]), format!("{route:?} is not valid: {reason}")),
        RouteError::Duplicate { index, route, first_index, first_route, .. } => ctx.error(
            format!("[[trigger.http]] #{} route", numbers[index]),
            format!(
                "{route:?} is the same route as #{} ({first_route:?}); each route may be used once",
                numbers[first_index]
            ),
        ),
    })
}
