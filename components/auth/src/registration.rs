//! Registration spans two services: the account here, the profile in the
//! users service. It must never leave a user who can log in without a
//! profile, nor an email that can never be registered again.
//!
//! 1. Reserve the email with a *pending* account (the unique email column
//!    settles concurrent registrations).
//! 2. Create the profile (`POST /internal/users`, idempotent per user id).
//! 3. Activate the account: only now can it log in.
//!
//! If step 2 fails, the pending account is deleted and the client gets a
//! 503: nothing was registered and it may simply try again. If the instance
//! dies between the steps, the pending account stays behind; presenting the
//! same email and password resumes it with the same user id (step 2 is
//! idempotent, so a profile that was already created is found, not
//! duplicated), and after [`ABANDONED_AFTER_MS`] anyone may register the
//! email afresh.
use shop_shared::api::ApiError;
use shop_shared::db::{Db, DbError};

use crate::accounts::{self, Account, Role};
use crate::credentials::Registration;
use crate::{clock, password, profiles, random};

/// How long a pending registration may still be completing: far longer than
/// a request may run.
const ABANDONED_AFTER_MS: i64 = 10 * 60 * 1000;

/// Registers `registration`, returning the active account. `headers` are
/// passed on to the users service.
pub async fn register(
    db: &Db,
    registration: Registration,
    headers: Vec<(String, String)>,
) -> Result<Account, ApiError> {
    let account = reserve(db, &registration)?;
    if let Err(reason) = profiles::create(headers, &account.id, &account.email, &registration.name).await {
        accounts::discard_pending(db, &account.id)?;
        // The reason is for the operator: it may name internals of users.
        eprintln!("registration of user {} failed, nothing was kept: {reason}", account.id);
        return Err(ApiError::new(
            503,
            "profile_unavailable",
            "the user's profile could not be created, so nothing was registered; try again",
        ));
    }
    accounts::activate(db, &account.id)?;
    Ok(Account { active: true, ..account })
}

/// Step 1: a pending account for the email, or the pending account of an
/// interrupted registration of the same email and password.
fn reserve(db: &Db, registration: &Registration) -> Result<Account, ApiError> {
    if let Some(existing) = accounts::find_by_email(db, &registration.email)?
        && let Some(interrupted) = resume(db, existing, registration)?
    {
        return Ok(interrupted);
    }
    let account = Account {
        id: random::uuid()?,
        email: registration.email.clone(),
        password_hash: password::hash(&registration.password)?,
        role: Role::for_new_account(&registration.email)?,
        active: false,
        created_at_ms: clock::now_ms(),
    };
    match accounts::insert_pending(db, &account) {
        Ok(()) => Ok(account),
        // A concurrent registration reserved the email first: while it is
        // pending, a client that sent its request twice gets the same
        // account from both.
        Err(DbError::Duplicate(_)) => {
            let existing = accounts::find_by_email(db, &registration.email)?.ok_or_else(email_taken)?;
            resume(db, existing, registration)?.ok_or_else(email_taken)
        }
        Err(e) => Err(e.into()),
    }
}

/// What an existing account of the email means for a new registration: a
/// pending one with the same password is resumed (`Some`); an abandoned
/// one is discarded so the email can be registered afresh (`None`); any
/// other is a 409.
fn resume(db: &Db, existing: Account, registration: &Registration) -> Result<Option<Account>, ApiError> {
    if existing.active {
        return Err(email_taken());
    }
    if clock::now_ms() - existing.created_at_ms > ABANDONED_AFTER_MS {
        accounts::discard_pending(db, &existing.id)?;
        return Ok(None);
    }
    if password::verify(&registration.password, &existing.password_hash) {
        return Ok(Some(existing));
    }
    Err(email_taken())
}

fn email_taken() -> ApiError {
    ApiError::conflict("an account with this email already exists")
}
