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
//! committed before the answer either way. That relay publishes the
//! pending events of the orders its request changed, with no lease:
//! concurrent checkouts publish at once, and the bus stores overlapping
//! publishes in one commit. It takes along events that an earlier relay
//! left pending (a failure, an instance stopped) for [`STALE_AFTER_MS`].
//! Two relays may then publish the same event, which at-least-once allows.
//! (Relays that waited for one lease holder to publish everything, one
//! sync per message, held the bus to about 400 messages a second: with 16
//! customers checking out, events waited 1.5 s in the outbox and a hundred
//! instances polled for the lease meanwhile.)
use std::cell::{Cell, RefCell};

use serde::Serialize;
use shop_shared::db::{Bindings, Db, DbError, Row, Writes};
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
    WRITTEN.with(|written| {
        let mut written = written.borrow_mut();
        if !written.contains(&event.order_id) {
            written.push(event.order_id.clone());
        }
    });
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
/// One such relay runs at a time (a lease on the `outbox_relay` row), so
/// that sweeping a backlog neither publishes it twice nor reorders it. A
/// relay that finds the lease held returns having published nothing; the
/// holder looks for pending rows again as it lets go of the lease. (The
/// relay after a change takes no lease: see [`relay_if_due`].)
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
    let (sent, failure) = publish_rows(bus, rows.iter())?;
    // A round stopped by a failure keeps the lease; the relay lets it go as
    // it stops.
    let released = mark_sent(db, &sent, failure.is_none().then_some(holder))?;
    relayed.published += sent.len() as u64;
    let Some((event_id, error)) = failure else { return Ok(!released) };
    record_failure(db, &event_id, &error)?;
    relayed.error = Some(error);
    Ok(true)
}

/// Publishes `rows` (`event_id`, `payload`) in order, stopping at the first
/// failure: the ids published, and the failed one with its error. The rows
/// published are then marked sent together, in one statement: a crash
/// before it publishes them again, which at-least-once allows.
fn publish_rows<'a>(
    bus: &Connection,
    rows: impl IntoIterator<Item = Row<'a>>,
) -> Result<(Vec<String>, Option<(String, String)>), DbError> {
    let mut sent = Vec::new();
    for row in rows {
        let event_id = row.text("event_id")?;
        let payload = row.text("payload")?.into_bytes();
        if let Err(e) = bus.publish(ORDERS_CHANNEL, &payload) {
            return Ok((sent, Some((event_id, format!("publishing to the bus: {e}")))));
        }
        sent.push(event_id);
    }
    Ok((sent, None))
}

/// Writes down a failed publish on its row, which stays pending.
fn record_failure(db: &Db, event_id: &str, error: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE event_id = $1",
        &[event_id.into(), error.into()],
    )?;
    Ok(())
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
    /// The orders whose events this request wrote to the outbox (those of
    /// a transaction that rolled back too: their rows are not there).
    static WRITTEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// How long an event stays pending before any relay after a change takes
/// it along: far above the milliseconds a relay takes, so that it is one
/// an earlier relay failed or left, not one being published right now.
const STALE_AFTER_MS: i64 = 2_000;

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
/// stay pending, and a later relay takes them along).
pub fn relay_if_due(db: &Db) {
    if DUE.with(|due| due.replace(false)) {
        let orders = WRITTEN.with(RefCell::take);
        if let Err(e) = relay_changed(db, &orders) {
            eprintln!("orders: outbox relay failed: {e}");
        }
    }
}

/// Publishes every pending event of `order_ids` (a request changes a
/// bounded number of orders: a resume at most 20), in order, then up to
/// [`BATCH`] of those pending for [`STALE_AFTER_MS`], with no lease;
/// marks them sent in one statement. A failure stops it and is
/// written down on its row.
fn relay_changed(db: &Db, order_ids: &[String]) -> Result<(), DbError> {
    let mut sql = Bindings::default();
    let stale = sql.bind(now_ms() - STALE_AFTER_MS);
    let limit = sql.bind(BATCH);
    // Two index scans (see the schema's second migration): the orders' own
    // rows by order, sent or not, every one, and up to `BATCH` stale rows in
    // the order they were written. The first leaves "not sent" out of its
    // condition, which would let the planner walk the pending index (dead
    // entries and all) instead; the sent ones are skipped below. An order's
    // events all sort before other orders' stale ones, so each order's
    // events go out in their order, whoever's they are.
    let stale_rows = |others: &str| {
        format!(
            "SELECT 1 AS rank, event_id, payload, created_at_ms, order_id, seq, sent_at_ms FROM outbox \
             WHERE sent_at_ms IS NULL AND created_at_ms < {stale}{others} ORDER BY created_at_ms, order_id, seq LIMIT {limit}"
        )
    };
    let query = if order_ids.is_empty() {
        stale_rows("")
    } else {
        let ids = sql.list(order_ids);
        format!(
            "SELECT event_id, payload, sent_at_ms FROM ( \
               SELECT 0 AS rank, event_id, payload, created_at_ms, order_id, seq, sent_at_ms FROM outbox \
               WHERE order_id IN ({ids}) \
               UNION ALL SELECT * FROM ({}) AS stale \
             ) AS due ORDER BY rank, created_at_ms, order_id, seq",
            stale_rows(&format!(" AND order_id NOT IN ({ids})"))
        )
    };
    let rows = db.query(&query, &sql.params)?;
    let pending: Vec<Row<'_>> = rows.iter().filter(|row| matches!(row.opt_int("sent_at_ms"), Ok(None))).collect();
    if pending.is_empty() {
        return Ok(());
    }
    let bus = match Connection::open(&bus_address()) {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("orders: {} event(s) left in the outbox: connecting to the bus: {e}", pending.len());
            return Ok(());
        }
    };
    let count = pending.len();
    let (sent, failure) = publish_rows(&bus, pending)?;
    mark_sent(db, &sent, None)?;
    if let Some((event_id, error)) = failure {
        record_failure(db, &event_id, &error)?;
        eprintln!("orders: outbox relay stopped with {} event(s) pending: {error}", count - sent.len());
    }
    Ok(())
}

/// The bus's address: the `bus_address` variable, or the local default.
fn bus_address() -> String {
    spin_sdk::variables::get("bus_address")
        .ok()
        .filter(|address| !address.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BUS_ADDRESS.to_string())
}
