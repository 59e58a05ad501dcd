//! Values between the 4.0.0 interface and Postgres's binary wire format.
//!
//! 4.0.0 is the richest interface; 3.0.0 and 2.0.0 are converted to and
//! from it (see `compat`), as Spin does.
//!
//! **Parameters.** The statement is prepared first, so Postgres tells us
//! the type it expects for each `$n`; each value is then encoded for that
//! type, or refused with a `bad-parameter` error naming both. A value binds
//! to the types it obviously means (Spin binds more strictly; everything
//! Spin accepts is accepted here):
//! - integers to `int2`/`int4`/`int8` (range-checked), `"char"`, `numeric`,
//!   `float4`/`float8`;
//! - floats to `float4`/`float8`/`numeric`; decimals to `numeric` (exactly,
//!   any precision, `NaN`/`±Infinity`) and floats;
//! - strings to the text types, enums, `json`/`jsonb`;
//! - `datetime` to `timestamp` and `timestamptz` (as UTC), `timestamp`
//!   (Unix seconds) to both as well;
//! - ranges and arrays element-wise to any range/array whose element type
//!   the element binds to; `db-null` to anything.
//!
//! **Columns.** Decoded from the column's type (a domain as its base type);
//! `timestamptz` reads as a UTC `datetime`, `json` as `jsonb`, enums as
//! `str`. A type the interface has no variant for is `unsupported` carrying
//! Postgres's raw binary value, as is a value of a known type that the
//! interface cannot hold (`infinity` dates, multi-dimensional arrays).
//! An empty range reads as `[0,0)`, which Postgres reads back as empty.
use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use postgres_protocol::IsNull as WireNull;
use postgres_protocol::types as wire;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use super::numeric;
use crate::bindings::spin::postgres4_0_0::postgres::{
    DbDataType, DbValue, Interval, ParameterValue as Param, RangeBoundKind,
};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

// ------------------------------------------------------------ parameters

/// A parameter already encoded for the type Postgres expects: binding it
/// cannot fail, and it accepts any type because the check was done when it
/// was encoded.
#[derive(Debug)]
pub struct Encoded(Option<BytesMut>);

impl ToSql for Encoded {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Encodes every parameter for the types the prepared statement expects.
/// The error is the guest's: a `bad-parameter` message.
pub fn encode_params(params: &[Param], types: &[Type]) -> Result<Vec<Encoded>, String> {
    if params.len() != types.len() {
        return Err(format!(
            "the statement has {} parameter{} but {} value{} given",
            types.len(),
            if types.len() == 1 { "" } else { "s" },
            params.len(),
            if params.len() == 1 { " was" } else { "s were" },
        ));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (param, ty))| encode(param, ty).map_err(|e| format!("parameter ${}: {e}", i + 1)))
        .collect()
}

/// Encodes one parameter for Postgres type `ty`.
pub fn encode(param: &Param, ty: &Type) -> Result<Encoded, String> {
    if let Param::DbNull = param {
        return Ok(Encoded(None));
    }
    let mut buf = BytesMut::new();
    write(param, ty, &mut buf)?;
    Ok(Encoded(Some(buf)))
}

/// The interface's name for a parameter's variant, for error messages.
fn variant(param: &Param) -> &'static str {
    match param {
        Param::Boolean(_) => "boolean",
        Param::Int8(_) => "int8",
        Param::Int16(_) => "int16",
        Param::Int32(_) => "int32",
        Param::Int64(_) => "int64",
        Param::Floating32(_) => "floating32",
        Param::Floating64(_) => "floating64",
        Param::Str(_) => "str",
        Param::Binary(_) => "binary",
        Param::Date(_) => "date",
        Param::Time(_) => "time",
        Param::Datetime(_) => "datetime",
        Param::Timestamp(_) => "timestamp",
        Param::Uuid(_) => "uuid",
        Param::Jsonb(_) => "jsonb",
        Param::Decimal(_) => "decimal",
        Param::RangeInt32(_) => "range-int32",
        Param::RangeInt64(_) => "range-int64",
        Param::RangeDecimal(_) => "range-decimal",
        Param::ArrayInt32(_) => "array-int32",
        Param::ArrayInt64(_) => "array-int64",
        Param::ArrayDecimal(_) => "array-decimal",
        Param::ArrayStr(_) => "array-str",
        Param::Interval(_) => "interval",
        Param::DbNull => "db-null",
    }
}

