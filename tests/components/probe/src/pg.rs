//! Postgres endpoints of the probe: `fermyon:spin/postgres@2.0.0` (`v2`),
//! `spin:postgres/postgres@3.0.0` (`v3`) and `spin:postgres/postgres@4.0.0`
//! (`v4`), driven by JSON so a test can send every value type and see
//! exactly what the guest got back.
//!
//! | Request                   | Body                                             | Answer |
//! |---------------------------|--------------------------------------------------|--------|
//! | `POST /pg/{v}/query`      | `{"address", "sql", "params": [typed, ...]}`     | `{"columns": [{"name", "type"}], "rows": [[typed, ...]]}` |
//! | `POST /pg/{v}/execute`    | same                                             | `{"rows_affected": N}` |
//! | `POST /pg/{v}/batch`      | `{"address", "statements": [{"sql", "params", "execute": bool}]}` on one connection | `{"results": [answer or error, ...]}` |
//!
//! A typed value is a one-key object named after the interface's variant:
//! `{"int32": 5}`, `{"str": "x"}`, `{"binary": "<base64>"}`,
//! `{"date": [y, m, d]}`, `{"time": [h, m, s, ns]}`,
//! `{"datetime": [y, m, d, h, mi, s, ns]}`, `{"timestamp": secs}`,
//! `{"uuid": "..."}`, `{"jsonb": <any JSON>}`, `{"decimal": "1.50"}`,
//! `{"range-int32": [[lo, "inclusive"], [hi, "exclusive"]]}` (a bound may
//! be `null`), `{"array-str": ["a", null]}`,
//! `{"interval": {"micros", "days", "months"}}`, `{"null": true}`, and in
//! results `{"unsupported": "<base64>"}` (v4) or `{"unsupported": null}`.
//! Column types are the interface's `db-data-type` names (`other(point)`
//! for v4's `other`).
//!
//! Errors are `{"error": "<variant>", "detail": "..."}` with status 500
//! (403 when the address is not allowed); v4's structured query errors add
//! `"code"`, `"severity"`, `"message"`, `"pg_detail"` and `"extras"`.
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use spin_sdk::http::Response;
use spin_sdk::wit::pg3 as v3;
use spin_sdk::wit::pg4 as v4;
use spin_sdk::wit::v2::{postgres as v2, rdbms_types as v2_types};

use super::{
    BASE64, Reply, RequestHead, error, json_response, no_such_route, parse_json, split_segment,
};

#[derive(Deserialize)]
struct Statement {
    sql: String,
    #[serde(default)]
    params: Vec<Json>,
    #[serde(default)]
    execute: bool,
}

#[derive(Deserialize)]
struct Single {
    address: String,
    #[serde(flatten)]
    statement: Statement,
}

#[derive(Deserialize)]
struct Batch {
    address: String,
    statements: Vec<Statement>,
}

pub fn handle(req: &RequestHead, rest: &str, body: &[u8]) -> Reply {
    let (version, action) = split_segment(rest);
    if req.method != "POST" {
        return Err(no_such_route(req));
    }
    let run: Run = match version {
        "v2" => run_v2,
        "v3" => run_v3,
        "v4" => run_v4,
        _ => return Err(no_such_route(req)),
    };
    match action {
        "query" | "execute" => {
            let mut single: Single = parse_json(body)?;
            single.statement.execute = action == "execute";
            let mut results = run(&single.address, &[single.statement])?;
            results.pop().expect("one statement, one result")
        }
        "batch" => {
            let batch: Batch = parse_json(body)?;
            let results = run(&batch.address, &batch.statements)?;
            let results: Vec<Json> = results
                .into_iter()
                .map(|r| {
                    let response = r.unwrap_or_else(|e| e);
                    serde_json::from_slice(response.body()).unwrap_or(Json::Null)
                })
                .collect();
            Ok(json_response(200, json!({ "results": results })))
        }
        _ => Err(no_such_route(req)),
    }
}

/// Opens one connection and runs each statement on it; `Err` only if the
/// connection cannot be opened or a parameter is malformed.
type Run = fn(&str, &[Statement]) -> Result<Vec<Reply>, Response>;

