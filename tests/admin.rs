//! End to end: the admin listener — its token, the component listing, the
//! health probes (readiness naming a backend that is down, and the shop in
//! production mode losing and regaining its Postgres), the Prometheus
//! metrics moving as requests flow (connection pools and bus retries
//! included), and the bus's dead letters.
use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::postgres::TestDatabase;
use support::{Bazaar, Up, app, call, client, free_port, require_components, require_redis, sample};

fn start(state: &Path, up: Up) -> Bazaar {
    require_components(&["hello", "probe"]);
    Bazaar::start(&app("examples"), up.state_dir(state))
}

async fn status(url: &str, token: Option<&str>) -> u16 {
    let mut req = client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn admin_requests_need_the_token_the_host_wrote() {
    let state = tempfile::tempdir().unwrap();
    let bazaar = start(state.path(), Up::default().env("BAZAAR_ADMIN_TOKEN", ""));
    let token_file = state.path().join("admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 64, "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let components = bazaar.admin_url("/admin/components");
    assert_eq!(status(&components, None).await, 401);
    assert_eq!(status(&components, Some("wrong")).await, 401);
    let resp = client().post(bazaar.admin_url("/admin/components/hello/rollback")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("Bearer"));

    // The probes are open, for load balancers.
    assert_eq!(status(&bazaar.admin_url("/healthz"), None).await, 200);

    let resp = client().get(&components).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = list["components"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["backend", "hello", "probe"]);
    let hello = &list["components"][1];
    assert_eq!(hello["version"].as_str().unwrap().len(), 64, "{hello}");
    assert!(hello["loaded_at"].as_str().unwrap().ends_with('Z'), "{hello}");
    assert_eq!(hello["previous_version"], Value::Null);

    // Request counts follow the traffic.
    for _ in 0..3 {
        assert_eq!(status(&bazaar.url("/hello"), None).await, 200);
    }
    let list: Value = client().get(&components).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["components"][1]["requests"], 3, "{list}");
}

#[tokio::test]
async fn metrics_move_as_requests_flow() {
    let state = tempfile::tempdir().unwrap();
    let bazaar = start(state.path(), Up::default());
    let ok = r#"bazaar_http_requests_total{component="hello",route="/hello",status="200"}"#;
    let before = sample(&bazaar.metrics().await, ok);
    for _ in 0..5 {
        assert_eq!(status(&bazaar.url("/hello"), None).await, 200);
    }
    assert_eq!(status(&bazaar.url("/probe/panic"), None).await, 500);
    let text = bazaar.metrics().await;
    assert_eq!(sample(&text, ok) - before, 5.0, "{text}");
    assert_eq!(
        sample(&text, r#"bazaar_http_requests_total{component="probe",route="/probe/...",status="500"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, r#"bazaar_component_failures_total{component="probe",kind="trap"}"#), 1.0, "{text}");
    assert!(sample(&text, r#"bazaar_http_request_duration_seconds_count{component="hello",route="/hello"}"#) >= 5.0, "{text}");
    assert!(sample(&text, r#"bazaar_instantiation_seconds_count{component="hello"}"#) >= 5.0, "{text}");
    assert_eq!(sample(&text, r#"bazaar_http_requests_in_flight{component="hello"}"#), 0.0, "{text}");
}

#[tokio::test]
async fn pool_metrics_move_as_components_connect() {
    require_components(&["probe"]);
    require_redis();
    let db = TestDatabase::create().await;
    let state = tempfile::tempdir().unwrap();
    let bazaar = Bazaar::start(&app("pools"), Up::default().state_dir(state.path()));
    let pool = |metric: &str| format!(r#"bazaar_postgres_pool_{metric}{{address="postgres://127.0.0.1:5432/{}"}}"#, db.name);
    let shared = r#"bazaar_redis_connections{address="redis://127.0.0.1:6379",kind="shared"}"#;
    let text = bazaar.metrics().await;
    assert!(!text.contains(&pool("size")) && sample(&text, shared) == 0.0, "nothing open yet: {text}");

    let query = json!({"address": db.url(), "sql": "SELECT 1", "params": []});
    let resp = client().post(bazaar.url("/probe/pg/v4/query")).json(&query).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let get = json!({"address": "redis://127.0.0.1:6379", "key": format!("bazaar-test-pools-{}", std::process::id())});
    let resp = client().post(bazaar.url("/probe/redis/get")).json(&get).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // The connection goes back to its pool once the request has ended and
    // it has been reset, which runs on a task of its own, off the request's
    // path: it may be a moment behind the response.
    let returned = Instant::now();
    let text = loop {
        let text = bazaar.metrics().await;
        if sample(&text, &pool("available")) == 1.0 || returned.elapsed() > Duration::from_secs(5) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&text, &pool("size")), 1.0, "{text}");
    assert_eq!(sample(&text, &pool("available")), 1.0, "{text}");
    assert_eq!(sample(&text, &pool("max_size")), 16.0, "{text}");
    assert!(text.contains(&format!("{} 0", pool("waiting"))), "{text}");
    assert!(!text.contains("postgres@"), "no credentials in labels: {text}");
    assert_eq!(sample(&text, shared), 1.0, "{text}");
    assert!(
        text.contains(r#"bazaar_redis_connections{address="redis://127.0.0.1:6379",kind="dedicated"} 0"#),
        "the guest's own connections close with it: {text}"
    );
}

#[tokio::test]
async fn readyz_names_the_backend_that_is_down() {
    let state = tempfile::tempdir().unwrap();
    let ready = start(state.path(), Up::default());
    let resp = client().get(ready.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A key-value store on a Redis nobody listens on.
    let closed = free_port();
    let rc = state.path().join("runtime-config.toml");
    std::fs::write(&rc, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{closed}\"\n")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let down = start(other.path(), Up::default().arg("--runtime-config-file").arg(rc.to_str().unwrap()));
    let started = Instant::now();
    let resp = client().get(down.admin_url("/readyz")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "readiness checks time out quickly");
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let not_ready = body["not_ready"].as_array().unwrap();
    assert_eq!(not_ready.len(), 1, "{body}");
    assert_eq!(not_ready[0]["used_by"], "key_value_store.default", "{body}");
    assert_eq!(not_ready[0]["address"], format!("redis://127.0.0.1:{closed}"), "{body}");
    // Alive all the same: the process serves.
    assert_eq!(status(&down.admin_url("/healthz"), None).await, 200);
}

/// A TCP proxy in front of a server, on a port of its own: stopping it is
/// the server going away (its listener closed, every connection cut)
/// without touching the server other tests share.
struct Proxy {
    port: u16,
    target: SocketAddr,
    running: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let mut proxy = Proxy { port: free_port(), target, running: None };
        proxy.restart().await;
        proxy
    }

    /// Listens on the same port again.
    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let target = self.target;
        let task = tokio::spawn(async move {
            let mut stop_accepting = stopped.clone();
            loop {
                let mut client = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                    _ = stop_accepting.wait_for(|stop| *stop) => return,
                };
                let mut cut = stopped.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|stop| *stop) => {}
                    }
                });
            }
        });
        self.running = Some((stop, task));
    }

    /// Closes the listener and cuts every connection.
    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.send(true).unwrap();
            task.await.unwrap();
        }
    }
}

/// The shop in production mode, its products database reached through a
/// proxy: with the proxy stopped the host is not ready, naming Postgres;
/// started again, it is ready again.
#[tokio::test]
async fn readyz_follows_postgres_in_production_mode() {
    const REDIS_DB: u8 = support::redis_dbs::ADMIN_READYZ;
    require_components(&["gateway", "auth", "users", "products", "orders", "payments", "notifications"]);
    require_redis();
    let db = TestDatabase::create_for("products").await;
    let mut proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let proxied = format!("127.0.0.1:{}", proxy.port);
    let state = tempfile::tempdir().unwrap();
    let rc = support::production_runtime_config(state.path(), REDIS_DB);
    let bazaar = Bazaar::start(
        &support::root().join("spin.toml"),
        Up::default()
            .state_dir(state.path())
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .env("SPIN_VARIABLE_POSTGRES_HOST", &proxied)
            .env("SPIN_VARIABLE_PRODUCTS_DATABASE_URL", format!("postgres://postgres@{proxied}/{}", db.name)),
    );
    let readyz = || async {
        let resp = client().get(bazaar.admin_url("/readyz")).send().await.unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    let (s, v) = call(&bazaar, "GET", "/api/products", None, None).await;
    assert_eq!(s, 200, "the products service reads its database through the proxy: {v}");

    let (s, body) = readyz().await;
    assert_eq!(s, 200, "{body}");
    let address = format!("postgres://{proxied}");
    let backends = body["backends"].as_array().unwrap();
    let postgres = backends.iter().find(|b| b["address"] == address.as_str()).unwrap_or_else(|| panic!("{body}"));
    let used_by = postgres["used_by"].as_str().unwrap();
    for use_ in ["variable products.database_url", "an open connection pool"] {
        assert!(used_by.contains(use_), "{use_}: {body}");
    }
    assert!(!body.to_string().contains("postgres@"), "no credentials: {body}");

    proxy.stop().await;
    let (s, body) = readyz().await;
    assert_eq!(s, 503, "{body}");
    let not_ready = body["not_ready"].as_array().unwrap();
    assert_eq!(not_ready.len(), 1, "only Postgres is down: {body}");
    assert_eq!(not_ready[0]["address"], address.as_str(), "{body}");
    assert!(not_ready[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert_eq!(status(&bazaar.admin_url("/healthz"), None).await, 200, "alive all the same");

    proxy.restart().await;
    let (s, body) = readyz().await;
    assert_eq!(s, 200, "{body}");
    let (s, v) = call(&bazaar, "GET", "/api/products", None, None).await;
    assert_eq!(s, 200, "the pool replaces the connections the outage cut: {v}");

    let _ = std::process::Command::new("redis-cli").args(["-n", &REDIS_DB.to_string(), "FLUSHDB"]).output();
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    require_components(&["probe", "subscriber"]);
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("runtime-config.toml");
    let store = dir.path().join("bus_log.db");
    std::fs::write(
        &rc,
        format!(
            "[key_value_store.bus_log]\ntype = \"spin\"\npath = \"{}\"\n[message_bus]\ntype = \"embedded\"\nmax_attempts = 2\nretry_backoff_ms = 10\n",
            store.display()
        ),
    )
    .unwrap();
    let bazaar = Bazaar::start(
        &app("bus"),
        Up::default()
            .state_dir(&dir.path().join("state"))
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .arg("--admin-token")
            .arg("t"),
    );
    let publish = json!({"address": "redis://127.0.0.1:6379", "channel": "orders", "payload": "fail:poison"});
    let resp = client().post(bazaar.url("/probe/redis/publish")).json(&publish).send().await.unwrap();
    assert!(resp.status().is_success());

    let dead_letters = || async {
        let resp = client().get(bazaar.admin_url("/admin/bus/dead-letters")).bearer_auth("t").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["dead_letters"].as_array().unwrap().clone()
    };
    let started = Instant::now();
    let dead = loop {
        let dead = dead_letters().await;
        if dead.len() == 2 {
            break dead;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{dead:?}\n{}", bazaar.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(dead.iter().all(|d| d["payload"] == "fail:poison"), "{dead:?}");

    let before_replay = bazaar.metrics().await;
    let id = dead[0]["id"].as_str().unwrap();
    let resp = client()
        .post(bazaar.admin_url(&format!("/admin/bus/dead-letters/{id}/replay")))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Before the replay: each subscriber tried twice (one retry), then gave up.
    for subscriber in ["mailer", "audit"] {
        let labels = format!(r#"{{channel="orders",subscriber="{subscriber}"}}"#);
        assert_eq!(sample(&before_replay, &format!("bazaar_bus_retried_total{labels}")), 1.0, "{before_replay}");
        assert_eq!(sample(&before_replay, &format!("bazaar_bus_dead_lettered_total{labels}")), 1.0, "{before_replay}");
        assert_eq!(sample(&before_replay, &format!("bazaar_bus_failed_deliveries_total{labels}")), 2.0, "{before_replay}");
    }
    // Replayed, it is delivered again (and, failing again, dead again).
    let metrics = bazaar.metrics().await;
    assert!(metrics.contains(r#"bazaar_bus_published_total{channel="orders"} 1"#), "{metrics}");
    assert!(metrics.contains("bazaar_bus_failed_deliveries_total"), "{metrics}");
}
