//! `fermyon:spin/redis@2.0.0` endpoints of the probe: `POST /redis/{command}`
//! opens a connection to the body's `address` and runs one command, so
//! end-to-end tests can check each host function and its errors.
//!
//! | Command     | Body (besides `"address"`)                      | Answer                          |
//! |-------------|-------------------------------------------------|---------------------------------|
//! | `publish`   | `"channel"`, `"payload"` (text)                 | 204                             |
//! | `get`       | `"key"`                                         | `{"value": text or null}`       |
//! | `set`       | `"key"`, `"value"` (text)                       | 204                             |
//! | `incr`      | `"key"`                                         | `{"value": n}`                  |
//! | `del`       | `"keys"` (array)                                | `{"deleted": n}`                |
//! | `sadd`      | `"key"`, `"values"` (array)                     | `{"added": n}`                  |
//! | `srem`      | `"key"`, `"values"` (array)                     | `{"removed": n}`                |
//! | `smembers`  | `"key"`                                         | `{"members": [sorted]}`         |
//! | `execute`   | `"command"`, `"args"` (integers → int64, strings → binary) | `{"results": [{"type": "nil" / "status" / "int64" / "binary", "value": ...}]}` |
//!
//! Errors are `{"error": "<variant>", "detail": ...}`: `invalid-address`
//! (400), `too-many-connections` (503), `type-error` and `other` (500).
use serde::Deserialize;
use serde_json::{Value as Json, json};
use spin_sdk::http::Response;
use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

use crate::{Reply, error, json_response, lossy, no_content, parse_json};

/// Body of `POST /redis/{command}`; each command reads the fields it needs.
#[derive(Deserialize)]
struct RedisRequest {
    address: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    command: String,
    #[serde(default)]
    args: Vec<Json>,
}

pub fn handle(command: &str, body: &[u8]) -> Reply {
    let r: RedisRequest = parse_json(body)?;
    let conn = Connection::open(&r.address).map_err(redis_error)?;
    match command {
        "publish" => {
            conn.publish(&r.channel, &r.payload.into_bytes())
                .map_err(redis_error)?;
            Ok(no_content())
        }
        "get" => {
            let value = conn.get(&r.key).map_err(redis_error)?;
            Ok(json_response(200, json!({ "value": value.map(lossy) })))
        }
        "set" => {
            conn.set(&r.key, &r.value.into_bytes())
                .map_err(redis_error)?;
            Ok(no_content())
        }
        "incr" => Ok(json_response(
            200,
            json!({ "value": conn.incr(&r.key).map_err(redis_error)? }),
        )),
        "del" => Ok(json_response(
            200,
            json!({ "deleted": conn.del(&r.keys).map_err(redis_error)? }),
        )),
        "sadd" => Ok(json_response(
            200,
            json!({ "added": conn.sadd(&r.key, &r.values).map_err(redis_error)? }),
        )),
        "srem" => Ok(json_response(
            200,
            json!({ "removed": conn.srem(&r.key, &r.values).map_err(redis_error)? }),
        )),
        "smembers" => {
            let mut members = conn.smembers(&r.key).map_err(redis_error)?;
            members.sort();
            Ok(json_response(200, json!({ "members": members })))
        }
        "execute" => {
            let args = r
                .args
                .iter()
                .map(parameter)
                .collect::<Result<Vec<_>, _>>()?;
            let results = conn.execute(&r.command, &args).map_err(redis_error)?;
            let results: Vec<Json> = results.into_iter().map(result_json).collect();
            Ok(json_response(200, json!({ "results": results })))
        }
        other => Err(error(
            404,
            "no-such-redis-command",
            format!("the probe has no redis command {other:?}"),
        )),
    }
}

/// JSON → `redis-parameter`: an integer is `int64`, a string `binary`.
fn parameter(value: &Json) -> Result<RedisParameter, Response> {
    match value {
        Json::Number(n) if n.is_i64() => Ok(RedisParameter::Int64(n.as_i64().unwrap_or_default())),
        Json::String(s) => Ok(RedisParameter::Binary(s.clone().into_bytes())),
        other => Err(error(
            400,
            "bad-request",
            format!("argument {other}: use integers and strings"),
        )),
    }
}

fn result_json(result: RedisResult) -> Json {
    match result {
        RedisResult::Nil => json!({ "type": "nil" }),
        RedisResult::Status(s) => json!({ "type": "status", "value": s }),
        RedisResult::Int64(i) => json!({ "type": "int64", "value": i }),
        RedisResult::Binary(b) => json!({ "type": "binary", "value": lossy(b) }),
    }
}

fn redis_error(e: Error) -> Response {
    match e {
        Error::InvalidAddress => error(
            400,
            "invalid-address",
            "invalid or not allowed Redis address",
        ),
        Error::TooManyConnections => {
            error(503, "too-many-connections", "too many Redis connections")
        }
        Error::TypeError => error(500, "type-error", "a value of the wrong type"),
        Error::Other(detail) => error(500, "other", detail),
    }
}
