//! The users service's SQL: profiles (with their preferences) and
//! addresses.
use shop_shared::db::{Db, DbError, Row};

use crate::clock;
use crate::input::{NewProfile, ProfilePatch};
use crate::model::{Address, AddressFields, Preferences, Profile};

/// Whether [`create_profile`] made the profile or found it.
pub enum Created {
    New,
    Existing,
}

/// Creates the profile of `new` with the default preferences, unless a
/// profile with its user id exists (auth retrying): idempotent.
pub fn create_profile(db: &Db, new: &NewProfile) -> Result<Created, DbError> {
    let defaults = Preferences::default();
    let now = clock::now_ms();
    let inserted = db.execute(
        "INSERT INTO profiles (user_id, email, name, phone, email_notifications, sms_notifications, push_notifications, \
         currency, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, $8) \
         ON CONFLICT (user_id) DO NOTHING",
        &[
            (&new.user_id).into(),
            (&new.email).into(),
            (&new.name).into(),
            defaults.email_notifications.into(),
            defaults.sms_notifications.into(),
            defaults.push_notifications.into(),
            defaults.currency.into(),
            now.into(),
        ],
    )?;
    Ok(if inserted == 1 { Created::New } else { Created::Existing })
}

/// The whole profile of `user_id`, addresses included.
///
/// One query, the profile joined with its addresses (one row per address):
/// one round trip for every profile read, notifications' lookup of each
/// order event's recipient among them.
pub fn profile(db: &Db, user_id: &str) -> Result<Option<Profile>, DbError> {
    let rows = db.query(
        &format!(
            "SELECT p.user_id, p.email, p.name, p.phone, p.email_notifications, p.sms_notifications, \
             p.push_notifications, p.currency, p.revision, {ADDRESS_COLUMNS} \
             FROM profiles p LEFT JOIN addresses a ON a.user_id = p.user_id WHERE p.user_id = $1 \
             ORDER BY a.created_at_ms, a.id"
        ),
        &[user_id.into()],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let mut addresses = Vec::new();
    for row in rows.iter() {
        if row.opt_text("id")?.is_some() {
            addresses.push(address_of(&row)?);
        }
    }
    Ok(Some(Profile {
        user_id: row.text("user_id")?,
        email: row.text("email")?,
        name: row.text("name")?,
        phone: row.opt_text("phone")?,
        preferences: preferences_of(&row)?,
        addresses,
        revision: row.int("revision")?,
    }))
}

/// Applies `patch` to the profile of `user_id` (a new revision); false if
/// there is none.
pub fn update_profile(db: &Db, user_id: &str, patch: &ProfilePatch) -> Result<bool, DbError> {
    let now = clock::now_ms();
    db.transaction(|db| {
        if db.execute(
            "UPDATE profiles SET updated_at_ms = $2, revision = revision + 1 WHERE user_id = $1",
            &[user_id.into(), now.into()],
        )? == 0
        {
            return Ok(false);
        }
        if let Some(name) = &patch.name {
            db.execute("UPDATE profiles SET name = $2 WHERE user_id = $1", &[user_id.into(), name.into()])?;
        }
        if let Some(phone) = &patch.phone {
            db.execute("UPDATE profiles SET phone = $2 WHERE user_id = $1", &[user_id.into(), phone.as_ref().into()])?;
        }
        Ok(true)
    })
}

pub fn preferences(db: &Db, user_id: &str) -> Result<Option<Preferences>, DbError> {
    let rows = db.query(
        "SELECT email_notifications, sms_notifications, push_notifications, currency FROM profiles WHERE user_id = $1",
        &[user_id.into()],
    )?;
    rows.first().map(|row| preferences_of(&row)).transpose()
}

/// Replaces the preferences of `user_id` (a new revision); false if there
/// is no profile.
pub fn set_preferences(db: &Db, user_id: &str, preferences: &Preferences) -> Result<bool, DbError> {
    let changed = db.execute(
        "UPDATE profiles SET email_notifications = $2, sms_notifications = $3, push_notifications = $4, currency = $5, \
         updated_at_ms = $6, revision = revision + 1 WHERE user_id = $1",
        &[
            user_id.into(),
            preferences.email_notifications.into(),
            preferences.sms_notifications.into(),
            preferences.push_notifications.into(),
            (&preferences.currency).into(),
            clock::now_ms().into(),
        ],
    )?;
    Ok(changed == 1)
}

fn preferences_of(row: &Row<'_>) -> Result<Preferences, DbError> {
    Ok(Preferences {
        email_notifications: row.bool("email_notifications")?,
        sms_notifications: row.bool("sms_notifications")?,
        push_notifications: row.bool("push_notifications")?,
        currency: row.text("currency")?,
    })
}

/// An address's columns, of `addresses a` (qualified, so that they can be
/// selected beside a profile's).
const ADDRESS_COLUMNS: &str = "a.id, a.line1, a.line2, a.city, a.postal_code, a.country";

/// The addresses of `user_id`, oldest first.
pub fn addresses(db: &Db, user_id: &str) -> Result<Vec<Address>, DbError> {
    let rows = db.query(
        &format!("SELECT {ADDRESS_COLUMNS} FROM addresses a WHERE a.user_id = $1 ORDER BY a.created_at_ms, a.id"),
        &[user_id.into()],
    )?;
    rows.iter().map(|row| address_of(&row)).collect()
}

/// The address `user_id` created with `idempotency_key`, if any.
pub fn address_by_idempotency_key(db: &Db, user_id: &str, idempotency_key: &str) -> Result<Option<Address>, DbError> {
    let rows = db.query(
        &format!("SELECT {ADDRESS_COLUMNS} FROM addresses a WHERE a.user_id = $1 AND a.idempotency_key = $2"),
        &[user_id.into(), idempotency_key.into()],
    )?;
    rows.first().map(|row| address_of(&row)).transpose()
}

/// Stores `address` for `user_id`. A second address with the same
/// idempotency key is [`DbError::Duplicate`].
pub fn insert_address(db: &Db, user_id: &str, address: &Address, idempotency_key: Option<&str>) -> Result<(), DbError> {
    let fields = &address.fields;
    db.execute(
        "INSERT INTO addresses (id, user_id, line1, line2, city, postal_code, country, idempotency_key, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            (&address.id).into(),
            user_id.into(),
            (&fields.line1).into(),
            fields.line2.as_ref().into(),
            (&fields.city).into(),
            (&fields.postal_code).into(),
            (&fields.country).into(),
            idempotency_key.into(),
            clock::now_ms().into(),
        ],
    )?;
    Ok(())
}

/// Deletes address `id` of `user_id`; false if the user has no such address.
pub fn delete_address(db: &Db, user_id: &str, id: &str) -> Result<bool, DbError> {
    Ok(db.execute("DELETE FROM addresses WHERE user_id = $1 AND id = $2", &[user_id.into(), id.into()])? == 1)
}

fn address_of(row: &Row<'_>) -> Result<Address, DbError> {
    Ok(Address {
        id: row.text("id")?,
        fields: AddressFields {
            line1: row.text("line1")?,
            line2: row.opt_text("line2")?,
            city: row.text("city")?,
            postal_code: row.text("postal_code")?,
            country: row.text("country")?,
        },
    })
}
