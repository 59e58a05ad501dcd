//! The notifications database: the events already handled and the messages
//! they produced, in the portable SQL of [`shop_shared::db`].
use serde::Serialize;
use shop_shared::db::{Bindings, Db, DbError};
use shop_shared::events::Envelope;

use crate::messages::Message;

/// Append-only: the N-th entry is migration N.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE handled_events (
        event_id TEXT PRIMARY KEY,
        event_type TEXT NOT NULL,
        order_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        handled_at_ms BIGINT NOT NULL
    );
    CREATE TABLE notifications (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES handled_events (event_id),
        user_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        occurred_at_ms BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        UNIQUE (event_id, channel)
    );
    CREATE INDEX notifications_by_user ON notifications (user_id, created_at_ms)
"];

/// Tries to migrate: enough for every step a concurrent instance can win.
const MIGRATION_ATTEMPTS: u32 = 3;

/// Opens the database named by the `database_url` variable, migrated.
pub fn open() -> Result<Db, DbError> {
    let db = Db::from_variable()?;
    // Instances that start together on a new database race to migrate it:
    // the loser's CREATE TABLE meets the winner's table (Postgres can fail it
    // twice: on `schema_migrations`, then on the migration) and rolls back,
    // and a later look finds the winner's work applied.
    let mut attempt = 1;
    while let Err(e) = db.migrate(MIGRATIONS) {
        if attempt == MIGRATION_ATTEMPTS {
            return Err(e);
        }
        attempt += 1;
    }
    Ok(db)
}

/// Marks `event` handled and writes its messages, in one transaction, unless
/// it was handled already: the event's primary key decides, so two
/// deliveries racing each other write the messages once. Returns whether
/// this call wrote them.
pub fn record(db: &Db, event: &Envelope, messages: &[Message], now_ms: i64) -> Result<bool, DbError> {
    db.transaction(|db| {
        let claimed = db.execute(
            "INSERT INTO handled_events (event_id, event_type, order_id, user_id, handled_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
            &[
                (&event.event_id).into(),
                event.kind().into(),
                (&event.order_id).into(),
                (&event.user_id).into(),
                now_ms.into(),
            ],
        )?;
        if claimed == 0 {
            return Ok(false);
        }
        if messages.is_empty() {
            return Ok(true);
        }
        // Every message in one statement (one round trip).
        let mut sql = Bindings::default();
        let (event_id, user_id, order_id) = (sql.bind(&event.event_id), sql.bind(&event.user_id), sql.bind(&event.order_id));
        let (occurred, created) = (sql.bind(event.occurred_at_ms), sql.bind(now_ms));
        let rows = sql.rows(messages, |sql, message| {
            vec![
                sql.bind(format!("ntf_{}", uuid::Uuid::new_v4().simple())),
                event_id.clone(),
                user_id.clone(),
                order_id.clone(),
                sql.bind(message.channel.as_str()),
                sql.bind(&message.subject),
                sql.bind(&message.body),
                occurred.clone(),
                created.clone(),
            ]
        });
        db.execute(
            &format!(
                "INSERT INTO notifications (id, event_id, user_id, order_id, channel, subject, body, occurred_at_ms, \
                 created_at_ms) VALUES {rows}"
            ),
            &sql.params,
        )?;
        Ok(true)
    })
}

/// One message as `GET /api/notifications` lists it.
#[derive(Debug, Serialize)]
pub struct Notification {
    pub id: String,
    pub event_id: String,
    pub order_id: String,
    pub channel: String,
    pub subject: String,
    pub body: String,
    pub created_at_ms: i64,
}

/// A user's newest `limit` messages, newest first. Messages written in the
/// same millisecond are ordered by when their events happened, then by
/// channel, so the order is stable.
pub fn of_user(db: &Db, user_id: &str, limit: i64) -> Result<Vec<Notification>, DbError> {
    let rows = db.query(
        "SELECT id, event_id, order_id, channel, subject, body, created_at_ms FROM notifications
         WHERE user_id = $1 ORDER BY created_at_ms DESC, occurred_at_ms DESC, event_id DESC, channel LIMIT $2",
        &[user_id.into(), limit.into()],
    )?;
    rows.iter()
        .map(|row| {
            Ok(Notification {
                id: row.text("id")?,
                event_id: row.text("event_id")?,
                order_id: row.text("order_id")?,
                channel: row.text("channel")?,
                subject: row.text("subject")?,
                body: row.text("body")?,
                created_at_ms: row.int("created_at_ms")?,
            })
        })
        .collect()
}
