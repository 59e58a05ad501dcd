//! Who a message goes to and on which channels, from the users service
//! (`GET http://users.spin.internal/internal/users/{user_id}`).
//!
//! Notifications must not stop because users is down: a customer who cannot
//! be looked up still gets the email (the channel that is always on), and
//! the failure is logged.
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use shop_shared::api::REQUEST_ID;
use spin_sdk::http::{Request, Response};

const USERS: &str = "http://users.spin.internal/internal/users";

/// Characters a user id keeps in a URL path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What a message needs to know about its customer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipient {
    /// For the greeting; `None` when unknown.
    pub name: Option<String>,
    /// SMS wanted and a phone number to send it to.
    pub sms: bool,
    pub push: bool,
}

/// The part of the users service's profile notifications read.
#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    preferences: Preferences,
}

#[derive(Default, Deserialize)]
struct Preferences {
    #[serde(default)]
    sms_notifications: bool,
    #[serde(default)]
    push_notifications: bool,
}

impl From<Profile> for Recipient {
    fn from(p: Profile) -> Self {
        let has_phone = p.phone.as_deref().is_some_and(|phone| !phone.trim().is_empty());
        Recipient {
            name: p.name.filter(|name| !name.trim().is_empty()),
            sms: p.preferences.sms_notifications && has_phone,
            push: p.preferences.push_notifications,
        }
    }
}

/// The customer `user_id`, or an email-only recipient if users cannot say.
/// `request_id` tags the call so it can be traced back to the event.
pub async fn lookup(user_id: &str, request_id: &str) -> Recipient {
    match profile(user_id, request_id).await {
        Ok(profile) => profile.into(),
        Err(reason) => {
            eprintln!("notifications: no preferences for user {user_id:?} ({reason}); sending email only");
            Recipient::default()
        }
    }
}

async fn profile(user_id: &str, request_id: &str) -> Result<Profile, String> {
    let url = format!("{USERS}/{}", utf8_percent_encode(user_id, PATH_SEGMENT));
    let request = Request::get(url).header(REQUEST_ID, request_id).header("accept", "application/json").build();
    let response: Response = spin_sdk::http::send(request).await.map_err(|e| format!("users is unreachable: {e}"))?;
    match *response.status() {
        200 => serde_json::from_slice(response.body()).map_err(|e| format!("users sent an unreadable profile: {e}")),
        status => Err(format!("users answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(json: &str) -> Recipient {
        serde_json::from_str::<Profile>(json).unwrap().into()
    }

    #[test]
    fn sms_needs_both_the_preference_and_a_phone() {
        let prefs =
            r#""preferences": {"email_notifications": true, "sms_notifications": true, "push_notifications": true}"#;
        let with_phone = recipient(&format!(r#"{{"name": "Ada", "phone": "+44 20 7946 0000", {prefs}}}"#));
        assert_eq!(with_phone, Recipient { name: Some("Ada".into()), sms: true, push: true });
        let without = recipient(&format!(r#"{{"name": "Ada", "phone": null, {prefs}}}"#));
        assert!(!without.sms && without.push);
        assert_eq!(recipient("{}"), Recipient::default());
    }
}
