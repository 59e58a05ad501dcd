//! Readiness: can this host serve every request its app may get?
//!
//! Alive (`/healthz`) only says the process answers. Ready (`/readyz`) also
//! says every component is loaded and every backend the app is configured
//! to use answers. A load balancer stops sending traffic to a host that is
//! not ready instead of letting its requests fail one by one.
//!
//! A component opens Postgres and Redis by an address it computes, so no
//! list of them exists before it runs; the configured backends are:
//! - the Redis servers of the runtime config (key-value stores, the bus);
//! - the `postgres://` and `redis://` URLs among the components' variables
//!   (their database URLs);
//! - the servers the host has opened a Postgres pool or a Redis
//!   connection to, which covers addresses a component computes.
//!
//! What `allowed_outbound_hosts` grants is not a backend: the shop's
//! manifest grants its Postgres server so the same manifest runs in
//! production, yet in embedded mode no component uses it, and a host
//! serving on SQLite with no Postgres around is ready.
//!
//! A Redis trigger's address is only the name of the app's bus (which
//! may be embedded), never a server to check. One server used in several
//! ways is checked once, its `used_by` naming every use.
use std::time::Duration;

use serde::Serialize;

use crate::app::App;
use crate::bus::BusKind;
use crate::runtime_config::KeyValueStoreConfig;

/// How long one backend may take to answer before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A server the app depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// What uses it, e.g. `key_value_store.carts` or `variable products.database_url`.
    pub used_by: String,
    /// Its address, without credentials.
    pub address: String,
    #[serde(skip)]
    kind: Kind,
    #[serde(skip)]
    url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redis,
    Postgres,
}

/// A backend that did not answer, and why.
#[derive(Debug, Serialize)]
pub struct NotReady {
    #[serde(flatten)]
    pub backend: Backend,
    pub error: String,
}

/// Every backend the app is configured to use.
pub fn backends(app: &App) -> Vec<Backend> {
    let mut found = Vec::new();
    for (name, store) in &app.runtime_config.key_value_stores {
        if let KeyValueStoreConfig::Redis { url } = store {
            found.push(backend(format!("key_value_store.{name}"), url, Kind::Redis));
        }
    }
    let bus = &app.runtime_config.message_bus;
    if let (BusKind::Redis, Some(url)) = (bus.kind, &bus.url) {
        found.push(backend("message_bus".into(), url, Kind::Redis));
    }
    let mut used = Vec::new();
    for id in app.component_ids() {
        for (name, value) in app.capabilities.variables.all(id) {
            let kind = match value.split_once("://").map(|(scheme, _)| scheme) {
                Some("postgres" | "postgresql") => Kind::Postgres,
                Some("redis" | "rediss") => Kind::Redis,
                _ => continue,
            };
            used.push(backend(format!("variable {id}.{name}"), &value, kind));
        }
    }
    for server in app.capabilities.postgres.servers_in_use() {
        used.push(backend("an open connection pool".into(), &server, Kind::Postgres));
    }
    for server in app.capabilities.redis.connection_usage() {
        used.push(backend("an open connection".into(), &server.address, Kind::Redis));
    }
    // A bus address is a name, not a server (the runtime config's
    // message_bus.url is the bus's server, checked above).
    let bus_names: Vec<String> = crate::trigger::redis::bus_addresses(app)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| backend(String::new(), a, Kind::Redis))
        .map(|b| b.address)
        .collect();
    let used = used.into_iter().flatten().filter(|b| b.kind != Kind::Redis || !bus_names.contains(&b.address));
    merge(found.into_iter().flatten().chain(used))
}

/// One entry per server, its `used_by` listing every use, in first-seen
/// order (so a URL with credentials, from the runtime config or a
/// variable, is the one checked).
fn merge(backends: impl Iterator<Item = Backend>) -> Vec<Backend> {
    let mut merged: Vec<Backend> = Vec::new();
    for b in backends {
        match merged.iter_mut().find(|m| m.kind == b.kind && m.address == b.address) {
            Some(m) if m.used_by.split(", ").any(|u| u == b.used_by) => {}
            Some(m) => {
                m.used_by.push_str(", ");
                m.used_by.push_str(&b.used_by);
            }
            None => merged.push(b),
        }
    }
    merged
}

fn backend(used_by: String, url: &str, kind: Kind) -> Option<Backend> {
    let parsed = url::Url::parse(url).ok()?;
    let port = parsed.port().unwrap_or(match kind {
        Kind::Redis => 6379,
        Kind::Postgres => 5432,
    });
    let scheme = match parsed.scheme() {
        "postgresql" => "postgres",
        other => other,
    };
    let address = format!("{scheme}://{}:{port}", parsed.host_str()?);
    Some(Backend { used_by, address, kind, url: url.to_string() })
}

/// Checks every backend at once; returns those that did not answer.
pub async fn check(backends: &[Backend]) -> Vec<NotReady> {
    let checks = backends.iter().map(|b| async move {
        let result = tokio::time::timeout(CHECK_TIMEOUT, check_one(b)).await;
        let error = match result {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {CHECK_TIMEOUT:?}"),
        };
        Some(NotReady { backend: b.clone(), error })
    });
    futures::future::join_all(checks).await.into_iter().flatten().collect()
}

async fn check_one(backend: &Backend) -> Result<(), String> {
    match backend.kind {
        // A PING, so a port held by something that is not Redis fails too.
        Kind::Redis => {
            let client = redis::Client::open(backend.url.as_str()).map_err(|e| e.to_string())?;
            let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
            match redis::cmd("PING").query_async::<String>(&mut conn).await {
                Ok(_) => Ok(()),
                // An error reply (NOAUTH: this check has no password) is
                // Redis answering all the same.
                Err(e) if e.code().is_some() => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
        // Whether the server accepts connections; logging in is the
        // component's business and needs its credentials.
        Kind::Postgres => {
            let host_port = backend.address.split_once("://").map_or(backend.address.as_str(), |(_, rest)| rest);
            tokio::net::TcpStream::connect(host_port).await.map(drop).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_hide_credentials_and_fill_default_ports() {
        let b = backend("x".into(), "postgres://user:secret@db.local/shop", Kind::Postgres).unwrap();
        assert_eq!(b.address, "postgres://db.local:5432");
        let b = backend("x".into(), "redis://127.0.0.1", Kind::Redis).unwrap();
        assert_eq!(b.address, "redis://127.0.0.1:6379");
    }

    #[test]
    fn one_server_used_several_ways_is_checked_once() {
        let merged = merge(
            [
                backend("variable a.url".into(), "postgres://u:p@db/a", Kind::Postgres),
                backend("variable b.url".into(), "postgres://db:5432", Kind::Postgres),
                backend("variable b.url".into(), "postgresql://db:5432", Kind::Postgres),
                backend("an open connection pool".into(), "postgres://db:5432", Kind::Postgres),
                backend("an open connection".into(), "redis://db:5432", Kind::Redis),
            ]
            .into_iter()
            .flatten(),
        );
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0].used_by, "variable a.url, variable b.url, an open connection pool");
        assert_eq!(merged[0].url, "postgres://u:p@db/a", "the URL with credentials is checked");
    }

    #[tokio::test]
    async fn a_closed_port_is_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let b = backend("key_value_store.gone".into(), &format!("redis://127.0.0.1:{port}"), Kind::Redis).unwrap();
        let not_ready = check(&[b]).await;
        assert_eq!(not_ready.len(), 1);
        assert_eq!(not_ready[0].backend.used_by, "key_value_store.gone");
    }
}