/// A domain's values travel as its base type's.
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(base) => base_type(base),
        _ => ty,
    }
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN)
        || matches!(ty.name(), "citext" | "ltree" | "lquery" | "ltxtquery")
}

/// Writes `param` (not null) as a value of type `ty`.
fn write(param: &Param, ty: &Type, buf: &mut BytesMut) -> Result<(), String> {
    let ty = base_type(ty);
    let mismatch = || format!("a {} value cannot be bound to a parameter of type {}", variant(param), ty.name());
    match param {
        Param::DbNull => return Err("null inside a value".into()),
        Param::Boolean(b) if *ty == Type::BOOL => wire::bool_to_sql(*b, buf),
        Param::Int8(n) => write_int(i64::from(*n), ty, buf).ok_or_else(mismatch)??,
        Param::Int16(n) => write_int(i64::from(*n), ty, buf).ok_or_else(mismatch)??,
        Param::Int32(n) => write_int(i64::from(*n), ty, buf).ok_or_else(mismatch)??,
        Param::Int64(n) => write_int(*n, ty, buf).ok_or_else(mismatch)??,
        Param::Floating32(f) => write_float(f64::from(*f), &f.to_string(), ty, buf).ok_or_else(mismatch)??,
        Param::Floating64(f) => write_float(*f, &f.to_string(), ty, buf).ok_or_else(mismatch)??,
        Param::Str(s) if is_text(ty) || matches!(ty.kind(), Kind::Enum(_)) || *ty == Type::JSON => {
            wire::text_to_sql(s, buf)
        }
        Param::Str(s) if *ty == Type::JSONB => {
            buf.put_u8(1);
            wire::text_to_sql(s, buf);
        }
        Param::Binary(b) if *ty == Type::BYTEA => wire::bytea_to_sql(b, buf),
        Param::Date(d) if *ty == Type::DATE => to_sql(&date(*d)?, ty, buf)?,
        Param::Time(t) if *ty == Type::TIME => to_sql(&time(*t)?, ty, buf)?,
        Param::Datetime(dt) if *ty == Type::TIMESTAMP => to_sql(&datetime(*dt)?, ty, buf)?,
        Param::Datetime(dt) if *ty == Type::TIMESTAMPTZ => to_sql(&datetime(*dt)?.and_utc(), ty, buf)?,
        Param::Timestamp(secs) if *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP => {
            let at = chrono::DateTime::from_timestamp(*secs, 0)
                .ok_or_else(|| format!("timestamp {secs} is out of range"))?;
            if *ty == Type::TIMESTAMP { to_sql(&at.naive_utc(), ty, buf)? } else { to_sql(&at, ty, buf)? }
        }
        Param::Uuid(s) if *ty == Type::UUID => {
            let uuid = uuid::Uuid::parse_str(s).map_err(|e| format!("invalid UUID {s:?}: {e}"))?;
            wire::uuid_to_sql(*uuid.as_bytes(), buf);
        }
        Param::Jsonb(bytes) if *ty == Type::JSONB || *ty == Type::JSON => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
                format!("invalid JSON {:?}: {e}", String::from_utf8_lossy(&bytes[..bytes.len().min(100)]))
            })?;
            if *ty == Type::JSONB {
                buf.put_u8(1);
            }
            buf.put_slice(bytes);
        }
        Param::Decimal(s) if *ty == Type::NUMERIC => numeric::write(s, buf)?,
        Param::Decimal(s) if *ty == Type::FLOAT4 || *ty == Type::FLOAT8 => {
            let f: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a decimal number"))?;
            write_float(f, s, ty, buf).expect("a float type")?;
        }
        Param::RangeInt32((lower, upper)) => {
            let bound = |b: &Option<(i32, RangeBoundKind)>| b.map(|(v, k)| (Param::Int32(v), k));
            write_range(bound(lower), bound(upper), ty, buf).ok_or_else(mismatch)??
        }
        Param::RangeInt64((lower, upper)) => {
            let bound = |b: &Option<(i64, RangeBoundKind)>| b.map(|(v, k)| (Param::Int64(v), k));
            write_range(bound(lower), bound(upper), ty, buf).ok_or_else(mismatch)??
        }
        Param::RangeDecimal((lower, upper)) => {
            let bound = |b: &Option<(String, RangeBoundKind)>| b.as_ref().map(|(v, k)| (Param::Decimal(v.clone()), *k));
            write_range(bound(lower), bound(upper), ty, buf).ok_or_else(mismatch)??
        }
        Param::ArrayInt32(items) => {
            write_array(items.iter().map(|i| i.map(Param::Int32)), items.len(), ty, buf).ok_or_else(mismatch)??
        }
        Param::ArrayInt64(items) => {
            write_array(items.iter().map(|i| i.map(Param::Int64)), items.len(), ty, buf).ok_or_else(mismatch)??
        }
        Param::ArrayDecimal(items) => {
            let items_iter = items.iter().map(|i| i.clone().map(Param::Decimal));
            write_array(items_iter, items.len(), ty, buf).ok_or_else(mismatch)??
        }
        Param::ArrayStr(items) => {
            let items_iter = items.iter().map(|i| i.clone().map(Param::Str));
            write_array(items_iter, items.len(), ty, buf).ok_or_else(mismatch)??
        }
        Param::Interval(Interval { micros, days, months }) if *ty == Type::INTERVAL => {
            buf.put_i64(*micros);
            buf.put_i32(*days);
            buf.put_i32(*months);
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// Writes an integer for an integer-like type; `None` if `ty` is not one.
fn write_int(n: i64, ty: &Type, buf: &mut BytesMut) -> Option<Result<(), String>> {
    let out_of_range = || format!("{n} is out of range for type {}", ty.name());
    Some(match *ty {
        Type::INT2 => i16::try_from(n).map(|n| wire::int2_to_sql(n, buf)).map_err(|_| out_of_range()),
        Type::INT4 => i32::try_from(n).map(|n| wire::int4_to_sql(n, buf)).map_err(|_| out_of_range()),
        Type::INT8 => {
            wire::int8_to_sql(n, buf);
            Ok(())
        }
        Type::CHAR => i8::try_from(n).map(|n| wire::char_to_sql(n, buf)).map_err(|_| out_of_range()),
        Type::OID => u32::try_from(n).map(|n| wire::oid_to_sql(n, buf)).map_err(|_| out_of_range()),
        Type::NUMERIC => numeric::write(&n.to_string(), buf),
        Type::FLOAT4 | Type::FLOAT8 => return write_float(n as f64, &n.to_string(), ty, buf),
        _ => return None,
    })
}

/// Writes a float (`text` is its decimal spelling, for `numeric`); `None`
/// if `ty` is not a float or numeric type.
fn write_float(f: f64, text: &str, ty: &Type, buf: &mut BytesMut) -> Option<Result<(), String>> {
    Some(match *ty {
        Type::FLOAT4 => {
            wire::float4_to_sql(f as f32, buf);
            Ok(())
        }
        Type::FLOAT8 => {
            wire::float8_to_sql(f, buf);
            Ok(())
        }
        Type::NUMERIC => numeric::write(text, buf),
        _ => return None,
    })
}

/// Writes a range whose bounds are `Param`s; `None` if `ty` is not a range.
fn write_range(
    lower: Option<(Param, RangeBoundKind)>,
    upper: Option<(Param, RangeBoundKind)>,
    ty: &Type,
    buf: &mut BytesMut,
) -> Option<Result<(), String>> {
    let Kind::Range(element) = ty.kind() else { return None };
    let mut first_error = None;
    let mut bound = |b: Option<(Param, RangeBoundKind)>, buf: &mut BytesMut| -> Result<wire::RangeBound<WireNull>, BoxError> {
        Ok(match b {
            None => wire::RangeBound::Unbounded,
            Some((value, kind)) => {
                if let Err(e) = write(&value, element, buf) {
                    first_error.get_or_insert(e);
                }
                match kind {
                    RangeBoundKind::Inclusive => wire::RangeBound::Inclusive(WireNull::No),
                    RangeBoundKind::Exclusive => wire::RangeBound::Exclusive(WireNull::No),
                }
            }
        })
    };
    let mut lower_buf = BytesMut::new();
    let lower = bound(lower, &mut lower_buf);
    let mut upper_buf = BytesMut::new();
    let upper = bound(upper, &mut upper_buf);
    if let Some(e) = first_error {
        return Some(Err(format!("range bound: {e}")));
    }
    let result = wire::range_to_sql(
        |b| {
            b.put_slice(&lower_buf);
            lower
        },
        |b| {
            b.put_slice(&upper_buf);
            upper
        },
        buf,
    );
    Some(result.map_err(|e| e.to_string()))
}

/// Writes a one-dimensional array; `None` if `ty` is not an array type.
fn write_array(
    items: impl Iterator<Item = Option<Param>>,
    len: usize,
    ty: &Type,
    buf: &mut BytesMut,
) -> Option<Result<(), String>> {
    let Kind::Array(element) = ty.kind() else { return None };
    let Ok(len) = i32::try_from(len) else { return Some(Err("the array is too long".into())) };
    let dimension = wire::ArrayDimension { len, lower_bound: 1 };
    let result = wire::array_to_sql(
        Some(dimension),
        element.oid(),
        items.enumerate(),
        |(i, item), buf| match item {
            None => Ok(WireNull::Yes),
            Some(value) => write(&value, element, buf)
                .map(|()| WireNull::No)
                .map_err(|e| format!("element {}: {e}", i + 1).into()),
        },
        buf,
    );
    Some(result.map_err(|e| e.to_string()))
}

fn to_sql<T: ToSql>(value: &T, ty: &Type, buf: &mut BytesMut) -> Result<(), String> {
    value.to_sql(ty, buf).map(|_| ()).map_err(|e| e.to_string())
}

fn date((y, m, d): (i32, u8, u8)) -> Result<NaiveDate, String> {
    NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| format!("invalid date {y:04}-{m:02}-{d:02}"))
}

