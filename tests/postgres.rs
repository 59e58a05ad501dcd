//! End to end: the Postgres capability against the real server at
//! 127.0.0.1:5432, through the probe component's `/pg/{v2,v3,v4}` endpoints
//! (tests/components/probe/src/pg.rs). Each test works in a database of its
//! own ([`support::postgres::TestDatabase`]), dropped when the test ends, so
//! tests run in parallel and leave nothing behind.
//!
//! The server must be running: these tests fail (never skip) with the
//! command that starts it when it is not.
use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::postgres::{SERVER, TestDatabase};
use support::{Bazaar, Up, app, client, free_port, require_components};

/// Starts the postgres test app; `down_port` is a closed port the probe is
/// granted.
fn start() -> (Bazaar, u16) {
    require_components(&["probe"]);
    let down_port = free_port();
    let b = Bazaar::start(&app("postgres"), Up::default().env("SPIN_VARIABLE_DOWN_PORT", down_port.to_string()));
    (b, down_port)
}

async fn post(b: &Bazaar, path: &str, body: Value) -> (u16, Value) {
    let resp = client().post(b.url(path)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")))
}

/// Runs a query through interface version `v` (`v2`, `v3`, `v4`).
async fn query(b: &Bazaar, v: &str, address: &str, sql: &str, params: Value) -> (u16, Value) {
    post(b, &format!("/probe/pg/{v}/query"), json!({ "address": address, "sql": sql, "params": params })).await
}

async fn execute(b: &Bazaar, v: &str, address: &str, sql: &str, params: Value) -> (u16, Value) {
    post(b, &format!("/probe/pg/{v}/execute"), json!({ "address": address, "sql": sql, "params": params })).await
}

/// The one row of a successful query.
fn only_row(status: u16, body: &Value) -> &Vec<Value> {
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{body}");
    rows[0].as_array().unwrap()
}

fn column_types(body: &Value) -> Vec<String> {
    body["columns"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap().to_string()).collect()
}

/// Every 4.0.0 type: (column, Postgres type, value sent, type and value read back).
fn v4_cases() -> Vec<(&'static str, &'static str, Value, &'static str, Value)> {
    let same = |v: Value| v;
    vec![
        ("b", "boolean", json!({"boolean": true}), "boolean", same(json!({"boolean": true}))),
        ("c", "\"char\"", json!({"int8": -3}), "int8", json!({"int8": -3})),
        ("i2", "int2", json!({"int16": -32768}), "int16", json!({"int16": -32768})),
        ("i4", "int4", json!({"int32": 2147483647}), "int32", json!({"int32": 2147483647})),
        ("i8", "int8", json!({"int64": -9007199254740993i64}), "int64", json!({"int64": -9007199254740993i64})),
        ("f4", "float4", json!({"floating32": 1.5}), "floating32", json!({"floating32": 1.5})),
        ("f8", "float8", json!({"floating64": -0.125}), "floating64", json!({"floating64": -0.125})),
        ("t", "text", json!({"str": "héllo, wörld"}), "str", json!({"str": "héllo, wörld"})),
        ("vc", "varchar(8)", json!({"str": "short"}), "str", json!({"str": "short"})),
        ("bc", "char(3)", json!({"str": "ab"}), "str", json!({"str": "ab "})),
        ("by", "bytea", json!({"binary": "AP8HAA=="}), "binary", json!({"binary": "AP8HAA=="})),
        ("d", "date", json!({"date": [2024, 2, 29]}), "date", json!({"date": [2024, 2, 29]})),
        ("tm", "time", json!({"time": [23, 59, 58, 123456000]}), "time", json!({"time": [23, 59, 58, 123456000]})),
        (
            "ts",
            "timestamp",
            json!({"datetime": [1999, 12, 31, 23, 59, 59, 999999000]}),
            "datetime",
            json!({"datetime": [1999, 12, 31, 23, 59, 59, 999999000]}),
        ),
        (
            "tz",
            "timestamptz",
            json!({"datetime": [2000, 1, 1, 0, 0, 0, 0]}),
            "datetime",
            json!({"datetime": [2000, 1, 1, 0, 0, 0, 0]}),
        ),
        ("epoch", "timestamptz", json!({"timestamp": 86461}), "datetime", json!({"datetime": [1970, 1, 2, 0, 1, 1, 0]})),
        (
            "u",
            "uuid",
            json!({"uuid": "67e55044-10b1-426f-9247-bb680e5fe0c8"}),
            "uuid",
            json!({"uuid": "67e55044-10b1-426f-9247-bb680e5fe0c8"}),
        ),
        ("j", "jsonb", json!({"jsonb": {"a": [1, 2.5, null], "b": {"c": "d"}}}), "jsonb", json!({"jsonb": {"a": [1, 2.5, null], "b": {"c": "d"}}})),
        ("js", "json", json!({"jsonb": [true, "x"]}), "jsonb", json!({"jsonb": [true, "x"]})),
        (
            "n",
            "numeric",
            json!({"decimal": "-123456789012345678901234567890.000000000000000000001"}),
            "decimal",
            json!({"decimal": "-123456789012345678901234567890.000000000000000000001"}),
        ),
        ("nan", "numeric", json!({"decimal": "NaN"}), "decimal", json!({"decimal": "NaN"})),
        (
            "r4",
            "int4range",
            json!({"range-int32": [[1, "inclusive"], [10, "inclusive"]]}),
            "range-int32",
            // Postgres canonicalises discrete ranges to [lower, upper).
            json!({"range-int32": [[1, "inclusive"], [11, "exclusive"]]}),
        ),
        ("r8", "int8range", json!({"range-int64": [null, [5000000000i64, "exclusive"]]}), "range-int64", json!({"range-int64": [null, [5000000000i64, "exclusive"]]})),
        (
            "rn",
            "numrange",
            json!({"range-decimal": [["1.5", "exclusive"], ["2.25", "inclusive"]]}),
            "range-decimal",
            json!({"range-decimal": [["1.5", "exclusive"], ["2.25", "inclusive"]]}),
        ),
        ("re", "int4range", json!({"range-int32": [[3, "inclusive"], [3, "exclusive"]]}), "range-int32", json!({"range-int32": [[0, "inclusive"], [0, "exclusive"]]})),
        ("a4", "int4[]", json!({"array-int32": [1, null, -3]}), "array-int32", json!({"array-int32": [1, null, -3]})),
        ("a8", "int8[]", json!({"array-int64": []}), "array-int64", json!({"array-int64": []})),
        ("an", "numeric[]", json!({"array-decimal": ["0.10", null, "7"]}), "array-decimal", json!({"array-decimal": ["0.10", null, "7"]})),
        ("at", "text[]", json!({"array-str": ["a", null, ""]}), "array-str", json!({"array-str": ["a", null, ""]})),
        (
            "iv",
            "interval",
            json!({"interval": {"micros": 3723000001i64, "days": -2, "months": 14}}),
            "interval",
            json!({"interval": {"micros": 3723000001i64, "days": -2, "months": 14}}),
        ),
        ("mood", "mood", json!({"str": "happy"}), "str", json!({"str": "happy"})),
        ("dom", "positive", json!({"int32": 7}), "int32", json!({"int32": 7})),
    ]
}

#[tokio::test]
async fn v4_every_type_round_trips_and_nulls_too() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    let cases = v4_cases();
    let columns: Vec<String> = cases.iter().map(|(c, ty, ..)| format!("{c} {ty}")).collect();
    db.setup(&format!(
        "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
         CREATE TABLE everything (id int4 PRIMARY KEY, {})",
        columns.join(", ")
    ))
    .await;
    let names: Vec<&str> = cases.iter().map(|(c, ..)| *c).collect();
    let placeholders: Vec<String> = (2..=cases.len() + 1).map(|i| format!("${i}")).collect();
    let insert =
        format!("INSERT INTO everything (id, {}) VALUES ($1, {})", names.join(", "), placeholders.join(", "));

    // Every value, bound as the interface's typed parameter...
    let mut params = vec![json!({"int32": 1})];
    params.extend(cases.iter().map(|(_, _, sent, ..)| sent.clone()));
    assert_eq!(execute(&b, "v4", &db.url(), &insert, json!(params)).await, (200, json!({"rows_affected": 1})));
    // ...and a row of nulls, one null per type.
    let mut nulls = vec![json!({"int32": 2})];
    nulls.extend(cases.iter().map(|_| json!({"null": true})));
    assert_eq!(execute(&b, "v4", &db.url(), &insert, json!(nulls)).await.0, 200);

    let select = format!("SELECT {} FROM everything WHERE id = $1", names.join(", "));
    let (status, body) = query(&b, "v4", &db.url(), &select, json!([{"int32": 1}])).await;
    let row = only_row(status, &body);
    let types = column_types(&body);
    for (i, (column, pg_type, sent, want_type, want)) in cases.iter().enumerate() {
        assert_eq!(types[i], *want_type, "type of {column} {pg_type}");
        assert_eq!(row[i], *want, "{column} {pg_type}: sent {sent}");
    }
    let (status, body) = query(&b, "v4", &db.url(), &select, json!([{"int32": 2}])).await;
    for (i, value) in only_row(status, &body).iter().enumerate() {
        assert_eq!(*value, json!({"null": true}), "{}", names[i]);
    }

    // Column types come from the statement even when no row matches.
    let (status, body) = query(&b, "v4", &db.url(), &select, json!([{"int32": 3}])).await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"], json!([]));
    assert_eq!(column_types(&body).len(), cases.len());

    // A type 4.0.0 has no variant for: `other`, and the raw binary value.
    let (status, body) = query(&b, "v4", &db.url(), "SELECT point(1, 2) AS p", json!([])).await;
    let row = only_row(status, &body);
    assert_eq!(column_types(&body), ["other(point)"]);
    // Two big-endian float8s, base64: 1.0 and 2.0.
    assert_eq!(row[0], json!({"unsupported": "P/AAAAAAAABAAAAAAAAAAA=="}));
}

