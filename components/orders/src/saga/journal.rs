//! The saga's journal in SQL: each order's facts (`saga_steps`), the lease
//! that keeps two runs from working on one saga at once, and the charge
//! request, which must survive a crash until payments has answered it.
use shop_shared::db::{Bindings, Chain, Db, DbError, Param, Writes};
use shop_shared::events::OrderLine;

use super::{Fact, Progress, Step};
use crate::clients::payments::Charge;
use crate::orders::model::Status;
use crate::orders::store;

/// The outcome word of an attempt that learned nothing.
const UNKNOWN: &str = "unknown";

/// A saga as its journal has it.
pub struct Saga {
    pub order_id: String,
    pub user_id: String,
    pub status: Status,
    pub lines: Vec<OrderLine>,
    /// The charge's body, until payments answered it for good.
    pub charge_request: Option<String>,
    pub progress: Progress,
}

/// The saga of `order_id`, lines and all.
pub fn load(db: &Db, order_id: &str) -> Result<Option<Saga>, DbError> {
    match read(db, order_id)? {
        Some(state) => Ok(Some(state.into_saga(order_id, store::lines(db, order_id)?))),
        None => Ok(None),
    }
}

/// `saga` as its journal has it now. An order's lines never change once it
/// is placed, so a run that loaded them reads only its order's status and
/// facts again, in one query.
pub fn reload(db: &Db, saga: Saga) -> Result<Option<Saga>, DbError> {
    match read(db, &saga.order_id)? {
        Some(state) => Ok(Some(state.into_saga(&saga.order_id, saga.lines))),
        None => Ok(None),
    }
}

/// What a saga's order row and journal say, minus its lines.
struct State {
    user_id: String,
    status: Status,
    charge_request: Option<String>,
    progress: Progress,
}

impl State {
    fn into_saga(self, order_id: &str, lines: Vec<OrderLine>) -> Saga {
        let State { user_id, status, charge_request, progress } = self;
        Saga { order_id: order_id.to_string(), user_id, status, lines, charge_request, progress }
    }
}

/// The order's row and its facts, one row per fact (one row without a fact
/// when it has none yet).
fn read(db: &Db, order_id: &str) -> Result<Option<State>, DbError> {
    let rows = db.query(
        "SELECT o.user_id, o.status, o.charge_request, s.step, s.outcome, s.detail \
         FROM orders o LEFT JOIN saga_steps s ON s.order_id = o.id WHERE o.id = $1",
        &[order_id.into()],
    )?;
    let Some(first) = rows.first() else { return Ok(None) };
    let mut progress = Progress::default();
    for entry in rows.iter() {
        let Some(step) = entry.opt_text("step")? else { continue };
        let Some(step) = Step::parse(&step) else { continue };
        if let Some(fact) = Fact::parse(step, &entry.text("outcome")?, entry.opt_text("detail")?) {
            progress.learn(fact);
        }
    }
    Ok(Some(State {
        user_id: first.text("user_id")?,
        status: Status::parse(&first.text("status")?)?,
        charge_request: first.opt_text("charge_request")?,
        progress,
    }))
}

/// Writes what a step learned (one fact, or a sale's two), and keeps the
/// saga leased to this run until `lease_until_ms` for its next step. A fact
/// is written once: a later attempt (a concurrent run's) cannot overwrite
/// it. Once payments has answered the charge, the card it carried is
/// erased.
///
/// `true` if every write took (the saga was still PENDING and no other run
/// had written any of these facts): the journal then says what the run
/// knew plus these facts, so the run carries on without reading it back.
/// `false` means another run got there too: read the journal again.
///
/// Only a payment's fact needs a transaction: it commits with the erasure
/// of the card (a card erased without the fact would leave a charge that
/// can be neither answered nor retried); the erasure extends the lease
/// too. Other facts are one statement after the lease's: a crash between
/// them leaves the lease extended without the facts, which only delays the
/// resume that does the step again; a sale's two facts are one statement,
/// so they are written together or not at all. Statements alone are fewer
/// round trips than with `BEGIN` and `COMMIT`.
pub fn learn(db: &Db, order_id: &str, facts: &[Fact], now: i64, lease_until_ms: i64) -> Result<bool, DbError> {
    match facts {
        [Fact::Payment(charge)] => {
            // Both writes in one transaction (one statement on Postgres),
            // each count read back.
            let mut writes = Writes::default();
            let (sql, params) = facts_statement(order_id, facts, now);
            writes.push(sql, params);
            let (sql, params) = settle_charge(order_id, charge, now, lease_until_ms);
            writes.push(sql, params);
            Ok(db.commit_each(writes)? == [facts.len() as u64, 1])
        }
        _ => {
            // Both writes, whatever the first found: a fact is kept even for
            // a saga another run has ended.
            let leased = extend_lease(db, order_id, lease_until_ms)?;
            Ok(insert_facts(db, order_id, facts, now)? && leased)
        }
    }
}

/// Ends the saga: writes the facts that decided its end (none when the
/// journal already held them) and then `ending`'s, the order CONFIRMED or
/// CANCELLED with its history and event, as one chain ([`Chain`]: one
/// statement on Postgres, a transaction on SQLite). The end needs no lease,
/// and the order's final UPDATE erases the card as a payment's fact would.
///
/// `true` if every write took; `false` when another run wrote one of these
/// facts or ended the saga first: what took is kept, and the run reads the
/// journal again.
pub fn end(
    db: &Db,
    order_id: &str,
    facts: &[Fact],
    now: i64,
    ending: impl FnOnce(&mut Chain) -> Result<(), DbError>,
) -> Result<bool, DbError> {
    let mut chain = Chain::default();
    if !facts.is_empty() {
        let (sql, params) = facts_statement(order_id, facts, now);
        chain.link(sql, params, facts.len() as u64);
    }
    ending(&mut chain)?;
    db.commit_chain(chain)
}

