//! `POST /api/orders/checkout`: turns the user's cart into an order and runs
//! its saga.
//!
//! 1. Stale sagas are resumed once the answer has been sent
//!    ([`resume_stale_after_response`]): a checkout that crashed is finished
//!    by the next one, and no checkout waits for another's saga.
//! 2. With an `Idempotency-Key` the user used before, the order placed then
//!    is the answer (its saga resumed if its run died): a retried checkout
//!    never places a second order.
//! 3. The cart is priced from the catalog as it is now and its stock
//!    checked, in one call to products; the order is placed PENDING, with
//!    `OrderCreated` and that stock check as its saga's first fact, in one
//!    transaction (one statement, so one round trip, on Postgres).
//! 4. Its saga runs; the answer is the order: 201 CONFIRMED, 402 CANCELLED
//!    (payment declined), 409 CANCELLED (out of stock), or 202 PENDING if a
//!    service did not answer in time (the saga is resumed later; `GET
//!    /api/orders/{id}` follows it).
use std::cell::RefCell;

use shop_shared::api::{ApiError, json};
use shop_shared::db::{Db, DbError};
use shop_shared::events::OrderLine;
use spin_sdk::http::{Request, Response};

use crate::cart::Cart;
use crate::cart::store::CartStore;
use crate::clients::payments::ChargeRequest;
use crate::clients::products::{self, Quote, Stock};
use crate::clients::Upstream;
use crate::clock::now_ms;
use crate::orders::model::{CURRENCY, CancelReason, Order, Status, total_cents};
use crate::orders::store::{self, NewOrder};
use crate::saga::runner::{self, LEASE_MS};
use crate::saga::journal::{self, Saga};
use crate::saga::{Fact, Progress};
use crate::{caller, ids, outbox, schema};

mod request;

use request::CheckoutRequest;

/// Stale sagas a checkout resumes after its answer: bounds how long its
/// instance lives on (`POST /internal/sagas/resume` does the rest).
const RESUME_AFTER_CHECKOUT: i64 = 5;

/// What a checkout resumes after its answer: sagas stale then and placed
/// before it began, never its own (one that answered 202 has just tried
/// and given up; a later checkout or `POST /internal/sagas/resume` takes
/// it up once its lease runs out).
struct ResumeDue {
    /// The chained calls' headers.
    upstream: Upstream,
    began_ms: i64,
}

thread_local! {
    /// Set by a checkout; an instance serves one request, so this is that
    /// request's (as the outbox's due flag).
    static RESUME_DUE: RefCell<Option<ResumeDue>> = const { RefCell::new(None) };
}

pub async fn checkout(req: &Request) -> Result<Response, ApiError> {
    let user_id = caller::user_id(req)?;
    let request = CheckoutRequest::from_request(req)?;
    let db = schema::open()?;
    let upstream = Upstream::for_request(req);
    let began_ms = now_ms();
    RESUME_DUE.with(|due| *due.borrow_mut() = Some(ResumeDue { upstream: upstream.clone(), began_ms }));

    if let Some(key) = &request.idempotency_key
        && let Some(order_id) = store::id_for_key(&db, &user_id, key)?
    {
        return replay(&db, &upstream, &order_id).await;
    }

    // Held: a confirmed order takes its lines out of this very cart (see
    // `HeldCart::take_out`).
    let cart = CartStore::open()?.hold(&user_id)?;
    if cart.cart.is_empty() {
        return Err(ApiError::new(400, "cart_empty", "the cart is empty: add items before checking out"));
    }
    let (lines, stock) = quote(&upstream, &cart.cart).await?;
    let total_cents = total_cents(&lines).ok_or_else(|| ApiError::bad_request("the order total is too large"))?;
    let order_id = ids::order_id();
    let charge =
        ChargeRequest { order_id: &order_id, amount_cents: total_cents, currency: CURRENCY, card: &request.card };
    let order = NewOrder {
        id: order_id.clone(),
        user_id: user_id.clone(),
        lines,
        total_cents,
        address_id: request.address_id,
        charge_request: serde_json::to_string(&charge).map_err(|e| ApiError::internal(e.to_string()))?,
        idempotency_key: request.idempotency_key,
    };
    let now = now_ms();
    let checked = Fact::Stock(stock);
    // The order, its lines, history and event, and the fact: one round trip.
    let placed = store::place(&order, now, now + LEASE_MS).and_then(|mut writes| {
        journal::learned_before_placing(&mut writes, &order.id, &checked, now);
        db.commit_all(writes).map(drop)
    });
    match placed {
        Ok(()) => {}
        // A concurrent checkout with the same key placed its order first.
        Err(DbError::Duplicate(_)) if order.idempotency_key.is_some() => {
            let key = order.idempotency_key.as_deref().unwrap_or_default();
            let winner = store::id_for_key(&db, &user_id, key)?
                .ok_or_else(|| ApiError::internal("the order holding this Idempotency-Key vanished"))?;
            return replay(&db, &upstream, &winner).await;
        }
        Err(e) => return Err(e.into()),
    }
    // `OrderCreated` goes out with the saga's outcome, in one relay (the run
    // relays when it confirms or cancels); a saga left PENDING relays it here.
    // The saga as the transaction just wrote it: its run need not read it.
    let mut answer = store::placed(&order, now);
    let mut progress = Progress::default();
    progress.learn(checked);
    let NewOrder { user_id, lines, charge_request, .. } = order;
    let saga = Saga {
        order_id: order_id.clone(),
        user_id,
        status: Status::Pending,
        lines,
        charge_request: Some(charge_request),
        progress,
    };
    let driven = runner::drive(&db, &upstream, saga, Some(cart)).await?;
    match driven.ended {
        // This run ended the saga: the order is what it placed and what the
        // end wrote, no read needed.
        Some(ended) => {
            ended.apply(&mut answer);
            Ok(respond_with(answer))
        }
        None => {
            if driven.status == Status::Pending {
                outbox::relay_after_change();
            }
            respond(&db, &order_id, Some(answer.lines))
        }
    }
}

