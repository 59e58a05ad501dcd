//! Readiness: can this host serve every request its app may get?
//!
//! Alive (`/healthz`) only says the process answers. Ready (`/readyz`) also
//! says every component is loaded and every backend the app is configured
//! to use answers: the Redis servers of the runtime config (key-value
//! stores, the message bus) and the Postgres and Redis servers named by the
//! components' variables (their database URLs). A load balancer stops
//! sending traffic to a host that is not ready instead of letting its
//! requests fail one by one.
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
    for id in app.component_ids() {
        for (name, value) in app.capabilities.variables.all(id) {
            let kind = match value.split_once("://").map(|(scheme, _)| scheme) {
                Some("postgres" | "postgresql") => Kind::Postgres,
                Some("redis" | "rediss") => Kind::Redis,
                _ => continue,
            };
            found.push(backend(format!("variable {id}.{name}"), &value, kind));
        }
    }
    found.into_iter().flatten().collect()
}

fn backend(used_by: String, url: &str, kind: Kind) -> Option<Backend> {
    let parsed = url::Url::parse(url).ok()?;
    let port = parsed.port().unwrap_or(match kind {
        Kind::Redis => 6379,
        Kind::Postgres => 5432,
    });
    let address = format!("{}://{}:{port}", parsed.scheme(), parsed.host_str()?);
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
            redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop).map_err(|e| e.to_string())
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

    #[tokio::test]
    async fn a_closed_port_is_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let b = backend("key_value_store.gone".into(), &format!("redis://127.0.0.1:{port}"), Kind::Redis).unwrap();
        let not_ready = check(&[b]).await;
        assert_eq!(not_ready.len(), 1);
        assert_eq!(not_ready[0].backend.used_by, "key_value_store.gone");
    }
}
