//! The probe: a test component that exercises every capability a
//! Spin-compatible host offers, so end-to-end tests can assert exactly what an
//! HTTP client sees when a guest uses (or is denied, or abuses) a capability.
//!
//! It dispatches on the `spin-path-info` request header (the path relative to
//! the component's route; the URI path is used if the header is absent), so the
//! same wasm can be mounted at any wildcard route: mounted at `/probe/...`, a
//! request for `/probe/kv/default/a` is handled as `/kv/default/a`. Store, key,
//! database and variable names in the path are percent-decoded.
//!
//! Responses are JSON unless noted. Errors are
//! `{"error": "<kebab-case variant name>", "detail": "<text>"}`.
//!
//! | Request                          | Capability / behaviour                                   |
//! |----------------------------------|----------------------------------------------------------|
//! | `GET /headers`, `GET .../headers`, or an empty path | request headers as a JSON object (lower-case names) |
//! | `GET .../varies?on=NAME`         | a shared-cacheable answer (`Cache-Control: public, max-age=60`) with `Vary: NAME` (`*` allowed), body `{"NAME": <the request's value or null>}` |
//! | `GET /sleep?ms=N`                | answers after N ms (a request in flight)                 |
//! | `POST /echo`                     | streams the request body back (application/octet-stream) |
//! | `GET /hello`                     | text `hello from probe\n`                                |
//! | `GET/PUT/DELETE /kv/{store}/{key}`, `GET /kv/{store}` | `fermyon:spin/key-value@2.0.0`      |
//! | `GET/PUT/DELETE /wkv/{store}/{key}`, `GET /wkv/{store}` | `wasi:keyvalue/store@0.2.0-draft2` |
//! | `POST /wkv/{store}/{key}/incr?by=N` | `wasi:keyvalue/atomics` increment                     |
//! | `POST /wkv/{store}/{key}/swap`   | `wasi:keyvalue/atomics` compare-and-swap (body = new value) |
//! | `POST /wkv/{store}/batch-get` (JSON array of keys), `batch-set` (JSON object), `batch-delete` (JSON array) | `wasi:keyvalue/batch` |
//! | `POST /sqlite/{db}`              | `fermyon:spin/sqlite@2.0.0`, body `{"sql", "params"}`    |
//! | `POST /sqlite3/{db}`             | `spin:sqlite/sqlite@3.0.0`, same contract (+ rowid/changes) |
//! | `POST /redis/{command}`          | `fermyon:spin/redis@2.0.0`, body `{"address", ...}` (see `redis.rs`) |
//! | `GET /var/{name}`                | `fermyon:spin/variables@2.0.0`                           |
//! | `GET /config/{name}`             | `wasi:config/store@0.2.0-draft-2024-09-27`               |
//! | `POST /fetch`                    | outbound `wasi:http`, body `{"url", "method", "body", "headers"}` |
//! | `GET /env/{NAME}`                | environment variables                                    |
//! | `GET /log?msg=TEXT`              | writes `probe-stdout: TEXT` / `probe-stderr: TEXT`       |
//! | `GET /loop`                      | spins forever (per-request deadline)                     |
//! | `GET /panic`                     | panics: "probe panicked on purpose" (instance traps)     |
//! | `GET /half-then-panic`           | a 200 head and half a body (text), then a panic          |
//! | `GET /alloc?mb=N`                | allocates and touches N MiB (per-instance memory cap)    |
//! | `GET /read-past?at=end\|top`     | loads 4 bytes just past its linear memory's end, or at the top of the 32-bit space: must trap; a `200 {"read": N}` means it did not |
//!
//! Anything else is `404 {"error": "no-such-probe-route", "path": ..., "method": ...}`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json, json};
use spin_sdk::http::{
    Fields, IncomingRequest, Method, OutgoingResponse, Request, Response, ResponseOutparam,
};
use spin_sdk::http_component;
use spin_sdk::key_value;
use spin_sdk::wit::wasi::config::store as wasi_config;
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_kv};

mod pg;
mod redis;

/// An endpoint's outcome: `Err` holds an error response, so endpoints can use `?`.
type Reply = Result<Response, Response>;

