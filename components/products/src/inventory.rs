//! Inventory in SQL: units available per SKU, and the reservations orders
//! hold on them.
//!
//! A reservation takes its units out of `stock` at once (all lines or
//! none); committing it turns them into a sale, releasing it gives them
//! back. Every step is idempotent per order id: a reservation is one row
//! keyed by the order, which remembers the first answer given for it.
use serde::{Deserialize, Serialize};
use shop_shared::api::ApiError;
use shop_shared::db::{Bindings, Chain, Db, DbError, Writes};

use crate::database::now_ms;
use crate::stock_request::StockLine;

/// A line that cannot be had: how many were asked for, how many there are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: String,
    pub requested: i64,
    pub in_stock: i64,
}

/// Where an order's reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Units taken from stock, held for the order.
    Reserved,
    /// Refused for want of stock: nothing was taken.
    Rejected,
    /// Sold: the units will not come back.
    Committed,
    /// Given back (or released before anything was reserved).
    Released,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "reserved",
            Status::Rejected => "rejected",
            Status::Committed => "committed",
            Status::Released => "released",
        }
    }

    fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "reserved" => Ok(Status::Reserved),
            "rejected" => Ok(Status::Rejected),
            "committed" => Ok(Status::Committed),
            "released" => Ok(Status::Released),
            other => Err(DbError::Query(format!("unknown reservation status {other:?}"))),
        }
    }
}

/// The answer to a reservation request: whether the units were reserved
/// (the first answer, however often asked), what was short if not, and
/// where the reservation stands now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub order_id: String,
    pub reserved: bool,
    pub status: Status,
    pub short: Vec<Shortage>,
}

/// A product as a checkout prices it: its name and price now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Priced {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
}

/// What a check found: those of the asked SKUs the catalog sells, at their
/// name and price now (in the lines' order), and the lines that cannot be
/// had now. A checkout prices its order and checks its stock with one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub products: Vec<Priced>,
    pub short: Vec<Shortage>,
}

/// Prices the lines and finds which cannot be had now (nothing is taken).
/// A SKU the catalog does not sell has nothing in stock.
pub fn check(db: &Db, lines: &[StockLine]) -> Result<Check, DbError> {
    let mut sql = Bindings::default();
    let rows = db.query(
        &format!(
            "SELECT p.sku, p.name, p.price_cents, COALESCE(s.quantity, 0) AS quantity \
             FROM products p LEFT JOIN stock s ON s.sku = p.sku WHERE p.sku IN ({})",
            sql.list(lines.iter().map(|line| &line.sku))
        ),
        &sql.params,
    )?;
    let mut check = Check { products: Vec::new(), short: Vec::new() };
    for line in lines {
        let in_stock = match rows.iter().find(|row| row.text("sku").is_ok_and(|sku| sku == line.sku)) {
            Some(row) => {
                check.products.push(Priced { sku: line.sku.clone(), name: row.text("name")?, price_cents: row.int("price_cents")? });
                row.int("quantity")?
            }
            None => 0,
        };
        if in_stock < line.quantity {
            check.short.push(Shortage { sku: line.sku.clone(), requested: line.quantity, in_stock });
        }
    }
    Ok(check)
}

/// A granted reservation's row for order `$1` with status `$2` at `$3`,
/// unless the order has one already (then it changes no row).
const NEW_RESERVATION: &str = "INSERT INTO reservations (order_id, status, granted, short_json, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, 1, NULL, $3, $3) ON CONFLICT (order_id) DO NOTHING";

/// Takes `$1` units of SKU `$2` if that many are in stock (else it changes
/// no row): the one conditional UPDATE that keeps two orders from both
/// getting the last unit.
const TAKE_UNITS: &str = "UPDATE stock SET quantity = quantity - $1 WHERE sku = $2 AND quantity >= $1";

/// What a reservation request asks for once the units are had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Hold them for the order until it commits or releases them.
    Hold,
    /// Sell them at once: reserve and commit in one step, for a checkout
    /// whose payment is already captured (nothing is left to wait for
    /// between the two, and one call and one transaction do both).
    Sell,
}

