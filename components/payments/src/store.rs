//! The payments database: payments, refunds and idempotency keys, in the
//! portable SQL of [`shop_shared::db`].
use shop_shared::api::ApiError;
use shop_shared::db::{Db, DbError, Param, Row, Writes};

use crate::model::{CAPTURED, Payment, Refund};

/// Append-only: the N-th entry is migration N.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE payments (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        user_id TEXT,
        amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
        refunded_cents BIGINT NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
        currency TEXT NOT NULL,
        card_last4 TEXT NOT NULL,
        processor_ref TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE INDEX payments_by_order ON payments (order_id, created_at_ms);
    CREATE TABLE refunds (
        id TEXT PRIMARY KEY,
        payment_id TEXT NOT NULL REFERENCES payments (id),
        amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
        created_at_ms BIGINT NOT NULL
    );
    CREATE INDEX refunds_by_payment ON refunds (payment_id);
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        lock_token TEXT,
        locked_at_ms BIGINT NOT NULL,
        response_status BIGINT,
        response_body TEXT,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, idempotency_key)
    );
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms)
"];

/// Opens the database `database_url` names for this build's schema
/// (`Db::for_service`: migrated first on SQLite, checked by the first
/// statement on Postgres).
pub fn open() -> Result<Db, ApiError> {
    Ok(Db::for_service(MIGRATIONS)?)
}

const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, amount_cents, refunded_cents, currency, card_last4, processor_ref, created_at_ms";

fn payment(row: &Row<'_>) -> Result<Payment, DbError> {
    Ok(Payment {
        payment_id: row.text("id")?,
        order_id: row.text("order_id")?,
        user_id: row.opt_text("user_id")?,
        status: CAPTURED,
        amount_cents: row.int("amount_cents")?,
        refunded_cents: row.int("refunded_cents")?,
        currency: row.text("currency")?,
        card_last4: row.text("card_last4")?,
        processor_ref: row.text("processor_ref")?,
        created_at_ms: row.int("created_at_ms")?,
    })
}

/// Adds the payment's row to `writes`, as a `SELECT` (it follows the
/// key's answer in a [`shop_shared::db::Chain`]).
pub fn insert_payment(writes: &mut Writes, p: &Payment) {
    writes.push(
        format!("INSERT INTO payments ({PAYMENT_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9"),
        vec![
            (&p.payment_id).into(),
            (&p.order_id).into(),
            p.user_id.clone().into(),
            p.amount_cents.into(),
            p.refunded_cents.into(),
            (&p.currency).into(),
            (&p.card_last4).into(),
            (&p.processor_ref).into(),
            p.created_at_ms.into(),
        ],
    );
}

