//! End to end: the checkout saga when a service it calls traps midway.
//!
//! The app (tests/apps/saga-faults) is the orders app with a fault proxy
//! (tests/components/fault) in front of products and of payments: each
//! test makes one of them trap on its first N requests for one step, either
//! before the real service sees the request or after it did the work (so
//! orders cannot tell whether it happened). Whatever the fault, what a user
//! sees must hold: the order ends CONFIRMED, or CANCELLED with its money
//! given back, never stuck PENDING once resumed, and it is charged once.
//!
//! Orders tries each step 3 times per run; a run that still has no answer
//! leaves the order PENDING, and `POST /internal/sagas/resume` finishes it
//! once its lease has run out. The tests end the lease by writing it in
//! orders' database (through the probe, or straight to Postgres) instead of
//! waiting for it. Every scenario runs in embedded mode (SQLite) and in
//! production mode (each service its own Postgres database).
use crate::support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::postgres::SagaDatabases;
use support::{Bazaar, Reply, Up, app, cards, require_components};

/// Tries orders makes of one step within one run (`ATTEMPTS` in
/// components/orders/src/saga/runner.rs).
const ATTEMPTS: i64 = 3;

/// Where a proxy traps and when (the `*_fault_*` variables of the app).
#[derive(Clone, Copy)]
enum When {
    /// The service never sees the request.
    Before,
    /// The service did the work; its answer is lost.
    After,
}

/// A fault of the products or payments proxy: the first `times` requests
/// for the step's path trap.
struct Fault {
    service: &'static str,
    /// The path that traps; `None` for the app's default (sell for
    /// products, charges for payments).
    path: Option<&'static str>,
    times: i64,
    when: When,
}

/// Products traps on `POST /internal/inventory/sell` (the saga's reserve
/// and commit, in one call).
fn sell_traps(times: i64, when: When) -> Fault {
    Fault { service: "products", path: None, times, when }
}

/// Payments traps on `POST /api/payments/charges`.
fn charge_traps(times: i64, when: When) -> Fault {
    Fault { service: "payments", path: None, times, when }
}

/// The app on its own state, with one fault.
struct Shop {
    bazaar: Bazaar,
    _state: tempfile::TempDir,
    /// Production mode's databases; `None` in embedded mode.
    postgres: Option<SagaDatabases>,
}

/// Where the services keep their data.
#[derive(Clone, Copy)]
enum Mode {
    Embedded,
    Production,
}

impl Shop {
    async fn with(fault: Fault, mode: Mode) -> Shop {
        require_components(&["orders", "products", "payments", "probe", "fault"]);
        let state = tempfile::tempdir().unwrap();
        let prefix = format!("SPIN_VARIABLE_{}_FAULT", fault.service.to_uppercase());
        let when = match fault.when {
            When::Before => "before",
            When::After => "after",
        };
        let mut up = Up::default()
            .state_dir(&state.path().join("state"))
            .arg("--runtime-config-file")
            .arg(runtime_config(state.path()).display().to_string())
            .env(&format!("{prefix}_TIMES"), fault.times.to_string())
            .env(&format!("{prefix}_WHEN"), when);
        if let Some(path) = fault.path {
            up = up.env(&format!("{prefix}_PATH_PREFIX"), path);
        }
        let postgres = match mode {
            Mode::Embedded => None,
            Mode::Production => Some(SagaDatabases::create().await),
        };
        if let Some(databases) = &postgres {
            up = up
                .env("SPIN_VARIABLE_ORDERS_DATABASE_URL", databases.orders.url())
                .env("SPIN_VARIABLE_PRODUCTS_DATABASE_URL", databases.products.url())
                .env("SPIN_VARIABLE_PAYMENTS_DATABASE_URL", databases.payments.url());
        }
        let bazaar = Bazaar::start(&app("saga-faults"), up);
        Shop { bazaar, _state: state, postgres }
    }

    async fn send(&self, method: &str, path: &str, user: Option<&str>, body: Option<Value>, admin: bool) -> Reply {
        let role: &[(&str, &str)] = if admin { &[("x-user-role", "admin")] } else { &[] };
        self.bazaar.send_as(method, path, user, body, role).await
    }

    /// Creates a product (as an admin); returns its id.
    async fn product(&self, sku: &str, price_cents: i64, stock: i64) -> String {
        let body = json!({"sku": sku, "name": format!("Test {sku}"), "category": "test", "price_cents": price_cents, "stock": stock});
        let created = self.send("POST", "/api/products", Some("admin"), Some(body), true).await;
        created.expect(201)["id"].as_str().unwrap().to_string()
    }

