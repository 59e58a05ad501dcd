//! Accounts: an email, its password hash and a role, in auth's database.
use shop_shared::api::ApiError;
use shop_shared::db::{Db, DbError, Row};

use crate::credentials::normalize_email;
use crate::settings;

/// What an access token lets its bearer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<Role, DbError> {
        match text {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            _ => Err(DbError::Column(format!("role {text:?}"))),
        }
    }

    /// The role a new account with this (normalised) email gets: `admin`
    /// for the `admin_email` variable's address, `customer` otherwise.
    pub fn for_new_account(email: &str) -> Result<Role, ApiError> {
        let admin = settings::admin_email()?.is_some_and(|admin| normalize_email(&admin) == email);
        Ok(if admin { Role::Admin } else { Role::Customer })
    }
}

/// A registered email. `active` is false while registration is still
/// creating the user's profile: such an account cannot log in.
pub struct Account {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, email, password_hash, role, status, created_at_ms";

impl Account {
    fn from_row(row: &Row<'_>) -> Result<Account, DbError> {
        Ok(Account {
            id: row.text("id")?,
            email: row.text("email")?,
            password_hash: row.text("password_hash")?,
            role: Role::parse(&row.text("role")?)?,
            active: row.text("status")? == "active",
            created_at_ms: row.int("created_at_ms")?,
        })
    }
}

pub fn find_by_email(db: &Db, email: &str) -> Result<Option<Account>, DbError> {
    let rows = db.query(&format!("SELECT {COLUMNS} FROM accounts WHERE email = $1"), &[email.into()])?;
    rows.first().map(|row| Account::from_row(&row)).transpose()
}

pub fn find_by_id(db: &Db, id: &str) -> Result<Option<Account>, DbError> {
    let rows = db.query(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"), &[id.into()])?;
    rows.first().map(|row| Account::from_row(&row)).transpose()
}

/// Records `account` as pending, reserving its email; a taken email is
/// [`DbError::Duplicate`].
pub fn insert_pending(db: &Db, account: &Account) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO accounts (id, email, password_hash, role, status, created_at_ms) VALUES ($1, $2, $3, $4, 'pending', $5)",
        &[
            (&account.id).into(),
            (&account.email).into(),
            (&account.password_hash).into(),
            account.role.as_str().into(),
            account.created_at_ms.into(),
        ],
    )?;
    Ok(())
}

/// Makes a pending account usable (a no-op if it already is).
pub fn activate(db: &Db, id: &str) -> Result<(), DbError> {
    db.execute("UPDATE accounts SET status = 'active' WHERE id = $1", &[id.into()])?;
    Ok(())
}

/// Forgets a registration that did not complete; never touches an active
/// account.
pub fn discard_pending(db: &Db, id: &str) -> Result<(), DbError> {
    db.execute("DELETE FROM accounts WHERE id = $1 AND status = 'pending'", &[id.into()])?;
    Ok(())
}
