//! Orders in SQL: placing one, reading them back, and the two final
//! transitions. Every write that changes what an order is also writes the
//! event reporting it to the outbox, in the same transaction.
use std::collections::HashMap;

use shop_shared::db::{Bindings, Chain, Db, DbError, Row, Writes};
use shop_shared::events::{Envelope, OrderEvent, OrderLine};

use super::model::{CURRENCY, CancelReason, HistoryEntry, Order, Status};
use crate::{ids, outbox};

/// An order about to be placed.
pub struct NewOrder {
    pub id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    pub address_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// The charge's request body, kept until payments has answered it.
    pub charge_request: String,
}

/// The writes that place `order` as PENDING, with its lines and
/// `OrderCreated`, leased to the caller (who runs its saga) until
/// `lease_until_ms`; the caller adds what the checkout learned before
/// placing it and commits them together ([`Db::commit_all`]: one round trip
/// on Postgres). A duplicate idempotency key fails the commit with
/// [`DbError::Duplicate`].
pub fn place(order: &NewOrder, now: i64, lease_until_ms: i64) -> Result<Writes, DbError> {
    let mut writes = Writes::default();
    writes.push(
        "INSERT INTO orders (id, user_id, status, currency, total_cents, address_id, idempotency_key, \
         charge_request, lease_until_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        vec![
            (&order.id).into(),
            (&order.user_id).into(),
            Status::Pending.as_str().into(),
            CURRENCY.into(),
            order.total_cents.into(),
            order.address_id.as_deref().into(),
            order.idempotency_key.as_deref().into(),
            (&order.charge_request).into(),
            lease_until_ms.into(),
            now.into(),
        ],
    );
    insert_lines(&mut writes, &order.id, &order.lines);
    add_history(&mut writes, &order.id, Status::Pending, now, PLACED_NOTE);
    let created = OrderEvent::OrderCreated { lines: order.lines.clone(), total_cents: order.total_cents };
    outbox::enqueue(&mut writes, &event(&order.id, &order.user_id, now, created))?;
    Ok(writes)
}

/// The history note of a placed order.
const PLACED_NOTE: &str = "order placed";

/// `order` as [`place`] writes it, placed at `now`: what reading it back
/// right after would return.
pub fn placed(order: &NewOrder, now: i64) -> Order {
    Order {
        id: order.id.clone(),
        user_id: order.user_id.clone(),
        status: Status::Pending,
        lines: order.lines.clone(),
        total_cents: order.total_cents,
        currency: CURRENCY.to_string(),
        payment_id: None,
        address_id: order.address_id.clone(),
        cancel_reason: None,
        refunded: false,
        created_at_ms: now,
        updated_at_ms: now,
        history: vec![HistoryEntry { status: Status::Pending, at_ms: now, note: PLACED_NOTE.to_string() }],
    }
}

/// The order's lines, numbered from 1, in one statement however many lines
/// there are.
fn insert_lines(writes: &mut Writes, order_id: &str, lines: &[OrderLine]) {
    if lines.is_empty() {
        return;
    }
    let mut sql = Bindings::default();
    let order = sql.bind(order_id);
    let rows = sql.rows((1i64..).zip(lines), |sql, (line_no, line)| {
        vec![
            order.clone(),
            sql.bind(line_no),
            sql.bind(&line.sku),
            sql.bind(&line.name),
            sql.bind(line.quantity),
            sql.bind(line.unit_price_cents),
        ]
    });
    let statement =
        format!("INSERT INTO order_lines (order_id, line_no, sku, name, quantity, unit_price_cents) VALUES {rows}");
    writes.push(statement, sql.params);
}

/// The id of the order `user_id` placed with `idempotency_key`, if any.
pub fn id_for_key(db: &Db, user_id: &str, idempotency_key: &str) -> Result<Option<String>, DbError> {
    let rows = db.query(
        "SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2",
        &[user_id.into(), idempotency_key.into()],
    )?;
    rows.first().map(|row| row.text("id")).transpose()
}

/// An order's columns, of `orders o` (qualified, so that they can be
/// selected beside a joined table's).
const ORDER_COLUMNS: &str = "o.id, o.user_id, o.status, o.currency, o.total_cents, o.payment_id, o.address_id, \
     o.cancel_reason, o.refunded, o.created_at_ms, o.updated_at_ms";

pub fn find(db: &Db, id: &str) -> Result<Option<Order>, DbError> {
    find_with_lines(db, id, None)
}

