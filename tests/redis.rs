//! End to end: Redis from a component. The probe runs each command of
//! `fermyon:spin/redis@2.0.0` and the test checks its effect with its own
//! Redis client; an address the component was not granted is refused; and
//! key-value stores kept in Redis (tests/apps/redis/runtime-config.toml)
//! behave as the SQLite ones do, in Spin's layout, and outlive bazaar.
//!
//! Needs the Redis server at 127.0.0.1:6379 (the tests fail, saying how to
//! start it, when it is not running). Each test works under its own key
//! prefix, since a Redis store is a whole Redis database.
use crate::support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use support::{Bazaar, Up, app, client, get, post_json, put, require_components};

const REDIS: &str = "redis://127.0.0.1:6379";

/// A direct connection to database `db` of the test server.
async fn redis_db(db: u8) -> MultiplexedConnection {
    let url = format!("{REDIS}/{db}");
    let connect = async {
        let mut c = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
        let () = redis::cmd("PING").query_async(&mut c).await?;
        Ok::<_, redis::RedisError>(c)
    };
    let why = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(c)) => return c,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 5s".to_string(),
    };
    panic!(
        "these tests need a Redis server at {REDIS} ({why}); start one with \
         `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`"
    )
}

/// A key prefix no other test (or test run) uses.
fn prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("bazaar-test-{}-{nanos:x}-{}:", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Deletes this test's keys from databases 0 and 1.
async fn cleanup(prefix: &str) {
    for db in [0, 1] {
        let mut c = redis_db(db).await;
        let keys: Vec<String> = c.keys(format!("{prefix}*")).await.unwrap();
        if !keys.is_empty() {
            let _: () = c.del(keys).await.unwrap();
        }
    }
}

fn start(state_dir: &std::path::Path) -> Bazaar {
    require_components(&["probe"]);
    let manifest = app("redis");
    let rc = manifest.parent().unwrap().join("runtime-config.toml");
    Bazaar::start(&manifest, Up::default().state_dir(state_dir).arg("--runtime-config-file").arg(rc.to_str().unwrap()))
}

/// `POST /{component}/redis/{command}` with `body`.
async fn redis_cmd(b: &Bazaar, component: &str, command: &str, body: Value) -> (u16, Value) {
    let resp = client().post(b.url(&format!("/{component}/redis/{command}"))).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The keys a store lists that start with `prefix`, without it.
async fn own_keys(b: &Bazaar, list_path: &str, prefix: &str) -> Vec<String> {
    let (status, body) = get(b, list_path).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<String> = serde_json::from_str(&body).unwrap();
    keys.iter().filter_map(|k| k.strip_prefix(prefix)).map(str::to_string).collect()
}

#[tokio::test]
async fn each_command_reaches_redis() {
    let mut raw = redis_db(0).await;
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let p = prefix();
    let k = |name: &str| format!("{p}{name}");
    let with = |mut fields: Value| {
        fields["address"] = json!(REDIS);
        fields
    };

    // set / get
    assert_eq!(redis_cmd(&b, "probe", "set", with(json!({"key": k("greeting"), "value": "hello"}))).await.0, 204);
    let stored: String = raw.get(k("greeting")).await.unwrap();
    assert_eq!(stored, "hello");
    let (s, v) = redis_cmd(&b, "probe", "get", with(json!({"key": k("greeting")}))).await;
    assert_eq!((s, v), (200, json!({"value": "hello"})));
    let (_, v) = redis_cmd(&b, "probe", "get", with(json!({"key": k("missing")}))).await;
    assert_eq!(v, json!({"value": null}));

    // incr
    for expected in 1..=2 {
        let (s, v) = redis_cmd(&b, "probe", "incr", with(json!({"key": k("counter")}))).await;
        assert_eq!((s, v), (200, json!({"value": expected})));
    }
    let counter: i64 = raw.get(k("counter")).await.unwrap();
    assert_eq!(counter, 2);
    let (s, v) = redis_cmd(&b, "probe", "incr", with(json!({"key": k("greeting")}))).await;
    assert_eq!((s, &v["error"]), (500, &json!("type-error")), "{v}");

    // sadd / srem / smembers
    let (_, v) = redis_cmd(&b, "probe", "sadd", with(json!({"key": k("set"), "values": ["a", "b", "c"]}))).await;
    assert_eq!(v, json!({"added": 3}));
    let (_, v) = redis_cmd(&b, "probe", "sadd", with(json!({"key": k("set"), "values": ["c", "d"]}))).await;
    assert_eq!(v, json!({"added": 1}));
    let (_, v) = redis_cmd(&b, "probe", "srem", with(json!({"key": k("set"), "values": ["a", "nope"]}))).await;
    assert_eq!(v, json!({"removed": 1}));
    let (_, v) = redis_cmd(&b, "probe", "smembers", with(json!({"key": k("set")}))).await;
    assert_eq!(v, json!({"members": ["b", "c", "d"]}));
    let mut members: Vec<String> = raw.smembers(k("set")).await.unwrap();
    members.sort();
    assert_eq!(members, ["b", "c", "d"]);
    let (s, v) = redis_cmd(&b, "probe", "smembers", with(json!({"key": k("greeting")}))).await;
    assert_eq!((s, &v["error"]), (500, &json!("type-error")), "{v}");

    // execute: integers travel as int64, strings as binary; replies flatten.
    let (s, v) = redis_cmd(&b, "probe", "execute", with(json!({"command": "HSET", "args": [k("hash"), "f", 7]}))).await;
    assert_eq!((s, v), (200, json!({"results": [{"type": "int64", "value": 1}]})));
    let (_, v) = redis_cmd(&b, "probe", "execute", with(json!({"command": "HINCRBY", "args": [k("hash"), "f", 5]}))).await;
    assert_eq!(v, json!({"results": [{"type": "int64", "value": 12}]}));
    let (_, v) = redis_cmd(&b, "probe", "execute", with(json!({"command": "HGETALL", "args": [k("hash")]}))).await;
    assert_eq!(v, json!({"results": [{"type": "binary", "value": "f"}, {"type": "binary", "value": "12"}]}));
    let (_, v) = redis_cmd(&b, "probe", "execute", with(json!({"command": "SET", "args": [k("x"), "y"]}))).await;
    assert_eq!(v, json!({"results": [{"type": "status", "value": "OK"}]}));
    let (_, v) = redis_cmd(&b, "probe", "execute", with(json!({"command": "GET", "args": [k("missing")]}))).await;
    assert_eq!(v, json!({"results": [{"type": "nil"}]}));
    let field: i64 = raw.hget(k("hash"), "f").await.unwrap();
    assert_eq!(field, 12);
    // Redis's own message reaches the component.
    let (s, v) = redis_cmd(&b, "probe", "execute", with(json!({"command": "NOSUCHCOMMAND", "args": []}))).await;
    assert_eq!((s, &v["error"]), (500, &json!("other")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("unknown command"), "{v}");

    // del
    let (_, v) = redis_cmd(&b, "probe", "del", with(json!({"keys": [k("greeting"), k("counter"), k("missing")]}))).await;
    assert_eq!(v, json!({"deleted": 2}));
    let exists: bool = raw.exists(k("greeting")).await.unwrap();
    assert!(!exists);

    // publish reaches a subscriber.
    let mut pubsub = redis::Client::open(REDIS).unwrap().get_async_pubsub().await.unwrap();
    pubsub.subscribe(k("events")).await.unwrap();
    let (s, v) = redis_cmd(&b, "probe", "publish", with(json!({"channel": k("events"), "payload": "order placed"}))).await;
    assert_eq!(s, 204, "{v}");
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next()).await.unwrap().unwrap();
    assert_eq!(message.get_channel_name(), k("events"));
    assert_eq!(message.get_payload_bytes(), b"order placed");

    cleanup(&p).await;
}

#[tokio::test]
async fn ungranted_addresses_are_denied() {
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let p = prefix();
    // `bare` was not granted the server; `probe` only 127.0.0.1:6379 itself.
    for (component, address) in [
        ("bare", REDIS),
        ("probe", "redis://127.0.0.1:6380"),
        ("probe", "redis://localhost:6379"),
        ("probe", "rediss://127.0.0.1:6379"),
        ("probe", "not a url"),
    ] {
        for command in ["get", "publish"] {
            let body = json!({"address": address, "key": format!("{p}k"), "channel": format!("{p}c"), "payload": "x"});
            let (s, v) = redis_cmd(&b, component, command, body).await;
            assert_eq!((s, &v["error"]), (400, &json!("invalid-address")), "{component} {command} {address}: {v}");
        }
    }
    assert!(b.wait_for_log("outbound Redis connection denied"), "{}", b.logs());
    let logs = b.logs();
    let denial = logs.lines().find(|l| l.contains("outbound Redis connection denied")).unwrap();
    assert!(denial.contains("bare") && denial.contains(REDIS), "{denial}");
    let mut raw = redis_db(0).await;
    let exists: bool = raw.exists(format!("{p}k")).await.unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn key_value_stores_in_redis() {
    let mut db0 = redis_db(0).await;
    let mut db1 = redis_db(1).await;
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    let p = prefix();

    // fermyon:spin/key-value on `default`, which the runtime config puts in
    // database 0, each key under its own name (Spin's layout).
    assert_eq!(put(&b, &format!("/probe/kv/default/{p}greeting"), "hello kv").await, 204);
    assert_eq!(get(&b, &format!("/probe/kv/default/{p}greeting")).await, (200, "hello kv".into()));
    let stored: String = db0.get(format!("{p}greeting")).await.unwrap();
    assert_eq!(stored, "hello kv");
    assert_eq!(own_keys(&b, "/probe/kv/default", &p).await, ["greeting"]);
    let () = db0.set(format!("{p}from-outside"), "written by another client").await.unwrap();
    assert_eq!(
        get(&b, &format!("/probe/kv/default/{p}from-outside")).await,
        (200, "written by another client".into())
    );
    assert_eq!(own_keys(&b, "/probe/kv/default", &p).await, ["from-outside", "greeting"]);
    let resp = client().delete(b.url(&format!("/probe/kv/default/{p}greeting"))).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(get(&b, &format!("/probe/kv/default/{p}greeting")).await.0, 404);
    assert_eq!(own_keys(&b, "/probe/wkv/default", &p).await, ["from-outside"]);

    // wasi:keyvalue atomics: the counter is Redis's own (INCRBY), as in Spin.
    for expected in 1..=3 {
        let (s, v) = post_json(&b, &format!("/probe/wkv/default/{p}counter/incr?by=1"), json!(null)).await;
        assert_eq!((s, &v["value"]), (200, &json!(expected)), "{v}");
    }
    let (_, v) = post_json(&b, &format!("/probe/wkv/default/{p}counter/incr?by=10"), json!(null)).await;
    assert_eq!(v["value"], 13);
    let counter: String = db0.get(format!("{p}counter")).await.unwrap();
    assert_eq!(counter, "13");
    let (s, v) = post_json(&b, &format!("/probe/wkv/default/{p}from-outside/incr?by=1"), json!(null)).await;
    assert_eq!(s, 500, "incrementing text fails: {v}");
    assert!(v["detail"].as_str().unwrap().contains("not an integer"), "{v}");

    // wasi:keyvalue batch and compare-and-swap on `sessions`, in database 1.
    let (a, bk, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let (s, _) = post_json(&b, "/probe/wkv/sessions/batch-set", json!({&a: "1", &bk: "2"})).await;
    assert_eq!(s, 204);
    let (_, v) = post_json(&b, "/probe/wkv/sessions/batch-get", json!([&a, &bk, &c])).await;
    assert_eq!(v, json!({&a: "1", &bk: "2", &c: null}));
    let in_db1: Option<String> = db1.get(&a).await.unwrap();
    let in_db0: Option<String> = db0.get(&a).await.unwrap();
    assert_eq!((in_db1.as_deref(), in_db0), (Some("1"), None));
    let resp = client().post(b.url(&format!("/probe/wkv/sessions/{a}/swap"))).body("one").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"previous": "1"}));
    assert_eq!(get(&b, &format!("/probe/wkv/sessions/{a}")).await, (200, "one".into()));
    // A swap of a key that is not set inserts it.
    let resp = client().post(b.url(&format!("/probe/wkv/sessions/{c}/swap"))).body("new").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"previous": null}));
    assert_eq!(own_keys(&b, "/probe/wkv/sessions", &p).await, ["a", "b", "c"]);
    let (s, _) = post_json(&b, "/probe/wkv/sessions/batch-delete", json!([&a, &c])).await;
    assert_eq!(s, 204);
    assert_eq!(own_keys(&b, "/probe/kv/sessions", &p).await, ["b"]);

    cleanup(&p).await;
}

