//! Reading and checking JSON request bodies field by field.
//!
//! Bodies are read as JSON objects rather than deserialised straight into
//! structs so that a client learns every problem at once, each under the
//! field it concerns (`items[2].quantity`), instead of serde's first error.
use std::ops::RangeInclusive;

use serde_json::{Map, Value};
use shop_shared::api::{self, ApiError, FieldError};
use spin_sdk::http::Request;

/// A request body that must be a JSON object.
pub fn object_body(req: &Request) -> Result<Map<String, Value>, ApiError> {
    match api::parse_json::<Value>(req)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid(vec![FieldError { field: "body".into(), message: "must be a JSON object".into() }])),
    }
}

/// A JSON object being checked, with the path its fields are reported under.
pub struct Object<'a> {
    map: &'a Map<String, Value>,
    /// Prefix of the object's fields in error reports: "" at the top,
    /// `items[0].` for an element of `items`.
    path: String,
}

impl<'a> Object<'a> {
    pub fn top(map: &'a Map<String, Value>) -> Self {
        Self { map, path: String::new() }
    }

    fn field(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }
}

/// Collects the problems found in a body.
///
/// A field that fails yields a placeholder (empty text, zero) so checking
/// goes on and reports every field; [`Checker::finish`] then fails, so a
/// placeholder is never used.
#[derive(Default)]
pub struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field` (its full path).
    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { field: field.into(), message: message.into() });
    }

    /// Reports fields the endpoint does not know: a misspelt optional field
    /// would otherwise be silently ignored.
    pub fn no_other_fields(&mut self, object: &Object, known: &[&str]) {
        for key in object.map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.fail(object.field(key), "unknown field");
        }
    }

    /// A required string, trimmed, of 1 to `max_chars` characters that
    /// `rule` accepts.
    pub fn text(&mut self, object: &Object, key: &str, max_chars: usize, rule: TextRule) -> String {
        match self.optional_text(object, key, max_chars, rule) {
            Some(text) => text,
            None => {
                if object.get(key).is_none() {
                    self.fail(object.field(key), "is required");
                }
                String::new()
            }
        }
    }

    /// Like [`Checker::text`], but absent (or null) is `None`.
    pub fn optional_text(&mut self, object: &Object, key: &str, max_chars: usize, rule: TextRule) -> Option<String> {
        let value = object.get(key)?;
        let Some(text) = value.as_str().map(str::trim) else {
            self.fail(object.field(key), "must be a string");
            return None;
        };
        let problem = if text.is_empty() && rule != TextRule::MayBeEmpty {
            Some("must not be empty".to_string())
        } else if text.chars().count() > max_chars {
            Some(format!("must be at most {max_chars} characters"))
        } else {
            rule.check(text).err().map(str::to_string)
        };
        match problem {
            Some(message) => {
                self.fail(object.field(key), message);
                None
            }
            None => Some(text.to_string()),
        }
    }

    /// A required integer within `range`.
    pub fn integer(&mut self, object: &Object, key: &str, range: RangeInclusive<i64>) -> i64 {
        if object.get(key).is_none() {
            self.fail(object.field(key), "is required");
        }
        self.optional_integer(object, key, range).unwrap_or_default()
    }

    /// Like [`Checker::integer`], but absent (or null) is `None`.
    pub fn optional_integer(&mut self, object: &Object, key: &str, range: RangeInclusive<i64>) -> Option<i64> {
        let value = object.get(key)?;
        match value.as_i64() {
            Some(n) if range.contains(&n) => Some(n),
            Some(_) => {
                let message = format!("must be between {} and {}", range.start(), range.end());
                self.fail(object.field(key), message);
                None
            }
            None => {
                self.fail(object.field(key), "must be an integer");
                None
            }
        }
    }

    /// A required array of objects (1 to `max_len` of them), each with the
    /// path it is reported under.
    pub fn objects<'a>(&mut self, object: &Object<'a>, key: &str, max_len: usize) -> Vec<Object<'a>> {
        let Some(value) = object.get(key) else {
            self.fail(object.field(key), "is required");
            return Vec::new();
        };
        let Some(elements) = value.as_array() else {
            self.fail(object.field(key), "must be an array");
            return Vec::new();
        };
        if elements.is_empty() || elements.len() > max_len {
            self.fail(object.field(key), format!("must have between 1 and {max_len} elements"));
            return Vec::new();
        }
        let mut objects = Vec::with_capacity(elements.len());
        for (i, element) in elements.iter().enumerate() {
            let path = format!("{}[{i}]", object.field(key));
            match element.as_object() {
                Some(map) => objects.push(Object { map, path: format!("{path}.") }),
                None => self.fail(path, "must be an object"),
            }
        }
        objects
    }

    /// `Ok` if nothing failed, else the 400 `validation_failed` listing
    /// every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.errors)) }
    }
}

/// What a text field may contain besides its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextRule {
    /// Any non-empty text.
    Any,
    /// Any text, empty included.
    MayBeEmpty,
    /// An identifier: ASCII letters, digits, `-`, `_` and `.`.
    Code,
    /// A lower-case slug: `home-kitchen`.
    Slug,
}

impl TextRule {
    fn check(self, text: &str) -> Result<(), &'static str> {
        match self {
            TextRule::Any | TextRule::MayBeEmpty => Ok(()),
            TextRule::Code => {
                if text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                    Ok(())
                } else {
                    Err("may contain only ASCII letters, digits, '-', '_' and '.'")
                }
            }
            TextRule::Slug => {
                let words_ok = text.split('-').all(|w| !w.is_empty());
                let chars_ok = text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if words_ok && chars_ok {
                    Ok(())
                } else {
                    Err("must be lower-case words of letters and digits joined by '-'")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_failing_field_is_reported_under_its_path() {
        let body = map(json!({"name": "  ", "price": 3, "items": [{"quantity": 1.5}, 7]}));
        let top = Object::top(&body);
        let mut check = Checker::new();
        check.text(&top, "name", 10, TextRule::Any);
        check.integer(&top, "price_cents", 0..=10);
        for item in check.objects(&top, "items", 5) {
            check.text(&item, "sku", 10, TextRule::Code);
            check.integer(&item, "quantity", 1..=10);
        }
        check.no_other_fields(&top, &["name", "price_cents", "items"]);
        let fields: Vec<(String, String)> = check.errors.iter().map(|e| (e.field.clone(), e.message.clone())).collect();
        assert_eq!(
            fields,
            [
                ("name", "must not be empty"),
                ("price_cents", "is required"),
                ("items[1]", "must be an object"),
                ("items[0].sku", "is required"),
                ("items[0].quantity", "must be an integer"),
                ("price", "unknown field"),
            ]
            .map(|(f, m)| (f.to_string(), m.to_string()))
        );
    }

    #[test]
    fn text_rules() {
        assert!(TextRule::Slug.check("home-kitchen").is_ok());
        assert!(TextRule::Slug.check("Home").is_err());
        assert!(TextRule::Slug.check("a--b").is_err());
        assert!(TextRule::Slug.check("-a").is_err());
        assert!(TextRule::Code.check("ELEC-1001_v2.1").is_ok());
        assert!(TextRule::Code.check("ELEC 1001").is_err());
    }

    #[test]
    fn valid_values_are_trimmed_and_kept() {
        let body = map(json!({"name": "  Kettle ", "stock": 4, "note": null}));
        let top = Object::top(&body);
        let mut check = Checker::new();
        assert_eq!(check.text(&top, "name", 10, TextRule::Any), "Kettle");
        assert_eq!(check.optional_integer(&top, "stock", 0..=10), Some(4));
        assert_eq!(check.optional_text(&top, "note", 10, TextRule::Any), None);
        assert!(check.finish().is_ok());
    }
}