fn time((h, m, s, ns): (u8, u8, u8, u32)) -> Result<NaiveTime, String> {
    NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| format!("invalid time {h:02}:{m:02}:{s:02}.{ns:09}"))
}

fn datetime((y, mo, d, h, mi, s, ns): (i32, u8, u8, u8, u8, u8, u32)) -> Result<NaiveDateTime, String> {
    Ok(NaiveDateTime::new(date((y, mo, d))?, time((h, mi, s, ns))?))
}

// --------------------------------------------------------------- columns

/// The interface's type for a column of Postgres type `ty`.
pub fn data_type(ty: &Type) -> DbDataType {
    let ty = base_type(ty);
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSON | Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY | Type::NAME_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ if is_text(ty) || matches!(ty.kind(), Kind::Enum(_)) => DbDataType::Str,
        _ => DbDataType::Other(ty.name().to_string()),
    }
}

/// The raw bytes of one column value, whatever its type (`None`: NULL).
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Decodes a column value (`None`: NULL). A value the interface cannot
/// represent comes back as `unsupported` with its raw bytes.
pub fn decode(ty: &Type, raw: Option<&[u8]>) -> DbValue {
    let Some(raw) = raw else { return DbValue::DbNull };
    decode_value(ty, raw).unwrap_or_else(|e| {
        tracing::debug!("Postgres {} value is unsupported: {e}", ty.name());
        DbValue::Unsupported(raw.to_vec())
    })
}