#[http_component]
async fn probe(req: IncomingRequest, out: ResponseOutparam) {
    let head = RequestHead::of(&req);
    if head.method == "POST" && head.path == "/echo" {
        return echo(req, out).await;
    }
    if head.method == "GET" && head.path == "/half-then-panic" {
        return half_then_panic(out).await;
    }
    let body = match req.into_body().await {
        Ok(body) => body,
        Err(e) => {
            let response = error(400, "body-read-failed", e.to_debug_string());
            return respond(out, response).await;
        }
    };
    let response = route(&head, &body).await.unwrap_or_else(|e| e);
    respond(out, response).await;
}

/// Everything about the request except its body.
struct RequestHead {
    method: String,
    /// Path relative to the component's route, always starting with `/`.
    path: String,
    query: String,
    /// Lower-cased names, in the order the host gave them.
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn of(req: &IncomingRequest) -> Self {
        let headers: Vec<(String, String)> = req
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(&value).into_owned();
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        let path_with_query = req.path_with_query().unwrap_or_default();
        let (uri_path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_owned(), query.to_owned()),
            None => (path_with_query, String::new()),
        };
        let path = headers
            .iter()
            .find(|(name, _)| name == "spin-path-info")
            .map(|(_, value)| value.clone())
            .unwrap_or(uri_path);
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Self {
            method: req.method().to_string(),
            path,
            query,
            headers,
        }
    }

    fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

async fn route(req: &RequestHead, body: &[u8]) -> Reply {
    // An exact route leaves spin-path-info empty; route tests also reach
    // the probe under wildcard routes as `.../headers`.
    if req.method == "GET" && (req.path.is_empty() || req.path == "/" || req.path.ends_with("/headers")) {
        return Ok(headers(req));
    }
    // Like `.../headers`, at any depth: a gateway test mounts the probe as
    // the catalog service, whose paths it forwards unchanged.
    if req.method == "GET" && req.path.ends_with("/varies") {
        return Ok(varies(req));
    }
    let (top, rest) = split_segment(&req.path);
    match (req.method.as_str(), top, rest) {
        ("GET", "sleep", "") => Ok(sleep(req)),
        ("GET", "hello", "") => Ok(hello()),
        (_, "kv", _) => spin_kv(req, rest, body),
        (_, "wkv", _) => wasi_keyvalue(req, rest, body),
        ("POST", "sqlite", db) if !db.is_empty() => sqlite_v2(&decode(db), body),
        ("POST", "sqlite3", db) if !db.is_empty() => sqlite_v3(&decode(db), body),
        (_, "pg", _) => pg::handle(req, rest, body),
        ("POST", "redis", command) if !command.is_empty() => redis::handle(&decode(command), body),
        ("GET", "var", name) if !name.is_empty() => variable(&decode(name)),
        ("GET", "config", name) if !name.is_empty() => config(&decode(name)),
        ("POST", "fetch", "") => fetch(body).await,
        ("GET", "env", name) if !name.is_empty() => env(&decode(name)),
        ("GET", "log", "") => Ok(log(req)),
        ("GET", "loop", "") => spin_forever(),
        ("GET", "panic", "") => panic!("probe panicked on purpose"),
        ("GET", "alloc", "") => alloc(req),
        ("GET", "read-past", "") => read_past(req),
        _ => Err(no_such_route(req)),
    }
}

// ---------------------------------------------------------------- plain HTTP

fn headers(req: &RequestHead) -> Response {
    let mut object = Map::new();
    for (name, value) in &req.headers {
        let joined = match object.remove(name) {
            Some(Json::String(previous)) => format!("{previous}, {value}"),
            _ => value.clone(),
        };
        object.insert(name.clone(), Json::String(joined));
    }
    json_response(200, Json::Object(object))
}

/// An answer a shared cache may keep, that depends on the request header
/// `on` names and says so (`Vary`), as a service answering per language
/// would: how a cache's keeping of one entry per variant is tested.
fn varies(req: &RequestHead) -> Response {
    let on = req.query_param("on").unwrap_or_else(|| "accept-language".into());
    let value = req
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&on))
        .map(|(_, value)| Json::String(value.clone()))
        .unwrap_or(Json::Null);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "public, max-age=60")
        .header("vary", on.as_str())
        .body(Json::Object(Map::from_iter([(on.to_ascii_lowercase(), value)])).to_string().into_bytes())
        .build()
}