    async fn stock(&self, product_id: &str) -> i64 {
        let product = self.send("GET", &format!("/api/products/{product_id}"), None, None, false).await;
        product.expect(200)["stock"].as_i64().unwrap()
    }

    async fn set_stock(&self, product_id: &str, stock: i64) {
        let path = format!("/api/products/{product_id}");
        let mut product = self.send("GET", &path, None, None, false).await.expect(200);
        product["stock"] = json!(stock);
        self.send("PUT", &path, Some("admin"), Some(product), true).await.expect(200);
    }

    /// Puts `quantity` of `sku` in `user`'s cart and checks out.
    async fn checkout(&self, user: &str, sku: &str, quantity: i64) -> Reply {
        let line = json!({"sku": sku, "quantity": quantity});
        self.send("POST", "/api/cart/items", Some(user), Some(line), false).await.expect(201);
        self.send("POST", "/api/orders/checkout", Some(user), Some(json!({"card": cards::good()})), false).await
    }

    async fn order(&self, order_id: &str, user: &str) -> Value {
        self.send("GET", &format!("/api/orders/{order_id}"), Some(user), None, false).await.expect(200)
    }

    /// Every payment made for an order (as services see them).
    async fn payments(&self, order_id: &str) -> Vec<Value> {
        let reply = self.send("GET", &format!("/api/payments?order_id={order_id}"), None, None, false).await;
        reply.expect(200)["items"].as_array().unwrap().clone()
    }

    /// `POST /internal/sagas/resume`'s list of resumed sagas.
    async fn resume(&self) -> Value {
        self.send("POST", "/internal/sagas/resume", None, None, false).await.expect(200)["resumed"].clone()
    }

    /// Ends the lease of `order_id`'s saga, as if its run had given up long
    /// ago, so the next resume takes it over.
    async fn expire_lease(&self, order_id: &str) {
        self.orders_execute(&format!("UPDATE orders SET lease_until_ms = 0 WHERE id = '{order_id}'")).await;
    }

    /// Runs one statement on orders' database, behind its back; it must
    /// change exactly one row.
    async fn orders_execute(&self, sql: &str) {
        let changes = match &self.postgres {
            None => self.orders_sql(sql).await["changes"].as_u64().unwrap(),
            Some(databases) => databases.orders.admin.execute(sql, &[]).await.unwrap(),
        };
        assert_eq!(changes, 1, "{sql} changed {changes} rows, not 1");
    }

    /// What orders' journal says of `step`: its outcome and how many
    /// attempts it took (`None` if the step was never tried).
    async fn journal(&self, order_id: &str, step: &str) -> Option<(String, i64)> {
        let sql = format!("SELECT outcome, attempts FROM saga_steps WHERE order_id = '{order_id}' AND step = '{step}'");
        if let Some(databases) = &self.postgres {
            let sql = sql.replace("attempts FROM", "attempts::bigint FROM");
            let row = databases.orders.admin.query_opt(&sql, &[]).await.unwrap()?;
            return Some((row.get(0), row.get(1)));
        }
        let rows = self.orders_sql(&sql).await["rows"].clone();
        let row = rows.as_array().unwrap().first()?.clone();
        Some((row[0].as_str().unwrap().to_string(), row[1].as_i64().unwrap()))
    }

    /// How many orders have a captured payment settled on them.
    async fn orders_paid(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM orders WHERE payment_id IS NOT NULL";
        match &self.postgres {
            Some(databases) => databases.orders.admin.query_one(sql, &[]).await.unwrap().get(0),
            None => self.orders_sql(sql).await["rows"][0][0].as_i64().unwrap(),
        }
    }

    async fn orders_sql(&self, sql: &str) -> Value {
        let body = json!({"sql": sql, "params": []});
        self.send("POST", "/probe/sqlite3/orders", None, Some(body), false).await.expect(200)
    }
}