fn answer(execute: bool, columns: Vec<Json>, rows: Vec<Vec<Json>>, affected: Option<u64>) -> Reply {
    Ok(json_response(
        200,
        match (execute, affected) {
            (true, Some(n)) => json!({ "rows_affected": n }),
            _ => json!({ "columns": columns, "rows": rows }),
        },
    ))
}

fn column(name: String, ty: String) -> Json {
    json!({ "name": name, "type": ty })
}

fn typed(name: &str, value: Json) -> Json {
    json!({ name: value })
}

// ------------------------------------------------------------------ v4

fn run_v4(address: &str, statements: &[Statement]) -> Result<Vec<Reply>, Response> {
    let conn = v4::Connection::open(address).map_err(v4_error)?;
    statements
        .iter()
        .map(|s| {
            let params = s
                .params
                .iter()
                .map(|p| parse_param(p)?.v4())
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if s.execute {
                conn.execute(&s.sql, &params)
                    .map_err(v4_error)
                    .and_then(|n| answer(true, vec![], vec![], Some(n)))
            } else {
                conn.query(&s.sql, &params)
                    .map_err(v4_error)
                    .and_then(|set| {
                        let columns = set
                            .columns
                            .into_iter()
                            .map(|c| column(c.name, v4_type(c.data_type)))
                            .collect();
                        let rows = set
                            .rows
                            .into_iter()
                            .map(|r| r.into_iter().map(v4_json).collect())
                            .collect();
                        answer(false, columns, rows, None)
                    })
            })
        })
        .collect()
}

fn v4_type(t: v4::DbDataType) -> String {
    use v4::DbDataType as T;
    match t {
        T::Boolean => "boolean",
        T::Int8 => "int8",
        T::Int16 => "int16",
        T::Int32 => "int32",
        T::Int64 => "int64",
        T::Floating32 => "floating32",
        T::Floating64 => "floating64",
        T::Str => "str",
        T::Binary => "binary",
        T::Date => "date",
        T::Time => "time",
        T::Datetime => "datetime",
        T::Timestamp => "timestamp",
        T::Uuid => "uuid",
        T::Jsonb => "jsonb",
        T::Decimal => "decimal",
        T::RangeInt32 => "range-int32",
        T::RangeInt64 => "range-int64",
        T::RangeDecimal => "range-decimal",
        T::ArrayInt32 => "array-int32",
        T::ArrayInt64 => "array-int64",
        T::ArrayDecimal => "array-decimal",
        T::ArrayStr => "array-str",
        T::Interval => "interval",
        T::Other(name) => return format!("other({name})"),
    }
    .to_string()
}

fn bound_json<T: serde::Serialize>(bound: Option<(T, v4::RangeBoundKind)>) -> Json {
    match bound {
        None => Json::Null,
        Some((v, v4::RangeBoundKind::Inclusive)) => json!([v, "inclusive"]),
        Some((v, v4::RangeBoundKind::Exclusive)) => json!([v, "exclusive"]),
    }
}

fn v4_json(v: v4::DbValue) -> Json {
    use v4::DbValue as V;
    match v {
        V::Boolean(b) => typed("boolean", json!(b)),
        V::Int8(i) => typed("int8", json!(i)),
        V::Int16(i) => typed("int16", json!(i)),
        V::Int32(i) => typed("int32", json!(i)),
        V::Int64(i) => typed("int64", json!(i)),
        V::Floating32(f) => typed("floating32", json!(f)),
        V::Floating64(f) => typed("floating64", json!(f)),
        V::Str(s) => typed("str", json!(s)),
        V::Binary(b) => typed("binary", json!(BASE64.encode(b))),
        V::Date((y, m, d)) => typed("date", json!([y, m, d])),
        V::Time((h, m, s, ns)) => typed("time", json!([h, m, s, ns])),
        V::Datetime((y, mo, d, h, mi, s, ns)) => typed("datetime", json!([y, mo, d, h, mi, s, ns])),
        V::Timestamp(t) => typed("timestamp", json!(t)),
        V::Uuid(u) => typed("uuid", json!(u)),
        V::Jsonb(bytes) => typed(
            "jsonb",
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!({ "invalid": String::from_utf8_lossy(&bytes) })),
        ),
        V::Decimal(d) => typed("decimal", json!(d)),
        V::RangeInt32((lo, hi)) => typed("range-int32", json!([bound_json(lo), bound_json(hi)])),
        V::RangeInt64((lo, hi)) => typed("range-int64", json!([bound_json(lo), bound_json(hi)])),
        V::RangeDecimal((lo, hi)) => {
            typed("range-decimal", json!([bound_json(lo), bound_json(hi)]))
        }
        V::ArrayInt32(a) => typed("array-int32", json!(a)),
        V::ArrayInt64(a) => typed("array-int64", json!(a)),
        V::ArrayDecimal(a) => typed("array-decimal", json!(a)),
        V::ArrayStr(a) => typed("array-str", json!(a)),
        V::Interval(i) => typed(
            "interval",
            json!({ "micros": i.micros, "days": i.days, "months": i.months }),
        ),
        V::DbNull => typed("null", json!(true)),
        V::Unsupported(raw) => typed("unsupported", json!(BASE64.encode(raw))),
    }
}