/// Sleeps `ms` milliseconds (wall clock, in the host's timer), then answers:
/// a request that is still in flight when the host is told to stop.
fn sleep(req: &RequestHead) -> Response {
    let ms: u64 = req.query_param("ms").and_then(|v| v.parse().ok()).unwrap_or(1000);
    // On wasm32-wasip2, std's sleep blocks on a wasi:clocks pollable.
    std::thread::sleep(std::time::Duration::from_millis(ms));
    json_response(200, serde_json::json!({ "slept_ms": ms }))
}

fn hello() -> Response {
    raw(200, "text/plain", b"hello from probe\n".to_vec())
}

/// Streams the request body back chunk by chunk, so bodies of any size pass
/// through without being buffered in guest memory.
async fn echo(req: IncomingRequest, out: ResponseOutparam) {
    let headers = Fields::from_list(&[(
        "content-type".to_owned(),
        b"application/octet-stream".to_vec(),
    )])
    .expect("content-type is a valid header");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(200)
        .expect("200 is a valid status");
    let mut sink = response.take_body();
    out.set(response);

    let mut chunks = req.into_body_stream();
    while let Some(chunk) = chunks.next().await {
        // The status line is already out: trapping is the only honest way to
        // tell the host the body is incomplete.
        let chunk = chunk.unwrap_or_else(|e| {
            panic!(
                "probe: reading the request body failed: {}",
                e.to_debug_string()
            )
        });
        if let Err(e) = sink.send(chunk).await {
            panic!("probe: writing the response body failed: {e:?}");
        }
    }
}

/// Sets a 200 head, writes the start of a body, then panics: a component
/// that fails after its response is on its way.
async fn half_then_panic(out: ResponseOutparam) {
    let response = OutgoingResponse::new(Fields::new());
    response
        .set_status_code(200)
        .expect("200 is a valid status");
    let mut sink = response.take_body();
    out.set(response);
    if let Err(e) = sink.send(b"the first half".to_vec()).await {
        panic!("probe: writing the response body failed: {e:?}");
    }
    panic!("probe panicked after its response head");
}

// ------------------------------------------- fermyon:spin/key-value@2.0.0

fn spin_kv(req: &RequestHead, rest: &str, body: &[u8]) -> Reply {
    let (store, key) = split_segment(rest);
    if store.is_empty() {
        return Err(no_such_route(req));
    }
    let (store, key) = (decode(store), decode(key));
    match (req.method.as_str(), key.as_str()) {
        ("GET", "") => kv_list(&store),
        ("GET", key) => kv_get(&store, key),
        ("PUT", key) if !key.is_empty() => kv_set(&store, key, body),
        ("DELETE", key) if !key.is_empty() => kv_delete(&store, key),
        _ => Err(no_such_route(req)),
    }
}

fn kv_open(store: &str) -> Result<key_value::Store, Response> {
    key_value::Store::open(store).map_err(kv_error)
}

fn kv_list(store: &str) -> Reply {
    let mut keys = kv_open(store)?.get_keys().map_err(kv_error)?;
    keys.sort();
    Ok(json_response(200, json!(keys)))
}

fn kv_get(store: &str, key: &str) -> Reply {
    match kv_open(store)?.get(key).map_err(kv_error)? {
        Some(value) => Ok(raw(200, "application/octet-stream", value)),
        None => Err(error(
            404,
            "not-found",
            format!("no key {key:?} in store {store:?}"),
        )),
    }
}

fn kv_set(store: &str, key: &str, value: &[u8]) -> Reply {
    kv_open(store)?.set(key, value).map_err(kv_error)?;
    Ok(no_content())
}

fn kv_delete(store: &str, key: &str) -> Reply {
    kv_open(store)?.delete(key).map_err(kv_error)?;
    Ok(no_content())
}

fn kv_error(e: key_value::Error) -> Response {
    match e {
        key_value::Error::AccessDenied => error(403, "access-denied", "store access denied"),
        key_value::Error::NoSuchStore => error(404, "no-such-store", "no such store"),
        key_value::Error::StoreTableFull => error(503, "store-table-full", "too many open stores"),
        key_value::Error::Other(detail) => error(500, "other", detail),
    }
}

