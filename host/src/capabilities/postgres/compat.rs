//! `spin:postgres/postgres@3.0.0` and `fermyon:spin/postgres@2.0.0` in
//! terms of 4.0.0, with Spin's own conversions: parameters widen to 4.0.0
//! (2.0.0's unsigned integers are refused: Postgres has none); results and
//! errors narrow, a value or type an older version has no variant for
//! becoming `unsupported` / `other`, and a structured query error its text.
use crate::bindings::fermyon::spin2_0_0::rdbms_types as v2;
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::bindings::spin::postgres4_0_0::postgres as v4;

fn query_error_text(e: v4::QueryError) -> String {
    match e {
        v4::QueryError::Text(text) => text,
        v4::QueryError::DbError(e) => e.as_text,
    }
}

// ------------------------------------------------------------------ 3.0.0

pub fn v3_param(p: v3::ParameterValue) -> v4::ParameterValue {
    use v3::ParameterValue as P;
    use v4::ParameterValue as Q;
    match p {
        P::Boolean(b) => Q::Boolean(b),
        P::Int8(i) => Q::Int8(i),
        P::Int16(i) => Q::Int16(i),
        P::Int32(i) => Q::Int32(i),
        P::Int64(i) => Q::Int64(i),
        P::Floating32(f) => Q::Floating32(f),
        P::Floating64(f) => Q::Floating64(f),
        P::Str(s) => Q::Str(s),
        P::Binary(b) => Q::Binary(b),
        P::Date(d) => Q::Date(d),
        P::Time(t) => Q::Time(t),
        P::Datetime(dt) => Q::Datetime(dt),
        P::Timestamp(t) => Q::Timestamp(t),
        P::DbNull => Q::DbNull,
    }
}

pub fn v3_error(e: v4::Error) -> v3::Error {
    match e {
        v4::Error::ConnectionFailed(m) => v3::Error::ConnectionFailed(m),
        v4::Error::BadParameter(m) => v3::Error::BadParameter(m),
        v4::Error::QueryFailed(e) => v3::Error::QueryFailed(query_error_text(e)),
        v4::Error::ValueConversionFailed(m) => v3::Error::ValueConversionFailed(m),
        v4::Error::Other(m) => v3::Error::Other(m),
    }
}

fn v3_data_type(t: v4::DbDataType) -> v3::DbDataType {
    use v3::DbDataType as T;
    use v4::DbDataType as U;
    match t {
        U::Boolean => T::Boolean,
        U::Int8 => T::Int8,
        U::Int16 => T::Int16,
        U::Int32 => T::Int32,
        U::Int64 => T::Int64,
        U::Floating32 => T::Floating32,
        U::Floating64 => T::Floating64,
        U::Str => T::Str,
        U::Binary => T::Binary,
        U::Date => T::Date,
        U::Time => T::Time,
        U::Datetime => T::Datetime,
        U::Timestamp => T::Timestamp,
        _ => T::Other,
    }
}

fn v3_value(v: v4::DbValue) -> v3::DbValue {
    use v3::DbValue as T;
    use v4::DbValue as U;
    match v {
        U::Boolean(b) => T::Boolean(b),
        U::Int8(i) => T::Int8(i),
        U::Int16(i) => T::Int16(i),
        U::Int32(i) => T::Int32(i),
        U::Int64(i) => T::Int64(i),
        U::Floating32(f) => T::Floating32(f),
        U::Floating64(f) => T::Floating64(f),
        U::Str(s) => T::Str(s),
        U::Binary(b) => T::Binary(b),
        U::Date(d) => T::Date(d),
        U::Time(t) => T::Time(t),
        U::Datetime(dt) => T::Datetime(dt),
        U::Timestamp(t) => T::Timestamp(t),
        U::DbNull => T::DbNull,
        _ => T::Unsupported,
    }
}

pub fn v3_row_set(r: v4::RowSet) -> v3::RowSet {
    v3::RowSet {
        columns: r
            .columns
            .into_iter()
            .map(|c| v3::Column { name: c.name, data_type: v3_data_type(c.data_type) })
            .collect(),
        rows: r.rows.into_iter().map(|row| row.into_iter().map(v3_value).collect()).collect(),
    }
}

// ------------------------------------------------------------------ 2.0.0