fn v4_error(e: v4::Error) -> Response {
    match e {
        v4::Error::QueryFailed(v4::QueryError::DbError(db)) => json_response(
            500,
            json!({
                "error": "query-failed",
                "detail": db.as_text,
                "code": db.code,
                "severity": db.severity,
                "message": db.message,
                "pg_detail": db.detail,
                "extras": db.extras.into_iter().map(|(k, v)| (k, Json::String(v))).collect::<Map<String, Json>>(),
            }),
        ),
        v4::Error::QueryFailed(v4::QueryError::Text(text)) => error(500, "query-failed", text),
        v4::Error::ConnectionFailed(m) => connection_failed(m),
        v4::Error::BadParameter(m) => error(500, "bad-parameter", m),
        v4::Error::ValueConversionFailed(m) => error(500, "value-conversion-failed", m),
        v4::Error::Other(m) => error(500, "other", m),
    }
}

/// 403 when the host refused the address, 500 otherwise.
fn connection_failed(detail: String) -> Response {
    let status = if detail.contains("is not permitted") {
        403
    } else {
        500
    };
    error(status, "connection-failed", detail)
}

// ------------------------------------------------------------------ v3

fn run_v3(address: &str, statements: &[Statement]) -> Result<Vec<Reply>, Response> {
    let conn = v3::Connection::open(address).map_err(v3_error)?;
    statements
        .iter()
        .map(|s| {
            let params = s
                .params
                .iter()
                .map(|p| parse_param(p)?.v3())
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if s.execute {
                conn.execute(&s.sql, &params)
                    .map_err(v3_error)
                    .and_then(|n| answer(true, vec![], vec![], Some(n)))
            } else {
                conn.query(&s.sql, &params)
                    .map_err(v3_error)
                    .and_then(|set| {
                        let columns = set
                            .columns
                            .into_iter()
                            .map(|c| column(c.name, v3_type(c.data_type)))
                            .collect();
                        let rows = set
                            .rows
                            .into_iter()
                            .map(|r| r.into_iter().map(v3_json).collect())
                            .collect();
                        answer(false, columns, rows, None)
                    })
            })
        })
        .collect()
}

fn v3_type(t: v3::DbDataType) -> String {
    use v3::DbDataType as T;
    match t {
        T::Boolean => "boolean",
        T::Int8 => "int8",
        T::Int16 => "int16",
        T::Int32 => "int32",
        T::Int64 => "int64",
        T::Floating32 => "floating32",
        T::Floating64 => "floating64",
        T::Str => "str",
        T::Binary => "binary",
        T::Date => "date",
        T::Time => "time",
        T::Datetime => "datetime",
        T::Timestamp => "timestamp",
        T::Other => "other",
    }
    .to_string()
}

