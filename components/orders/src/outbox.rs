//! The transactional outbox: how an order event reaches the bus if, and
//! only if, the change it reports committed.
//!
//! An event is written as a row of the `outbox` table inside the
//! transaction that makes the change ([`enqueue`]), so it exists if and only
//! if the change does. [`relay`] then publishes pending rows, oldest first,
//! with Spin's Redis `publish` to the bus, and marks a row sent only after
//! its publish succeeded; a failure leaves it (and everything after it)
//! pending for the next relay, which runs after every state change and on
//! `POST /internal/outbox/relay`. Delivery is therefore at least once (a
//! crash between publish and mark sends a row again): consumers deduplicate
//! on `event_id`.
//!
//! The relay after a state change runs once the response has been sent
//! ([`relay_after_change`] only marks it due, [`relay_if_due`] runs it):
//! the caller's answer does not wait on the bus, and the events were
//! committed before the answer either way. That relay does not end while
//! the events its own request wrote are pending and another relay holds the
//! outbox: it waits (up to [`HANDOFF_WAIT_MS`]) until the holder has sent
//! them or has let go, and then sends them itself. Leaving them to the
//! holder was not enough: a holder stops after [`MAX_ROUNDS`], and when the
//! traffic stopped with it, nothing relayed the rows written meanwhile (a
//! benchmark left 128 events unsent). An instance stopped before it relays
//! leaves the rows pending for the next relay, as a failure does.
use std::cell::{Cell, RefCell};
use std::time::Duration;

use serde::Serialize;
use shop_shared::db::{Bindings, Db, DbError, Writes};
use shop_shared::events::{Envelope, ORDERS_CHANNEL, OrderEvent};
use spin_sdk::redis::Connection;

use crate::clock::now_ms;
use crate::ids;

/// Where the bus is when the `bus_address` variable does not say.
const DEFAULT_BUS_ADDRESS: &str = "redis://127.0.0.1:6379";
/// Rows published per query: bounds memory, not the relay.
const BATCH: i64 = 100;

/// Adds `event`'s row to `writes`, the writes of the change it reports,
/// which commit together. The row is a `SELECT`, so it may also follow a
/// [`shop_shared::db::Chain`].
pub fn enqueue(writes: &mut Writes, event: &Envelope) -> Result<(), DbError> {
    let payload = serde_json::to_string(event).map_err(|e| DbError::Query(format!("encoding an event: {e}")))?;
    writes.push(
        "INSERT INTO outbox (event_id, order_id, seq, kind, payload, created_at_ms) SELECT $1, $2, $3, $4, $5, $6",
        vec![
            (&event.event_id).into(),
            (&event.order_id).into(),
            seq(&event.event).into(),
            event.kind().into(),
            payload.into(),
            event.occurred_at_ms.into(),
        ],
    );
    WRITTEN.with(|written| written.borrow_mut().push(event.event_id.clone()));
    Ok(())
}

/// An event's place among its order's events, which break ties between
/// events written in the same millisecond: an order is created first, then
/// has its one outcome.
fn seq(event: &OrderEvent) -> i64 {
    match event {
        OrderEvent::OrderCreated { .. } => 1,
        OrderEvent::OrderConfirmed { .. } | OrderEvent::OrderCancelled { .. } => 2,
    }
}

/// What a relay did.
#[derive(Debug, Default, Serialize)]
pub struct Relayed {
    pub published: u64,
    /// Rows still waiting (after a failure, at least the one that failed).
    pub pending: i64,
    /// Why publishing stopped, if it did.
    pub error: Option<String>,
    /// Whether the relay found nothing pending after its last round, so
    /// every row written before it was sent.
    #[serde(skip)]
    drained: bool,
}

/// How long one relay may hold the outbox: far above the time it takes to
/// publish a backlog; a relay that died holding it is taken over after this.
const RELAY_LEASE_MS: i64 = 30_000;

/// Most rounds (a batch each) one relay runs. Under steady load new rows
/// keep arriving while a relay works, and the others leave them to it: an
/// unbounded relay made one unlucky checkout the shop's relay for its whole
/// deadline (a checkout timed out after 30 s at 64 clients). A backlog
/// beyond this is left to the next relay.
const MAX_ROUNDS: usize = 10;

/// Publishes pending rows in order, a batch a round, stopping at the first
/// failure, when none are left, or after [`MAX_ROUNDS`]; then counts the
/// rows still pending.
pub fn relay(db: &Db) -> Result<Relayed, DbError> {
    let mut relayed = publish_rounds(db)?;
    relayed.pending = pending(db)?;
    Ok(relayed)
}