// ------------------------------------------- wasi:keyvalue@0.2.0-draft2

fn wasi_keyvalue(req: &RequestHead, rest: &str, body: &[u8]) -> Reply {
    let (store, key) = split_segment(rest);
    if store.is_empty() {
        return Err(no_such_route(req));
    }
    let store = decode(store);
    match (req.method.as_str(), key) {
        ("GET", "") => wkv_list(&store),
        ("POST", "batch-get") => wkv_batch_get(&store, body),
        ("POST", "batch-set") => wkv_batch_set(&store, body),
        ("POST", "batch-delete") => wkv_batch_delete(&store, body),
        ("POST", key) => match key.rsplit_once('/') {
            Some((key, "incr")) => {
                let by = match req.query_param("by") {
                    None => 1,
                    Some(by) => by.parse().map_err(|_| {
                        error(
                            400,
                            "bad-request",
                            format!("`by` must be an i64, got {by:?}"),
                        )
                    })?,
                };
                wkv_incr(&store, &decode(key), by)
            }
            Some((key, "swap")) => wkv_swap(&store, &decode(key), body),
            _ => Err(no_such_route(req)),
        },
        ("GET", key) => wkv_get(&store, &decode(key)),
        ("PUT", key) if !key.is_empty() => wkv_set(&store, &decode(key), body),
        ("DELETE", key) if !key.is_empty() => wkv_delete(&store, &decode(key)),
        _ => Err(no_such_route(req)),
    }
}

fn wkv_open(store: &str) -> Result<wasi_kv::Bucket, Response> {
    wasi_kv::open(store).map_err(wkv_error)
}

fn wkv_list(store: &str) -> Reply {
    let bucket = wkv_open(store)?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor.as_deref()).map_err(wkv_error)?;
        keys.extend(page.keys);
        match page.cursor {
            // A host that hands back the same cursor would loop forever.
            Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
            _ => break,
        }
    }
    keys.sort();
    Ok(json_response(200, json!(keys)))
}

fn wkv_get(store: &str, key: &str) -> Reply {
    match wkv_open(store)?.get(key).map_err(wkv_error)? {
        Some(value) => Ok(raw(200, "application/octet-stream", value)),
        None => Err(error(
            404,
            "not-found",
            format!("no key {key:?} in store {store:?}"),
        )),
    }
}

fn wkv_set(store: &str, key: &str, value: &[u8]) -> Reply {
    wkv_open(store)?.set(key, value).map_err(wkv_error)?;
    Ok(no_content())
}

fn wkv_delete(store: &str, key: &str) -> Reply {
    wkv_open(store)?.delete(key).map_err(wkv_error)?;
    Ok(no_content())
}

fn wkv_incr(store: &str, key: &str, by: i64) -> Reply {
    let bucket = wkv_open(store)?;
    let value = atomics::increment(&bucket, key, by).map_err(wkv_error)?;
    Ok(json_response(200, json!({ "value": value })))
}

/// Compare-and-swap with no competing writer: reads the current value through
/// a `cas` handle and swaps in the request body.
fn wkv_swap(store: &str, key: &str, value: &[u8]) -> Reply {
    let bucket = wkv_open(store)?;
    let cas = atomics::Cas::new(&bucket, key).map_err(wkv_error)?;
    let previous = cas.current().map_err(wkv_error)?;
    match atomics::swap(cas, value) {
        Ok(()) => Ok(json_response(
            200,
            json!({ "previous": previous.map(lossy) }),
        )),
        Err(atomics::CasError::CasFailed(_)) => Err(error(
            409,
            "cas-failed",
            "the value changed since it was read",
        )),
        Err(atomics::CasError::StoreError(e)) => Err(wkv_error(e)),
    }
}

fn wkv_batch_get(store: &str, body: &[u8]) -> Reply {
    let keys: Vec<String> = parse_json(body)?;
    let bucket = wkv_open(store)?;
    let found = batch::get_many(&bucket, &keys).map_err(wkv_error)?;
    let object: Map<String, Json> = found
        .into_iter()
        .map(|(key, value)| (key, value.map(lossy).map_or(Json::Null, Json::String)))
        .collect();
    Ok(json_response(200, Json::Object(object)))
}