fn v3_json(v: v3::DbValue) -> Json {
    use v3::DbValue as V;
    match v {
        V::Boolean(b) => typed("boolean", json!(b)),
        V::Int8(i) => typed("int8", json!(i)),
        V::Int16(i) => typed("int16", json!(i)),
        V::Int32(i) => typed("int32", json!(i)),
        V::Int64(i) => typed("int64", json!(i)),
        V::Floating32(f) => typed("floating32", json!(f)),
        V::Floating64(f) => typed("floating64", json!(f)),
        V::Str(s) => typed("str", json!(s)),
        V::Binary(b) => typed("binary", json!(BASE64.encode(b))),
        V::Date((y, m, d)) => typed("date", json!([y, m, d])),
        V::Time((h, m, s, ns)) => typed("time", json!([h, m, s, ns])),
        V::Datetime((y, mo, d, h, mi, s, ns)) => typed("datetime", json!([y, mo, d, h, mi, s, ns])),
        V::Timestamp(t) => typed("timestamp", json!(t)),
        V::DbNull => typed("null", json!(true)),
        V::Unsupported => typed("unsupported", Json::Null),
    }
}

fn v3_error(e: v3::Error) -> Response {
    match e {
        v3::Error::ConnectionFailed(m) => connection_failed(m),
        v3::Error::BadParameter(m) => error(500, "bad-parameter", m),
        v3::Error::QueryFailed(m) => error(500, "query-failed", m),
        v3::Error::ValueConversionFailed(m) => error(500, "value-conversion-failed", m),
        v3::Error::Other(m) => error(500, "other", m),
    }
}

// ------------------------------------------------------------------ v2

fn run_v2(address: &str, statements: &[Statement]) -> Result<Vec<Reply>, Response> {
    let conn = v2::Connection::open(address).map_err(v2_error)?;
    statements
        .iter()
        .map(|s| {
            let params = s
                .params
                .iter()
                .map(|p| parse_param(p)?.v2())
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if s.execute {
                conn.execute(&s.sql, &params)
                    .map_err(v2_error)
                    .and_then(|n| answer(true, vec![], vec![], Some(n)))
            } else {
                conn.query(&s.sql, &params)
                    .map_err(v2_error)
                    .and_then(|set| {
                        let columns = set
                            .columns
                            .into_iter()
                            .map(|c| column(c.name, v2_type(c.data_type)))
                            .collect();
                        let rows = set
                            .rows
                            .into_iter()
                            .map(|r| r.into_iter().map(v2_json).collect())
                            .collect();
                        answer(false, columns, rows, None)
                    })
            })
        })
        .collect()
}

fn v2_type(t: v2_types::DbDataType) -> String {
    use v2_types::DbDataType as T;
    match t {
        T::Boolean => "boolean",
        T::Int8 => "int8",
        T::Int16 => "int16",
        T::Int32 => "int32",
        T::Int64 => "int64",
        T::Uint8 => "uint8",
        T::Uint16 => "uint16",
        T::Uint32 => "uint32",
        T::Uint64 => "uint64",
        T::Floating32 => "floating32",
        T::Floating64 => "floating64",
        T::Str => "str",
        T::Binary => "binary",
        T::Other => "other",
    }
    .to_string()
}

fn v2_json(v: v2_types::DbValue) -> Json {
    use v2_types::DbValue as V;
    match v {
        V::Boolean(b) => typed("boolean", json!(b)),
        V::Int8(i) => typed("int8", json!(i)),
        V::Int16(i) => typed("int16", json!(i)),
        V::Int32(i) => typed("int32", json!(i)),
        V::Int64(i) => typed("int64", json!(i)),
        V::Uint8(i) => typed("uint8", json!(i)),
        V::Uint16(i) => typed("uint16", json!(i)),
        V::Uint32(i) => typed("uint32", json!(i)),
        V::Uint64(i) => typed("uint64", json!(i)),
        V::Floating32(f) => typed("floating32", json!(f)),
        V::Floating64(f) => typed("floating64", json!(f)),
        V::Str(s) => typed("str", json!(s)),
        V::Binary(b) => typed("binary", json!(BASE64.encode(b))),
        V::DbNull => typed("null", json!(true)),
        V::Unsupported => typed("unsupported", Json::Null),
    }
}

