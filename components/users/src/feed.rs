//! The profile feed: every change to a profile reaches the bus as the
//! profile's new state ([`UserEvent::ProfileChanged`]) on channel `users`,
//! where notifications keeps what it needs of each profile instead of
//! asking users once per order event.
//!
//! The profile row is its own outbox. A change raises the row's `revision`
//! in the statement that makes it, so a change is due to the feed if and
//! only if it committed, with no table or transaction of its own. [`relay`]
//! publishes every profile whose `published_revision` is behind, with the
//! state it reads then (the newest: several changes in a row go as one
//! event), and then moves `published_revision` up to the revision it
//! published. A failure leaves the profile due for the next relay, which
//! runs after every change (once the response has been sent, [`relay_if_due`])
//! and on `POST /internal/feed/relay`.
//!
//! Delivery is at least once, and two relays at once may publish the same
//! revision twice: the consumer keeps the highest revision it has seen, so
//! neither a repeat nor an older revision arriving late undoes a newer one.
//!
//! users publishes only when its manifest gives it a bus (the `bus_address`
//! variable): an app without the feed's consumer needs none, and its
//! profiles stay due until it has one.
use std::cell::Cell;

use serde::Serialize;
use shop_shared::db::{Db, DbError};
use shop_shared::events::{ProfileState, USERS_CHANNEL, UserEvent};
use spin_sdk::redis::Connection;
use spin_sdk::variables;

/// Profiles published per query: bounds memory, not the relay.
const BATCH: i64 = 100;
/// Most rounds (a batch each) one relay runs: a backlog beyond that (the
/// first relay after the migration that added the feed, on a large shop)
/// is left to the next relay rather than holding one request's instance.
const MAX_ROUNDS: usize = 10;

/// What a relay did.
#[derive(Debug, Default, Serialize)]
pub struct Relayed {
    pub published: u64,
    /// Profiles still due after it.
    pub pending: i64,
    /// Why publishing stopped, if it did.
    pub error: Option<String>,
}

/// Publishes the profiles that are due, a batch a round, stopping at the
/// first failure, when none are left, or after [`MAX_ROUNDS`]; then counts
/// those still due.
pub fn relay(db: &Db) -> Result<Relayed, DbError> {
    let mut relayed = match bus_address() {
        None => Relayed { error: Some("users has no bus: give it the `bus_address` variable".into()), ..Relayed::default() },
        Some(address) => publish_due(db, &address)?,
    };
    relayed.pending = pending(db)?;
    Ok(relayed)
}

/// The rounds of [`relay`] to the bus at `address`, without the count
/// after (the relay after a change counts only when it has an error to
/// report).
fn publish_due(db: &Db, address: &str) -> Result<Relayed, DbError> {
    let mut relayed = Relayed::default();
    let bus = match Connection::open(address) {
        Ok(bus) => bus,
        Err(e) => {
            relayed.error = Some(format!("connecting to the bus at {address}: {e}"));
            return Ok(relayed);
        }
    };
    for _ in 0..MAX_ROUNDS {
        let (published, more) = publish_round(db, &bus, &mut relayed)?;
        relayed.published += published;
        if !more || relayed.error.is_some() {
            break;
        }
    }
    Ok(relayed)
}

/// Publishes one batch of due profiles; returns how many it published and
/// whether a full batch was found (so more may be due).
fn publish_round(db: &Db, bus: &Connection, relayed: &mut Relayed) -> Result<(u64, bool), DbError> {
    let rows = db.query(
        "SELECT user_id, revision, name, phone, email_notifications, sms_notifications, push_notifications \
         FROM profiles WHERE published_revision < revision ORDER BY user_id LIMIT $1",
        &[BATCH.into()],
    )?;
    let mut published = 0;
    for row in rows.iter() {
        let state = ProfileState {
            user_id: row.text("user_id")?,
            revision: row.int("revision")?,
            name: row.text("name")?,
            phone: row.opt_text("phone")?,
            email_notifications: row.bool("email_notifications")?,
            sms_notifications: row.bool("sms_notifications")?,
            push_notifications: row.bool("push_notifications")?,
        };
        let payload = serde_json::to_vec(&UserEvent::ProfileChanged(state.clone()))
            .map_err(|e| DbError::Query(format!("encoding a profile event: {e}")))?;
        if let Err(e) = bus.publish(USERS_CHANNEL, &payload) {
            relayed.error = Some(format!("publishing the profile of {} to the bus: {e}", state.user_id));
            break;
        }
        // Only ever up: a relay that read an older revision and publishes
        // after a newer one's relay leaves the newer mark.
        db.execute(
            "UPDATE profiles SET published_revision = $2 WHERE user_id = $1 AND published_revision < $2",
            &[(&state.user_id).into(), state.revision.into()],
        )?;
        published += 1;
    }
    Ok((published, rows.len() as i64 == BATCH))
}

fn pending(db: &Db) -> Result<i64, DbError> {
    let rows = db.query("SELECT COUNT(*) AS n FROM profiles WHERE published_revision < revision", &[])?;
    rows.first().map_or(Ok(0), |row| row.int("n"))
}

/// The bus's address, if the manifest gives users one.
fn bus_address() -> Option<String> {
    match variables::get("bus_address") {
        Ok(address) if !address.trim().is_empty() => Some(address),
        _ => None,
    }
}

thread_local! {
    /// Whether this request changed a profile; an instance serves one
    /// request, so the flag is that request's.
    static DUE: Cell<bool> = const { Cell::new(false) };
}

/// Marks a relay due after a profile changed; the request's handler runs it
/// with [`relay_if_due`] once its response has been sent.
pub fn relay_after_change() {
    DUE.with(|due| due.set(true));
}

/// Runs the relay [`relay_after_change`] marked due, if any. The change has
/// committed whatever happens here, so a failure is only logged: the
/// profile stays due for the next relay.
pub fn relay_if_due() {
    if !DUE.with(|due| due.replace(false)) {
        return;
    }
    let Some(address) = bus_address() else {
        return;
    };
    let db = match crate::schema::open() {
        Ok(db) => db,
        Err(e) => return eprintln!("users: profile feed failed: {}", e.message),
    };
    match publish_due(&db, &address) {
        Ok(Relayed { error: Some(error), .. }) => {
            let pending = pending(&db).map_or_else(|e| format!("? ({e})"), |n| n.to_string());
            eprintln!("users: profile feed stopped with {pending} profile(s) due: {error}");
        }
        Ok(_) => {}
        Err(e) => eprintln!("users: profile feed failed: {e}"),
    }
}