fn decode_value(ty: &Type, raw: &[u8]) -> Result<DbValue, BoxError> {
    let ty = base_type(ty);
    Ok(match data_type(ty) {
        DbDataType::Boolean => DbValue::Boolean(wire::bool_from_sql(raw)?),
        DbDataType::Int8 => DbValue::Int8(wire::char_from_sql(raw)?),
        DbDataType::Int16 => DbValue::Int16(wire::int2_from_sql(raw)?),
        DbDataType::Int32 => DbValue::Int32(wire::int4_from_sql(raw)?),
        DbDataType::Int64 => DbValue::Int64(wire::int8_from_sql(raw)?),
        DbDataType::Floating32 => DbValue::Floating32(wire::float4_from_sql(raw)?),
        DbDataType::Floating64 => DbValue::Floating64(wire::float8_from_sql(raw)?),
        DbDataType::Str => DbValue::Str(wire::text_from_sql(raw)?.to_string()),
        DbDataType::Binary => DbValue::Binary(raw.to_vec()),
        DbDataType::Date => {
            let d = NaiveDate::from_sql(ty, raw)?;
            DbValue::Date((d.year(), d.month() as u8, d.day() as u8))
        }
        DbDataType::Time => DbValue::Time(time_tuple(NaiveTime::from_sql(ty, raw)?)),
        DbDataType::Datetime => {
            let dt = if *ty == Type::TIMESTAMPTZ {
                chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)?.naive_utc()
            } else {
                NaiveDateTime::from_sql(ty, raw)?
            };
            let (h, mi, s, ns) = time_tuple(dt.time());
            DbValue::Datetime((dt.year(), dt.month() as u8, dt.day() as u8, h, mi, s, ns))
        }
        DbDataType::Timestamp => unreachable!("no Postgres type maps to timestamp"),
        DbDataType::Uuid => DbValue::Uuid(uuid::Uuid::from_bytes(wire::uuid_from_sql(raw)?).to_string()),
        DbDataType::Jsonb => DbValue::Jsonb(match (*ty == Type::JSONB, raw.split_first()) {
            (true, Some((1, json))) => json.to_vec(),
            (true, _) => return Err("unknown jsonb format version".into()),
            (false, _) => raw.to_vec(),
        }),
        DbDataType::Decimal => DbValue::Decimal(numeric::to_string(raw)?),
        DbDataType::RangeInt32 => DbValue::RangeInt32(read_range(raw, 0, wire::int4_from_sql)?),
        DbDataType::RangeInt64 => DbValue::RangeInt64(read_range(raw, 0, wire::int8_from_sql)?),
        DbDataType::RangeDecimal => DbValue::RangeDecimal(read_range(raw, "0".into(), |b| Ok(numeric::to_string(b)?))?),
        DbDataType::ArrayInt32 => DbValue::ArrayInt32(read_array(raw, wire::int4_from_sql)?),
        DbDataType::ArrayInt64 => DbValue::ArrayInt64(read_array(raw, wire::int8_from_sql)?),
        DbDataType::ArrayDecimal => DbValue::ArrayDecimal(read_array(raw, |b| Ok(numeric::to_string(b)?))?),
        DbDataType::ArrayStr => DbValue::ArrayStr(read_array(raw, |b| Ok(wire::text_from_sql(b)?.to_string()))?),
        DbDataType::Interval => {
            let [m0, m1, m2, m3, m4, m5, m6, m7, d0, d1, d2, d3, o0, o1, o2, o3] =
                <[u8; 16]>::try_from(raw).map_err(|_| "interval: expected 16 bytes")?;
            DbValue::Interval(Interval {
                micros: i64::from_be_bytes([m0, m1, m2, m3, m4, m5, m6, m7]),
                days: i32::from_be_bytes([d0, d1, d2, d3]),
                months: i32::from_be_bytes([o0, o1, o2, o3]),
            })
        }
        DbDataType::Other(_) => DbValue::Unsupported(raw.to_vec()),
    })
}