#[tokio::test]
async fn parameters_bind_by_the_type_postgres_expects() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE TABLE t (big int8, small int2, price numeric, ratio float8, at timestamptz)").await;
    // Narrower integers widen, floats and integers go into numeric, an
    // epoch timestamp into timestamptz.
    let params = json!([{"int32": 7}, {"int64": 12}, {"int32": 5}, {"floating32": 0.5}, {"timestamp": 0}]);
    let (status, _) = execute(&b, "v4", &db.url(), "INSERT INTO t VALUES ($1, $2, $3, $4, $5)", params).await;
    assert_eq!(status, 200);
    let (status, body) = query(&b, "v4", &db.url(), "SELECT big, small, price, ratio, at FROM t WHERE big = $1", json!([{"int16": 7}])).await;
    assert_eq!(
        only_row(status, &body),
        &vec![json!({"int64": 7}), json!({"int16": 12}), json!({"decimal": "5"}), json!({"floating64": 0.5}), json!({"datetime": [1970, 1, 1, 0, 0, 0, 0]})]
    );

    // What does not fit is the guest's bad parameter, named.
    let (status, body) = execute(&b, "v4", &db.url(), "INSERT INTO t (small) VALUES ($1)", json!([{"int32": 70000}])).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("bad-parameter")), "{body}");
    assert_eq!(body["detail"], "parameter $1: 70000 is out of range for type int2");
    let (status, body) = execute(&b, "v4", &db.url(), "INSERT INTO t (big) VALUES ($1)", json!([{"str": "x"}])).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("bad-parameter")), "{body}");
    assert_eq!(body["detail"], "parameter $1: a str value cannot be bound to a parameter of type int8");
    let (_, body) = execute(&b, "v4", &db.url(), "INSERT INTO t (big) VALUES ($1)", json!([])).await;
    assert_eq!(body["detail"], "the statement has 1 parameter but 0 values were given");
    let (_, body) = query(&b, "v4", &db.url(), "SELECT $1::uuid", json!([{"uuid": "not-a-uuid"}])).await;
    assert_eq!(body["error"], "bad-parameter");
    assert!(body["detail"].as_str().unwrap().starts_with("parameter $1: invalid UUID \"not-a-uuid\""), "{body}");
}

