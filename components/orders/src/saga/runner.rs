//! Runs sagas forward from wherever their journal says they stand: a new
//! order's, right after checkout placed it, and stale ones, whose run died
//! or gave up, when they are resumed.
use std::time::Duration;

use serde::Serialize;
use shop_shared::api::ApiError;
use shop_shared::db::Db;

use super::journal::{self, Saga};
use super::{Action, Cancellation, Fact, Next};
use crate::cart::store::{CartStore, HeldCart};
use crate::clients::products::{Commit, Stock};
use crate::clients::payments::Charge;
use crate::clients::{Unavailable, Upstream, payments, products};
use crate::clock::now_ms;
use crate::orders::model::{Order, Status, total_cents};
use crate::orders::store;
use crate::outbox;

/// How long a run holds a saga before another may take it over. It is
/// renewed before every step, so it only has to outlast the longest single
/// step (a slow card keeps payments busy for 5 s); a run that died is taken
/// over this long after its last step began.
pub const LEASE_MS: i64 = 10_000;
/// Tries of one step within one run. A step that still has no answer after
/// them is left for a later resume rather than holding the request.
const ATTEMPTS: u32 = 3;
/// Wait before the second try; doubled before each further one.
const FIRST_BACKOFF_MS: u64 = 200;
/// Turns a saga needs at most: six calls, its end, and the turn that finds
/// it ended. More would mean its journal does not read back what was
/// written, and the same call would repeat forever: the run stops instead.
const MAX_TURNS: usize = 8;

/// Where a run left its saga.
pub struct Driven {
    pub status: Status,
    /// How this run ended the saga, if it did and every write of the end
    /// took; `None` when the saga is still PENDING or another run ended it.
    pub ended: Option<Ended>,
}

/// An end this run wrote, whole: with the order as it was placed, all that
/// is needed to know the order as it is now, without reading it back.
pub struct Ended {
    end: Next,
    at_ms: i64,
    /// The payment captured before a cancellation (refunded since): the
    /// order keeps its id, written when payments answered.
    captured: Option<String>,
}

impl Ended {
    /// `order` (as placed) as the run left it: what reading it back would
    /// return, the end's writes being the only ones since the payment's.
    pub fn apply(&self, order: &mut Order) {
        match &self.end {
            Next::Confirm { payment_id } => store::confirmed(order, payment_id, self.at_ms),
            Next::Cancel(cancellation) => {
                order.payment_id.clone_from(&self.captured);
                let Cancellation { reason, refunded, note } = cancellation;
                store::cancelled(order, *reason, *refunded, note, self.at_ms);
            }
            Next::Call(_) => {}
        }
    }
}

/// A saga a resume worked on, and where it stands now.
#[derive(Debug, Serialize)]
pub struct Resumed {
    pub order_id: String,
    pub status: Status,
}

/// Runs the saga of `order_id` (whose lease the caller holds) until its
/// order is CONFIRMED or CANCELLED, or a step gets no answer even after
/// retries; returns where the order stands.
pub async fn run(db: &Db, upstream: &Upstream, order_id: &str) -> Result<Status, ApiError> {
    let saga = journal::load(db, order_id)?.ok_or_else(|| gone(order_id))?;
    Ok(drive(db, upstream, saga, None).await?.status)
}