/// Body: a JSON object of key → string value.
fn wkv_batch_set(store: &str, body: &[u8]) -> Reply {
    let entries: BTreeMap<String, String> = parse_json(body)?;
    let entries: Vec<(String, Vec<u8>)> = entries
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    batch::set_many(&wkv_open(store)?, &entries).map_err(wkv_error)?;
    Ok(no_content())
}

/// Body: a JSON array of keys.
fn wkv_batch_delete(store: &str, body: &[u8]) -> Reply {
    let keys: Vec<String> = parse_json(body)?;
    batch::delete_many(&wkv_open(store)?, &keys).map_err(wkv_error)?;
    Ok(no_content())
}

fn wkv_error(e: wasi_kv::Error) -> Response {
    match e {
        wasi_kv::Error::AccessDenied => error(403, "access-denied", "store access denied"),
        wasi_kv::Error::NoSuchStore => error(404, "no-such-store", "no such store"),
        wasi_kv::Error::Other(detail) => error(500, "other", detail),
    }
}

// ------------------------------------------------------------------ SQLite

/// Body of `POST /sqlite/{db}` and `POST /sqlite3/{db}`.
#[derive(Deserialize)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    params: Vec<Json>,
}

/// A SQLite value independent of the interface version it travels through.
enum SqlValue {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// A SQLite error independent of the interface version: (status, kind, detail).
struct SqlError(u16, &'static str, String);

/// The v2 and v3 interfaces have identical `value` and `error` shapes; this
/// converts between each and the version-independent types above.
macro_rules! sqlite_conversions {
    ($api:ident) => {
        impl From<SqlValue> for spin_sdk::$api::Value {
            fn from(value: SqlValue) -> Self {
                match value {
                    SqlValue::Integer(i) => Self::Integer(i),
                    SqlValue::Real(f) => Self::Real(f),
                    SqlValue::Text(s) => Self::Text(s),
                    SqlValue::Blob(b) => Self::Blob(b),
                    SqlValue::Null => Self::Null,
                }
            }
        }

        impl From<spin_sdk::$api::Value> for SqlValue {
            fn from(value: spin_sdk::$api::Value) -> Self {
                use spin_sdk::$api::Value;
                match value {
                    Value::Integer(i) => Self::Integer(i),
                    Value::Real(f) => Self::Real(f),
                    Value::Text(s) => Self::Text(s),
                    Value::Blob(b) => Self::Blob(b),
                    Value::Null => Self::Null,
                }
            }
        }

        impl From<spin_sdk::$api::Error> for SqlError {
            fn from(e: spin_sdk::$api::Error) -> Self {
                use spin_sdk::$api::Error;
                match e {
                    Error::AccessDenied => {
                        Self(403, "access-denied", "database access denied".into())
                    }
                    Error::NoSuchDatabase => {
                        Self(404, "no-such-database", "no such database".into())
                    }
                    Error::InvalidConnection => {
                        Self(500, "invalid-connection", "invalid connection".into())
                    }
                    Error::DatabaseFull => Self(500, "database-full", "database full".into()),
                    Error::Io(detail) => Self(500, "io", detail),
                }
            }
        }
    };
}

sqlite_conversions!(sqlite);
sqlite_conversions!(sqlite3);

fn sqlite_v2(db: &str, body: &[u8]) -> Reply {
    use spin_sdk::sqlite::{Connection, Value};
    let (sql, params) = parse_sql_request(body)?;
    let params: Vec<Value> = params.into_iter().map(Value::from).collect();
    let result = Connection::open(db)
        .and_then(|conn| conn.execute(&sql, &params))
        .map_err(|e| sql_error(e.into()))?;
    let rows = result
        .rows
        .into_iter()
        .map(|row| row.values.into_iter().map(SqlValue::from));
    Ok(json_response(200, sql_result(result.columns, rows)))
}

/// Like [`sqlite_v2`], plus v3's `last_insert_rowid` and `changes`.
fn sqlite_v3(db: &str, body: &[u8]) -> Reply {
    use spin_sdk::sqlite3::{Connection, Value};
    let (sql, params) = parse_sql_request(body)?;
    let params: Vec<Value> = params.into_iter().map(Value::from).collect();
    let conn = Connection::open(db).map_err(|e| sql_error(e.into()))?;
    let result = conn
        .execute(&sql, &params)
        .map_err(|e| sql_error(e.into()))?;
    let rows = result
        .rows
        .into_iter()
        .map(|row| row.values.into_iter().map(SqlValue::from));
    let mut response = sql_result(result.columns, rows);
    response["last_insert_rowid"] = json!(conn.last_insert_rowid());
    response["changes"] = json!(conn.changes());
    Ok(json_response(200, response))
}

fn parse_sql_request(body: &[u8]) -> Result<(String, Vec<SqlValue>), Response> {
    let request: SqlRequest = parse_json(body)?;
    let params = request
        .params
        .iter()
        .map(sql_param)
        .collect::<Result<_, _>>()?;
    Ok((request.sql, params))
}

/// JSON → SQL: integer → integer, other number → real, string → text,
/// null → null, bool → 0/1, `{"blob_b64": "..."}` → blob.
fn sql_param(value: &Json) -> Result<SqlValue, Response> {
    let bad = |why: &str| error(400, "bad-request", format!("param {value}: {why}"));
    Ok(match value {
        Json::Null => SqlValue::Null,
        Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().ok_or_else(|| bad("not representable"))?),
        },
        Json::String(s) => SqlValue::Text(s.clone()),
        Json::Object(object) => match (object.get("blob_b64"), object.len()) {
            (Some(Json::String(b64)), 1) => {
                SqlValue::Blob(BASE64.decode(b64).map_err(|e| bad(&e.to_string()))?)
            }
            _ => return Err(bad("objects must be {\"blob_b64\": \"...\"}")),
        },
        Json::Array(_) => return Err(bad("arrays are not SQL values")),
    })
}