/// The answer for an order placed before: its saga finished first if its
/// run died.
async fn replay(db: &Db, upstream: &Upstream, order_id: &str) -> Result<Response, ApiError> {
    runner::resume(db, upstream, order_id).await?;
    respond(db, order_id, None)
}

/// Each cart line at the catalog's current name and price, and whether
/// they are in stock now. A product that is no longer sold stops the
/// checkout (409) before any order exists.
async fn quote(upstream: &Upstream, cart: &Cart) -> Result<(Vec<OrderLine>, Stock), ApiError> {
    let items: Vec<(&str, u32)> = cart.items.iter().map(|item| (item.sku.as_str(), item.quantity)).collect();
    let Quote { products: mut catalog, stock } = products::quote(upstream, &items).await?;
    let mut lines = Vec::with_capacity(cart.items.len());
    let mut gone = Vec::new();
    for item in &cart.items {
        match catalog.remove(&item.sku) {
            Some(product) => lines.push(OrderLine {
                sku: product.sku,
                name: product.name,
                quantity: item.quantity,
                unit_price_cents: product.price_cents,
            }),
            None => gone.push(item.sku.clone()),
        }
    }
    if !gone.is_empty() {
        return Err(ApiError::new(
            409,
            "products_unavailable",
            format!("no longer sold: {}; remove them from the cart", gone.join(", ")),
        ));
    }
    Ok((lines, stock))
}

/// The order, with the status that says how its checkout ended (its lines
/// given when the caller holds them).
fn respond(db: &Db, order_id: &str, lines: Option<Vec<OrderLine>>) -> Result<Response, ApiError> {
    let order = store::find_with_lines(db, order_id, lines)?
        .ok_or_else(|| ApiError::internal(format!("order {order_id} vanished")))?;
    Ok(respond_with(order))
}

/// `order` as the checkout's answer: its status says how the checkout
/// ended.
fn respond_with(order: Order) -> Response {
    let order_id = order.id.clone();
    let status = match (order.status, order.cancel_reason) {
        (Status::Confirmed, _) => 201,
        (Status::Pending, _) => 202,
        (Status::Cancelled, Some(CancelReason::PaymentDeclined)) => 402,
        (Status::Cancelled, _) => 409,
    };
    let mut response = json(status, &order);
    response.set_header("location", format!("/api/orders/{order_id}"));
    response
}

/// Whether this request was a checkout, which resumes stale sagas once
/// its answer has been sent.
pub fn resume_due() -> bool {
    RESUME_DUE.with(|due| due.borrow().is_some())
}

/// Resumes up to [`RESUME_AFTER_CHECKOUT`] stale sagas if this request was
/// a checkout, after its answer (lib.rs): a stale saga's calls, with their
/// retries, never hold up a customer's checkout. Their events join the
/// outbox relay that follows.
pub async fn resume_stale_after_response(db: &Db) {
    let Some(ResumeDue { upstream, began_ms }) = RESUME_DUE.with(|due| due.borrow_mut().take()) else {
        return;
    };
    if let Err(e) = runner::resume_stale(db, &upstream, began_ms, RESUME_AFTER_CHECKOUT).await {
        eprintln!("orders: resuming stale sagas after a checkout failed: {}", e.message);
    }
}