/// Carries `saga`, as its journal has it, to its end. The journal is read
/// back only when a write did not take (another run wrote there too): a
/// run whose writes all took knows the journal is what it held plus what
/// it wrote. A caller that has just placed the saga passes it as placed:
/// nothing to read first.
///
/// Facts that lead to another call are journaled while that call is in
/// flight (see [`call_alongside`]): a checkout then waits for the sale, not
/// for the payment's write and then the sale. The order of the journal's
/// writes stays that of the facts: the call's own facts are written after
/// the ones before it, once both are in.
///
/// `cart` is the user's cart as the checkout read it, if this run is the
/// checkout's: a confirmed order's lines leave it with one write.
pub async fn drive(db: &Db, upstream: &Upstream, mut saga: Saga, mut cart: Option<HeldCart>) -> Result<Driven, ApiError> {
    let order_id = saga.order_id.clone();
    let mut current = true;
    let mut ended = None;
    // What the last call taught, not journaled yet: it goes with the next call.
    let mut unwritten: Vec<Fact> = Vec::new();
    for _ in 0..MAX_TURNS {
        if !current {
            saga = journal::reload(db, saga)?.ok_or_else(|| gone(&order_id))?;
        }
        if saga.status != Status::Pending {
            return Ok(Driven { status: saga.status, ended });
        }
        match saga.progress.next() {
            Next::Call(action) => {
                let up = upstream.on_behalf_of(&saga.user_id);
                let (answer, took) = call_alongside(db, &up, &saga, &action, &unwritten).await?;
                if took && unwritten.iter().any(|fact| matches!(fact, Fact::Payment(_))) {
                    saga.charge_request = None;
                }
                unwritten.clear();
                if !took {
                    // Another run wrote to this journal: where the saga stands
                    // is its to say. This call's answer is dropped; the call is
                    // idempotent, so the run that goes on gets the same one.
                    current = false;
                    continue;
                }
                let Some(facts) = answer else {
                    return Ok(Driven { status: Status::Pending, ended: None });
                };
                let mut learned = saga.progress.clone();
                facts.iter().cloned().for_each(|fact| learned.learn(fact));
                current = match learned.next() {
                    // Journaled while the next call is in flight.
                    Next::Call(_) => {
                        unwritten = facts;
                        true
                    }
                    // Facts that end the saga are written with its end.
                    end => {
                        ended = finish(db, &mut saga, &facts, end, &mut cart)?;
                        ended.is_some()
                    }
                };
                saga.progress = learned;
            }
            // The journal already held what ends it (a resumed saga).
            end => {
                ended = finish(db, &mut saga, &[], end, &mut cart)?;
                current = ended.is_some();
            }
        }
    }
    Err(ApiError::internal(format!("the saga of {order_id} makes no progress: its journal does not read back")))
}

/// Calls `action` (see [`call_with_retries`]) and journals `unwritten`, the
/// facts of the call before, meanwhile: the call goes out first, and the
/// write runs while the other service works on it. Whether the write took
/// comes with the answer (`true` when there was nothing to write).
///
/// Safe because every call is idempotent on the other service's side: a
/// run that dies after the call and before its write leaves a journal
/// without the earlier facts, and the run that resumes it makes the earlier
/// call and this one again, and gets the same answers.
async fn call_alongside(
    db: &Db,
    up: &Upstream,
    saga: &Saga,
    action: &Action,
    unwritten: &[Fact],
) -> Result<(Option<Vec<Fact>>, bool), ApiError> {
    if unwritten.is_empty() {
        return Ok((call_with_retries(db, up, saga, action).await?, true));
    }
    // An async block, though the write blocks: `join` polls the call first,
    // which sends its request and waits for the answer, then runs this.
    let write = async { journal::learn(db, &saga.order_id, unwritten, now_ms(), now_ms() + LEASE_MS) };
    let (answer, took) = futures::join!(call_with_retries(db, up, saga, action), write);
    Ok((answer?, took?))
}

/// Ends `saga` as `end` (a confirmation or a cancellation) says, with the
/// `facts` that decided it, in one transaction (see [`journal::end`]);
/// the end, if every write took. Either way the outbox is relayed: the
/// end's event, or the one of the run that ended the saga first, goes out.
fn finish(db: &Db, saga: &mut Saga, facts: &[Fact], end: Next, cart: &mut Option<HeldCart>) -> Result<Option<Ended>, ApiError> {
    let (order_id, user_id, now) = (saga.order_id.as_str(), saga.user_id.as_str(), now_ms());
    let (ended, status) = match &end {
        Next::Confirm { payment_id } => {
            // The total the order was placed with: the sum of its lines.
            let total = total_cents(&saga.lines)
                .ok_or_else(|| ApiError::internal(format!("the total of order {order_id} overflows")))?;
            let ended = journal::end(db, order_id, facts, now, |chain| {
                store::confirm(chain, order_id, user_id, total, payment_id, now)
            })?;
            (ended, Status::Confirmed)
        }
        Next::Cancel(cancellation) => (
            journal::end(db, order_id, facts, now, |chain| {
                let (reason, refunded, note) = (cancellation.reason, cancellation.refunded, &cancellation.note);
                store::cancel(chain, order_id, user_id, reason, refunded, note, now)
            })?,
            Status::Cancelled,
        ),
        Next::Call(_) => unreachable!("finish is given an end, never a call"),
    };
    outbox::relay_after_change();
    if !ended {
        return Ok(None);
    }
    if status == Status::Confirmed {
        take_out_of_cart(saga, cart.take());
    }
    saga.status = status;
    // A captured payment is journaled (with its id on the order) when
    // payments answers, never with an end: a capture is followed by a sale.
    let captured = match &saga.progress.payment {
        Some(Charge::Captured { payment_id }) => Some(payment_id.clone()),
        _ => None,
    };
    Ok(Some(Ended { end, at_ms: now, captured }))
}

