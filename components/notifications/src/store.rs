//! The notifications database: the events already handled, the messages
//! they produced, and the customers' profiles as the feed from users last
//! told them, in the portable SQL of [`shop_shared::db`].
use serde::Serialize;
use shop_shared::db::{Chain, Db, DbError};
use shop_shared::events::{Envelope, ProfileState};

use crate::messages::Message;

/// Append-only: the N-th entry is migration N.
///
/// 2: `profiles`, what notifications keeps of each customer's profile from
/// users' profile events: the newest revision only.
///
/// 3: a user's messages are listed by when their events happened, not by
/// when they were handled: the bus may hand notifications several events
/// at once (`[message_bus.in_flight]`), which finish in any order.
const MIGRATIONS: &[&str] = &[
    "
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
",
    "
    CREATE TABLE profiles (
        user_id TEXT PRIMARY KEY,
        revision BIGINT NOT NULL,
        name TEXT NOT NULL,
        phone TEXT,
        email_notifications INTEGER NOT NULL,
        sms_notifications INTEGER NOT NULL,
        push_notifications INTEGER NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )
",
    "
    DROP INDEX notifications_by_user;
    CREATE INDEX notifications_by_user_and_time ON notifications (user_id, occurred_at_ms)
",
];

/// Opens the database `database_url` names for this build's schema
/// (`Db::for_service`: migrated first on SQLite, checked by the first
/// statement on Postgres).
pub fn open() -> Result<Db, DbError> {
    Db::for_service(MIGRATIONS)
}

/// Marks `event` handled and writes its messages, in one transaction, unless
/// it was handled already: the event's primary key decides, so two
/// deliveries racing each other write the messages once. Returns whether
/// this call wrote them.
///
/// A chain ([`Chain`]): on Postgres one statement (one round trip, where
/// `BEGIN`, the two inserts and `COMMIT` took three), each message an
/// insert that runs only if the event's row was new.
pub fn record(db: &Db, event: &Envelope, messages: &[Message], now_ms: i64) -> Result<bool, DbError> {
    let mut chain = Chain::default();
    chain.link(
        "INSERT INTO handled_events (event_id, event_type, order_id, user_id, handled_at_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        vec![
            (&event.event_id).into(),
            event.kind().into(),
            (&event.order_id).into(),
            (&event.user_id).into(),
            now_ms.into(),
        ],
        1,
    );
    for message in messages {
        chain.then().push(
            "INSERT INTO notifications (id, event_id, user_id, order_id, channel, subject, body, occurred_at_ms, \
             created_at_ms) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9",
            vec![
                format!("ntf_{}", uuid::Uuid::new_v4().simple()).into(),
                (&event.event_id).into(),
                (&event.user_id).into(),
                (&event.order_id).into(),
                message.channel.as_str().into(),
                (&message.subject).into(),
                (&message.body).into(),
                event.occurred_at_ms.into(),
                now_ms.into(),
            ],
        );
    }
    db.commit_chain(chain)
}

/// Keeps `profile` unless a revision as new or newer is kept already (one
/// statement, so two deliveries racing each other cannot put an older
/// revision over a newer one). Returns whether it was kept.
pub fn keep_profile(db: &Db, profile: &ProfileState, now_ms: i64) -> Result<bool, DbError> {
    let changed = db.execute(
        "INSERT INTO profiles (user_id, revision, name, phone, email_notifications, sms_notifications, \
         push_notifications, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (user_id) DO UPDATE SET revision = excluded.revision, name = excluded.name, \
         phone = excluded.phone, email_notifications = excluded.email_notifications, \
         sms_notifications = excluded.sms_notifications, push_notifications = excluded.push_notifications, \
         updated_at_ms = excluded.updated_at_ms WHERE profiles.revision < excluded.revision",
        &[
            (&profile.user_id).into(),
            profile.revision.into(),
            (&profile.name).into(),
            profile.phone.as_ref().into(),
            profile.email_notifications.into(),
            profile.sms_notifications.into(),
            profile.push_notifications.into(),
            now_ms.into(),
        ],
    )?;
    Ok(changed == 1)
}

/// The profile of `user_id` as last kept, if the feed told of it.
pub fn profile(db: &Db, user_id: &str) -> Result<Option<ProfileState>, DbError> {
    let rows = db.query(
        "SELECT user_id, revision, name, phone, email_notifications, sms_notifications, push_notifications \
         FROM profiles WHERE user_id = $1",
        &[user_id.into()],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(ProfileState {
        user_id: row.text("user_id")?,
        revision: row.int("revision")?,
        name: row.text("name")?,
        phone: row.opt_text("phone")?,
        email_notifications: row.bool("email_notifications")?,
        sms_notifications: row.bool("sms_notifications")?,
        push_notifications: row.bool("push_notifications")?,
    }))
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

/// A user's newest `limit` messages, newest first: by when their events
/// happened (events handled at once may finish in any order), then by when
/// they were written, the event and the channel, so the order is stable.
pub fn of_user(db: &Db, user_id: &str, limit: i64) -> Result<Vec<Notification>, DbError> {
    let rows = db.query(
        "SELECT id, event_id, order_id, channel, subject, body, created_at_ms FROM notifications
         WHERE user_id = $1 ORDER BY occurred_at_ms DESC, created_at_ms DESC, event_id DESC, channel LIMIT $2",
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