/// Every store and database in `state`.
fn runtime_config(state: &Path) -> PathBuf {
    let mut text = String::new();
    for store in ["carts", "faults"] {
        text += &format!("[key_value_store.{store}]\ntype = \"spin\"\npath = {:?}\n\n", file(state, store));
    }
    for database in ["orders", "products", "payments"] {
        text += &format!("[sqlite_database.{database}]\ntype = \"spin\"\npath = {:?}\n\n", file(state, database));
    }
    let path = state.join("runtime-config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn file(state: &Path, name: &str) -> String {
    state.join(format!("{name}.db")).display().to_string()
}

fn id(order: &Value) -> String {
    order["id"].as_str().unwrap().to_string()
}

/// The order was charged exactly once, nothing of it refunded, and that
/// payment is the order's.
async fn charged_once(shop: &Shop, order: &Value) {
    let payments = shop.payments(&id(order)).await;
    assert_eq!(payments.len(), 1, "one charge for {}: {payments:?}", id(order));
    assert_eq!(payments[0]["amount_cents"], order["total_cents"]);
    assert_eq!(payments[0]["refunded_cents"], 0);
    assert_eq!(order["payment_id"], payments[0]["payment_id"], "{order}");
}

/// Ends the lease of `order_id`'s saga and resumes it: it must end
/// CONFIRMED, charged once with nothing refunded, and `product` must be
/// left at `stock`, sold once.
async fn resumed_and_confirmed_once(shop: &Shop, order_id: &str, product: &str, stock: i64) {
    shop.expire_lease(order_id).await;
    assert_eq!(shop.resume().await, json!([{"order_id": order_id, "status": "CONFIRMED"}]));
    let order = shop.order(order_id, "ann").await;
    assert_eq!((order["status"].as_str(), &order["refunded"]), (Some("CONFIRMED"), &json!(false)), "{order}");
    charged_once(shop, &order).await;
    assert_eq!(shop.stock(product).await, stock, "sold once");
}

// --------------------------------------------------------- products, at sale

/// Products traps once at the sale: the run's next try sells, and the
/// checkout answers CONFIRMED as if nothing happened.
async fn products_trapping_once_at_the_sale_is_retried_within_the_checkout(mode: Mode) {
    let shop = Shop::with(sell_traps(1, When::Before), mode).await;
    let product = shop.product("TRAP-1", 1200, 10).await;

    let order = shop.checkout("ann", "TRAP-1", 2).await.expect(201);
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(shop.order(&id(&order), "ann").await, order, "the answer is the order as it reads back");
    charged_once(&shop, &order).await;
    assert_eq!(shop.stock(&product).await, 8);
    assert_eq!(shop.journal(&id(&order), "reserve").await, Some(("available".into(), 2)), "a trap, then a sale");
    assert_eq!(shop.journal(&id(&order), "commit").await, Some(("committed".into(), 1)), "learned with the sale");
    assert_eq!(shop.resume().await, json!([]), "nothing left to resume");
}

/// Products traps twice at the sale, and the stock sells out meanwhile: the
/// run's third try finds it short, so the run refunds, releases and
/// cancels, and the checkout answers the order as reading it back does
/// (CANCELLED, refunded, with the id of the payment it took back).
async fn stock_sold_out_while_the_sale_traps_is_refunded_within_the_checkout(mode: Mode) {
    let shop = Shop::with(sell_traps(2, When::Before), mode).await;
    let product = shop.product("TRAP-6", 700, 3).await;
    // Orders' tables, there before the first look for a paid order.
    shop.send("GET", "/api/orders/ord_none", Some("ann"), None, false).await.expect(404);

    // The tries after the charge come 200 and 600 ms later: the stock goes
    // as soon as the order is charged, before the third.
    let sell_out = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while shop.orders_paid().await == 0 {
            assert!(std::time::Instant::now() < deadline, "the order was never charged");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        shop.set_stock(&product, 0).await;
    };
    let (answer, ()) = tokio::join!(shop.checkout("ann", "TRAP-6", 2), sell_out);
    let order = answer.expect(409);
    assert_eq!((order["cancel_reason"].as_str(), &order["refunded"]), (Some("out_of_stock"), &json!(true)), "{order}");
    let payments = shop.payments(&id(&order)).await;
    assert_eq!(payments.len(), 1, "charged once: {payments:?}");
    assert_eq!(payments[0]["refunded_cents"], 1400, "refunded in full");
    assert_eq!(order["payment_id"], payments[0]["payment_id"], "{order}");
    assert_eq!(shop.order(&id(&order), "ann").await, order, "the answer is the order as it reads back");
    assert_eq!(shop.stock(&product).await, 0);
}

/// Products traps on every try of the run (and once more): the checkout
/// answers 202 PENDING with the card charged; once the run's lease is over,
/// a resume sells (after one more trap) and confirms, without charging
/// again.
async fn products_trapping_past_every_retry_is_finished_by_a_resume(mode: Mode) {
    let shop = Shop::with(sell_traps(ATTEMPTS + 1, When::Before), mode).await;
    let product = shop.product("TRAP-2", 1500, 10).await;

    let pending = shop.checkout("ann", "TRAP-2", 3).await.expect(202);
    let order_id = id(&pending);
    // Stale at once: the checkout, which resumes stale sagas after its
    // answer, leaves its own alone.
    shop.expire_lease(&order_id).await;
    assert_eq!(pending["status"], "PENDING", "{pending}");
    charged_once(&shop, &pending).await;
    assert_eq!(shop.stock(&product).await, 10, "nothing reserved yet");
    assert_eq!(shop.journal(&order_id, "reserve").await, Some(("unknown".into(), ATTEMPTS)));
    assert_eq!(shop.order(&order_id, "ann").await["status"], "PENDING");

    assert_eq!(shop.resume().await, json!([{"order_id": order_id, "status": "CONFIRMED"}]));
    let order = shop.order(&order_id, "ann").await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    charged_once(&shop, &order).await;
    assert_eq!(shop.stock(&product).await, 7);
    assert_eq!(shop.journal(&order_id, "reserve").await, Some(("available".into(), ATTEMPTS + 2)));
    assert_eq!(shop.resume().await, json!([]), "a finished saga is not resumed again");
}

/// As above, but the stock was sold out while the order waited: the resume
/// cannot sell, so it refunds the charge and cancels.
async fn products_trapping_past_every_retry_is_compensated_if_the_stock_went_meanwhile(mode: Mode) {
    let shop = Shop::with(sell_traps(ATTEMPTS + 1, When::Before), mode).await;
    let product = shop.product("TRAP-3", 900, 4).await;

    let pending = shop.checkout("ann", "TRAP-3", 2).await.expect(202);
    let order_id = id(&pending);
    charged_once(&shop, &pending).await;
    shop.set_stock(&product, 1).await;

    shop.expire_lease(&order_id).await;
    assert_eq!(shop.resume().await, json!([{"order_id": order_id, "status": "CANCELLED"}]));
    let order = shop.order(&order_id, "ann").await;
    assert_eq!((order["cancel_reason"].as_str(), &order["refunded"]), (Some("out_of_stock"), &json!(true)), "{order}");
    let payments = shop.payments(&order_id).await;
    assert_eq!(payments.len(), 1, "charged once: {payments:?}");
    assert_eq!(payments[0]["refunded_cents"], payments[0]["amount_cents"], "refunded in full");
    assert_eq!(shop.stock(&product).await, 1, "no unit taken or given back");
}

// --------------------------------------------------- products, after the sale

/// Products sells the units, then every answer of the run is lost: the
/// order is PENDING with its units sold. The resume sells again, learns the
/// sale was made (a sale is idempotent per order), and confirms; it must
/// not take the lost answer for a shortage and refund.
async fn products_trapping_after_every_sale_of_a_run_is_confirmed_by_a_resume_not_refunded(mode: Mode) {
    let shop = Shop::with(sell_traps(ATTEMPTS, When::After), mode).await;
    let product = shop.product("TRAP-6", 700, 6).await;

    let pending = shop.checkout("ann", "TRAP-6", 2).await.expect(202);
    let order_id = id(&pending);
    assert_eq!(pending["status"], "PENDING", "{pending}");
    assert_eq!(shop.stock(&product).await, 4, "the first try sold the units");
    assert_eq!(shop.journal(&order_id, "reserve").await, Some(("unknown".into(), ATTEMPTS)));

    resumed_and_confirmed_once(&shop, &order_id, &product, 4).await;
    assert_eq!(shop.journal(&order_id, "commit").await, Some(("committed".into(), 1)));
}

/// A run sends the sale while it journals the payment that came before it
/// (the two at once): a run that died between the two is left with its
/// units sold, its card still on the order, and a journal that knows of no
/// payment. The journal is taken back to that here, from a run whose sale
/// answers were lost. The resume charges again with the same key and
/// learns of the one payment, sells again and learns the sale was made, and
/// confirms: one charge, the units sold once.
async fn a_run_that_sold_before_journaling_its_payment_is_finished_by_a_resume(mode: Mode) {
    let shop = Shop::with(sell_traps(ATTEMPTS, When::After), mode).await;
    let product = shop.product("TRAP-8", 650, 6).await;

    let pending = shop.checkout("ann", "TRAP-8", 2).await.expect(202);
    let order_id = id(&pending);
    assert_eq!(shop.stock(&product).await, 4, "the first try sold the units");
    assert_eq!(shop.journal(&order_id, "charge").await.map(|(outcome, _)| outcome), Some("captured".into()));
    // Back to before the payment's write: no fact, no payment on the order,
    // the card kept (payments knows the request by its content).
    let charge_request = json!({
        "order_id": order_id, "amount_cents": pending["total_cents"], "currency": pending["currency"], "card": cards::good(),
    });
    shop.orders_execute(&format!("DELETE FROM saga_steps WHERE order_id = '{order_id}' AND step = 'charge'")).await;
    shop.orders_execute(&format!("DELETE FROM saga_steps WHERE order_id = '{order_id}' AND step = 'reserve'")).await;
    shop.orders_execute(&format!(
        "UPDATE orders SET payment_id = NULL, charge_request = '{charge_request}' WHERE id = '{order_id}'"
    ))
    .await;

    resumed_and_confirmed_once(&shop, &order_id, &product, 4).await;
    assert_eq!(shop.journal(&order_id, "charge").await, Some(("captured".into(), 1)), "learned again");
    assert_eq!(shop.journal(&order_id, "commit").await, Some(("committed".into(), 1)));
}

/// A saga journaled by a build from before sales were one call: its
/// reservation is in the journal, its commit is not. The resume commits
/// (products answers for the units the order holds) and confirms, taking
/// nothing twice. (The units are sold here by a sale whose answers were
/// lost; the journal is then written as the older build wrote it.)
async fn a_saga_journaled_with_a_reservation_but_no_commit_is_committed_by_a_resume(mode: Mode) {
    let shop = Shop::with(sell_traps(ATTEMPTS, When::After), mode).await;
    let product = shop.product("TRAP-7", 800, 5).await;

    let pending = shop.checkout("ann", "TRAP-7", 3).await.expect(202);
    let order_id = id(&pending);
    assert_eq!(shop.stock(&product).await, 2);
    shop.orders_execute(&format!(
        "UPDATE saga_steps SET outcome = 'available', detail = NULL WHERE order_id = '{order_id}' AND step = 'reserve'"
    ))
    .await;

    resumed_and_confirmed_once(&shop, &order_id, &product, 2).await;
    assert_eq!(shop.journal(&order_id, "reserve").await, Some(("available".into(), ATTEMPTS)), "not asked again");
    assert_eq!(shop.journal(&order_id, "commit").await, Some(("committed".into(), 1)), "committed as a step");
}

// ------------------------------------------------------- payments, at charge

/// Payments captures the charge, then traps instead of answering: the run's
/// next try sends the same Idempotency-Key, learns of that payment, and the
/// order is confirmed with one charge, not two.
async fn payments_trapping_after_charging_is_retried_without_charging_twice(mode: Mode) {
    let shop = Shop::with(charge_traps(1, When::After), mode).await;
    let product = shop.product("TRAP-4", 2500, 5).await;

    let order = shop.checkout("ann", "TRAP-4", 1).await.expect(201);
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    charged_once(&shop, &order).await;
    assert_eq!(shop.stock(&product).await, 4);
    assert_eq!(shop.journal(&id(&order), "charge").await, Some(("captured".into(), 2)), "a trap, then the answer");
}

/// Payments captures the charge but every answer of the run is lost: the
/// user's money is taken while the order is PENDING and knows no payment;
/// the resume charges again with the same key, learns of the one payment,
/// and confirms.
async fn payments_trapping_after_every_charge_of_a_run_is_finished_by_a_resume_with_one_charge(mode: Mode) {
    let shop = Shop::with(charge_traps(ATTEMPTS, When::After), mode).await;
    let product = shop.product("TRAP-5", 3100, 5).await;

    let pending = shop.checkout("ann", "TRAP-5", 2).await.expect(202);
    let order_id = id(&pending);
    assert_eq!((pending["status"].as_str(), &pending["payment_id"]), (Some("PENDING"), &Value::Null), "{pending}");
    assert_eq!(shop.payments(&order_id).await.len(), 1, "the first try reached payments");
    assert_eq!(shop.journal(&order_id, "charge").await, Some(("unknown".into(), ATTEMPTS)));
    assert_eq!(shop.stock(&product).await, 5);

    shop.expire_lease(&order_id).await;
    assert_eq!(shop.resume().await, json!([{"order_id": order_id, "status": "CONFIRMED"}]));
    let order = shop.order(&order_id, "ann").await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    charged_once(&shop, &order).await;
    assert_eq!(shop.stock(&product).await, 3);
}

// ------------------------------------------------ each scenario in both modes

#[tokio::test]
async fn embedded_products_trapping_once_at_the_sale_is_retried_within_the_checkout() {
    products_trapping_once_at_the_sale_is_retried_within_the_checkout(Mode::Embedded).await
}

#[tokio::test]
async fn production_products_trapping_once_at_the_sale_is_retried_within_the_checkout() {
    products_trapping_once_at_the_sale_is_retried_within_the_checkout(Mode::Production).await
}

#[tokio::test]
async fn embedded_stock_sold_out_while_the_sale_traps_is_refunded_within_the_checkout() {
    stock_sold_out_while_the_sale_traps_is_refunded_within_the_checkout(Mode::Embedded).await
}

#[tokio::test]
async fn production_stock_sold_out_while_the_sale_traps_is_refunded_within_the_checkout() {
    stock_sold_out_while_the_sale_traps_is_refunded_within_the_checkout(Mode::Production).await
}

#[tokio::test]
async fn embedded_products_trapping_past_every_retry_is_finished_by_a_resume() {
    products_trapping_past_every_retry_is_finished_by_a_resume(Mode::Embedded).await
}

#[tokio::test]
async fn production_products_trapping_past_every_retry_is_finished_by_a_resume() {
    products_trapping_past_every_retry_is_finished_by_a_resume(Mode::Production).await
}

#[tokio::test]
async fn embedded_products_trapping_past_every_retry_is_compensated_if_the_stock_went_meanwhile() {
    products_trapping_past_every_retry_is_compensated_if_the_stock_went_meanwhile(Mode::Embedded).await
}

#[tokio::test]
async fn production_products_trapping_past_every_retry_is_compensated_if_the_stock_went_meanwhile() {
    products_trapping_past_every_retry_is_compensated_if_the_stock_went_meanwhile(Mode::Production).await
}

#[tokio::test]
async fn embedded_products_trapping_after_every_sale_of_a_run_is_confirmed_by_a_resume_not_refunded() {
    products_trapping_after_every_sale_of_a_run_is_confirmed_by_a_resume_not_refunded(Mode::Embedded).await
}

#[tokio::test]
async fn production_products_trapping_after_every_sale_of_a_run_is_confirmed_by_a_resume_not_refunded() {
    products_trapping_after_every_sale_of_a_run_is_confirmed_by_a_resume_not_refunded(Mode::Production).await
}

#[tokio::test]
async fn embedded_a_saga_journaled_with_a_reservation_but_no_commit_is_committed_by_a_resume() {
    a_saga_journaled_with_a_reservation_but_no_commit_is_committed_by_a_resume(Mode::Embedded).await
}

#[tokio::test]
async fn production_a_saga_journaled_with_a_reservation_but_no_commit_is_committed_by_a_resume() {
    a_saga_journaled_with_a_reservation_but_no_commit_is_committed_by_a_resume(Mode::Production).await
}

#[tokio::test]
async fn embedded_payments_trapping_after_charging_is_retried_without_charging_twice() {
    payments_trapping_after_charging_is_retried_without_charging_twice(Mode::Embedded).await
}

#[tokio::test]
async fn production_payments_trapping_after_charging_is_retried_without_charging_twice() {
    payments_trapping_after_charging_is_retried_without_charging_twice(Mode::Production).await
}

#[tokio::test]
async fn embedded_payments_trapping_after_every_charge_of_a_run_is_finished_by_a_resume_with_one_charge() {
    payments_trapping_after_every_charge_of_a_run_is_finished_by_a_resume_with_one_charge(Mode::Embedded).await
}

#[tokio::test]
async fn production_payments_trapping_after_every_charge_of_a_run_is_finished_by_a_resume_with_one_charge() {
    payments_trapping_after_every_charge_of_a_run_is_finished_by_a_resume_with_one_charge(Mode::Production).await
}

#[tokio::test]
async fn embedded_a_run_that_sold_before_journaling_its_payment_is_finished_by_a_resume() {
    a_run_that_sold_before_journaling_its_payment_is_finished_by_a_resume(Mode::Embedded).await
}

#[tokio::test]
async fn production_a_run_that_sold_before_journaling_its_payment_is_finished_by_a_resume() {
    a_run_that_sold_before_journaling_its_payment_is_finished_by_a_resume(Mode::Production).await
}
