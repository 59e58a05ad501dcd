//! End to end: what components can reach — key-value, SQLite, variables,
//! outbound HTTP and chaining — and that everything spin.toml does not grant
//! is denied.
use crate::support;

use serde_json::{Value, json};
use support::{Bazaar, Up, app, client, free_port, get, post_json, put, require_components};

/// Starts the capabilities app; `upstream_port` (a required variable) is the
/// app's own port, so the probe's allowed outbound host is the app itself.
fn start(state_dir: &std::path::Path) -> Bazaar {
    require_components(&["probe"]);
    let port = free_port();
    let manifest = app("capabilities");
    let rc = manifest.parent().unwrap().join("runtime-config.toml");
    Bazaar::start(
        &manifest,
        Up::default()
            .port(port)
            .state_dir(state_dir)
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .env("SPIN_VARIABLE_UPSTREAM_PORT", port.to_string()),
    )
}

#[tokio::test]
async fn key_value_persists_across_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    assert_eq!(put(&b, "/probe/kv/default/greeting", "hello kv").await, 204);
    assert_eq!(get(&b, "/probe/kv/default/greeting").await, (200, "hello kv".into()));
    assert_eq!(get(&b, "/probe/kv/default").await.1, r#"["greeting"]"#);
    drop(b);
    assert!(state.path().join("sqlite_key_value.db").is_file());

    let b = start(state.path());
    assert_eq!(get(&b, "/probe/kv/default/greeting").await, (200, "hello kv".into()));
    assert_eq!(client().delete(b.url("/probe/kv/default/greeting")).send().await.unwrap().status(), 204);
    assert_eq!(get(&b, "/probe/kv/default/greeting").await.0, 404);
}

#[tokio::test]
async fn wasi_keyvalue_increment_batch_and_cas() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    for expected in 1..=3 {
        let (status, v) = post_json(&b, "/probe/wkv/default/counter/incr?by=1", json!(null)).await;
        assert_eq!(status, 200);
        assert_eq!(v["value"], expected);
    }
    let (_, v) = post_json(&b, "/probe/wkv/default/counter/incr?by=10", json!(null)).await;
    assert_eq!(v["value"], 13);
    assert_eq!(post_json(&b, "/probe/wkv/extra/batch-set", json!({"a": "1", "b": "2"})).await.0, 204);
    let (_, v) = post_json(&b, "/probe/wkv/extra/batch-get", json!(["a", "b", "c"])).await;
    assert_eq!(v, json!({"a": "1", "b": "2", "c": null}));
    let resp = client().post(b.url("/probe/wkv/extra/a/swap")).body("one").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(get(&b, "/probe/wkv/extra/a").await.1, "one");
}

#[tokio::test]
async fn ungranted_stores_and_databases_are_denied() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    // `backend` exists in the runtime config but only the backend component has it.
    for path in ["/probe/kv/backend/x", "/probe/kv/nonexistent/x", "/bare/kv/default/x", "/probe/wkv/backend/x"] {
        let (status, body) = get(&b, path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("access-denied"), "{path}: {body}");
    }
    for path in ["/bare/sqlite/default", "/probe/sqlite/backend", "/bare/sqlite3/default"] {
        let (status, body) = post_json(&b, path, json!({"sql": "SELECT 1", "params": []})).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"], "access-denied", "{path}: {body}");
    }
}

#[tokio::test]
async fn sqlite_round_trips_types_and_persists() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let run = |sql: &str, params: Value| json!({"sql": sql, "params": params});
    let (s, v) = post_json(&b, "/probe/sqlite/default", run("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)", json!([]))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post_json(
        &b,
        "/probe/sqlite/default",
        run("INSERT INTO t VALUES (?, ?, ?, ?, ?)", json!([42, 2.5, "héllo", {"blob_b64": "AAEC/w=="}, null])),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = post_json(&b, "/probe/sqlite/default", run("SELECT i, r, s, b, n FROM t", json!([]))).await;
    assert_eq!(v["columns"], json!(["i", "r", "s", "b", "n"]));
    assert_eq!(v["rows"], json!([[42, 2.5, "héllo", {"blob_b64": "AAEC/w=="}, null]]));
    // Columns come back even when no row does.
    let (_, v) = post_json(&b, "/probe/sqlite3/default", run("SELECT i FROM t WHERE i < 0", json!([]))).await;
    assert_eq!(v["columns"], json!(["i"]));
    assert_eq!(v["rows"], json!([]));
    // SQLite's own message reaches the component.
    let (s, v) = post_json(&b, "/probe/sqlite/default", run("SELECT * FROM missing_table", json!([]))).await;
    assert_eq!(s, 500);
    assert!(v["detail"].as_str().unwrap().contains("no such table"), "{v}");
    drop(b);

    let b = start(state.path());
    let (_, v) = post_json(&b, "/probe/sqlite/default", run("SELECT count(*) FROM t", json!([]))).await;
    assert_eq!(v["rows"], json!([[1]]));
}

/// Connections are pooled between requests (host/src/capabilities/sqlite/
/// pool.rs); nothing one request leaves on its connection reaches the next.
#[tokio::test]
async fn no_request_sees_what_another_left_on_its_sqlite_connection() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let sql = |sql: &str| json!({"sql": sql, "params": []});
    let db = "/probe/sqlite3/default";
    assert_eq!(post_json(&b, db, sql("CREATE TABLE pooled (x INTEGER)")).await.0, 200);

    // A transaction left open is rolled back; the next request's insert is
    // its own and stays.
    assert_eq!(post_json(&b, db, sql("BEGIN")).await.0, 200);
    let (s, v) = post_json(&b, db, sql("INSERT INTO pooled VALUES (1)")).await;
    assert_eq!((s, &v["last_insert_rowid"]), (200, &json!(1)), "{v}");
    // The insert's rowid is not the next request's.
    let (_, v) = post_json(&b, db, sql("SELECT count(*) FROM pooled")).await;
    assert_eq!((&v["rows"], &v["last_insert_rowid"]), (&json!([[1]]), &json!(0)), "{v}");

    // Temporary tables and settings stay with the request that made them.
    assert_eq!(post_json(&b, db, sql("CREATE TEMP TABLE scratch (x)")).await.0, 200);
    let (s, v) = post_json(&b, db, sql("SELECT count(*) FROM temp.scratch")).await;
    assert_eq!(s, 500, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("no such table"), "{v}");
    assert_eq!(post_json(&b, db, sql("PRAGMA recursive_triggers = ON")).await.0, 200);
    for _ in 0..3 {
        let (_, v) = post_json(&b, db, sql("PRAGMA recursive_triggers")).await;
        assert_eq!(v["rows"], json!([[0]]), "{v}");
    }
}