#[tokio::test]
async fn v3_types_round_trip() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup(
        "CREATE TABLE t (b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, s text, by bytea,
                         d date, tm time, ts timestamp, tz timestamptz, u uuid)",
    )
    .await;
    let sent = json!([
        {"boolean": false}, {"int16": 300}, {"int32": -5}, {"int64": 1099511627776i64}, {"floating32": 2.5},
        {"floating64": 1e100}, {"str": "v3"}, {"binary": "AQID"}, {"date": [1, 1, 1]}, {"time": [0, 0, 0, 0]},
        {"datetime": [2038, 1, 19, 3, 14, 8, 0]}, {"timestamp": 1700000000}, {"null": true}
    ]);
    let insert = "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    assert_eq!(execute(&b, "v3", &db.url(), insert, sent.clone()).await, (200, json!({"rows_affected": 1})));
    db.setup("UPDATE t SET u = '67e55044-10b1-426f-9247-bb680e5fe0c8'").await;

    let (status, body) = query(&b, "v3", &db.url(), "SELECT * FROM t", json!([])).await;
    let row = only_row(status, &body);
    assert_eq!(
        column_types(&body),
        ["boolean", "int16", "int32", "int64", "floating32", "floating64", "str", "binary", "date", "time", "datetime", "datetime", "other"]
    );
    let sent = sent.as_array().unwrap();
    assert_eq!(row[..10], sent[..10]);
    assert_eq!(row[10], sent[10]);
    // 1700000000 is 2023-11-14T22:13:20Z; 3.0.0 has no uuid, so it is unsupported.
    assert_eq!(row[11], json!({"datetime": [2023, 11, 14, 22, 13, 20, 0]}));
    assert_eq!(row[12], json!({"unsupported": null}));

    let (status, body) = query(&b, "v3", &db.url(), "SELECT NULL::int4 AS n", json!([])).await;
    assert_eq!(only_row(status, &body), &vec![json!({"null": true})]);
}