fn v2_error(e: v2_types::Error) -> Response {
    use v2_types::Error as E;
    match e {
        E::ConnectionFailed(m) => connection_failed(m),
        E::BadParameter(m) => error(500, "bad-parameter", m),
        E::QueryFailed(m) => error(500, "query-failed", m),
        E::ValueConversionFailed(m) => error(500, "value-conversion-failed", m),
        E::Other(m) => error(500, "other", m),
    }
}

// ------------------------------------------------------------ parameters

/// A parameter as the JSON named it, before it is made one version's.
enum Param {
    V2(v2_types::ParameterValue),
    V3(v3::ParameterValue),
    V4(v4::ParameterValue),
    /// In every version.
    Common(Common),
}

enum Common {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Floating32(f32),
    Floating64(f64),
    Str(String),
    Binary(Vec<u8>),
    Null,
}

macro_rules! common_into {
    ($c:expr, $ty:path, $null:ident) => {{
        use $ty as P;
        match $c {
            Common::Boolean(b) => P::Boolean(b),
            Common::Int8(i) => P::Int8(i),
            Common::Int16(i) => P::Int16(i),
            Common::Int32(i) => P::Int32(i),
            Common::Int64(i) => P::Int64(i),
            Common::Floating32(f) => P::Floating32(f),
            Common::Floating64(f) => P::Floating64(f),
            Common::Str(s) => P::Str(s),
            Common::Binary(b) => P::Binary(b),
            Common::Null => P::$null,
        }
    }};
}

impl Param {
    fn v4(self) -> Result<v4::ParameterValue, Response> {
        match self {
            Param::Common(c) => Ok(common_into!(c, v4::ParameterValue, DbNull)),
            Param::V3(p) => Ok(match p {
                v3::ParameterValue::Date(d) => v4::ParameterValue::Date(d),
                v3::ParameterValue::Time(t) => v4::ParameterValue::Time(t),
                v3::ParameterValue::Datetime(dt) => v4::ParameterValue::Datetime(dt),
                v3::ParameterValue::Timestamp(t) => v4::ParameterValue::Timestamp(t),
                _ => unreachable!("only the date/time variants are V3"),
            }),
            Param::V4(p) => Ok(p),
            Param::V2(_) => Err(error(400, "bad-request", "v4 has no unsigned integers")),
        }
    }

    fn v3(self) -> Result<v3::ParameterValue, Response> {
        match self {
            Param::Common(c) => Ok(common_into!(c, v3::ParameterValue, DbNull)),
            Param::V3(p) => Ok(p),
            _ => Err(error(400, "bad-request", "v3 has no such parameter type")),
        }
    }

    fn v2(self) -> Result<v2_types::ParameterValue, Response> {
        match self {
            Param::Common(c) => Ok(common_into!(c, v2_types::ParameterValue, DbNull)),
            Param::V2(p) => Ok(p),
            _ => Err(error(400, "bad-request", "v2 has no such parameter type")),
        }
    }
}

/// A range bound before its value is typed: `None` is unbounded.
type JsonBound = Option<(Json, v4::RangeBoundKind)>;