#[tokio::test]
async fn variables_come_from_defaults_templates_and_the_environment() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let (s, body) = get(&b, "/probe/var/greeting").await;
    assert_eq!((s, body.as_str()), (200, r#"{"value":"hello world"}"#));
    assert_eq!(get(&b, "/probe/config/greeting").await.1, r#"{"value":"hello world"}"#);
    // An app variable not mapped into the component is invisible to it.
    assert_eq!(get(&b, "/probe/var/upstream_port").await.0, 404);
    assert_eq!(get(&b, "/probe/var/Bad-Name").await.0, 400);
    assert_eq!(get(&b, "/bare/var/greeting").await.0, 404);
    drop(b);

    require_components(&["probe"]);
    let port = free_port();
    let manifest = app("capabilities");
    let rc = manifest.parent().unwrap().join("runtime-config.toml");
    let b = Bazaar::start(
        &manifest,
        Up::default()
            .port(port)
            .state_dir(state.path())
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .env("SPIN_VARIABLE_UPSTREAM_PORT", port.to_string())
            .env("SPIN_VARIABLE_GREETING", "bonjour"),
    );
    assert_eq!(get(&b, "/probe/var/greeting").await.1, r#"{"value":"bonjour world"}"#);
}

#[tokio::test]
async fn environment_is_the_components_own() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    assert_eq!(get(&b, "/probe/env/PROBE_MODE").await.1, r#"{"value":"granted"}"#);
    assert_eq!(get(&b, "/bare/env/PROBE_MODE").await.0, 404);
    // Nothing of the host's environment leaks in.
    assert_eq!(get(&b, "/probe/env/SPIN_VARIABLE_UPSTREAM_PORT").await.0, 404);
}

#[tokio::test]
async fn outbound_http_reaches_only_allowed_hosts() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let allowed = format!("http://127.0.0.1:{}/probe/hello", b.port);
    let (s, v) = post_json(&b, "/probe/fetch", json!({"url": allowed, "method": "GET"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], 200);
    assert_eq!(v["body"], "hello from probe\n");

    let (s, v) = post_json(&b, "/bare/fetch", json!({"url": allowed, "method": "GET"})).await;
    assert_eq!(s, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains("HttpRequestDenied"), "{v}");
    assert!(b.wait_for_log("outbound request denied"), "{}", b.logs());

    let other_port = format!("http://127.0.0.1:{}/probe/hello", free_port());
    let (s, v) = post_json(&b, "/probe/fetch", json!({"url": other_port, "method": "GET"})).await;
    assert_eq!(s, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains("HttpRequestDenied"), "{v}");
}

#[tokio::test]
async fn chaining_reaches_a_private_component_in_process() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let (s, v) = post_json(&b, "/probe/fetch", json!({"url": "http://backend.spin.internal/hello", "method": "GET"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["body"], "hello from probe\n");
    // The chained component gets spin headers of its own, and uses its own grants.
    let (_, v) = post_json(&b, "/probe/fetch", json!({"url": "http://backend.spin.internal/kv/backend/k", "method": "GET"})).await;
    assert_eq!(v["status"], 404, "backend may open its own store: {v}");
    // A component without the grant cannot chain.
    let (s, v) = post_json(&b, "/bare/fetch", json!({"url": "http://backend.spin.internal/hello", "method": "GET"})).await;
    assert_eq!(s, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains("HttpRequestDenied"), "{v}");
}
