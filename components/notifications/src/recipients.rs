//! Who a message goes to and on which channels: from the customer's
//! profile as users' profile feed last told it ([`store::profile`]), kept
//! in this service's own database, so an order event costs no call to
//! users. Only a customer the feed has not told of yet (registered a moment
//! ago, or before users published its feed) is looked up in the users
//! service (`GET http://users.spin.internal/internal/users/{user_id}`).
//! That answer is not kept: the feed is the one writer of the kept
//! profiles, so an app whose users publishes no feed asks users every time
//! and never reads a stale profile.
//!
//! Notifications must not stop because users is down: a customer who cannot
//! be looked up still gets the email (the channel that is always on), and
//! the failure is logged.
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use shop_shared::api::REQUEST_ID;
use shop_shared::db::{Db, DbError};
use shop_shared::events::ProfileState;
use spin_sdk::http::{Request, Response};

use crate::store;

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

impl Recipient {
    fn new(name: Option<String>, phone: Option<&str>, sms: bool, push: bool) -> Self {
        let has_phone = phone.is_some_and(|phone| !phone.trim().is_empty());
        Recipient { name: name.filter(|name| !name.trim().is_empty()), sms: sms && has_phone, push }
    }
}

impl From<Profile> for Recipient {
    fn from(p: Profile) -> Self {
        let Preferences { sms_notifications, push_notifications } = p.preferences;
        Recipient::new(p.name, p.phone.as_deref(), sms_notifications, push_notifications)
    }
}

impl From<ProfileState> for Recipient {
    fn from(p: ProfileState) -> Self {
        Recipient::new(Some(p.name), p.phone.as_deref(), p.sms_notifications, p.push_notifications)
    }
}

/// The customer `user_id`: from the kept profile, else from users, else (users
/// cannot say) an email-only recipient. `request_id` tags the call to users
/// so it can be traced back to the event.
pub async fn lookup(db: &Db, user_id: &str, request_id: &str) -> Result<Recipient, DbError> {
    if let Some(kept) = store::profile(db, user_id)? {
        return Ok(kept.into());
    }
    Ok(match profile(user_id, request_id).await {
        Ok(profile) => profile.into(),
        Err(reason) => {
            eprintln!("notifications: no preferences for user {user_id:?} ({reason}); sending email only");
            Recipient::default()
        }
    })
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

    #[test]
    fn a_kept_profile_reads_as_the_users_answer_would() {
        let kept = ProfileState {
            user_id: "u1".into(),
            revision: 2,
            name: " ".into(),
            phone: Some("+44 20 7946 0000".into()),
            email_notifications: false,
            sms_notifications: true,
            push_notifications: false,
        };
        assert_eq!(Recipient::from(kept.clone()), Recipient { name: None, sms: true, push: false });
        let no_phone = ProfileState { name: "Ada".into(), phone: Some("".into()), ..kept };
        assert_eq!(Recipient::from(no_phone), Recipient { name: Some("Ada".into()), sms: false, push: false });
    }
}
