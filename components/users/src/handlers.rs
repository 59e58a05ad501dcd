//! The endpoints: each reads its request, does its work through [`store`]
//! and answers per components/CONTRACTS.md. The `/api/users/me` ones act on
//! the caller ([`caller::user_id`]); a caller without a profile gets 404.
use shop_shared::api::{ApiError, json, parse_json};
use shop_shared::db::{Db, DbError};
use spin_sdk::http::{Request, Response};

use crate::input::{AddressBody, NewProfileBody, PreferencesBody, ProfilePatchBody};
use crate::model::{Address, AddressFields};
use crate::store::{self, Created};
use crate::{caller, feed, ids, schema};

/// The header a client sets so that retrying an address creation cannot
/// create the address twice.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// `POST /internal/users` → 201 the new profile, or 200 the existing one
/// when auth retries; 409 if the user id has a profile with another email.
pub fn create_profile(req: &Request) -> Result<Response, ApiError> {
    let new = parse_json::<NewProfileBody>(req)?.validate()?;
    let db = schema::open()?;
    let created = store::create_profile(&db, &new)?;
    if let Created::New = created {
        feed::relay_after_change();
    }
    let profile =
        store::profile(&db, &new.user_id)?.ok_or_else(|| ApiError::internal("the profile just created is missing"))?;
    match created {
        Created::New => Ok(json(201, &profile)),
        Created::Existing if profile.email == new.email => Ok(json(200, &profile)),
        Created::Existing => {
            Err(ApiError::conflict(format!("user {} already has a profile, with another email", new.user_id)))
        }
    }
}

/// `GET /internal/users/{user_id}` → the profile.
pub fn profile_of(user_id: &str) -> Result<Response, ApiError> {
    let profile = store::profile(&schema::open()?, user_id)?.ok_or_else(|| no_profile(user_id))?;
    Ok(json(200, &profile))
}

/// `POST /internal/feed/relay` → `{published, pending, error}`: publishes
/// the profiles still due to the feed (after a bus outage, say).
pub fn relay_feed() -> Result<Response, ApiError> {
    Ok(json(200, &feed::relay(&schema::open()?)?))
}

/// `GET /api/users/me` → the caller's profile.
pub fn my_profile(req: &Request) -> Result<Response, ApiError> {
    profile_of(&caller::user_id(req)?)
}

/// `PATCH /api/users/me` `{name?, phone?}` → the updated profile.
pub fn update_my_profile(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let patch = parse_json::<ProfilePatchBody>(req)?.validate()?;
    let db = schema::open()?;
    if !store::update_profile(&db, &user_id, &patch)? {
        return Err(no_profile(&user_id));
    }
    feed::relay_after_change();
    profile_of(&user_id)
}

/// `GET /api/users/me/preferences`.
pub fn my_preferences(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let preferences = store::preferences(&schema::open()?, &user_id)?.ok_or_else(|| no_profile(&user_id))?;
    Ok(json(200, &preferences))
}

/// `PUT /api/users/me/preferences` → the preferences as stored.
pub fn set_my_preferences(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let preferences = parse_json::<PreferencesBody>(req)?.validate()?;
    if !store::set_preferences(&schema::open()?, &user_id, &preferences)? {
        return Err(no_profile(&user_id));
    }
    feed::relay_after_change();
    Ok(json(200, &preferences))
}

/// `GET /api/users/me/addresses` → `{items: [address]}`, oldest first.
pub fn my_addresses(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let db = schema::open()?;
    require_profile(&db, &user_id)?;
    Ok(json(200, &serde_json::json!({ "items": store::addresses(&db, &user_id)? })))
}

/// `POST /api/users/me/addresses` → 201 the address. With an
/// `Idempotency-Key`, a retry answers with the address the first attempt
/// created; the same key with another address is a 422.
pub fn add_my_address(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let fields = parse_json::<AddressBody>(req)?.validate()?;
    let key = idempotency_key(req)?;
    let db = schema::open()?;
    require_profile(&db, &user_id)?;
    if let Some(key) = &key
        && let Some(first) = store::address_by_idempotency_key(&db, &user_id, key)?
    {
        return replay(first, &fields);
    }
    let address = Address { id: ids::new_id()?, fields };
    match store::insert_address(&db, &user_id, &address, key.as_deref()) {
        Ok(()) => Ok(json(201, &address)),
        // A concurrent request with the same key won the race.
        Err(DbError::Duplicate(_)) if let Some(key) = &key => {
            let first = store::address_by_idempotency_key(&db, &user_id, key)?
                .ok_or_else(|| ApiError::internal("the address of this idempotency key is missing"))?;
            replay(first, &address.fields)
        }
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /api/users/me/addresses/{id}` → 204; 404 if the caller has no
/// such address (any more).
pub fn delete_my_address(req: &Request, id: &str) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    if !store::delete_address(&schema::open()?, &user_id, id)? {
        return Err(ApiError::not_found(format!("you have no address {id}")));
    }
    Ok(Response::builder().status(204).build())
}

/// The answer to a repeated creation: the first one's, if it asked for the
/// same address.
fn replay(first: Address, fields: &AddressFields) -> Result<Response, ApiError> {
    if first.fields == *fields {
        Ok(json(201, &first))
    } else {
        Err(ApiError::new(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key already created a different address; use a new key for a new address",
        ))
    }
}

fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.header(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.as_str().map(str::trim) {
        Some(key) if !key.is_empty() && key.chars().count() <= MAX_IDEMPOTENCY_KEY_CHARS => Ok(Some(key.to_string())),
        _ => Err(ApiError::bad_request(format!(
            "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        ))),
    }
}

fn require_profile(db: &Db, user_id: &str) -> Result<(), ApiError> {
    store::preferences(db, user_id)?.map(|_| ()).ok_or_else(|| no_profile(user_id))
}

fn no_profile(user_id: &str) -> ApiError {
    ApiError::not_found(format!("user {user_id} has no profile"))
}