pub fn find_payment(db: &Db, id: &str) -> Result<Option<Payment>, DbError> {
    let rows = db.query(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"), &[id.into()])?;
    rows.first().map(|row| payment(&row)).transpose()
}

/// An order's payments, oldest first.
pub fn payments_of_order(db: &Db, order_id: &str) -> Result<Vec<Payment>, DbError> {
    let rows = db.query(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 ORDER BY created_at_ms, id"),
        &[order_id.into()],
    )?;
    rows.iter().map(|row| payment(&row)).collect()
}

/// Records `refund` if its payment still has that much to refund, in one
/// conditional update (first in its transaction, so SQLite takes the write
/// lock before reading, and Postgres re-checks the row it locks): two
/// concurrent refunds can never take more than was captured. `false` when
/// there was not enough left.
pub fn insert_refund(db: &Db, refund: &Refund) -> Result<bool, DbError> {
    let taken = db.execute(
        "UPDATE payments SET refunded_cents = refunded_cents + $2 WHERE id = $1 AND refunded_cents + $2 <= amount_cents",
        &[(&refund.payment_id).into(), refund.amount_cents.into()],
    )?;
    if taken == 0 {
        return Ok(false);
    }
    db.execute(
        "INSERT INTO refunds (id, payment_id, amount_cents, created_at_ms) VALUES ($1, $2, $3, $4)",
        &[
            (&refund.refund_id).into(),
            (&refund.payment_id).into(),
            refund.amount_cents.into(),
            refund.created_at_ms.into(),
        ],
    )?;
    Ok(true)
}

/// One stored idempotency key.
pub struct KeyRecord {
    pub fingerprint: String,
    /// `Some` once the request finished: its status and body.
    pub response: Option<(u16, String)>,
    pub locked_at_ms: i64,
    pub created_at_ms: i64,
}

/// Claims a key for a new request; `false` if the key is taken.
pub fn insert_key(
    db: &Db,
    scope: &str,
    key: &str,
    fingerprint: &str,
    token: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let inserted = db.execute(
        "INSERT INTO idempotency_keys (scope, idempotency_key, fingerprint, status, lock_token, locked_at_ms, created_at_ms)
         VALUES ($1, $2, $3, 'in_flight', $4, $5, $5)",
        &[scope.into(), key.into(), fingerprint.into(), token.into(), now_ms.into()],
    );
    match inserted {
        Ok(_) => Ok(true),
        Err(DbError::Duplicate(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn find_key(db: &Db, scope: &str, key: &str) -> Result<Option<KeyRecord>, DbError> {
    let rows = db.query(
        "SELECT fingerprint, status, response_status, response_body, locked_at_ms, created_at_ms FROM idempotency_keys
         WHERE scope = $1 AND idempotency_key = $2",
        &[scope.into(), key.into()],
    )?;
    let Some(row) = rows.first() else { return Ok(None) };
    let response = if row.text("status")? == "completed" {
        let status = row.int("response_status")?;
        let status = u16::try_from(status).map_err(|_| DbError::Column("response_status".into()))?;
        Some((status, row.text("response_body")?))
    } else {
        None
    };
    Ok(Some(KeyRecord {
        fingerprint: row.text("fingerprint")?,
        response,
        locked_at_ms: row.int("locked_at_ms")?,
        created_at_ms: row.int("created_at_ms")?,
    }))
}

/// Takes over an in-flight key whose holder let its lease lapse, if nobody
/// else took it over since it was read (`locked_at_ms` unchanged).
pub fn reclaim_key(
    db: &Db,
    scope: &str,
    key: &str,
    seen_locked_at_ms: i64,
    token: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let taken = db.execute(
        "UPDATE idempotency_keys SET lock_token = $4, locked_at_ms = $5
         WHERE scope = $1 AND idempotency_key = $2 AND status = 'in_flight' AND locked_at_ms = $3",
        &[scope.into(), key.into(), seen_locked_at_ms.into(), token.into(), now_ms.into()],
    )?;
    Ok(taken == 1)
}

/// The statement storing the final response under a key still held with
/// `token`: it changes no row if the lease was lost to another request.
pub fn complete_key(scope: &str, key: &str, token: &str, status: u16, body: &str) -> (String, Vec<Param>) {
    (
        "UPDATE idempotency_keys SET status = 'completed', lock_token = NULL, response_status = $4, response_body = $5
         WHERE scope = $1 AND idempotency_key = $2 AND lock_token = $3"
            .to_string(),
        vec![scope.into(), key.into(), token.into(), Param::Int(status.into()), body.into()],
    )
}

/// Forgets an in-flight key still held with `token`, so the request may be
/// retried with it.
pub fn release_key(db: &Db, scope: &str, key: &str, token: &str) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND lock_token = $3",
        &[scope.into(), key.into(), token.into()],
    )?;
    Ok(())
}

/// Deletes the key if it was created before `cutoff_ms` (it has expired);
/// whether it did.
pub fn forget_expired_key(db: &Db, scope: &str, key: &str, cutoff_ms: i64) -> Result<bool, DbError> {
    let deleted = db.execute(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2 AND created_at_ms < $3",
        &[scope.into(), key.into(), cutoff_ms.into()],
    )?;
    Ok(deleted == 1)
}

/// Deletes keys created before `cutoff_ms`.
pub fn purge_keys(db: &Db, cutoff_ms: i64) -> Result<(), DbError> {
    db.execute("DELETE FROM idempotency_keys WHERE created_at_ms < $1", &[cutoff_ms.into()])?;
    Ok(())
}