#[tokio::test]
async fn v2_types_round_trip() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE TABLE t (b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, s varchar, by bytea, d date)").await;
    let sent = json!([
        {"boolean": true}, {"int16": -1}, {"int32": 42}, {"int64": -42}, {"floating32": -1.25},
        {"floating64": 3.5}, {"str": "v2"}, {"binary": ""}, {"null": true}
    ]);
    let insert = "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    assert_eq!(execute(&b, "v2", &db.url(), insert, sent.clone()).await, (200, json!({"rows_affected": 1})));
    db.setup("UPDATE t SET d = '2024-01-01'").await;

    let (status, body) = query(&b, "v2", &db.url(), "SELECT * FROM t", json!([])).await;
    let row = only_row(status, &body);
    assert_eq!(column_types(&body), ["boolean", "int16", "int32", "int64", "floating32", "floating64", "str", "binary", "other"]);
    assert_eq!(row[..8], sent.as_array().unwrap()[..8]);
    assert_eq!(row[8], json!({"unsupported": null}));

    // Postgres has no unsigned integers: refused as Spin refuses them.
    let (status, body) = query(&b, "v2", &db.url(), "SELECT $1::int4", json!([{"uint8": 1}])).await;
    assert_eq!((status, body), (500, json!({"error": "value-conversion-failed", "detail": "Postgres does not support unsigned integers"})));
}