/// The rounds of [`relay`], without the count after.
///
/// One relay runs at a time (a lease on the `outbox_relay` row), so
/// concurrent state changes neither publish a row twice nor reorder rows. A
/// relay that finds the lease held returns having published nothing; the
/// holder looks for pending rows again as it lets go of the lease, and the
/// relay after a change waits for its own rows ([`relay_if_due`]).
///
/// The lease is let go in the transaction that marks the last round's rows
/// sent, if no other row is pending then (see [`mark_sent`]); otherwise the
/// relay keeps it for its next round. A relay of one round is so two writes
/// (take the lease; mark sent and let go), where taking, marking, letting go
/// and looking again were three writes and a read.
fn publish_rounds(db: &Db) -> Result<Relayed, DbError> {
    let mut relayed = Relayed::default();
    let holder = ids::token();
    if !lock_if_pending(db, &holder)? {
        return Ok(relayed);
    }
    let mut held = true;
    let mut rounds = 0;
    while held && rounds < MAX_ROUNDS && relayed.error.is_none() {
        rounds += 1;
        let round = match Connection::open(&bus_address()) {
            Ok(bus) => publish_pending(db, &bus, &holder, &mut relayed),
            Err(e) => {
                relayed.error = Some(format!("connecting to the bus: {e}"));
                Ok(true)
            }
        };
        // A round the database failed lets go of the lease before it
        // reports: the next relay need not wait for the lease to run out.
        held = match round {
            Ok(held) => held,
            Err(e) => {
                unlock(db, &holder)?;
                return Err(e);
            }
        };
        relayed.drained = !held;
    }
    if held {
        unlock(db, &holder)?;
    }
    Ok(relayed)
}

/// Takes the relay lease if a row is pending and nobody holds the lease (or
/// its holder's ran out): one statement, where a count and then a take
/// were two round trips of every relay.
fn lock_if_pending(db: &Db, holder: &str) -> Result<bool, DbError> {
    let now = now_ms();
    let taken = db.execute(
        "UPDATE outbox_relay SET holder = $1, locked_until_ms = $2 WHERE name = 'relay' AND locked_until_ms < $3 \
         AND EXISTS (SELECT 1 FROM outbox WHERE sent_at_ms IS NULL)",
        &[holder.into(), (now + RELAY_LEASE_MS).into(), now.into()],
    )?;
    Ok(taken == 1)
}

fn unlock(db: &Db, holder: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE outbox_relay SET holder = NULL, locked_until_ms = 0 WHERE name = 'relay' AND holder = $1",
        &[holder.into()],
    )?;
    Ok(())
}

/// Publishes the oldest batch of pending rows; whether the relay still
/// holds the lease after (it lets go once nothing is pending).
fn publish_pending(db: &Db, bus: &Connection, holder: &str, relayed: &mut Relayed) -> Result<bool, DbError> {
    let rows = db.query(
        "SELECT event_id, payload FROM outbox WHERE sent_at_ms IS NULL \
         ORDER BY created_at_ms, order_id, seq LIMIT $1",
        &[BATCH.into()],
    )?;
    // The rows published are marked sent together, in one statement:
    // a crash before it publishes them again, which at-least-once allows.
    let mut sent = Vec::new();
    let mut failure = None;
    for row in rows.iter() {
        let event_id = row.text("event_id")?;
        let payload = row.text("payload")?.into_bytes();
        if let Err(e) = bus.publish(ORDERS_CHANNEL, &payload) {
            failure = Some((event_id, format!("publishing to the bus: {e}")));
            break;
        }
        sent.push(event_id);
    }
    // A round stopped by a failure keeps the lease; the relay lets it go as
    // it stops.
    let released = mark_sent(db, &sent, failure.is_none().then_some(holder))?;
    relayed.published += sent.len() as u64;
    let Some((event_id, error)) = failure else { return Ok(!released) };
    db.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE event_id = $1",
        &[(&event_id).into(), (&error).into()],
    )?;
    relayed.error = Some(error);
    Ok(true)
}