/// [`find`] for a caller that already holds the order's lines (they never
/// change once it is placed): one query, the order's row joined with its
/// history (a checkout answers with it).
pub fn find_with_lines(db: &Db, id: &str, known_lines: Option<Vec<OrderLine>>) -> Result<Option<Order>, DbError> {
    let rows = db.query(
        &format!(
            "SELECT {ORDER_COLUMNS}, h.status AS history_status, h.at_ms AS history_at_ms, h.note AS history_note \
             FROM orders o LEFT JOIN order_history h ON h.order_id = o.id WHERE o.id = $1 \
             ORDER BY h.at_ms, {HISTORY_TIE_BREAK}"
        ),
        &[id.into()],
    )?;
    let Some(row) = rows.first() else { return Ok(None) };
    let mut order = order(&row)?;
    for row in rows.iter() {
        if row.opt_int("history_at_ms")?.is_some() {
            order.history.push(history_entry(&row, "history_")?);
        }
    }
    order.lines = match known_lines {
        Some(known) => known,
        None => lines(db, id)?,
    };
    Ok(Some(order))
}

/// One page of a user's orders, newest first, and how many they have.
pub fn page_for_user(db: &Db, user_id: &str, limit: i64, offset: i64) -> Result<(Vec<Order>, i64), DbError> {
    let total = db.query("SELECT COUNT(*) AS n FROM orders WHERE user_id = $1", &[user_id.into()])?;
    let total = total.first().map_or(Ok(0), |row| row.int("n"))?;
    let rows = db.query(
        &format!(
            "SELECT {ORDER_COLUMNS} FROM orders o WHERE o.user_id = $1 \
             ORDER BY o.created_at_ms DESC, o.id DESC LIMIT $2 OFFSET $3"
        ),
        &[user_id.into(), limit.into(), offset.into()],
    )?;
    let mut orders: Vec<Order> = rows.iter().map(|row| order(&row)).collect::<Result<_, _>>()?;
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
    let mut lines = lines_of(db, &ids)?;
    let mut history = history(db, &ids)?;
    for order in &mut orders {
        order.lines = lines.remove(&order.id).unwrap_or_default();
        order.history = history.remove(&order.id).unwrap_or_default();
    }
    Ok((orders, total))
}

/// The order's lines, in the order they were placed.
pub fn lines(db: &Db, order_id: &str) -> Result<Vec<OrderLine>, DbError> {
    Ok(lines_of(db, &[order_id.to_string()])?.remove(order_id).unwrap_or_default())
}

fn lines_of(db: &Db, ids: &[String]) -> Result<HashMap<String, Vec<OrderLine>>, DbError> {
    let mut by_order: HashMap<String, Vec<OrderLine>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_order);
    }
    let mut sql = Bindings::default();
    let rows = db.query(
        &format!(
            "SELECT order_id, sku, name, quantity, unit_price_cents FROM order_lines \
             WHERE order_id IN ({}) ORDER BY order_id, line_no",
            sql.list(ids)
        ),
        &sql.params,
    )?;
    for row in rows.iter() {
        let line = OrderLine {
            sku: row.text("sku")?,
            name: row.text("name")?,
            quantity: u32::try_from(row.int("quantity")?).map_err(|_| DbError::Column("quantity".into()))?,
            unit_price_cents: row.int("unit_price_cents")?,
        };
        by_order.entry(row.text("order_id")?).or_default().push(line);
    }
    Ok(by_order)
}

fn history(db: &Db, ids: &[String]) -> Result<HashMap<String, Vec<HistoryEntry>>, DbError> {
    let mut by_order: HashMap<String, Vec<HistoryEntry>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_order);
    }
    let mut sql = Bindings::default();
    let rows = db.query(
        &format!(
            "SELECT order_id, status, at_ms, note FROM order_history h WHERE order_id IN ({}) \
             ORDER BY order_id, at_ms, {HISTORY_TIE_BREAK}",
            sql.list(ids)
        ),
        &sql.params,
    )?;
    for row in rows.iter() {
        by_order.entry(row.text("order_id")?).or_default().push(history_entry(&row, "")?);
    }
    Ok(by_order)
}

/// Orders a history's entries of one millisecond: PENDING comes first even
/// when the order ended within the millisecond it was placed (`h` is
/// `order_history`).
const HISTORY_TIE_BREAK: &str = "CASE h.status WHEN 'PENDING' THEN 0 ELSE 1 END";

/// A history entry, from the columns named `status`, `at_ms` and `note`
/// after `prefix`.
fn history_entry(row: &Row, prefix: &str) -> Result<HistoryEntry, DbError> {
    Ok(HistoryEntry {
        status: Status::parse(&row.text(&format!("{prefix}status"))?)?,
        at_ms: row.int(&format!("{prefix}at_ms"))?,
        note: row.text(&format!("{prefix}note"))?,
    })
}

