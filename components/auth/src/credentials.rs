//! The bodies auth accepts, and the rules they must meet. Fields are read
//! as optional so that every missing or invalid one is reported at once
//! (`400 validation_failed` with `fields`); a body that is not JSON, or has
//! a field of the wrong JSON type, is a `400 bad_request` from
//! [`shop_shared::api::parse_json`].
use serde::Deserialize;
use shop_shared::api::{ApiError, FieldError};

/// The password policy: length is what makes a password strong (NIST SP
/// 800-63B); the upper bound only keeps requests reasonable.
const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 100;
/// RFC 5321's limits on a forward path and its local part.
const MAX_EMAIL_CHARS: usize = 254;
const MAX_LOCAL_PART_CHARS: usize = 64;

/// `POST /api/auth/register`.
#[derive(Deserialize)]
pub struct RegisterBody {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
}

/// A registration that passed validation; the email is normalised.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: String,
}

impl RegisterBody {
    pub fn validate(self) -> Result<Registration, ApiError> {
        let mut errors = Errors::default();
        let email = errors.check("email", self.email, |email| {
            let email = normalize_email(&email);
            email_problem(&email).map_or(Ok(email), Err)
        });
        let password = errors.check("password", self.password, |password| {
            let chars = password.chars().count();
            if chars < MIN_PASSWORD_CHARS {
                Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"))
            } else if chars > MAX_PASSWORD_CHARS {
                Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"))
            } else {
                Ok(password)
            }
        });
        let name = errors.check("name", self.name, |name| {
            let name = name.trim();
            if name.is_empty() {
                Err("must not be empty".into())
            } else if name.chars().count() > MAX_NAME_CHARS {
                Err(format!("must be at most {MAX_NAME_CHARS} characters"))
            } else if name.chars().any(char::is_control) {
                Err("must not contain control characters".into())
            } else {
                Ok(name.to_string())
            }
        });
        match (email, password, name) {
            (Some(email), Some(password), Some(name)) => Ok(Registration { email, password, name }),
            _ => Err(errors.into_error()),
        }
    }
}

/// `POST /api/auth/login`.
#[derive(Deserialize)]
pub struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

/// What a login presents. Only presence is checked: the policy applies to
/// new passwords, and a wrong password is a 401, not a 400.
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl LoginBody {
    pub fn validate(self) -> Result<Credentials, ApiError> {
        let mut errors = Errors::default();
        let email = errors.check("email", self.email, |email| non_empty(normalize_email(&email)));
        let password = errors.check("password", self.password, non_empty);
        match (email, password) {
            (Some(email), Some(password)) => Ok(Credentials { email, password }),
            _ => Err(errors.into_error()),
        }
    }
}

/// `POST /api/auth/refresh` and `POST /api/auth/logout`.
#[derive(Deserialize)]
pub struct RefreshTokenBody {
    refresh_token: Option<String>,
}

impl RefreshTokenBody {
    pub fn validate(self) -> Result<String, ApiError> {
        let mut errors = Errors::default();
        errors.check("refresh_token", self.refresh_token, non_empty).ok_or_else(|| errors.into_error())
    }
}

/// Emails compare case-insensitively: `Ann@Example.com` is `ann@example.com`.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// What is wrong with a (normalised) email, if anything. Deliberately a
/// shape check: only delivering mail proves an address.
fn email_problem(email: &str) -> Option<String> {
    let Some((local, domain)) = email.split_once('@') else {
        return Some("must be an email address such as ann@example.com".into());
    };
    let problem = if email.chars().count() > MAX_EMAIL_CHARS {
        format!("must be at most {MAX_EMAIL_CHARS} characters")
    } else if local.is_empty() || local.chars().count() > MAX_LOCAL_PART_CHARS {
        format!("the part before @ must have 1 to {MAX_LOCAL_PART_CHARS} characters")
    } else if domain.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must be one address, without spaces".into()
    } else if domain.split('.').count() < 2 || domain.split('.').any(str::is_empty) {
        "must have a domain such as example.com after @".into()
    } else {
        return None;
    };
    Some(problem)
}

fn non_empty(value: String) -> Result<String, String> {
    if value.trim().is_empty() { Err("must not be empty".into()) } else { Ok(value) }
}

/// The field errors of one body, collected so all are reported together.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    /// `check(value)` if the field is present, else records it as missing.
    fn check<T>(
        &mut self,
        field: &str,
        value: Option<String>,
        check: impl FnOnce(String) -> Result<T, String>,
    ) -> Option<T> {
        let outcome = value.ok_or_else(|| "is required".to_string()).and_then(check);
        outcome.map_err(|message| self.0.push(FieldError { field: field.into(), message })).ok()
    }

    fn into_error(self) -> ApiError {
        ApiError::invalid(self.0)
    }
}