/// Marks `event_ids` sent and, with `release`, lets go of that holder's
/// lease if no other row is pending: one transaction (one statement on
/// Postgres). Whether the lease was let go. The check names the rows it
/// marks, since on Postgres both writes see the table as it was before
/// the statement.
fn mark_sent(db: &Db, event_ids: &[String], release: Option<&str>) -> Result<bool, DbError> {
    let mut writes = Writes::default();
    if !event_ids.is_empty() {
        let mut sql = Bindings::default();
        let now = sql.bind(now_ms());
        let ids = sql.list(event_ids);
        writes.push(format!("UPDATE outbox SET sent_at_ms = {now} WHERE event_id IN ({ids})"), sql.params);
    }
    if let Some(holder) = release {
        let mut sql = Bindings::default();
        let holder = sql.bind(holder);
        let others = if event_ids.is_empty() { String::new() } else { format!(" AND event_id NOT IN ({})", sql.list(event_ids)) };
        writes.push(
            format!(
                "UPDATE outbox_relay SET holder = NULL, locked_until_ms = 0 WHERE name = 'relay' AND holder = {holder} \
                 AND NOT EXISTS (SELECT 1 FROM outbox WHERE sent_at_ms IS NULL{others})"
            ),
            sql.params,
        );
    }
    if writes.is_empty() {
        return Ok(false);
    }
    let counts = db.commit_each(writes)?;
    Ok(release.is_some() && counts.last() == Some(&1))
}

fn pending(db: &Db) -> Result<i64, DbError> {
    let rows = db.query("SELECT COUNT(*) AS n FROM outbox WHERE sent_at_ms IS NULL", &[])?;
    rows.first().map_or(Ok(0), |row| row.int("n"))
}

thread_local! {
    /// Whether this request changed an order; an instance serves one
    /// request, so the flag is that request's.
    static DUE: Cell<bool> = const { Cell::new(false) };
    /// The events this request wrote to the outbox (those of a transaction
    /// that rolled back too: they are not in the outbox, so never pending).
    static WRITTEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// How long the relay after a change waits for the events its request
/// wrote while another relay holds the outbox: far above a holder's
/// [`MAX_ROUNDS`] (milliseconds each), far below the host's request
/// timeout. Only a holder that died holding the lease makes it run out; the
/// rows then wait for the next relay after the lease's end.
const HANDOFF_WAIT_MS: i64 = 5_000;
/// How often a waiting relay looks again: about one round of the holder.
const HANDOFF_POLL: Duration = Duration::from_millis(10);

/// Marks a relay due after a state change; the request's handler runs it
/// with [`relay_if_due`] once its response has been sent. Several changes in
/// one request (a resume finishing many sagas) make one relay.
pub fn relay_after_change() {
    DUE.with(|due| due.set(true));
}

/// Whether a relay is due (see [`relay_after_change`]).
pub fn relay_due() -> bool {
    DUE.with(Cell::get)
}

/// Runs the relay [`relay_after_change`] marked due, if any: the change has
/// committed whatever happens here, so a failure is only logged (the rows
/// stay pending).
pub fn relay_if_due(db: &Db) {
    if DUE.with(|due| due.replace(false)) {
        let written = WRITTEN.with(RefCell::take);
        if let Err(e) = relay_until_sent(db, &written) {
            eprintln!("orders: outbox relay failed: {e}");
        }
    }
}

/// Relays until none of `written` is pending: taking the lease whenever it
/// is free, waiting while another relay holds it. Gives up on a bus error
/// (the rows stay pending, their failure written down) or after
/// [`HANDOFF_WAIT_MS`].
fn relay_until_sent(db: &Db, written: &[String]) -> Result<(), DbError> {
    let deadline = now_ms() + HANDOFF_WAIT_MS;
    loop {
        let relayed = publish_rounds(db)?;
        if let Some(error) = relayed.error {
            eprintln!("orders: outbox relay stopped with {} event(s) pending: {error}", pending(db)?);
            return Ok(());
        }
        if relayed.drained {
            return Ok(());
        }
        let unsent = still_pending(db, written)?;
        if unsent == 0 {
            return Ok(());
        }
        if now_ms() >= deadline {
            eprintln!(
                "orders: {unsent} event(s) of this request left in the outbox: another relay held it for \
                 {HANDOFF_WAIT_MS} ms (the next relay after its lease ends sends them)"
            );
            return Ok(());
        }
        std::thread::sleep(HANDOFF_POLL);
        // The holder may have sent them meanwhile: a read, where taking the
        // lease is a write.
        if still_pending(db, written)? == 0 {
            return Ok(());
        }
    }
}

/// How many of `event_ids` are pending.
fn still_pending(db: &Db, event_ids: &[String]) -> Result<i64, DbError> {
    if event_ids.is_empty() {
        return Ok(0);
    }
    let mut sql = Bindings::default();
    let ids = sql.list(event_ids);
    let rows = db.query(&format!("SELECT COUNT(*) AS n FROM outbox WHERE sent_at_ms IS NULL AND event_id IN ({ids})"), &sql.params)?;
    rows.first().map_or(Ok(0), |row| row.int("n"))
}

/// The bus's address: the `bus_address` variable, or the local default.
fn bus_address() -> String {
    spin_sdk::variables::get("bus_address")
        .ok()
        .filter(|address| !address.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BUS_ADDRESS.to_string())
}