/// Journals what the checkout learned before it placed the order (its
/// stock check, made with the pricing), among the writes that place it
/// (they commit together): the lease is the placement's, so this is the
/// fact's row alone.
pub fn learned_before_placing(writes: &mut Writes, order_id: &str, fact: &Fact, now: i64) {
    let (sql, params) = facts_statement(order_id, std::slice::from_ref(fact), now);
    writes.push(sql, params);
}

/// Once payments answered the charge: the card is erased (and a captured
/// payment's id kept) and the lease extended, if the saga is still
/// PENDING (the statement changes one row if it was).
fn settle_charge(order_id: &str, charge: &Charge, now: i64, lease_until_ms: i64) -> (String, Vec<Param>) {
    let pending = Status::Pending.as_str();
    match charge {
        Charge::Captured { payment_id } => (
            "UPDATE orders SET payment_id = $2, charge_request = NULL, updated_at_ms = $3, lease_until_ms = $4 \
             WHERE id = $1 AND status = $5"
                .to_string(),
            vec![order_id.into(), payment_id.into(), now.into(), lease_until_ms.into(), pending.into()],
        ),
        Charge::Declined { .. } => (
            "UPDATE orders SET charge_request = NULL, lease_until_ms = $2 WHERE id = $1 AND status = $3".to_string(),
            vec![order_id.into(), lease_until_ms.into(), pending.into()],
        ),
    }
}

/// The facts' rows, in one statement, except for a step that already has a
/// fact: only an attempt that learned nothing (`unknown`) is overwritten.
/// Whether every row took.
fn insert_facts(db: &Db, order_id: &str, facts: &[Fact], now: i64) -> Result<bool, DbError> {
    if facts.is_empty() {
        return Ok(true);
    }
    let (sql, params) = facts_statement(order_id, facts, now);
    Ok(db.execute(&sql, &params)? == facts.len() as u64)
}

/// The statement of [`insert_facts`] and its parameters.
fn facts_statement(order_id: &str, facts: &[Fact], now: i64) -> (String, Vec<Param>) {
    let mut sql = Bindings::default();
    let (order, at, unknown) = (sql.bind(order_id), sql.bind(now), sql.bind(UNKNOWN));
    let rows = sql.rows(facts, |sql, fact| {
        let (outcome, detail) = fact.outcome();
        vec![order.clone(), sql.bind(fact.step().as_str()), sql.bind(outcome), sql.bind(detail), "1".into(), at.clone()]
    });
    let statement = format!(
        "INSERT INTO saga_steps (order_id, step, outcome, detail, attempts, at_ms) VALUES {rows} \
         ON CONFLICT (order_id, step) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, \
         attempts = saga_steps.attempts + 1, at_ms = excluded.at_ms WHERE saga_steps.outcome = {unknown}"
    );
    (statement, sql.params)
}

/// Records an attempt at `step` that got no definitive answer, for whoever
/// looks into a saga that is taking long.
pub fn attempt_failed(db: &Db, order_id: &str, step: Step, error: &str, now: i64) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO saga_steps (order_id, step, outcome, detail, attempts, at_ms) VALUES ($1, $2, $3, $4, 1, $5) \
         ON CONFLICT (order_id, step) DO UPDATE SET detail = excluded.detail, \
         attempts = saga_steps.attempts + 1, at_ms = excluded.at_ms WHERE saga_steps.outcome = $3",
        &[order_id.into(), step.as_str().into(), UNKNOWN.into(), error.into(), now.into()],
    )?;
    Ok(())
}

/// Keeps the saga leased to the current run until `until_ms`; `false` if
/// it is no longer PENDING.
pub fn extend_lease(db: &Db, order_id: &str, until_ms: i64) -> Result<bool, DbError> {
    let changed = db.execute(
        "UPDATE orders SET lease_until_ms = $2 WHERE id = $1 AND status = $3",
        &[order_id.into(), until_ms.into(), Status::Pending.as_str().into()],
    )?;
    Ok(changed == 1)
}

/// PENDING sagas placed before `placed_before` whose lease ran out before
/// `now` (their run died or gave up), oldest first.
pub fn stale(db: &Db, now: i64, placed_before: i64, limit: i64) -> Result<Vec<String>, DbError> {
    let rows = db.query(
        "SELECT id FROM orders WHERE status = $1 AND lease_until_ms < $2 AND created_at_ms < $3 \
         ORDER BY created_at_ms LIMIT $4",
        &[Status::Pending.as_str().into(), now.into(), placed_before.into(), limit.into()],
    )?;
    rows.iter().map(|row| row.text("id")).collect()
}

/// Takes the saga's lease until `until_ms` if it is PENDING and its lease
/// ran out before `now`. One statement decides, so of two runs racing for a
/// saga exactly one gets it.
pub fn claim_if_stale(db: &Db, order_id: &str, now: i64, until_ms: i64) -> Result<bool, DbError> {
    let changed = db.execute(
        "UPDATE orders SET lease_until_ms = $3 WHERE id = $1 AND status = $4 AND lease_until_ms < $2",
        &[order_id.into(), now.into(), until_ms.into(), Status::Pending.as_str().into()],
    )?;
    Ok(changed == 1)
}