#[tokio::test]
async fn key_value_in_redis_outlives_bazaar() {
    let _ = redis_db(0).await;
    let p = prefix();
    let state = tempfile::tempdir().unwrap();
    let b = start(state.path());
    assert_eq!(put(&b, &format!("/probe/kv/default/{p}kept"), "still here").await, 204);
    let (_, v) = post_json(&b, &format!("/probe/wkv/sessions/{p}n/incr?by=5"), json!(null)).await;
    assert_eq!(v["value"], 5);
    drop(b);
    // Nothing of it is in the state directory: it is all in Redis.
    assert!(!state.path().join("sqlite_key_value.db").exists());

    let fresh = tempfile::tempdir().unwrap();
    let b = start(fresh.path());
    assert_eq!(get(&b, &format!("/probe/kv/default/{p}kept")).await, (200, "still here".into()));
    let (_, v) = post_json(&b, &format!("/probe/wkv/sessions/{p}n/incr?by=1"), json!(null)).await;
    assert_eq!(v["value"], 6);
    cleanup(&p).await;
}

/// `bazaar up --runtime-config-file runtime-config/production.toml` runs an
/// app against the local Redis: the `default` store the probe writes is in
/// Redis, not in a file in the state directory. (The shop itself on the
/// production config is tested in tests/shop.rs.)
#[tokio::test]
async fn the_production_runtime_config_puts_the_default_store_in_redis() {
    require_components(&["probe", "hello"]);
    let mut direct = redis_db(0).await;
    let prefix = prefix();
    let state = tempfile::tempdir().unwrap();
    let root = support::root();
    let b = Bazaar::start(
        &app("examples"),
        Up::default()
            .state_dir(state.path())
            .arg("--runtime-config-file")
            .arg(root.join("runtime-config/production.toml").to_str().unwrap()),
    );
    let key = format!("{prefix}greeting");
    assert_eq!(put(&b, &format!("/probe/kv/default/{key}"), "in redis").await, 204);
    let stored: Option<String> = direct.get(&key).await.unwrap();
    assert_eq!(stored.as_deref(), Some("in redis"));
    assert!(!state.path().join("sqlite_key_value.db").exists(), "nothing went to the embedded file");
    assert_eq!(get(&b, "/hello").await.0, 200);
    cleanup(&prefix).await;
}