fn sql_result(
    columns: Vec<String>,
    rows: impl Iterator<Item = impl Iterator<Item = SqlValue>>,
) -> Json {
    let rows: Vec<Json> = rows
        .map(|row| Json::Array(row.map(sql_json).collect()))
        .collect();
    json!({ "columns": columns, "rows": rows })
}

fn sql_json(value: SqlValue) -> Json {
    match value {
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(f) => json!(f),
        SqlValue::Text(s) => json!(s),
        SqlValue::Blob(b) => json!({ "blob_b64": BASE64.encode(b) }),
        SqlValue::Null => Json::Null,
    }
}

fn sql_error(SqlError(status, kind, detail): SqlError) -> Response {
    error(status, kind, detail)
}

// ------------------------------------------------------------- configuration

fn variable(name: &str) -> Reply {
    use spin_sdk::variables::{Error, get};
    match get(name) {
        Ok(value) => Ok(json_response(200, json!({ "value": value }))),
        Err(Error::Undefined(detail)) => Err(error(404, "undefined", detail)),
        Err(Error::InvalidName(detail)) => Err(error(400, "invalid-name", detail)),
        Err(Error::Provider(detail)) => Err(error(500, "provider", detail)),
        Err(Error::Other(detail)) => Err(error(500, "other", detail)),
    }
}

fn config(name: &str) -> Reply {
    match wasi_config::get(name) {
        Ok(Some(value)) => Ok(json_response(200, json!({ "value": value }))),
        Ok(None) => Err(error(404, "undefined", format!("no config value {name:?}"))),
        Err(wasi_config::Error::Upstream(detail)) => Err(error(500, "upstream", detail)),
        Err(wasi_config::Error::Io(detail)) => Err(error(500, "io", detail)),
    }
}

fn env(name: &str) -> Reply {
    match std::env::var(name) {
        Ok(value) => Ok(json_response(200, json!({ "value": value }))),
        Err(std::env::VarError::NotPresent) => Err(error(
            404,
            "undefined",
            format!("no environment variable {name:?}"),
        )),
        Err(e @ std::env::VarError::NotUnicode(_)) => Err(error(500, "not-unicode", e.to_string())),
    }
}

// ------------------------------------------------------------ outbound HTTP

/// Body of `POST /fetch`.
#[derive(Deserialize)]
struct FetchRequest {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".to_owned()
}