fn parse_param(json: &Json) -> Result<Param, Response> {
    let bad = |why: &str| error(400, "bad-request", format!("param {json}: {why}"));
    let Some((name, value)) = json
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        return Err(bad("expected a one-key object such as {\"int32\": 5}"));
    };
    let de = |why: &str| bad(why);
    fn from<T: serde::de::DeserializeOwned>(v: &Json) -> Option<T> {
        serde_json::from_value(v.clone()).ok()
    }
    macro_rules! get {
        ($t:ty) => {
            from::<$t>(value).ok_or_else(|| de(concat!("expected ", stringify!($t))))?
        };
    }
    let bound = |b: &Json| -> Result<JsonBound, Response> {
        match b {
            Json::Null => Ok(None),
            Json::Array(pair) if pair.len() == 2 => {
                let kind = match pair[1].as_str() {
                    Some("inclusive") => v4::RangeBoundKind::Inclusive,
                    Some("exclusive") => v4::RangeBoundKind::Exclusive,
                    _ => return Err(de("a bound kind is \"inclusive\" or \"exclusive\"")),
                };
                Ok(Some((pair[0].clone(), kind)))
            }
            _ => Err(de("a bound is null or [value, kind]")),
        }
    };
    let range = || -> Result<(JsonBound, JsonBound), Response> {
        match value.as_array().map(|a| a.as_slice()) {
            Some([lo, hi]) => Ok((bound(lo)?, bound(hi)?)),
            _ => Err(de("a range is [lower, upper]")),
        }
    };
    fn map_bound<T: serde::de::DeserializeOwned>(
        b: JsonBound,
    ) -> Option<Option<(T, v4::RangeBoundKind)>> {
        match b {
            None => Some(None),
            Some((v, k)) => from::<T>(&v).map(|v| Some((v, k))),
        }
    }
    use v4::ParameterValue as P4;
    Ok(match name.as_str() {
        "boolean" => Param::Common(Common::Boolean(get!(bool))),
        "int8" => Param::Common(Common::Int8(get!(i8))),
        "int16" => Param::Common(Common::Int16(get!(i16))),
        "int32" => Param::Common(Common::Int32(get!(i32))),
        "int64" => Param::Common(Common::Int64(get!(i64))),
        "floating32" => Param::Common(Common::Floating32(get!(f32))),
        "floating64" => Param::Common(Common::Floating64(get!(f64))),
        "str" => Param::Common(Common::Str(get!(String))),
        "binary" => Param::Common(Common::Binary(
            BASE64
                .decode(get!(String))
                .map_err(|e| de(&e.to_string()))?,
        )),
        "null" | "db-null" => Param::Common(Common::Null),
        "uint8" => Param::V2(v2_types::ParameterValue::Uint8(get!(u8))),
        "uint16" => Param::V2(v2_types::ParameterValue::Uint16(get!(u16))),
        "uint32" => Param::V2(v2_types::ParameterValue::Uint32(get!(u32))),
        "uint64" => Param::V2(v2_types::ParameterValue::Uint64(get!(u64))),
        "date" => Param::V3(v3::ParameterValue::Date(get!((i32, u8, u8)))),
        "time" => Param::V3(v3::ParameterValue::Time(get!((u8, u8, u8, u32)))),
        "datetime" => Param::V3(v3::ParameterValue::Datetime(get!((
            i32, u8, u8, u8, u8, u8, u32
        )))),
        "timestamp" => Param::V3(v3::ParameterValue::Timestamp(get!(i64))),
        "uuid" => Param::V4(P4::Uuid(get!(String))),
        "jsonb" => Param::V4(P4::Jsonb(value.to_string().into_bytes())),
        "decimal" => Param::V4(P4::Decimal(get!(String))),
        "range-int32" => {
            let (lo, hi) = range()?;
            Param::V4(P4::RangeInt32((
                map_bound(lo).ok_or_else(|| de("i32 bounds"))?,
                map_bound(hi).ok_or_else(|| de("i32 bounds"))?,
            )))
        }
        "range-int64" => {
            let (lo, hi) = range()?;
            Param::V4(P4::RangeInt64((
                map_bound(lo).ok_or_else(|| de("i64 bounds"))?,
                map_bound(hi).ok_or_else(|| de("i64 bounds"))?,
            )))
        }
        "range-decimal" => {
            let (lo, hi) = range()?;
            Param::V4(P4::RangeDecimal((
                map_bound(lo).ok_or_else(|| de("string bounds"))?,
                map_bound(hi).ok_or_else(|| de("string bounds"))?,
            )))
        }
        "array-int32" => Param::V4(P4::ArrayInt32(get!(Vec<Option<i32>>))),
        "array-int64" => Param::V4(P4::ArrayInt64(get!(Vec<Option<i64>>))),
        "array-decimal" => Param::V4(P4::ArrayDecimal(get!(Vec<Option<String>>))),
        "array-str" => Param::V4(P4::ArrayStr(get!(Vec<Option<String>>))),
        "interval" => {
            #[derive(Deserialize)]
            struct I {
                micros: i64,
                days: i32,
                months: i32,
            }
            let i = get!(I);
            Param::V4(P4::Interval(v4::Interval {
                micros: i.micros,
                days: i.days,
                months: i.months,
            }))
        }
        other => return Err(bad(&format!("unknown type {other:?}"))),
    })
}