/// Reserves every line for `order_id`, or nothing if any is short; with
/// [`Then::Sell`], the units are sold in the same transaction.
///
/// The first call decides; later calls for the same order answer as it did
/// (a 422 if they ask for other items), except that a sale asked for a
/// reservation still held commits it. Each line's units are taken with
/// one conditional UPDATE, so two orders racing for the last unit cannot
/// both get it: the database lets one decrement through and the other
/// finds `quantity >= n` false.
pub fn reserve(db: &Db, order_id: &str, lines: &[StockLine], then: Then) -> Result<Reservation, ApiError> {
    let granted = match then {
        Then::Hold => Status::Reserved,
        Then::Sell => Status::Committed,
    };
    if reserve_at_once(db, order_id, lines, granted)? {
        return Ok(Reservation { order_id: order_id.to_string(), reserved: true, status: granted, short: Vec::new() });
    }
    let made = db.transaction(|db| {
        // The reservation row first. It is a write, so on SQLite this
        // transaction holds the write lock from its first statement (it has
        // no read snapshot that another writer could make stale), and on
        // Postgres a concurrent call for the same order waits here until
        // this one commits, then finds the row.
        let now = now_ms();
        let new = db.execute(
            NEW_RESERVATION,
            &[order_id.into(), granted.as_str().into(), now.into()],
        )?;
        if new == 0 {
            return Ok::<_, DbError>(None);
        }
        let short = take_stock(db, lines, lines_row(order_id, lines))?;
        if !short.is_empty() {
            let short_json = serde_json::to_string(&short).map_err(|e| DbError::Query(e.to_string()))?;
            db.execute(
                "UPDATE reservations SET status = $2, granted = 0, short_json = $3 WHERE order_id = $1",
                &[order_id.into(), Status::Rejected.as_str().into(), short_json.into()],
            )?;
        }
        let status = if short.is_empty() { granted } else { Status::Rejected };
        Ok(Some(Reservation { order_id: order_id.to_string(), reserved: short.is_empty(), status, short }))
    })?;
    if let Some(reservation) = made {
        return Ok(reservation);
    }
    let (reservation, reserved_lines) =
        load(db, order_id)?.ok_or_else(|| ApiError::internal("the reservation that refused a new one is gone"))?;
    // Released before it was ever made, a reservation has no lines, and
    // any request for it is refused as it stands.
    if !reserved_lines.is_empty() && reserved_lines != lines {
        return Err(ApiError::new(
            422,
            "order_id_reused",
            format!("order {order_id} already has a reservation for other items"),
        ));
    }
    if then == Then::Sell && reservation.status == Status::Reserved {
        // Held by an earlier request (a saga from before sales were one
        // step): sold now, as a commit would.
        let status = commit(db, order_id)?;
        return Ok(Reservation { status, ..reservation });
    }
    Ok(reservation)
}

/// The common case, a new reservation whose every line is in stock, as one
/// whole chain ([`Chain::whole`]: one statement on Postgres, where `BEGIN`,
/// the reservation, the lines with the first decrement, any further
/// decrements and `COMMIT` took three round trips or more): the
/// reservation's row, each line's conditional decrement (in the lines'
/// order, as [`take_stock`]), then the lines. `false` when the order has a
/// reservation already or a line is short: nothing was written, and the
/// caller's transaction sorts out which and answers as it always did.
fn reserve_at_once(db: &Db, order_id: &str, lines: &[StockLine], granted: Status) -> Result<bool, DbError> {
    let mut chain = Chain::whole();
    chain.link(
        NEW_RESERVATION,
        vec![order_id.into(), granted.as_str().into(), now_ms().into()],
        1,
    );
    for line in lines {
        chain.link(
            TAKE_UNITS,
            vec![line.quantity.into(), (&line.sku).into()],
            1,
        );
    }
    for line in lines {
        chain.then().push(
            "INSERT INTO reservation_lines (order_id, sku, quantity) SELECT $1, $2, $3",
            vec![order_id.into(), (&line.sku).into(), line.quantity.into()],
        );
    }
    db.commit_chain(chain)
}

/// The reservation's lines, in one statement however many lines there are.
fn lines_row(order_id: &str, lines: &[StockLine]) -> Writes {
    let mut writes = Writes::default();
    if lines.is_empty() {
        return writes;
    }
    let mut sql = Bindings::default();
    let order = sql.bind(order_id);
    let rows = sql.rows(lines, |sql, line| vec![order.clone(), sql.bind(&line.sku), sql.bind(line.quantity)]);
    writes.push(format!("INSERT INTO reservation_lines (order_id, sku, quantity) VALUES {rows}"), sql.params);
    writes
}

/// Takes every line's units from stock, or none of them: the lines short,
/// if any, are returned and every decrement undone. `with_first` (the
/// reservation's lines) goes to the database with the first line's
/// decrement, in one round trip on Postgres ([`Db::execute_all`]: the
/// decrement last, so its count is the one returned).
///
/// Each line is one conditional UPDATE, in the lines' order (sorted by
/// SKU), so two orders lock their rows in the same order and cannot
/// deadlock. When a line is short, the units already taken for the others
/// are put back: the transaction holds the rows it changed until it ends,
/// so no other order sees them taken and given back, and no savepoint is
/// needed (two round trips fewer on every sale).
fn take_stock(db: &Db, lines: &[StockLine], mut with_first: Writes) -> Result<Vec<Shortage>, DbError> {
    let mut taken = Vec::with_capacity(lines.len());
    let mut short = Vec::new();
    for line in lines {
        let mut writes = std::mem::take(&mut with_first);
        writes.push(
            TAKE_UNITS,
            vec![line.quantity.into(), (&line.sku).into()],
        );
        if db.execute_all(writes)? == 1 {
            taken.push(line);
            continue;
        }
        let rows = db.query("SELECT quantity FROM stock WHERE sku = $1", &[(&line.sku).into()])?;
        let in_stock = rows.first().map_or(Ok(0), |row| row.int("quantity"))?;
        short.push(Shortage { sku: line.sku.clone(), requested: line.quantity, in_stock });
    }
    if !short.is_empty() {
        for line in taken {
            db.execute(
                "UPDATE stock SET quantity = quantity + $1 WHERE sku = $2",
                &[line.quantity.into(), (&line.sku).into()],
            )?;
        }
    }
    Ok(short)
}