fn time_tuple(t: NaiveTime) -> (u8, u8, u8, u32) {
    (t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond())
}

type Bound<T> = Option<(T, RangeBoundKind)>;

/// Reads a range; `zero` is the element that spells an empty range `[0,0)`.
fn read_range<T: Clone>(
    raw: &[u8],
    zero: T,
    element: impl Fn(&[u8]) -> Result<T, BoxError>,
) -> Result<(Bound<T>, Bound<T>), BoxError> {
    let bound = |b: wire::RangeBound<Option<&[u8]>>| -> Result<Bound<T>, BoxError> {
        Ok(match b {
            wire::RangeBound::Unbounded => None,
            wire::RangeBound::Inclusive(v) => Some((element(v.ok_or("null range bound")?)?, RangeBoundKind::Inclusive)),
            wire::RangeBound::Exclusive(v) => Some((element(v.ok_or("null range bound")?)?, RangeBoundKind::Exclusive)),
        })
    };
    Ok(match wire::range_from_sql(raw)? {
        wire::Range::Empty => {
            (Some((zero.clone(), RangeBoundKind::Inclusive)), Some((zero, RangeBoundKind::Exclusive)))
        }
        wire::Range::Nonempty(lower, upper) => (bound(lower)?, bound(upper)?),
    })
}

