//! Request-body validation that reports every problem at once: a client
//! fixing a form learns all of its bad fields from one 400
//! `validation_failed`, not one per round trip.
use std::ops::RangeInclusive;

use serde_json::{Map, Value};
use shop_shared::api::{ApiError, FieldError, parse_json};
use spin_sdk::http::Request;

/// The body of `req` as a JSON object: 400 `bad_request` if it is not JSON,
/// 400 `validation_failed` if it is JSON but not an object.
pub fn body_object(req: &Request) -> Result<Map<String, Value>, ApiError> {
    match parse_json::<Value>(req)? {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::invalid(vec![field_error("body", "must be a JSON object")])),
    }
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

/// Collects field errors while values are read out of JSON objects.
///
/// Fields are named by their path (`card.number`); the key looked up in the
/// object given is the path's last segment.
#[derive(Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`.
    pub fn reject(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(field_error(field, message));
    }

    /// A required, non-blank string.
    pub fn string<'v>(&mut self, object: &'v Map<String, Value>, field: &str) -> Option<&'v str> {
        match object.get(key(field)) {
            None | Some(Value::Null) => self.missing(field),
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.reject(field, "must not be blank");
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => self.wrong_type(field, "a string"),
        }
    }

    /// A string that may be absent or null.
    pub fn optional_string<'v>(&mut self, object: &'v Map<String, Value>, field: &str) -> Option<&'v str> {
        match object.get(key(field)) {
            None | Some(Value::Null) => None,
            Some(_) => self.string(object, field),
        }
    }

    /// A required integer within `range`.
    pub fn integer(&mut self, object: &Map<String, Value>, field: &str, range: RangeInclusive<i64>) -> Option<i64> {
        match object.get(key(field)) {
            None | Some(Value::Null) => self.missing(field),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if range.contains(&v) => Some(v),
                _ => {
                    let (lo, hi) = range.into_inner();
                    self.reject(field, format!("must be an integer from {lo} to {hi}"));
                    None
                }
            },
            Some(_) => self.wrong_type(field, "an integer"),
        }
    }

    /// A required JSON object.
    pub fn object<'v>(&mut self, object: &'v Map<String, Value>, field: &str) -> Option<&'v Map<String, Value>> {
        match object.get(key(field)) {
            None | Some(Value::Null) => self.missing(field),
            Some(Value::Object(inner)) => Some(inner),
            Some(_) => self.wrong_type(field, "an object"),
        }
    }

    /// `Ok` if nothing was rejected, else the 400 listing every problem.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.errors)) }
    }

    fn missing<T>(&mut self, field: &str) -> Option<T> {
        self.reject(field, "is required");
        None
    }

    fn wrong_type<T>(&mut self, field: &str, expected: &str) -> Option<T> {
        self.reject(field, format!("must be {expected}"));
        None
    }
}

/// The key of `field` in its own object: `card.number` → `number`.
fn key(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn collects_every_problem() {
        let body = object(json!({"sku": "", "quantity": 100, "card": {"number": 5}}));
        let mut v = Validator::new();
        assert_eq!(v.string(&body, "sku"), None);
        assert_eq!(v.integer(&body, "quantity", 1..=99), None);
        let card = v.object(&body, "card").unwrap();
        assert_eq!(v.string(card, "card.number"), None);
        assert_eq!(v.string(card, "card.cvc"), None);
        let error = v.finish().unwrap_err();
        let fields: Vec<&str> = error.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["sku", "quantity", "card.number", "card.cvc"]);
        assert_eq!(error.code, "validation_failed");
    }

    #[test]
    fn optional_fields_may_be_absent_or_null_but_not_wrong() {
        let body = object(json!({"a": null, "c": 3}));
        let mut v = Validator::new();
        assert_eq!(v.optional_string(&body, "a"), None);
        assert_eq!(v.optional_string(&body, "b"), None);
        assert!(v.finish().is_ok());
        let mut v = Validator::new();
        assert_eq!(v.optional_string(&body, "c"), None);
        assert_eq!(v.finish().unwrap_err().fields[0].message, "must be a string");
    }
}