fn gone(order_id: &str) -> ApiError {
    ApiError::not_found(format!("no order {order_id}"))
}

/// Runs the saga of `order_id` if it is stale (PENDING, its lease run out)
/// and this call wins its lease; `None` if another run holds it.
pub async fn resume(db: &Db, upstream: &Upstream, order_id: &str) -> Result<Option<Status>, ApiError> {
    let now = now_ms();
    if !journal::claim_if_stale(db, order_id, now, now + LEASE_MS)? {
        return Ok(None);
    }
    run(db, upstream, order_id).await.map(Some)
}

/// Resumes up to `limit` stale sagas placed before `placed_before`, oldest
/// first. One saga failing does not stop the others: it stays PENDING for
/// the next resume.
pub async fn resume_stale(db: &Db, upstream: &Upstream, placed_before: i64, limit: i64) -> Result<Vec<Resumed>, ApiError> {
    let mut resumed = Vec::new();
    for order_id in journal::stale(db, now_ms(), placed_before, limit)? {
        match resume(db, upstream, &order_id).await {
            Ok(Some(status)) => resumed.push(Resumed { order_id, status }),
            Ok(None) => {}
            Err(e) => eprintln!("orders: resuming the saga of {order_id} failed: {}", e.message),
        }
    }
    Ok(resumed)
}

/// Calls `action`, retrying with backoff while there is no answer; `None`
/// if there still is none after [`ATTEMPTS`].
async fn call_with_retries(db: &Db, up: &Upstream, saga: &Saga, action: &Action) -> Result<Option<Vec<Fact>>, ApiError> {
    let mut backoff = Duration::from_millis(FIRST_BACKOFF_MS);
    for attempt in 1..=ATTEMPTS {
        match call(up, saga, action).await {
            Ok(facts) => return Ok(Some(facts)),
            Err(Unavailable(error)) => {
                let step = action.step().as_str();
                eprintln!("orders: saga {}: {step} attempt {attempt}/{ATTEMPTS} got no answer: {error}", saga.order_id);
                journal::attempt_failed(db, &saga.order_id, action.step(), &error, now_ms())?;
                if attempt < ATTEMPTS {
                    // On wasm32-wasip2 this blocks on a host timer, not a spin.
                    std::thread::sleep(backoff);
                    backoff *= 2;
                }
            }
        }
    }
    Ok(None)
}

/// What the call taught: one fact, or two for a sale (its reservation and
/// its commit).
async fn call(up: &Upstream, saga: &Saga, action: &Action) -> Result<Vec<Fact>, Unavailable> {
    let order_id = &saga.order_id;
    let fact = match action {
        Action::CheckStock => Fact::Stock(products::check(up, &saga.lines).await?),
        Action::Charge => {
            // Erased only once payments answered the charge for good, after
            // which the saga never charges again.
            let body = saga
                .charge_request
                .as_deref()
                .ok_or_else(|| Unavailable("the charge request was erased before the charge was answered".into()))?;
            Fact::Payment(payments::charge(up, order_id, body).await?)
        }
        Action::Sell => match products::sell(up, order_id, &saga.lines).await? {
            Some(Stock::Available) => {
                return Ok(vec![Fact::Reservation(Stock::Available), Fact::Commit(Commit::Committed)]);
            }
            Some(short) => Fact::Reservation(short),
            None => Fact::Reservation(products::reserve(up, order_id, &saga.lines).await?),
        },
        Action::Commit => Fact::Commit(products::commit(up, order_id).await?),
        Action::Refund { payment_id } => Fact::Refunded(payments::refund(up, order_id, payment_id).await?),
        Action::Release => {
            products::release(up, order_id).await?;
            Fact::Released
        }
    };
    Ok(vec![fact])
}

/// A confirmed order's lines leave its user's cart: through `held`, the
/// cart as the checkout read it, when this run is the checkout's, else as
/// the cart is now. The order stands whatever happens here, so a failure is
/// only logged.
fn take_out_of_cart(saga: &Saga, held: Option<HeldCart>) {
    let held = match held {
        Some(held) => Ok(held),
        None => CartStore::open().and_then(|carts| carts.hold(&saga.user_id)),
    };
    if let Err(e) = held.and_then(|held| held.take_out(&saga.lines)) {
        eprintln!("orders: taking order {} out of the cart failed: {}", saga.order_id, e.message);
    }
}