/// Reads a one-dimensional array (an empty array has no dimensions).
fn read_array<T>(raw: &[u8], element: impl Fn(&[u8]) -> Result<T, BoxError>) -> Result<Vec<Option<T>>, BoxError> {
    use fallible_iterator::FallibleIterator;
    let array = wire::array_from_sql(raw)?;
    if array.dimensions().count()? > 1 {
        return Err("multi-dimensional arrays are not supported".into());
    }
    array.values().map(|v| v.map(&element).transpose()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(param: Param, ty: &Type) -> Vec<u8> {
        encode(&param, ty).unwrap().0.map(|b| b.to_vec()).unwrap_or_default()
    }

    /// A value's Debug text without its type name, to compare a parameter
    /// with the value read back.
    fn same_shape(value: &dyn std::fmt::Debug) -> String {
        let text = format!("{value:?}");
        text.split_once("::").map(|(_, rest)| rest.to_string()).unwrap_or(text)
    }

    fn round_trip(param: Param, ty: &Type) -> DbValue {
        let bytes = encode(&param, ty).unwrap().0;
        decode(ty, bytes.as_deref())
    }

    #[test]
    fn integers_bind_to_any_integer_type_that_holds_them() {
        assert_eq!(encoded(Param::Int32(7), &Type::INT8), 7i64.to_be_bytes());
        assert_eq!(encoded(Param::Int64(-2), &Type::INT2), (-2i16).to_be_bytes());
        assert_eq!(encoded(Param::Int8(65), &Type::CHAR), [65]);
        let e = encode(&Param::Int64(1 << 40), &Type::INT4).unwrap_err();
        assert_eq!(e, "1099511627776 is out of range for type int4");
        assert!(matches!(round_trip(Param::Int16(300), &Type::NUMERIC), DbValue::Decimal(d) if d == "300"));
    }

    #[test]
    fn mismatches_name_the_variant_and_the_type() {
        let e = encode(&Param::Int32(1), &Type::UUID).unwrap_err();
        assert_eq!(e, "a int32 value cannot be bound to a parameter of type uuid");
        let e = encode(&Param::Uuid("nope".into()), &Type::UUID).unwrap_err();
        assert!(e.starts_with("invalid UUID \"nope\""), "{e}");
        let e = encode_params(&[Param::Int32(1)], &[]).unwrap_err();
        assert_eq!(e, "the statement has 0 parameters but 1 value was given");
        let e = encode_params(&[Param::Str("x".into())], &[Type::INT4]).unwrap_err();
        assert_eq!(e, "parameter $1: a str value cannot be bound to a parameter of type int4");
    }

    #[test]
    fn null_binds_to_anything() {
        assert!(encode(&Param::DbNull, &Type::UUID).unwrap().0.is_none());
        assert!(matches!(decode(&Type::INT4, None), DbValue::DbNull));
    }

    #[test]
    fn scalar_values_round_trip() {
        let cases = [
            (Param::Boolean(true), Type::BOOL),
            (Param::Int16(-5), Type::INT2),
            (Param::Int32(1 << 30), Type::INT4),
            (Param::Int64(i64::MIN), Type::INT8),
            (Param::Floating32(1.5), Type::FLOAT4),
            (Param::Floating64(-0.25), Type::FLOAT8),
            (Param::Str("héllo".into()), Type::TEXT),
            (Param::Str("v".into()), Type::VARCHAR),
            (Param::Binary(vec![0, 255, 7]), Type::BYTEA),
            (Param::Date((2024, 2, 29)), Type::DATE),
            (Param::Time((23, 59, 58, 123_456_000)), Type::TIME),
            (Param::Datetime((1999, 12, 31, 23, 59, 59, 1_000)), Type::TIMESTAMP),
            (Param::Datetime((1999, 12, 31, 23, 59, 59, 1_000)), Type::TIMESTAMPTZ),
            (Param::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()), Type::UUID),
            (Param::Jsonb(br#"{"a":[1,2]}"#.to_vec()), Type::JSONB),
            (Param::Decimal("-1234.5000".into()), Type::NUMERIC),
            (Param::Interval(Interval { micros: 1_500_000, days: -3, months: 14 }), Type::INTERVAL),
        ];
        for (param, ty) in cases {
            let back = round_trip(param.clone(), &ty);
            assert_eq!(same_shape(&back), same_shape(&param), "{ty}");
        }
    }

    #[test]
    fn timestamps_are_unix_seconds_in_utc() {
        let back = round_trip(Param::Timestamp(86_400 + 3_661), &Type::TIMESTAMPTZ);
        assert!(matches!(back, DbValue::Datetime((1970, 1, 2, 1, 1, 1, 0))), "{back:?}");
        let back = round_trip(Param::Timestamp(-1), &Type::TIMESTAMP);
        assert!(matches!(back, DbValue::Datetime((1969, 12, 31, 23, 59, 59, 0))), "{back:?}");
    }

    #[test]
    fn ranges_and_arrays_round_trip() {
        use RangeBoundKind::{Exclusive, Inclusive};
        let cases = [
            (Param::RangeInt32((Some((1, Inclusive)), Some((10, Exclusive)))), Type::INT4_RANGE),
            (Param::RangeInt64((None, Some((1 << 40, Inclusive)))), Type::INT8_RANGE),
            (Param::RangeDecimal((Some(("1.5".into(), Exclusive)), None)), Type::NUM_RANGE),
            (Param::ArrayInt32(vec![Some(1), None, Some(-3)]), Type::INT4_ARRAY),
            (Param::ArrayInt64(vec![]), Type::INT8_ARRAY),
            (Param::ArrayDecimal(vec![Some("0.10".into()), None]), Type::NUMERIC_ARRAY),
            (Param::ArrayStr(vec![Some("a".into()), None, Some("".into())]), Type::TEXT_ARRAY),
        ];
        for (param, ty) in cases {
            let back = round_trip(param.clone(), &ty);
            assert_eq!(same_shape(&back), same_shape(&param), "{ty}");
        }
        // An int4 range widens to int8 bounds.
        let back = round_trip(Param::RangeInt32((Some((2, Inclusive)), None)), &Type::INT8_RANGE);
        assert!(matches!(back, DbValue::RangeInt64((Some((2, Inclusive)), None))), "{back:?}");
        let e = encode(&Param::ArrayStr(vec![Some("x".into())]), &Type::INT4_ARRAY).unwrap_err();
        assert_eq!(e, "element 1: a str value cannot be bound to a parameter of type int4");
        let e = encode(&Param::ArrayStr(vec![]), &Type::INT4).unwrap_err();
        assert_eq!(e, "a array-str value cannot be bound to a parameter of type int4");
    }

    #[test]
    fn an_empty_range_reads_as_zero_to_zero() {
        let empty = [1u8]; // RANGE_EMPTY
        let back = decode(&Type::INT4_RANGE, Some(&empty));
        assert!(
            matches!(back, DbValue::RangeInt32((Some((0, RangeBoundKind::Inclusive)), Some((0, RangeBoundKind::Exclusive))))),
            "{back:?}"
        );
    }

    #[test]
    fn unknown_types_and_unrepresentable_values_are_unsupported_with_raw_bytes() {
        let point = Type::POINT;
        assert!(matches!(data_type(&point), DbDataType::Other(name) if name == "point"));
        assert!(matches!(decode(&point, Some(&[1, 2])), DbValue::Unsupported(b) if b == [1, 2]));
        // 'infinity'::date is i32::MAX days.
        let infinity = i32::MAX.to_be_bytes();
        assert!(matches!(decode(&Type::DATE, Some(&infinity)), DbValue::Unsupported(_)));
        // A truncated int4 never panics.
        assert!(matches!(decode(&Type::INT4, Some(&[0, 1])), DbValue::Unsupported(_)));
    }
}
