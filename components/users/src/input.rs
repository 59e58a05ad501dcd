//! The bodies the users service accepts, and the rules they must meet.
//! Fields are read as optional so that every missing or invalid one is
//! reported at once (`400 validation_failed` with `fields`); a body that is
//! not JSON, or has a field of the wrong JSON type, is a `400 bad_request`
//! from [`shop_shared::api::parse_json`].
use serde::{Deserialize, Deserializer};
use shop_shared::api::{ApiError, FieldError};

use crate::model::{AddressFields, Preferences};

const MAX_ID_CHARS: usize = 64;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_NAME_CHARS: usize = 100;
const MAX_LINE_CHARS: usize = 200;
const MAX_CITY_CHARS: usize = 100;
const MAX_POSTAL_CODE_CHARS: usize = 16;
/// E.164 numbers have at most 15 digits; fewer than 7 is no phone number.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

/// `POST /internal/users`, from auth.
#[derive(Deserialize)]
pub struct NewProfileBody {
    user_id: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

pub struct NewProfile {
    pub user_id: String,
    pub email: String,
    pub name: String,
}

impl NewProfileBody {
    pub fn validate(self) -> Result<NewProfile, ApiError> {
        let mut errors = Errors::default();
        let user_id = errors.check("user_id", self.user_id, |id| text(id, MAX_ID_CHARS));
        let email = errors.check("email", self.email, |email| {
            let email = text(email, MAX_EMAIL_CHARS)?;
            if email.contains('@') { Ok(email) } else { Err("must be an email address".into()) }
        });
        let name = errors.check("name", self.name, |name| text(name, MAX_NAME_CHARS));
        match (user_id, email, name) {
            (Some(user_id), Some(email), Some(name)) => Ok(NewProfile { user_id, email, name }),
            _ => Err(errors.into_error()),
        }
    }
}

/// `PATCH /api/users/me`: only the fields present change; `"phone": null`
/// removes the phone number. Unknown fields are refused rather than
/// silently ignored (`email` in particular belongs to auth).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatchBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    phone: Option<Option<String>>,
}

/// A validated profile change: `None` leaves a field as it is.
pub struct ProfilePatch {
    pub name: Option<String>,
    pub phone: Option<Option<String>>,
}

impl ProfilePatchBody {
    pub fn validate(self) -> Result<ProfilePatch, ApiError> {
        let mut errors = Errors::default();
        let name = self.name.map(|name| errors.check("name", name, |name| text(name, MAX_NAME_CHARS)));
        let phone = self.phone.map(|phone| phone.and_then(|phone| errors.check("phone", Some(phone), phone_number)));
        if !errors.0.is_empty() {
            return Err(errors.into_error());
        }
        Ok(ProfilePatch { name: name.flatten(), phone })
    }
}

/// `PUT /api/users/me/preferences`: the whole set, every field required.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    email_notifications: Option<bool>,
    sms_notifications: Option<bool>,
    push_notifications: Option<bool>,
    currency: Option<String>,
}

impl PreferencesBody {
    pub fn validate(self) -> Result<Preferences, ApiError> {
        let mut errors = Errors::default();
        let email = errors.check("email_notifications", self.email_notifications, Ok);
        let sms = errors.check("sms_notifications", self.sms_notifications, Ok);
        let push = errors.check("push_notifications", self.push_notifications, Ok);
        let currency = errors.check("currency", self.currency, |currency| {
            let currency = currency.trim().to_ascii_uppercase();
            if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(currency)
            } else {
                Err("must be an ISO 4217 currency code such as USD".into())
            }
        });
        match (email, sms, push, currency) {
            (Some(email_notifications), Some(sms_notifications), Some(push_notifications), Some(currency)) => {
                Ok(Preferences { email_notifications, sms_notifications, push_notifications, currency })
            }
            _ => Err(errors.into_error()),
        }
    }
}

/// `POST /api/users/me/addresses`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    line1: Option<String>,
    line2: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
}

impl AddressBody {
    pub fn validate(self) -> Result<AddressFields, ApiError> {
        let mut errors = Errors::default();
        let line1 = errors.check("line1", self.line1, |line| text(line, MAX_LINE_CHARS));
        // An empty second line is no second line.
        let line2 = self.line2.filter(|line| !line.trim().is_empty());
        let line2 = match line2 {
            Some(line) => errors.check("line2", Some(line), |line| text(line, MAX_LINE_CHARS)).map(Some),
            None => Some(None),
        };
        let city = errors.check("city", self.city, |city| text(city, MAX_CITY_CHARS));
        let postal_code = errors.check("postal_code", self.postal_code, |code| {
            let code = text(code, MAX_POSTAL_CODE_CHARS)?.to_ascii_uppercase();
            if code.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-') {
                Ok(code)
            } else {
                Err("must be letters, digits, spaces and dashes".into())
            }
        });
        let country = errors.check("country", self.country, |country| {
            let country = country.trim().to_ascii_uppercase();
            if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(country)
            } else {
                Err("must be an ISO 3166-1 alpha-2 country code such as DE".into())
            }
        });
        match (line1, line2, city, postal_code, country) {
            (Some(line1), Some(line2), Some(city), Some(postal_code), Some(country)) => {
                Ok(AddressFields { line1, line2, city, postal_code, country })
            }
            _ => Err(errors.into_error()),
        }
    }
}

/// Trimmed, non-empty, at most `max` characters, no control characters.
fn text(value: String, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        Err("must not be empty".into())
    } else if value.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(value.to_string())
    }
}

/// A phone number as people write it: digits with an optional leading `+`
/// and spaces, dashes, dots or parentheses between them.
fn phone_number(phone: String) -> Result<String, String> {
    let phone = phone.trim().to_string();
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let well_formed =
        phone.strip_prefix('+').unwrap_or(&phone).chars().all(|c| c.is_ascii_digit() || " -.()".contains(c));
    if well_formed && PHONE_DIGITS.contains(&digits) {
        Ok(phone)
    } else {
        Err(format!(
            "must be a phone number of {} to {} digits, such as +49 30 1234567",
            PHONE_DIGITS.start(),
            PHONE_DIGITS.end()
        ))
    }
}

/// Tells a field that is `null` (`Some(None)`) from one that is absent
/// (`None`, through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The field errors of one body, collected so all are reported together.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    /// `check(value)` if the field is present, else records it as missing.
    fn check<T, U>(&mut self, field: &str, value: Option<T>, check: impl FnOnce(T) -> Result<U, String>) -> Option<U> {
        let outcome = value.ok_or_else(|| "is required".to_string()).and_then(check);
        outcome.map_err(|message| self.0.push(FieldError { field: field.into(), message })).ok()
    }

    fn into_error(self) -> ApiError {
        ApiError::invalid(self.0)
    }
}