/// PENDING → CONFIRMED, with `OrderConfirmed`, as the end of `chain`
/// (whose links before are the facts that led here): the order's move is
/// a link, which changes no row if the order is no longer PENDING (another
/// run of its saga finished it first), and its history and event follow
/// it. `user_id` and `total_cents` are the order's, for the event: its
/// saga's, whose lines made the total when it was placed.
pub fn confirm(
    chain: &mut Chain,
    order_id: &str,
    user_id: &str,
    total_cents: i64,
    payment_id: &str,
    now: i64,
) -> Result<(), DbError> {
    chain.link(
        "UPDATE orders SET status = $2, payment_id = $3, charge_request = NULL, updated_at_ms = $4 \
         WHERE id = $1 AND status = $5",
        vec![
            order_id.into(),
            Status::Confirmed.as_str().into(),
            payment_id.into(),
            now.into(),
            Status::Pending.as_str().into(),
        ],
        1,
    );
    add_history(chain.then(), order_id, Status::Confirmed, now, &confirmed_note(payment_id));
    let confirmed = OrderEvent::OrderConfirmed { total_cents, payment_id: payment_id.to_string() };
    outbox::enqueue(chain.then(), &event(order_id, user_id, now, confirmed))
}

fn confirmed_note(payment_id: &str) -> String {
    format!("paid ({payment_id}); stock committed")
}

/// What [`confirm`] makes of `order` (the order as it was read or
/// [`placed`]), so that the run that confirmed it can answer with it
/// without reading it back.
pub fn confirmed(order: &mut Order, payment_id: &str, now: i64) {
    order.status = Status::Confirmed;
    order.payment_id = Some(payment_id.to_string());
    order.updated_at_ms = now;
    order.history.push(HistoryEntry { status: Status::Confirmed, at_ms: now, note: confirmed_note(payment_id) });
}

/// What [`cancel`] makes of `order`, as [`confirmed`].
pub fn cancelled(order: &mut Order, reason: CancelReason, refunded: bool, note: &str, now: i64) {
    order.status = Status::Cancelled;
    order.cancel_reason = Some(reason);
    order.refunded = refunded;
    order.updated_at_ms = now;
    order.history.push(HistoryEntry { status: Status::Cancelled, at_ms: now, note: note.to_string() });
}

/// PENDING → CANCELLED, with `OrderCancelled`, as the end of `chain`, as
/// [`confirm`].
pub fn cancel(
    chain: &mut Chain,
    order_id: &str,
    user_id: &str,
    reason: CancelReason,
    refunded: bool,
    note: &str,
    now: i64,
) -> Result<(), DbError> {
    chain.link(
        "UPDATE orders SET status = $2, cancel_reason = $3, refunded = $4, charge_request = NULL, \
         updated_at_ms = $5 WHERE id = $1 AND status = $6",
        vec![
            order_id.into(),
            Status::Cancelled.as_str().into(),
            reason.as_str().into(),
            refunded.into(),
            now.into(),
            Status::Pending.as_str().into(),
        ],
        1,
    );
    add_history(chain.then(), order_id, Status::Cancelled, now, note);
    let cancelled = OrderEvent::OrderCancelled { reason: reason.as_str().to_string(), refunded };
    outbox::enqueue(chain.then(), &event(order_id, user_id, now, cancelled))
}

/// The history entry's row, as a `SELECT` (see [`Chain::then`]), which
/// also serves among plain [`Writes`].
fn add_history(writes: &mut Writes, order_id: &str, status: Status, at_ms: i64, note: &str) {
    writes.push(
        "INSERT INTO order_history (order_id, status, at_ms, note) SELECT $1, $2, $3, $4",
        vec![order_id.into(), status.as_str().into(), at_ms.into(), note.into()],
    );
}

fn event(order_id: &str, user_id: &str, at_ms: i64, event: OrderEvent) -> Envelope {
    Envelope {
        event_id: ids::event_id(),
        order_id: order_id.to_string(),
        user_id: user_id.to_string(),
        occurred_at_ms: at_ms,
        event,
    }
}

/// An order row, without its lines and history.
fn order(row: &Row) -> Result<Order, DbError> {
    Ok(Order {
        id: row.text("id")?,
        user_id: row.text("user_id")?,
        status: Status::parse(&row.text("status")?)?,
        lines: Vec::new(),
        total_cents: row.int("total_cents")?,
        currency: row.text("currency")?,
        payment_id: row.opt_text("payment_id")?,
        address_id: row.opt_text("address_id")?,
        cancel_reason: row.opt_text("cancel_reason")?.as_deref().map(CancelReason::parse).transpose()?,
        refunded: row.bool("refunded")?,
        created_at_ms: row.int("created_at_ms")?,
        updated_at_ms: row.int("updated_at_ms")?,
        history: Vec::new(),
    })
}