#[tokio::test]
async fn errors_carry_postgres_message_and_sqlstate() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE TABLE items (id int4 PRIMARY KEY)").await;

    let (status, body) = query(&b, "v4", &db.url(), "SELECT * FROM nope", json!([])).await;
    assert_eq!((status, &body["error"], &body["code"]), (500, &json!("query-failed"), &json!("42P01")), "{body}");
    assert_eq!(body["message"], "relation \"nope\" does not exist");
    assert_eq!(body["severity"], "ERROR");
    assert_eq!(body["detail"], "ERROR: relation \"nope\" does not exist (SQLSTATE 42P01)");

    let insert = "INSERT INTO items VALUES ($1)";
    assert_eq!(execute(&b, "v4", &db.url(), insert, json!([{"int32": 1}])).await.0, 200);
    let (status, body) = execute(&b, "v4", &db.url(), insert, json!([{"int32": 1}])).await;
    assert_eq!((status, &body["code"]), (500, &json!("23505")), "{body}");
    assert_eq!(body["message"], "duplicate key value violates unique constraint \"items_pkey\"");
    assert_eq!(body["pg_detail"], "Key (id)=(1) already exists.");
    assert_eq!(body["extras"]["constraint"], "items_pkey");
    assert_eq!(body["extras"]["table"], "items");
    assert_eq!(body["extras"]["schema"], "public");

    // Older versions get the same text.
    for v in ["v2", "v3"] {
        let (status, body) = query(&b, v, &db.url(), "SELEC 1", json!([])).await;
        assert_eq!((status, &body["error"]), (500, &json!("query-failed")), "{v}: {body}");
        assert_eq!(body["detail"], "ERROR: syntax error at or near \"SELEC\" (SQLSTATE 42601)", "{v}");
    }

    // A database that does not exist: Postgres's message, at open.
    let missing = format!("{SERVER}/{}_missing", db.name);
    let (status, body) = query(&b, "v4", &missing, "SELECT 1", json!([])).await;
    assert_eq!((status, &body["error"]), (500, &json!("connection-failed")), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("database \"{}_missing\" does not exist", db.name)), "{detail}");

    // sslmode=require is TLS, verified: the local server's self-signed
    // certificate (or its lack of TLS) is refused, saying so.
    let tls = format!("{}?sslmode=require", db.url());
    let (status, body) = query(&b, "v4", &tls, "SELECT 1", json!([])).await;
    assert_eq!((status, &body["error"]), (500, &json!("connection-failed")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("error performing TLS handshake"), "{body}");
}

#[tokio::test]
async fn an_address_not_in_allowed_outbound_hosts_is_denied() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    for v in ["v2", "v3", "v4"] {
        let (status, body) =
            post(&b, &format!("/bare/pg/{v}/query"), json!({"address": db.url(), "sql": "SELECT 1"})).await;
        assert_eq!(status, 403, "{v}: {body}");
        assert_eq!(body["error"], "connection-failed");
        assert_eq!(
            body["detail"],
            "address postgres://127.0.0.1:5432 is not permitted: \
             add \"postgres://127.0.0.1:5432\" to the component's allowed_outbound_hosts"
        );
    }
    assert!(b.wait_for_log("component=\"bare\""), "no warning naming the component:\n{}", b.logs());
    assert!(b.logs().contains("Postgres connection to postgres://127.0.0.1:5432 denied"), "{}", b.logs());

    // The probe may reach 5432, but not another port of the same host.
    let (status, body) = query(&b, "v4", "postgres://postgres@127.0.0.1:5433/postgres", "SELECT 1", json!([])).await;
    assert_eq!(status, 403, "{body}");
    // Nor a key-value address that names another host.
    let (status, _) = query(&b, "v4", "host=localhost port=5432 user=postgres", "SELECT 1", json!([])).await;
    assert_eq!(status, 403);
    // But a key-value address of an allowed host works.
    let address = format!("host=127.0.0.1 port=5432 user=postgres dbname={}", db.name);
    let (status, body) = query(&b, "v4", &address, "SELECT 1 AS one", json!([])).await;
    assert_eq!(only_row(status, &body), &vec![json!({"int32": 1})]);
}

