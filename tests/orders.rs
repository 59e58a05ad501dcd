//! End to end: the orders service with the real products and payments it
//! chains to, and the bus its outbox publishes to (read back through a
//! subscriber's log). The cart; the checkout saga on every path (confirmed,
//! declined, out of stock before payment, two carts racing for the last
//! unit); checkout idempotency; reading orders; sagas left PENDING by a
//! crash, finished or compensated on resume; and events that wait in the
//! outbox until the bus takes them. Embedded (SQLite) and production
//! (Postgres) modes.
use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::postgres::SagaDatabases as Databases;
use support::{Bazaar, Reply, Up, app, cards, client, free_port, require_components};

// ------------------------------------------------------------------ the shop

/// The test app running on its own state: orders, products, payments, the
/// bus and its subscriber.
struct Shop {
    bazaar: Bazaar,
    state: tempfile::TempDir,
    /// Production mode: the services' Postgres databases.
    postgres: Option<Databases>,
}

impl Shop {
    fn embedded() -> Shop {
        Shop::start(None, &[])
    }

    async fn postgres() -> Shop {
        Shop::start(Some(Databases::create().await), &[])
    }

    fn start(postgres: Option<Databases>, env: &[(&str, String)]) -> Shop {
        let state = tempfile::tempdir().unwrap();
        let bazaar = launch(state.path(), postgres.as_ref(), env);
        Shop { bazaar, state, postgres }
    }

    /// Stops bazaar and starts it again on the same state, with `env`.
    fn restart(self, env: &[(&str, String)]) -> Shop {
        let Shop { bazaar, state, postgres } = self;
        drop(bazaar);
        let bazaar = launch(state.path(), postgres.as_ref(), env);
        Shop { bazaar, state, postgres }
    }

    async fn get(&self, path: &str, user: &str) -> Reply {
        self.bazaar.send_as("GET", path, Some(user), None, &[]).await
    }