/// An order's reservation as first answered, with the lines it asked for
/// (sorted by SKU).
fn load(db: &Db, order_id: &str) -> Result<Option<(Reservation, Vec<StockLine>)>, DbError> {
    let rows =
        db.query("SELECT status, granted, short_json FROM reservations WHERE order_id = $1", &[order_id.into()])?;
    let Some(row) = rows.first() else { return Ok(None) };
    let short = match row.opt_text("short_json")? {
        Some(json) => serde_json::from_str(&json).map_err(|e| DbError::Query(format!("short_json: {e}")))?,
        None => Vec::new(),
    };
    let reservation = Reservation {
        order_id: order_id.to_string(),
        reserved: row.bool("granted")?,
        status: Status::parse(&row.text("status")?)?,
        short,
    };
    Ok(Some((reservation, reserved_lines(db, order_id)?)))
}

fn reserved_lines(db: &Db, order_id: &str) -> Result<Vec<StockLine>, DbError> {
    let rows = db.query("SELECT sku, quantity FROM reservation_lines WHERE order_id = $1", &[order_id.into()])?;
    let mut lines = rows
        .iter()
        .map(|row| Ok(StockLine { sku: row.text("sku")?, quantity: row.int("quantity")? }))
        .collect::<Result<Vec<_>, DbError>>()?;
    // Sorted here rather than in SQL, whose collation may order otherwise:
    // locks must be taken in the order reservations take them.
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(lines)
}

fn status(db: &Db, order_id: &str) -> Result<Option<Status>, DbError> {
    let rows = db.query("SELECT status FROM reservations WHERE order_id = $1", &[order_id.into()])?;
    rows.first().map(|row| Status::parse(&row.text("status")?)).transpose()
}

/// Gives a reservation's units back. Idempotent; releasing an order that
/// has no reservation records it released, so a reserve arriving late for
/// that order takes nothing. A sold (committed) reservation cannot be
/// released: 409.
pub fn release(db: &Db, order_id: &str) -> Result<Status, ApiError> {
    let now = now_ms();
    let status = db.transaction(|db| {
        let unknown = db.execute(
            "INSERT INTO reservations (order_id, status, granted, short_json, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, 0, NULL, $3, $3) ON CONFLICT (order_id) DO NOTHING",
            &[order_id.into(), Status::Released.as_str().into(), now.into()],
        )?;
        if unknown == 1 {
            return Ok(Status::Released);
        }
        let released = db.execute(
            "UPDATE reservations SET status = $2, updated_at_ms = $3 WHERE order_id = $1 AND status = $4",
            &[order_id.into(), Status::Released.as_str().into(), now.into(), Status::Reserved.as_str().into()],
        )?;
        if released == 1 {
            for line in reserved_lines(db, order_id)? {
                db.execute(
                    "UPDATE stock SET quantity = quantity + $1 WHERE sku = $2",
                    &[line.quantity.into(), line.sku.into()],
                )?;
            }
            return Ok(Status::Released);
        }
        status(db, order_id)?.ok_or_else(|| DbError::Query(format!("reservation {order_id} vanished")))
    })?;
    if status == Status::Committed {
        return Err(ApiError::conflict(format!(
            "the reservation for order {order_id} is committed: its units are sold and cannot be released"
        )));
    }
    Ok(status)
}

/// Turns a reservation into a sale. Idempotent; 404 if the order has no
/// reservation, 409 if it was rejected or released.
pub fn commit(db: &Db, order_id: &str) -> Result<Status, ApiError> {
    let committed = db.execute(
        "UPDATE reservations SET status = $2, updated_at_ms = $3 WHERE order_id = $1 AND status = $4",
        &[order_id.into(), Status::Committed.as_str().into(), now_ms().into(), Status::Reserved.as_str().into()],
    )?;
    if committed == 1 {
        return Ok(Status::Committed);
    }
    match status(db, order_id)? {
        None => Err(ApiError::not_found(format!("order {order_id} has no reservation"))),
        Some(Status::Committed) => Ok(Status::Committed),
        Some(other) => Err(ApiError::conflict(format!(
            "the reservation for order {order_id} is {}: there is nothing to commit",
            other.as_str()
        ))),
    }
}