#[tokio::test]
async fn a_down_server_fails_fast_with_a_clear_error() {
    let (b, down_port) = start();
    for v in ["v2", "v3", "v4"] {
        let address = format!("postgres://postgres@127.0.0.1:{down_port}/postgres");
        let started = Instant::now();
        let (status, body) = query(&b, v, &address, "SELECT 1", json!([])).await;
        let took = started.elapsed();
        assert_eq!((status, &body["error"]), (500, &json!("connection-failed")), "{v}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("connecting to postgres://127.0.0.1:{down_port}: error connecting to server"))
                && detail.contains("Connection refused"),
            "{v}: {detail}"
        );
        assert!(took < Duration::from_secs(2), "{v}: took {took:?}");
    }
}

#[tokio::test]
async fn transactions_and_session_state_do_not_leak_between_requests() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE TABLE t (id int4)").await;
    let batch = |statements: Value| post(&b, "/probe/pg/v4/batch", json!({"address": db.url(), "statements": statements}));

    // A transaction the guest leaves open is rolled back.
    let (status, body) = batch(json!([
        {"sql": "BEGIN", "execute": true},
        {"sql": "INSERT INTO t VALUES (1)", "execute": true},
        {"sql": "CREATE TEMP TABLE scratch (x int4)", "execute": true},
        {"sql": "SET search_path TO nowhere", "execute": true},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["results"].as_array().unwrap().iter().all(|r| r.get("error").is_none()), "{body}");
    // One the host cannot see begin (the comment hides the BEGIN): the
    // pool's reset finds it open and closes the connection.
    let (status, body) = batch(json!([
        {"sql": "/* hidden */ BEGIN", "execute": true},
        {"sql": "INSERT INTO t VALUES (3)", "execute": true},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    // One committed, in a later request.
    let (status, body) = batch(json!([
        {"sql": "BEGIN", "execute": true},
        {"sql": "INSERT INTO t VALUES (2)", "execute": true},
        {"sql": "COMMIT", "execute": true},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");

    // Whichever pooled connection the next requests get, none of it shows.
    for _ in 0..3 {
        let (status, body) = query(&b, "v4", &db.url(), "SELECT id FROM public.t ORDER BY id", json!([])).await;
        assert_eq!((status, &body["rows"]), (200, &json!([[{"int32": 2}]])), "{body}");
        let (_, body) = query(&b, "v4", &db.url(), "SELECT current_setting('search_path') AS p", json!([])).await;
        assert_eq!(body["rows"], json!([[{"str": "\"$user\", public"}]]));
        let (_, body) = query(&b, "v4", &db.url(), "SELECT * FROM scratch", json!([])).await;
        assert_eq!(body["code"], "42P01", "{body}");
    }
    let (count,): (i64,) = {
        let row = db.admin.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
        (row.get(0),)
    };
    assert_eq!(count, 1);
}

/// A guest that ran only plain statements leaves its connection owing the
/// reset of its session, which goes out with the next guest's first
/// statement: the server has not run it when the first request ends, and
/// the next guest still sees nothing of the first one's session. A guest
/// that took an advisory lock gets its connection reset at once, so the
/// lock does not wait in the pool.
#[tokio::test]
async fn a_reset_left_to_the_next_guest_still_comes_before_its_first_statement() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE SEQUENCE s").await;
    let batch = |statements: Value| post(&b, "/probe/pg/v4/batch", json!({"address": db.url(), "statements": statements}));
    let pid_of = |result: &Value| result["rows"][0][0]["int32"].as_i64().unwrap_or_else(|| panic!("no pid in {result}"));

    // A setting and a sequence's last value, both left by plain statements.
    let (status, body) = batch(json!([
        {"sql": "SELECT set_config('search_path', 'nowhere', false) AS p"},
        {"sql": "SELECT nextval('public.s')::int4 AS n"},
        {"sql": "SELECT pg_backend_pid() AS pid"},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let pid = pid_of(&body["results"][2]);
    let last_query = db.admin.query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&(pid as i32)]).await.unwrap();
    assert_eq!(last_query.get::<_, String>(0), "SELECT pg_backend_pid() AS pid", "the reset waits for the next guest");

    // The next request gets that connection again (the only one its pool
    // made): the reset went first.
    let (status, body) = batch(json!([
        {"sql": "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS p"},
        {"sql": "SELECT lastval()::int4 AS n"},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(pid_of(&results[0]), pid, "the same pooled connection: {body}");
    assert_eq!(results[0]["rows"][0][1], json!({"str": "\"$user\", public"}), "the setting was reset: {body}");
    assert_eq!(results[1]["code"], "55000", "lastval is not yet defined in this session: {body}");

    // An advisory lock is let go when the guest lets go of its connection.
    let (status, body) = batch(json!([{"sql": "SELECT pg_advisory_lock(7)::text AS locked"}])).await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    loop {
        let row = db.admin.query_one("SELECT pg_try_advisory_lock(7)", &[]).await.unwrap();
        if row.get::<_, bool>(0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the guest's advisory lock is still held while its connection is idle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain `BEGIN` goes out with the statement after it (one round trip
/// for both): what a guest sees is a transaction like any other.
#[tokio::test]
async fn a_begin_sent_with_the_next_statement_still_opens_the_transaction() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE TABLE t (id int4)").await;
    let batch = |statements: Value| post(&b, "/probe/pg/v4/batch", json!({"address": db.url(), "statements": statements}));
    let ids = || async {
        let rows = db.admin.query("SELECT id FROM t ORDER BY id", &[]).await.unwrap();
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    };

    // Rolled back: the BEGIN did open a transaction.
    let (status, body) = batch(json!([
        {"sql": "BEGIN", "execute": true},
        {"sql": "INSERT INTO t VALUES (1)", "execute": true},
        {"sql": "SELECT count(*)::int4 AS n FROM t"},
        {"sql": "ROLLBACK", "execute": true},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0], json!({"rows_affected": 0}), "{body}");
    assert_eq!(results[2]["rows"], json!([[{"int32": 1}]]), "seen inside the transaction: {body}");
    assert_eq!(ids().await, Vec::<i32>::new(), "rolled back");

    // A failing statement after BEGIN fails as itself, and aborts the
    // transaction (the BEGIN went first); nothing of it is kept.
    let (_, body) = batch(json!([
        {"sql": "begin transaction;"},
        {"sql": "INSERT INTO t VALUES (2)", "execute": true},
        {"sql": "INSERT INTO missing VALUES (3)", "execute": true},
        {"sql": "INSERT INTO t VALUES (4)", "execute": true},
        {"sql": "COMMIT", "execute": true},
    ]))
    .await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["rows"], json!([]), "{body}");
    assert_eq!(results[1], json!({"rows_affected": 1}), "{body}");
    assert_eq!(results[2]["code"], "42P01", "{body}");
    assert_eq!(results[3]["code"], "25P02", "in an aborted transaction: {body}");
    assert_eq!(ids().await, Vec::<i32>::new(), "the aborted transaction kept nothing");

    // Committed, with a transaction that has a statement and one that has none.
    let (_, body) = batch(json!([
        {"sql": "START TRANSACTION", "execute": true},
        {"sql": "COMMIT", "execute": true},
        {"sql": "BEGIN", "execute": true},
        {"sql": "INSERT INTO t VALUES (5)", "execute": true},
        {"sql": "COMMIT", "execute": true},
    ]))
    .await;
    assert!(body["results"].as_array().unwrap().iter().all(|r| r.get("error").is_none()), "{body}");
    assert_eq!(ids().await, vec![5]);

    // A BEGIN with more to it is sent at once: its own error is its own.
    let (_, body) = batch(json!([
        {"sql": "BEGIN ISOLATION LEVEL NONSENSE", "execute": true},
        {"sql": "SELECT 1::int4 AS one"},
    ]))
    .await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["code"], "42601", "a syntax error, at the BEGIN: {body}");
    assert_eq!(results[1]["rows"], json!([[{"int32": 1}]]), "{body}");
}

#[tokio::test]
async fn cached_statements_follow_schema_changes() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    db.setup("CREATE TABLE t (a int4); INSERT INTO t VALUES (1)").await;
    // On one connection: the second SELECT * would reuse a plan whose
    // result type changed.
    let (status, body) = post(
        &b,
        "/probe/pg/v4/batch",
        json!({"address": db.url(), "statements": [
            {"sql": "SELECT * FROM t"},
            {"sql": "ALTER TABLE t ADD COLUMN b text DEFAULT 'x'", "execute": true},
            {"sql": "SELECT * FROM t"},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["rows"], json!([[{"int32": 1}]]), "{body}");
    assert_eq!(results[2]["rows"], json!([[{"int32": 1}, {"str": "x"}]]), "{body}");
}

#[tokio::test]
async fn the_pool_is_bounded_and_shared() {
    let db = TestDatabase::create().await;
    let (b, _) = start();
    // More concurrent requests than the pool has connections: all succeed
    // (the rest wait for a free one), and the server never sees more than
    // the pool's bound from bazaar.
    let requests = (0..24).map(|i| {
        let b = &b;
        let address = db.url();
        async move {
            let (status, body) = query(b, "v4", &address, "SELECT pg_sleep(0.3), $1::int4 AS i", json!([{"int32": i}])).await;
            assert_eq!(status, 200, "{body}");
        }
    });
    let watch = async {
        let mut most = 0i64;
        for _ in 0..20 {
            let row = db
                .admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'bazaar'",
                    &[],
                )
                .await
                .unwrap();
            most = most.max(row.get(0));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let (_, most) = tokio::join!(futures::future::join_all(requests), watch);
    assert!(most > 1, "requests did not run concurrently ({most} connections)");
    assert!(most <= 16, "{most} connections: more than the pool's bound of 16");
}

#[tokio::test]
async fn a_connection_abandoned_mid_statement_is_closed_not_reused() {
    let db = TestDatabase::create().await;
    require_components(&["probe"]);
    let b = Bazaar::start(
        &app("postgres"),
        Up::default().env("SPIN_VARIABLE_DOWN_PORT", free_port().to_string()).arg("--request-timeout").arg("1s"),
    );
    let address = db.url();
    let slow = async {
        let body = json!({"address": address, "sql": "SELECT pg_sleep(3) AS slept"});
        let resp = client().post(b.url("/probe/pg/v4/query")).json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let find_sleeper = async {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rows = db
                .admin
                .query("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3) AS slept' AND state = 'active'", &[])
                .await
                .unwrap();
            if let Some(row) = rows.first() {
                return row.get::<_, i32>(0);
            }
        }
        panic!("the slow statement never showed up in pg_stat_activity");
    };
    let ((status, text), pid) = tokio::join!(slow, find_sleeper);
    assert_eq!((status, text.as_str()), (500, "component probe exceeded its 1s deadline\n"));
    // Meanwhile the pool still serves.
    let started = Instant::now();
    let (status, body) = query(&b, "v4", &db.url(), "SELECT 1 AS one", json!([])).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    // Once Postgres finishes the statement it finds the client gone: the
    // backend exits instead of idling in the pool.
    let mut gone = false;
    for _ in 0..60 {
        let rows = db.admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap();
        if rows.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "backend {pid} is still there: the abandoned connection went back to the pool");
}