    /// `order_id` as `user` sees it, once it is `status`: a saga another
    /// request resumes after its answer finishes meanwhile.
    async fn order_once(&self, order_id: &str, user: &str, status: &str) -> Value {
        let started = Instant::now();
        loop {
            let order = self.get(&format!("/api/orders/{order_id}"), user).await.expect(200);
            if order["status"] == status || started.elapsed() > Duration::from_secs(10) {
                assert_eq!(order["status"], status, "{order}\n{}", self.bazaar.logs());
                return order;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn add(&self, user: &str, sku: &str, quantity: i64) -> Reply {
        self.bazaar.send_as("POST", "/api/cart/items", Some(user), Some(json!({"sku": sku, "quantity": quantity})), &[]).await
    }

    async fn checkout(&self, user: &str, card: Value, key: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.bazaar.send_as("POST", "/api/orders/checkout", Some(user), Some(json!({"card": card})), &headers).await
    }

    /// Creates a product (as an admin); returns its id.
    async fn product(&self, sku: &str, price_cents: i64, stock: i64) -> String {
        let body = json!({"sku": sku, "name": format!("Test {sku}"), "category": "test", "price_cents": price_cents, "stock": stock});
        let created = self.bazaar.send_as("POST", "/api/products", Some("admin"), Some(body), &[("x-user-role", "admin")]).await;
        created.expect(201)["id"].as_str().unwrap().to_string()
    }

    async fn stock(&self, product_id: &str) -> i64 {
        self.get(&format!("/api/products/{product_id}"), "anyone").await.expect(200)["stock"].as_i64().unwrap()
    }

    async fn set_stock(&self, product_id: &str, stock: i64) {
        let mut product = self.get(&format!("/api/products/{product_id}"), "admin").await.expect(200);
        product["stock"] = json!(stock);
        let path = format!("/api/products/{product_id}");
        self.bazaar.send_as("PUT", &path, Some("admin"), Some(product), &[("x-user-role", "admin")]).await.expect(200);
    }

    /// The payments made for an order (as services see them: all of them).
    async fn payments(&self, order_id: &str) -> Vec<Value> {
        let reply = self.bazaar.send_as("GET", &format!("/api/payments?order_id={order_id}"), None, None, &[]).await;
        reply.expect(200)["items"].as_array().unwrap().clone()
    }

    /// Every order event the bus delivered so far.
    async fn events(&self) -> Vec<Value> {
        let reply = self.bazaar.send_as("GET", "/probe/kv/bus_log/log:orders", None, None, &[]).await;
        match reply.status {
            404 => Vec::new(),
            _ => {
                let log: Vec<String> = serde_json::from_value(reply.expect(200)).unwrap();
                log.iter().map(|entry| serde_json::from_str(entry).unwrap()).collect()
            }
        }
    }

    /// The types of the events the bus delivered for `order_id`, once there
    /// are `n` of them.
    async fn events_of(&self, order_id: &str, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let events: Vec<Value> = self.events().await.into_iter().filter(|e| e["order_id"] == order_id).collect();
            if events.len() >= n || started.elapsed() > Duration::from_secs(10) {
                assert_eq!(events.len(), n, "events of {order_id}: {events:?}\n{}", self.bazaar.logs());
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Who holds the outbox's relay lease (`None`: nobody), from orders'
    /// own database.
    async fn relay_holder(&self) -> Option<String> {
        let sql = "SELECT holder FROM outbox_relay WHERE name = 'relay'";
        match &self.postgres {
            None => {
                let body = json!({"sql": sql, "params": []});
                let rows = self.bazaar.send_as("POST", "/probe/sqlite3/orders", None, Some(body), &[]).await.expect(200);
                rows["rows"][0][0].as_str().map(str::to_owned)
            }
            Some(databases) => databases.orders.admin.query_one(sql, &[]).await.unwrap().get(0),
        }
    }

    /// How many events wait in orders' outbox, from its own database.
    async fn pending_events(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL";
        match &self.postgres {
            None => {
                let body = json!({"sql": sql, "params": []});
                let rows = self.bazaar.send_as("POST", "/probe/sqlite3/orders", None, Some(body), &[]).await.expect(200);
                rows["rows"][0][0].as_i64().unwrap_or_else(|| panic!("a count: {rows}"))
            }
            Some(databases) => databases.orders.admin.query_one(sql, &[]).await.unwrap().get(0),
        }
    }

    /// Waits until no event is pending in the outbox, 5 s at most (the relay
    /// marks events sent just after the bus took them); `what` names the
    /// event in the failure.
    async fn no_event_pending(&self, what: &str) {
        let started = Instant::now();
        while self.pending_events().await != 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "{what} is still pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs statements on orders' own database, as a crash would have left it.
    async fn orders_sql(&self, statements: &[String]) {
        match &self.postgres {
            None => {
                for sql in statements {
                    let body = json!({"sql": sql, "params": []});
                    self.bazaar.send_as("POST", "/probe/sqlite3/orders", None, Some(body), &[]).await.expect(200);
                }
            }
            Some(databases) => {
                databases.orders.admin.batch_execute(&statements.join(";\n")).await.unwrap();
            }
        }
    }
}

/// Starts bazaar on `state`: the runtime config puts every store and
/// database there; in production mode the services use `postgres`.
fn launch(state: &Path, postgres: Option<&Databases>, env: &[(&str, String)]) -> Bazaar {
    require_components(&["orders", "products", "payments", "probe", "subscriber"]);
    let mut up = Up::default()
        .state_dir(&state.join("state"))
        .arg("--runtime-config-file")
        .arg(runtime_config(state).display().to_string());
    if let Some(databases) = postgres {
        up = up
            .env("SPIN_VARIABLE_ORDERS_DATABASE_URL", databases.orders.url())
            .env("SPIN_VARIABLE_PRODUCTS_DATABASE_URL", databases.products.url())
            .env("SPIN_VARIABLE_PAYMENTS_DATABASE_URL", databases.payments.url());
    }
    for (name, value) in env {
        up = up.env(name, value.clone());
    }
    Bazaar::start(&app("orders"), up)
}

fn runtime_config(state: &Path) -> PathBuf {
    let mut text = String::new();
    for store in ["carts", "bus_log"] {
        text += &format!("[key_value_store.{store}]\ntype = \"spin\"\npath = {:?}\n\n", file(state, store));
    }
    for database in ["orders", "products", "payments"] {
        text += &format!("[sqlite_database.{database}]\ntype = \"spin\"\npath = {:?}\n\n", file(state, database));
    }
    text += "[message_bus]\ntype = \"embedded\"\nmax_attempts = 3\nretry_backoff_ms = 50\n";
    let path = state.join("runtime-config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn file(state: &Path, name: &str) -> String {
    state.join(format!("{name}.db")).display().to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The fields a 400 names, in order.
fn fields(body: &Value) -> Vec<String> {
    let fields = body["error"]["fields"].as_array().unwrap_or_else(|| panic!("no fields: {body}"));
    fields.iter().map(|f| f["field"].as_str().unwrap().to_string()).collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// A checkout's answer is the order as `GET /api/orders/{id}` reads it
/// (the run that ended the saga answers without reading it back).
async fn reads_back(shop: &Shop, order: &Value, user: &str) {
    let read = shop.get(&format!("/api/orders/{}", id(order)), user).await.expect(200);
    assert_eq!(&read, order, "the answer is the order as it reads back");
}

fn id(order: &Value) -> String {
    order["id"].as_str().unwrap().to_string()
}

// ----------------------------------------------------------------- the cart

#[tokio::test]
async fn the_cart_adds_changes_removes_and_shows_lines_at_catalog_prices() {
    let shop = Shop::embedded();
    shop.product("CART-1", 1250, 10).await;
    shop.product("CART-2", 399, 10).await;

    assert_eq!(shop.get("/api/cart", "ann").await.expect(200), json!({"items": [], "total_cents": 0, "item_count": 0}));
    let cart = shop.add("ann", "CART-1", 2).await.expect(201);
    assert_eq!(
        cart["items"][0],
        json!({"sku": "CART-1", "name": "Test CART-1", "unit_price_cents": 1250, "quantity": 2, "line_total_cents": 2500})
    );
    shop.add("ann", "CART-2", 1).await.expect(201);
    // Adding a SKU again sets its quantity (a retried add cannot double it).
    let cart = shop.add("ann", "CART-1", 3).await.expect(200);
    assert_eq!((cart["total_cents"].clone(), cart["item_count"].clone()), (json!(3 * 1250 + 399), json!(4)));

    let cart =
        shop.bazaar.send_as("PATCH", "/api/cart/items/CART-2", Some("ann"), Some(json!({"quantity": 5})), &[]).await.expect(200);
    assert_eq!(cart["items"][1]["quantity"], 5);
    let cart = shop.bazaar.send_as("DELETE", "/api/cart/items/CART-1", Some("ann"), None, &[]).await.expect(200);
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    assert_eq!(cart["items"][0]["sku"], "CART-2");
    assert_eq!(shop.get("/api/cart", "ann").await.expect(200), cart);

    // Carts are per user.
    assert_eq!(shop.get("/api/cart", "bob").await.expect(200)["items"], json!([]));
}

#[tokio::test]
async fn the_cart_rejects_what_it_cannot_hold() {
    let shop = Shop::embedded();
    shop.product("VAL-1", 100, 10).await;

    let anonymous = shop.bazaar.send_as("GET", "/api/cart", None, None, &[]).await.expect(401);
    assert_eq!(anonymous["error"]["code"], "unauthorized");
    let no_user = shop.bazaar.send_as("POST", "/api/cart/items", None, Some(json!({"sku": "VAL-1", "quantity": 1})), &[]).await;
    assert_eq!(no_user.status, 401);

    let malformed = client()
        .post(shop.bazaar.url("/api/cart/items"))
        .header("x-user-id", "ann")
        .body("{\"sku\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let empty = shop.bazaar.send_as("POST", "/api/cart/items", Some("ann"), Some(json!({})), &[]).await.expect(400);
    assert_eq!(
        (empty["error"]["code"].as_str(), fields(&empty)),
        (Some("validation_failed"), vec!["sku".into(), "quantity".into()])
    );
    for quantity in [json!(0), json!(100), json!(1.5), json!("2")] {
        let bad = shop
            .bazaar
            .send_as("POST", "/api/cart/items", Some("ann"), Some(json!({"sku": "VAL-1", "quantity": quantity})), &[])
            .await;
        assert_eq!(fields(&bad.expect(400)), ["quantity"], "quantity {quantity}");
    }
    assert_eq!(fields(&shop.add("ann", "no/such sku", 1).await.expect(400)), ["sku"]);
    let unknown = shop.add("ann", "NO-SUCH-SKU", 1).await.expect(400);
    assert_eq!(fields(&unknown), ["sku"]);
    assert!(unknown["error"]["fields"][0]["message"].as_str().unwrap().contains("NO-SUCH-SKU"), "{unknown}");
    assert_eq!(shop.get("/api/cart", "ann").await.expect(200)["items"], json!([]));

    let patch = |body: Value| shop.bazaar.send_as("PATCH", "/api/cart/items/VAL-1", Some("ann"), Some(body), &[]);
    assert_eq!(patch(json!({"quantity": 1})).await.expect(404)["error"]["code"], "not_found");
    shop.add("ann", "VAL-1", 1).await.expect(201);
    assert_eq!(fields(&patch(json!({"quantity": 0})).await.expect(400)), ["quantity"]);
    assert_eq!(shop.bazaar.send_as("DELETE", "/api/cart/items/OTHER", Some("ann"), None, &[]).await.status, 404);

    let wrong_method = client().put(shop.bazaar.url("/api/cart")).header("x-user-id", "ann").send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(shop.get("/api/cart/nothing/here", "ann").await.expect(404)["error"]["code"], "not_found");
}

// ------------------------------------------------------------- the checkout

async fn checkout_confirms_takes_stock_captures_payment_and_publishes(shop: &Shop) {
    let headphones = shop.product("HAPPY-1", 2500, 5).await;
    let cable = shop.product("HAPPY-2", 300, 50).await;
    shop.add("ann", "HAPPY-1", 2).await.expect(201);
    shop.add("ann", "HAPPY-2", 3).await.expect(201);

    let order = shop.checkout("ann", cards::good(), None).await.expect(201);
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["user_id"], "ann");
    reads_back(shop, &order, "ann").await;
    assert_eq!(order["total_cents"], 2 * 2500 + 3 * 300);
    assert_eq!(
        order["lines"],
        json!([
            {"sku": "HAPPY-1", "name": "Test HAPPY-1", "quantity": 2, "unit_price_cents": 2500},
            {"sku": "HAPPY-2", "name": "Test HAPPY-2", "quantity": 3, "unit_price_cents": 300},
        ])
    );
    let history: Vec<&str> =
        order["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["PENDING", "CONFIRMED"]);

    assert_eq!((shop.stock(&headphones).await, shop.stock(&cable).await), (3, 47));
    let payments = shop.payments(&id(&order)).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "captured");
    assert_eq!(payments[0]["amount_cents"], 5900);
    assert_eq!(payments[0]["payment_id"], order["payment_id"]);
    assert_eq!(shop.get("/api/cart", "ann").await.expect(200)["items"], json!([]), "the cart is emptied");

    let events = shop.events_of(&id(&order), 2).await;
    assert_eq!(types(&events), ["OrderCreated", "OrderConfirmed"]);
    assert_eq!(events[0]["user_id"], "ann");
    assert_eq!(events[0]["total_cents"], 5900);
    assert_eq!(events[0]["lines"], order["lines"]);
    assert_eq!(events[1]["payment_id"], order["payment_id"]);
    assert_ne!(events[0]["event_id"], events[1]["event_id"]);
}

#[tokio::test]
async fn embedded_checkout_confirms_takes_stock_captures_payment_and_publishes() {
    checkout_confirms_takes_stock_captures_payment_and_publishes(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_checkout_confirms_takes_stock_captures_payment_and_publishes() {
    checkout_confirms_takes_stock_captures_payment_and_publishes(&Shop::postgres().await).await;
}

#[tokio::test]
async fn a_declined_card_cancels_without_reserving_anything() {
    let shop = Shop::embedded();
    let product = shop.product("DECL-1", 1999, 4).await;
    shop.add("ann", "DECL-1", 2).await.expect(201);

    let order = shop.checkout("ann", cards::declined(), None).await.expect(402);
    reads_back(&shop, &order, "ann").await;
    assert_eq!(
        (order["status"].as_str(), order["cancel_reason"].as_str()),
        (Some("CANCELLED"), Some("payment_declined"))
    );
    assert_eq!(order["refunded"], false);
    assert_eq!(order["payment_id"], Value::Null);
    assert_eq!(shop.stock(&product).await, 4);
    assert_eq!(shop.payments(&id(&order)).await, Vec::<Value>::new());
    let events = shop.events_of(&id(&order), 2).await;
    assert_eq!(types(&events), ["OrderCreated", "OrderCancelled"]);
    assert_eq!((events[1]["reason"].as_str(), &events[1]["refunded"]), (Some("payment_declined"), &json!(false)));

    // The cart stays, so the user can pay with another card.
    assert_eq!(shop.get("/api/cart", "ann").await.expect(200)["item_count"], 2);
    assert_eq!(shop.checkout("ann", cards::good(), None).await.expect(201)["status"], "CONFIRMED");
    assert_eq!(shop.stock(&product).await, 2);
}

#[tokio::test]
async fn stock_gone_before_checkout_cancels_without_charging() {
    let shop = Shop::embedded();
    let product = shop.product("GONE-1", 800, 3).await;
    shop.add("ann", "GONE-1", 2).await.expect(201);
    shop.set_stock(&product, 1).await;

    let order = shop.checkout("ann", cards::good(), None).await.expect(409);
    reads_back(&shop, &order, "ann").await;
    assert_eq!((order["status"].as_str(), order["cancel_reason"].as_str()), (Some("CANCELLED"), Some("out_of_stock")));
    assert_eq!(order["refunded"], false);
    let note = order["history"][1]["note"].as_str().unwrap();
    assert!(note.contains("GONE-1 (2 requested, 1 in stock)"), "{note}");
    assert_eq!(shop.payments(&id(&order)).await, Vec::<Value>::new(), "never charged");
    assert_eq!(shop.stock(&product).await, 1);
    let events = shop.events_of(&id(&order), 2).await;
    assert_eq!((events[1]["type"].as_str(), &events[1]["refunded"]), (Some("OrderCancelled"), &json!(false)));
}

/// Two users check out the last unit at once: exactly one gets it; the
/// other's order is cancelled and its money never taken or given back.
async fn two_carts_race_for_the_last_unit(shop: &Shop) {
    let product = shop.product("LAST-1", 4200, 1).await;
    shop.add("ann", "LAST-1", 1).await.expect(201);
    shop.add("bob", "LAST-1", 1).await.expect(201);

    let (a, b) = tokio::join!(shop.checkout("ann", cards::good(), None), shop.checkout("bob", cards::good(), None));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{} / {}", a.body, b.body);
    let (won, lost) = if a.status == 201 { (a.body, b.body) } else { (b.body, a.body) };
    reads_back(shop, &won, won["user_id"].as_str().unwrap()).await;
    reads_back(shop, &lost, lost["user_id"].as_str().unwrap()).await;
    assert_eq!((won["status"].as_str(), lost["status"].as_str()), (Some("CONFIRMED"), Some("CANCELLED")));
    assert_eq!(lost["cancel_reason"], "out_of_stock");
    assert_eq!(shop.stock(&product).await, 0);

    let lost_payments = shop.payments(&id(&lost)).await;
    if lost["refunded"] == true {
        assert_eq!(lost_payments.len(), 1, "{lost_payments:?}");
        assert_eq!(lost_payments[0]["refunded_cents"], lost_payments[0]["amount_cents"]);
    } else {
        assert_eq!(lost_payments, Vec::<Value>::new(), "a cancelled order without a refund was never charged");
    }
    let won_payments = shop.payments(&id(&won)).await;
    assert_eq!((won_payments.len(), &won_payments[0]["refunded_cents"]), (1, &json!(0)));
    let cancelled = shop.events_of(&id(&lost), 2).await;
    assert_eq!(cancelled[1]["refunded"], lost["refunded"]);
}

#[tokio::test]
async fn embedded_two_carts_race_for_the_last_unit() {
    two_carts_race_for_the_last_unit(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_two_carts_race_for_the_last_unit() {
    two_carts_race_for_the_last_unit(&Shop::postgres().await).await;
}

/// A user keeps adding products while their checkouts run: each order's
/// lines leave the cart, and every product added stays unless an order
/// bought it. The checkout's write comes late (once the order is
/// confirmed), so a write that did not check what it overwrote would drop
/// the additions made meanwhile; an addition that did not would bring back
/// what the checkout took out.
async fn additions_made_during_a_checkout_stay_in_the_cart(shop: &Shop) {
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 12;
    const EXTRAS: usize = ROUNDS * PER_ROUND;
    shop.product("KEEP-A", 1000, 100).await;
    for i in 0..EXTRAS {
        shop.product(&format!("KEEP-B{i}"), 100, 100).await;
    }
    let mut added = BTreeSet::new();
    let mut bought = BTreeSet::new();
    let mut extras = (0..EXTRAS).map(|i| format!("KEEP-B{i}"));
    for round in 0..ROUNDS {
        shop.add("ann", "KEEP-A", 1).await.expect(201);
        let done = AtomicBool::new(false);
        let checkout = async {
            let order = shop.checkout("ann", cards::good(), None).await;
            done.store(true, Ordering::SeqCst);
            order
        };
        // Adds one product after another until the checkout has answered
        // (the addition in flight then is waited for), at most
        // `PER_ROUND`: a cart holds 50 products.
        let additions = async {
            for _ in 0..PER_ROUND {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let sku = extras.next().expect("a product for each addition");
                shop.add("ann", &sku, 1).await.expect(201);
                added.insert(sku);
            }
        };
        let (order, ()) = tokio::join!(checkout, additions);
        let order = order.expect(201);
        assert_eq!(order["status"], "CONFIRMED", "{order}");
        bought.extend(skus(&order["lines"]));
        assert!(bought.contains("KEEP-A"), "{order}");
        let cart = shop.get("/api/cart", "ann").await.expect(200);
        let expected: BTreeSet<String> = added.difference(&bought).cloned().collect();
        assert_eq!(skus(&cart["items"]), expected, "round {round}: the cart after the checkout {order}");
    }
    assert!(added.difference(&bought).next().is_some(), "no addition crossed a checkout: the test proved nothing");
}

/// The SKUs of a list of order or cart lines.
fn skus(lines: &Value) -> BTreeSet<String> {
    lines.as_array().unwrap().iter().map(|line| line["sku"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn embedded_additions_made_during_a_checkout_stay_in_the_cart() {
    additions_made_during_a_checkout_stay_in_the_cart(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_additions_made_during_a_checkout_stay_in_the_cart() {
    additions_made_during_a_checkout_stay_in_the_cart(&Shop::postgres().await).await;
}

async fn checkout_with_an_idempotency_key_places_one_order(shop: &Shop) {
    let product = shop.product("IDEM-1", 1500, 10).await;
    shop.add("ann", "IDEM-1", 2).await.expect(201);

    // Two at once, then one more later: one order, one charge.
    // The one that comes second finds the order placed and, while the
    // other's saga still runs, answers 202 with it PENDING.
    let (first, second) = tokio::join!(
        shop.checkout("ann", cards::good(), Some("buy-1")),
        shop.checkout("ann", cards::good(), Some("buy-1"))
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert!(statuses == [201, 201] || statuses == [201, 202], "{} / {}", first.body, second.body);
    assert_eq!(id(&second.body), id(&first.body));
    let again = shop.checkout("ann", cards::good(), Some("buy-1")).await.expect(201);
    assert_eq!(id(&again), id(&first.body));
    assert_eq!(again["status"], "CONFIRMED");
    assert_eq!(shop.payments(&id(&again)).await.len(), 1);
    assert_eq!(shop.stock(&product).await, 8);
    assert_eq!(shop.get("/api/orders", "ann").await.expect(200)["total"], 1);

    // The key is the user's own: another user's same key is another order.
    shop.add("bob", "IDEM-1", 1).await.expect(201);
    let bobs = shop.checkout("bob", cards::good(), Some("buy-1")).await.expect(201);
    assert_ne!(id(&bobs), id(&again));

    // A declined checkout answers the same way when retried with its key.
    shop.add("ann", "IDEM-1", 1).await.expect(201);
    let declined = shop.checkout("ann", cards::declined(), Some("buy-2")).await.expect(402);
    let replayed = shop.checkout("ann", cards::good(), Some("buy-2")).await.expect(402);
    assert_eq!(id(&replayed), id(&declined));
    // A new key is a new checkout (the cart is still there).
    assert_eq!(shop.checkout("ann", cards::good(), Some("buy-3")).await.expect(201)["status"], "CONFIRMED");
}

#[tokio::test]
async fn embedded_checkout_with_an_idempotency_key_places_one_order() {
    checkout_with_an_idempotency_key_places_one_order(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_checkout_with_an_idempotency_key_places_one_order() {
    checkout_with_an_idempotency_key_places_one_order(&Shop::postgres().await).await;
}

#[tokio::test]
async fn a_checkout_that_cannot_start_places_no_order() {
    let shop = Shop::embedded();
    let product = shop.product("NOPE-1", 500, 10).await;

    let empty = shop.checkout("ann", cards::good(), None).await.expect(400);
    assert_eq!(empty["error"]["code"], "cart_empty");
    shop.add("ann", "NOPE-1", 1).await.expect(201);

    let no_card = shop.bazaar.send_as("POST", "/api/orders/checkout", Some("ann"), Some(json!({})), &[]).await.expect(400);
    assert_eq!(fields(&no_card), ["card"]);
    let bad_card = json!({"number": "4242424242424241", "exp_month": 13, "exp_year": 2099, "cvc": 12});
    assert_eq!(
        fields(&shop.checkout("ann", bad_card, None).await.expect(400)),
        ["card.number", "card.exp_month", "card.cvc"]
    );
    let expired = json!({"number": cards::GOOD, "exp_month": 1, "exp_year": 2020, "cvc": "123"});
    assert_eq!(fields(&shop.checkout("ann", expired, None).await.expect(400)), ["card.exp_year"]);
    let bad_key = shop.checkout("ann", cards::good(), Some("has space")).await.expect(400);
    assert_eq!(fields(&bad_key), ["Idempotency-Key"]);
    assert_eq!(
        shop.bazaar.send_as("POST", "/api/orders/checkout", None, Some(json!({"card": cards::good()})), &[]).await.status,
        401
    );

    // A product withdrawn from the catalog after it was put in the cart.
    let path = format!("/api/products/{product}");
    assert_eq!(shop.bazaar.send_as("DELETE", &path, Some("admin"), None, &[("x-user-role", "admin")]).await.status, 204);
    let withdrawn = shop.checkout("ann", cards::good(), None).await.expect(409);
    assert_eq!(withdrawn["error"]["code"], "products_unavailable");

    assert_eq!(shop.get("/api/orders", "ann").await.expect(200)["total"], 0);
}

#[tokio::test]
async fn checkout_prices_the_order_from_the_catalog_as_it_is_now() {
    let shop = Shop::embedded();
    let product = shop.product("PRICE-1", 1000, 10).await;
    shop.add("ann", "PRICE-1", 2).await.expect(201);
    let mut changed = shop.get(&format!("/api/products/{product}"), "admin").await.expect(200);
    changed["price_cents"] = json!(1100);
    let path = format!("/api/products/{product}");
    shop.bazaar.send_as("PUT", &path, Some("admin"), Some(changed), &[("x-user-role", "admin")]).await.expect(200);

    let order = shop.checkout("ann", cards::good(), None).await.expect(201);
    assert_eq!(
        (order["lines"][0]["unit_price_cents"].clone(), order["total_cents"].clone()),
        (json!(1100), json!(2200))
    );
    assert_eq!(shop.payments(&id(&order)).await[0]["amount_cents"], 2200);
}

// ------------------------------------------------------------ reading orders

#[tokio::test]
async fn users_read_their_own_orders_newest_first() {
    let shop = Shop::embedded();
    shop.product("READ-1", 700, 10).await;
    let mut placed = Vec::new();
    for card in [cards::good(), cards::declined(), cards::good()] {
        shop.add("ann", "READ-1", 1).await;
        let reply = shop.checkout("ann", card, None).await;
        placed.push(id(&reply.body));
    }
    shop.add("bob", "READ-1", 1).await.expect(201);
    let bobs = shop.checkout("bob", cards::good(), None).await.expect(201);

    let page = shop.get("/api/orders", "ann").await.expect(200);
    let listed: Vec<String> = page["items"].as_array().unwrap().iter().map(id).collect();
    placed.reverse();
    assert_eq!(listed, placed);
    assert_eq!(
        (page["total"].clone(), page["page"].clone(), page["per_page"].clone()),
        (json!(3), json!(1), json!(20))
    );
    assert_eq!(page["items"][1]["status"], "CANCELLED");
    assert_eq!(page["items"][0]["history"].as_array().unwrap().len(), 2);

    let second = shop.get("/api/orders?page=2&per_page=2", "ann").await.expect(200);
    assert_eq!(second["items"].as_array().unwrap().iter().map(id).collect::<Vec<_>>(), [placed[2].clone()]);
    assert_eq!(fields(&shop.get("/api/orders?per_page=0", "ann").await.expect(400)), ["per_page"]);

    let one = shop.get(&format!("/api/orders/{}", placed[0]), "ann").await.expect(200);
    assert_eq!(one, page["items"][0]);
    for field in
        ["id", "user_id", "status", "lines", "total_cents", "payment_id", "created_at_ms", "updated_at_ms", "history"]
    {
        assert!(one.get(field).is_some(), "{field} missing from {one}");
    }
    // Another user's order does not exist for ann.
    let theirs = shop.get(&format!("/api/orders/{}", id(&bobs)), "ann").await.expect(404);
    assert_eq!(theirs["error"]["code"], "not_found");
    assert_eq!(shop.get("/api/orders/ord_nope", "ann").await.status, 404);
    assert_eq!(shop.bazaar.send_as("GET", "/api/orders", None, None, &[]).await.status, 401);
    assert_eq!(shop.bazaar.send_as("DELETE", &format!("/api/orders/{}", placed[0]), Some("ann"), None, &[]).await.status, 405);
}

// --------------------------------------------------- crashes and the outbox

/// An order as checkout leaves it at the crash: PENDING, its lease run out,
/// stock checked; the charge it was about to send is `charge`.
async fn crashed_saga(shop: &Shop, order_id: &str, user: &str, sku: &str, price_cents: i64) -> Value {
    crashed_saga_paying_with(shop, order_id, user, sku, price_cents, cards::good()).await
}

/// [`crashed_saga`], about to charge `card`.
async fn crashed_saga_paying_with(shop: &Shop, order_id: &str, user: &str, sku: &str, price_cents: i64, card: Value) -> Value {
    shop.get("/api/orders", user).await.expect(200); // orders migrates its database on first use
    let charge = json!({"order_id": order_id, "amount_cents": price_cents, "currency": "USD", "card": card});
    let at = now_ms() - 60_000;
    shop.orders_sql(&[
        format!(
            "INSERT INTO orders (id, user_id, status, currency, total_cents, charge_request, lease_until_ms, \
             created_at_ms, updated_at_ms) VALUES ('{order_id}', '{user}', 'PENDING', 'USD', {price_cents}, '{charge}', \
             {at}, {at}, {at})"
        ),
        format!(
            "INSERT INTO order_lines (order_id, line_no, sku, name, quantity, unit_price_cents) \
             VALUES ('{order_id}', 1, '{sku}', 'Test {sku}', 1, {price_cents})"
        ),
        format!("INSERT INTO order_history (order_id, status, at_ms, note) VALUES ('{order_id}', 'PENDING', {at}, 'order placed')"),
        format!(
            "INSERT INTO saga_steps (order_id, step, outcome, detail, attempts, at_ms) \
             VALUES ('{order_id}', 'check_stock', 'available', NULL, 1, {at})"
        ),
    ])
    .await;
    charge
}

/// Crashed after payments captured the charge but before the saga wrote it
/// down: the resume charges again with the same key, gets the same payment,
/// and finishes. The next checkout (anyone's) resumes it, once it has
/// answered its own customer.
async fn a_saga_that_crashed_after_charging_is_finished_once(shop: &Shop) {
    let product = shop.product("CRASH-1", 2100, 5).await;
    let charge = crashed_saga(shop, "ord_crashed_after_charge", "cat", "CRASH-1", 2100).await;
    let paid = shop
        .bazaar
        .send_as(
            "POST",
            "/api/payments/charges",
            Some("cat"),
            Some(charge),
            &[("idempotency-key", "charge-ord_crashed_after_charge")],
        )
        .await
        .expect(201);

    shop.add("dan", "CRASH-1", 1).await.expect(201);
    shop.checkout("dan", cards::good(), None).await.expect(201);

    let order = shop.order_once("ord_crashed_after_charge", "cat", "CONFIRMED").await;
    assert_eq!(order["payment_id"], paid["payment_id"]);
    assert_eq!(shop.payments("ord_crashed_after_charge").await.len(), 1, "charged once");
    assert_eq!(shop.stock(&product).await, 3);
    let events = shop.events_of("ord_crashed_after_charge", 1).await;
    assert_eq!(types(&events), ["OrderConfirmed"]);
}

#[tokio::test]
async fn embedded_a_saga_that_crashed_after_charging_is_finished_once() {
    a_saga_that_crashed_after_charging_is_finished_once(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_a_saga_that_crashed_after_charging_is_finished_once() {
    a_saga_that_crashed_after_charging_is_finished_once(&Shop::postgres().await).await;
}

/// A stale saga whose card processor is down (a try of its charge takes 5 s
/// to fail) holds up no checkout: the next checkout answers its own
/// customer before it resumes the stale saga, so when the answer arrives
/// no try of that charge has been written down.
#[tokio::test]
async fn a_stale_saga_stuck_on_its_payment_holds_up_no_checkout() {
    let shop = Shop::embedded();
    shop.product("STUCK-1", 1200, 5).await;
    crashed_saga_paying_with(&shop, "ord_stuck", "cat", "STUCK-1", 1200, cards::unavailable()).await;

    shop.add("dan", "STUCK-1", 1).await.expect(201);
    assert_eq!(shop.checkout("dan", cards::good(), None).await.expect(201)["status"], "CONFIRMED");
    let query = json!({"sql": "SELECT step, attempts FROM saga_steps WHERE order_id = 'ord_stuck' ORDER BY step", "params": []});
    let steps = shop.bazaar.send_as("POST", "/probe/sqlite3/orders", None, Some(query), &[]).await.expect(200);
    assert_eq!(steps["rows"], json!([["check_stock", 1]]), "the stale saga's charge is not tried before the answer");
    assert_eq!(shop.get("/api/orders/ord_stuck", "cat").await.expect(200)["status"], "PENDING");
}

/// Crashed after checking stock; by the resume the stock is gone, so the
/// resumed saga charges, cannot reserve, refunds and releases.
#[tokio::test]
async fn a_resumed_saga_whose_stock_went_meanwhile_refunds_the_payment() {
    let shop = Shop::embedded();
    let product = shop.product("CRASH-2", 3300, 1).await;
    crashed_saga(&shop, "ord_stock_went", "cat", "CRASH-2", 3300).await;
    shop.set_stock(&product, 0).await;
    // A saga whose run is alive (its lease not run out) is left alone.
    crashed_saga(&shop, "ord_still_running", "cat", "CRASH-2", 3300).await;
    let lease = now_ms() + 600_000;
    shop.orders_sql(&[format!("UPDATE orders SET lease_until_ms = {lease} WHERE id = 'ord_still_running'")]).await;

    let resumed = shop.bazaar.send_as("POST", "/internal/sagas/resume", None, None, &[]).await.expect(200);
    assert_eq!(resumed["resumed"], json!([{"order_id": "ord_stock_went", "status": "CANCELLED"}]), "{resumed}");

    let order = shop.get("/api/orders/ord_stock_went", "cat").await.expect(200);
    assert_eq!((order["cancel_reason"].as_str(), &order["refunded"]), (Some("out_of_stock"), &json!(true)));
    let payments = shop.payments("ord_stock_went").await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["refunded_cents"], 3300);
    assert_eq!(order["payment_id"], payments[0]["payment_id"]);
    assert_eq!(shop.stock(&product).await, 0);
    let events = shop.events_of("ord_stock_went", 1).await;
    assert_eq!((events[0]["type"].as_str(), &events[0]["refunded"]), (Some("OrderCancelled"), &json!(true)));

    assert_eq!(shop.get("/api/orders/ord_still_running", "cat").await.expect(200)["status"], "PENDING");
    // Resuming again finds nothing to do.
    let again = shop.bazaar.send_as("POST", "/internal/sagas/resume", None, None, &[]).await.expect(200);
    assert_eq!(again["resumed"], json!([]));
}

/// Events wait in the outbox while the bus cannot take them, and reach it,
/// in order and once each, when it can.
#[tokio::test]
async fn events_wait_in_the_outbox_until_the_bus_takes_them() {
    let unreachable = format!("redis://127.0.0.1:{}", free_port());
    let shop = Shop::start(None, &[("SPIN_VARIABLE_BUS_ADDRESS", unreachable)]);
    shop.product("OUTBOX-1", 650, 5).await;
    shop.add("ann", "OUTBOX-1", 1).await.expect(201);
    let order = shop.checkout("ann", cards::good(), None).await.expect(201);

    // The checkout's own relay runs after its response, so this one may find
    // it holding the outbox (and report no attempt): ask until one tries.
    let started = Instant::now();
    let relay = loop {
        let relay = shop.bazaar.send_as("POST", "/internal/outbox/relay", None, None, &[]).await.expect(200);
        if relay["error"].as_str().is_some() || started.elapsed() > Duration::from_secs(10) {
            break relay;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((relay["published"].clone(), relay["pending"].clone()), (json!(0), json!(2)), "{relay}");
    assert!(relay["error"].as_str().is_some(), "{relay}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shop.events().await, Vec::<Value>::new());

    let shop = shop.restart(&[]);
    let relay = shop.bazaar.send_as("POST", "/internal/outbox/relay", None, None, &[]).await.expect(200);
    assert_eq!(relay, json!({"published": 2, "pending": 0, "error": null}));
    let events = shop.events_of(&id(&order), 2).await;
    assert_eq!(types(&events), ["OrderCreated", "OrderConfirmed"]);
    let relay = shop.bazaar.send_as("POST", "/internal/outbox/relay", None, None, &[]).await.expect(200);
    assert_eq!(relay["published"], 0, "a sent event is not sent again");
}

/// The relay runs once the response is out: a bus that takes the
/// connection and never answers holds up no checkout. (Relaying before
/// answering, this checkout ran into the host's request timeout.) Its
/// events wait in the outbox.
#[tokio::test]
async fn a_bus_that_never_answers_holds_up_no_checkout() {
    // Connections complete in the listener's backlog and are never read.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("redis://{}", silent.local_addr().unwrap());
    let shop = Shop::start(None, &[("SPIN_VARIABLE_BUS_ADDRESS", address), ("BAZAAR_REQUEST_TIMEOUT", "3s".to_string())]);
    shop.product("SILENT-1", 700, 5).await;
    shop.add("ann", "SILENT-1", 1).await.expect(201);
    let order = shop.checkout("ann", cards::good(), None).await.expect(201);
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(shop.pending_events().await, 2, "both events wait in the outbox");
    drop(silent);
}

/// The relay after a checkout sends that order's events at once, even
/// while another relay holds the outbox (the lease is the backlog sweep's,
/// `POST /internal/outbox/relay`), and leaves that lease alone. (Waiting
/// for the holder, with 16 customers checking out, kept events 1.5 s in the
/// outbox and a hundred instances polling for the lease.)
async fn a_checkout_relays_its_events_while_another_relay_holds_the_outbox(shop: &Shop) {
    shop.product("HELD-1", 800, 5).await;
    shop.add("ann", "HELD-1", 1).await.expect(201);
    shop.get("/api/orders", "ann").await.expect(200); // orders migrates its database on first use
    let until = now_ms() + 60_000;
    shop.orders_sql(&[format!(
        "UPDATE outbox_relay SET holder = 'another-relay', locked_until_ms = {until} WHERE name = 'relay'"
    )])
    .await;
    let order = id(&shop.checkout("ann", cards::good(), None).await.expect(201));

    let events = shop.events_of(&order, 2).await;
    assert_eq!(types(&events), ["OrderCreated", "OrderConfirmed"]);
    assert_eq!(shop.relay_holder().await.as_deref(), Some("another-relay"), "the sweep's lease is left alone");
}

#[tokio::test]
async fn embedded_a_checkout_relays_its_events_while_another_relay_holds_the_outbox() {
    a_checkout_relays_its_events_while_another_relay_holds_the_outbox(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_a_checkout_relays_its_events_while_another_relay_holds_the_outbox() {
    a_checkout_relays_its_events_while_another_relay_holds_the_outbox(&Shop::postgres().await).await;
}

/// The relay after a change sends only its orders' events still pending: a
/// saga whose checkout answered 202 had its `OrderCreated` sent then, and
/// the resume that confirms it sends `OrderConfirmed` alone.
async fn a_resumed_saga_sends_only_its_new_event(shop: &Shop) {
    shop.product("SENT-1", 1500, 5).await;
    crashed_saga(shop, "ord_created_sent", "cat", "SENT-1", 1500).await;
    let at = now_ms() - 60_000;
    let created = json!({
        "event_id": "evt_created_sent", "order_id": "ord_created_sent", "user_id": "cat", "occurred_at_ms": at,
        "type": "OrderCreated", "lines": [], "total_cents": 1500
    });
    shop.orders_sql(&[format!(
        "INSERT INTO outbox (event_id, order_id, seq, kind, payload, created_at_ms, sent_at_ms) \
         VALUES ('evt_created_sent', 'ord_created_sent', 1, 'OrderCreated', '{created}', {at}, {at})"
    )])
    .await;

    let resumed = shop.bazaar.send_as("POST", "/internal/sagas/resume", None, None, &[]).await.expect(200);
    assert_eq!(resumed["resumed"], json!([{"order_id": "ord_created_sent", "status": "CONFIRMED"}]), "{resumed}");
    // The relay publishes its order's events oldest first, so a second
    // `OrderCreated` would be on the bus before the `OrderConfirmed`.
    let events = shop.events_of("ord_created_sent", 1).await;
    assert_eq!(types(&events), ["OrderConfirmed"]);
    shop.no_event_pending("the OrderConfirmed sent").await;
}

#[tokio::test]
async fn embedded_a_resumed_saga_sends_only_its_new_event() {
    a_resumed_saga_sends_only_its_new_event(&Shop::embedded()).await;
}

#[tokio::test]
async fn postgres_a_resumed_saga_sends_only_its_new_event() {
    a_resumed_saga_sends_only_its_new_event(&Shop::postgres().await).await;
}

/// An event an earlier relay left pending (its publish failed) goes out
/// with the relay after a later change, once it has waited long enough to
/// be nobody's work in progress.
#[tokio::test]
async fn a_later_checkout_takes_along_events_left_pending() {
    let shop = Shop::embedded();
    shop.product("LEFT-1", 900, 5).await;
    shop.add("ann", "LEFT-1", 1).await.expect(201);
    let first = id(&shop.checkout("ann", cards::good(), None).await.expect(201));
    shop.events_of(&first, 2).await;
    // As a failed publish leaves it: pending, with an attempt, written
    // 10 s ago.
    shop.orders_sql(&[format!(
        "UPDATE outbox SET sent_at_ms = NULL, attempts = 1, last_error = 'publishing to the bus: refused', \
         created_at_ms = created_at_ms - 10000 WHERE order_id = '{first}' AND kind = 'OrderConfirmed'"
    )])
    .await;
    assert_eq!(shop.pending_events().await, 1);

    shop.add("bob", "LEFT-1", 1).await.expect(201);
    let second = id(&shop.checkout("bob", cards::good(), None).await.expect(201));
    shop.events_of(&second, 2).await;
    let started = Instant::now();
    shop.no_event_pending("the event left pending").await;
    // Delivered twice now: the bus has it again.
    let confirmed = |events: Vec<Value>| events.iter().filter(|e| e["order_id"] == first && e["type"] == "OrderConfirmed").count();
    while confirmed(shop.events().await) < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "the event left pending never reached the bus again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----------------------------------------------------------------- Postgres