pub fn v2_param(p: v2::ParameterValue) -> Result<v4::ParameterValue, v2::Error> {
    use v2::ParameterValue as P;
    use v4::ParameterValue as Q;
    Ok(match p {
        P::Boolean(b) => Q::Boolean(b),
        P::Int8(i) => Q::Int8(i),
        P::Int16(i) => Q::Int16(i),
        P::Int32(i) => Q::Int32(i),
        P::Int64(i) => Q::Int64(i),
        P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
            return Err(v2::Error::ValueConversionFailed("Postgres does not support unsigned integers".into()));
        }
        P::Floating32(f) => Q::Floating32(f),
        P::Floating64(f) => Q::Floating64(f),
        P::Str(s) => Q::Str(s),
        P::Binary(b) => Q::Binary(b),
        P::DbNull => Q::DbNull,
    })
}

pub fn v2_error(e: v4::Error) -> v2::Error {
    match e {
        v4::Error::ConnectionFailed(m) => v2::Error::ConnectionFailed(m),
        v4::Error::BadParameter(m) => v2::Error::BadParameter(m),
        v4::Error::QueryFailed(e) => v2::Error::QueryFailed(query_error_text(e)),
        v4::Error::ValueConversionFailed(m) => v2::Error::ValueConversionFailed(m),
        v4::Error::Other(m) => v2::Error::Other(m),
    }
}

fn v2_data_type(t: v4::DbDataType) -> v2::DbDataType {
    use v2::DbDataType as T;
    use v4::DbDataType as U;
    match t {
        U::Boolean => T::Boolean,
        U::Int8 => T::Int8,
        U::Int16 => T::Int16,
        U::Int32 => T::Int32,
        U::Int64 => T::Int64,
        U::Floating32 => T::Floating32,
        U::Floating64 => T::Floating64,
        U::Str => T::Str,
        U::Binary => T::Binary,
        _ => T::Other,
    }
}

fn v2_value(v: v4::DbValue) -> v2::DbValue {
    use v2::DbValue as T;
    use v4::DbValue as U;
    match v {
        U::Boolean(b) => T::Boolean(b),
        U::Int8(i) => T::Int8(i),
        U::Int16(i) => T::Int16(i),
        U::Int32(i) => T::Int32(i),
        U::Int64(i) => T::Int64(i),
        U::Floating32(f) => T::Floating32(f),
        U::Floating64(f) => T::Floating64(f),
        U::Str(s) => T::Str(s),
        U::Binary(b) => T::Binary(b),
        U::DbNull => T::DbNull,
        _ => T::Unsupported,
    }
}

pub fn v2_row_set(r: v4::RowSet) -> v2::RowSet {
    v2::RowSet {
        columns: r
            .columns
            .into_iter()
            .map(|c| v2::Column { name: c.name, data_type: v2_data_type(c.data_type) })
            .collect(),
        rows: r.rows.into_iter().map(|row| row.into_iter().map(v2_value).collect()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_see_what_they_have_variants_for() {
        let rows = v4::RowSet {
            columns: vec![
                v4::Column { name: "d".into(), data_type: v4::DbDataType::Date },
                v4::Column { name: "u".into(), data_type: v4::DbDataType::Uuid },
            ],
            rows: vec![vec![v4::DbValue::Date((2024, 1, 2)), v4::DbValue::Uuid("x".into())]],
        };
        let v3 = v3_row_set(rows.clone());
        assert!(matches!(v3.columns[0].data_type, v3::DbDataType::Date));
        assert!(matches!(v3.columns[1].data_type, v3::DbDataType::Other));
        assert!(matches!(v3.rows[0][..], [v3::DbValue::Date((2024, 1, 2)), v3::DbValue::Unsupported]));
        let v2 = v2_row_set(rows);
        assert!(matches!(v2.columns[0].data_type, v2::DbDataType::Other));
        assert!(matches!(v2.rows[0][..], [v2::DbValue::Unsupported, v2::DbValue::Unsupported]));
    }

    #[test]
    fn unsigned_integers_are_refused_as_spin_does() {
        let e = v2_param(v2::ParameterValue::Uint8(1)).unwrap_err();
        assert!(matches!(e, v2::Error::ValueConversionFailed(m) if m == "Postgres does not support unsigned integers"));
    }

    #[test]
    fn structured_errors_become_their_text() {
        let e = v4::Error::QueryFailed(v4::QueryError::DbError(v4::DbError {
            as_text: "ERROR: boom (SQLSTATE XX000)".into(),
            severity: "ERROR".into(),
            code: "XX000".into(),
            message: "boom".into(),
            detail: None,
            extras: vec![],
        }));
        assert!(matches!(v3_error(e.clone()), v3::Error::QueryFailed(m) if m == "ERROR: boom (SQLSTATE XX000)"));
        assert!(matches!(v2_error(e), v2::Error::QueryFailed(m) if m.contains("boom")));
    }
}