async fn fetch(body: &[u8]) -> Reply {
    let spec: FetchRequest = parse_json(body)?;
    let mut builder = Request::builder();
    builder.method(parse_method(&spec.method)).uri(spec.url);
    for (name, value) in spec.headers {
        builder.header(name, value);
    }
    builder.body(spec.body.unwrap_or_default());

    match spin_sdk::http::send::<_, Response>(builder.build()).await {
        Ok(response) => {
            let headers: Map<String, Json> = response
                .headers()
                .map(|(name, value)| (name.to_owned(), json!(lossy(value.as_bytes().to_vec()))))
                .collect();
            Ok(json_response(
                200,
                json!({
                    "status": response.status(),
                    "headers": headers,
                    "body": String::from_utf8_lossy(response.body()),
                }),
            ))
        }
        Err(e) => Err(error(502, format!("{e:?}"), e.to_string())),
    }
}

fn parse_method(method: &str) -> Method {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(method.to_owned()),
    }
}

// ------------------------------------------------------ misbehaving guests

fn log(req: &RequestHead) -> Response {
    let msg = req.query_param("msg").unwrap_or_default();
    println!("probe-stdout: {msg}");
    eprintln!("probe-stderr: {msg}");
    json_response(200, json!({ "logged": msg }))
}

/// Burns CPU until the host interrupts the instance.
fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Allocates `mb` MiB and writes to every page of it. If the allocator cannot
/// grow linear memory (the host refused `memory.grow`) the answer is
/// `507 {"error": "out-of-memory"}`; a host that traps instead yields a 500.
fn alloc(req: &RequestHead) -> Reply {
    const MIB: usize = 1024 * 1024;
    const PAGE: usize = 4096;
    let mb: usize = req
        .query_param("mb")
        .and_then(|mb| mb.parse().ok())
        .ok_or_else(|| error(400, "bad-request", "expected ?mb=<non-negative integer>"))?;
    let len = mb
        .checked_mul(MIB)
        .ok_or_else(|| error(400, "bad-request", format!("{mb} MiB overflows usize")))?;
    let mut buffer: Vec<u8> = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|e| error(507, "out-of-memory", format!("allocating {mb} MiB: {e}")))?;
    buffer.resize(len, 0);
    for offset in (0..len).step_by(PAGE) {
        buffer[offset] = 1;
    }
    std::hint::black_box(&buffer);
    Ok(json_response(200, json!({ "allocated_mb": mb })))
}

/// Loads from an address the guest does not own: the first bytes past its
/// linear memory's end (`at=end`), or the last four of the 32-bit space
/// (`at=top`). The host must stop the instance with a trap; an answer means
/// the load read something.
fn read_past(req: &RequestHead) -> Reply {
    const PAGE: usize = 64 * 1024;
    let address = match req.query_param("at").as_deref() {
        Some("end") => core::arch::wasm32::memory_size(0) * PAGE,
        Some("top") => (u32::MAX - 3) as usize,
        _ => return Err(error(400, "bad-request", "expected ?at=end or ?at=top")),
    };
    // SAFETY: none; this is the out-of-bounds access the test is about, and
    // wasm's semantics (a trap) are what it checks.
    let value = unsafe { core::ptr::read_volatile(address as *const u32) };
    Ok(json_response(200, json!({ "read": value })))
}

// ----------------------------------------------------------------- helpers

/// Splits `"/a/b/c"` (or `"a/b/c"`) into `("a", "b/c")`; `"/a"` into `("a", "")`.
fn split_segment(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| error(400, "bad-request", e.to_string()))
}

fn json_response(status: u16, value: Json) -> Response {
    raw(status, "application/json", value.to_string().into_bytes())
}

fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .build()
}

fn no_content() -> Response {
    Response::new(204, ())
}

fn error(status: u16, kind: impl Into<String>, detail: impl Into<String>) -> Response {
    json_response(
        status,
        json!({ "error": kind.into(), "detail": detail.into() }),
    )
}

fn no_such_route(req: &RequestHead) -> Response {
    json_response(
        404,
        json!({ "error": "no-such-probe-route", "path": req.path, "method": req.method }),
    )
}

/// Sends a buffered [`Response`] through the outparam.
async fn respond(out: ResponseOutparam, mut response: Response) {
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        Ok(outgoing) => {
            if let Err(e) = out.set_with_body(outgoing, body).await {
                eprintln!("probe: writing the response body failed: {e:?}");
            }
        }
        Err(e) => eprintln!("probe: building the response failed: {e}"),
    }
}
