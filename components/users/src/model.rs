//! What the users service knows about a user, in its JSON form.
use serde::Serialize;

/// `{user_id, email, name, phone, preferences, addresses, revision}`.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub preferences: Preferences,
    pub addresses: Vec<Address>,
    /// The profile's changes counted (name, phone, preferences), from 1 at
    /// its creation: what orders the profile events ([`crate::feed`]), and
    /// how a reader of this profile and of those events tells which is newer.
    pub revision: i64,
}

/// How the user wants to hear from the shop, and the currency they shop in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preferences {
    pub email_notifications: bool,
    pub sms_notifications: bool,
    pub push_notifications: bool,
    /// ISO 4217, upper case.
    pub currency: String,
}

impl Default for Preferences {
    /// A new user gets order emails (which notifications always sends) and
    /// nothing they did not ask for.
    fn default() -> Self {
        Preferences {
            email_notifications: true,
            sms_notifications: false,
            push_notifications: false,
            currency: "USD".into(),
        }
    }
}

/// `{id, line1, line2?, city, postal_code, country}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Address {
    pub id: String,
    #[serde(flatten)]
    pub fields: AddressFields,
}

/// An address without its id: what a client sends to create one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressFields {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}
