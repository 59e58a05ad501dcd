//! End to end: the shop through its gateway, as a customer uses it — the
//! seed's sequence diagram (register → login → browse → cart → checkout →
//! notification) and the checkout saga's compensations, in embedded mode
//! (SQLite files, in-process bus) and production mode (a Postgres database
//! per service, key-value stores on Redis, the bus on Redis Streams).
use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::postgres::TestDatabase;
use support::{Bazaar, Up, add_and_check_out, call, cards, client, get_fresh, require_components, require_redis};

const SERVICES: [&str; 7] = ["gateway", "auth", "users", "products", "orders", "payments", "notifications"];

/// The shop in one of its two modes, with what the test must clean up.
struct Shop {
    bazaar: Bazaar,
    _state: tempfile::TempDir,
    _production: Option<Production>,
}

fn start_embedded() -> Shop {
    require_components(&SERVICES);
    let state = tempfile::tempdir().unwrap();
    let rc = support::embedded_runtime_config(state.path());
    let bazaar = Bazaar::start(
        &support::root().join("spin.toml"),
        Up::default().state_dir(state.path()).arg("--runtime-config-file").arg(rc.to_str().unwrap()),
    );
    Shop { bazaar, _state: state, _production: None }
}

/// Production mode: each service its own new Postgres database, the
/// key-value stores and the bus in a Redis database of their own.
struct Production {
    _databases: Vec<TestDatabase>,
    redis_db: u8,
}

impl Drop for Production {
    fn drop(&mut self) {
        let _ = std::process::Command::new("redis-cli").args(["-n", &self.redis_db.to_string(), "FLUSHDB"]).output();
    }
}

async fn start_production(redis_db: u8) -> Shop {
    require_components(&SERVICES);
    require_redis();
    let mut databases = Vec::new();
    let mut up = Up::default();
    for service in ["auth", "users", "products", "orders", "payments", "notifications"] {
        let db = TestDatabase::create_for(service).await;
        up = up.env(&format!("SPIN_VARIABLE_{}_DATABASE_URL", service.to_uppercase()), db.url());
        databases.push(db);
    }
    let production = Production { _databases: databases, redis_db };
    let _ = std::process::Command::new("redis-cli").args(["-n", &redis_db.to_string(), "FLUSHDB"]).output();
    let state = tempfile::tempdir().unwrap();
    let rc = support::production_runtime_config(state.path(), redis_db);
    let bazaar = Bazaar::start(
        &support::root().join("spin.toml"),
        up.state_dir(state.path()).arg("--runtime-config-file").arg(rc.to_str().unwrap()),
    );
    Shop { bazaar, _state: state, _production: Some(production) }
}

/// A logged-in customer.
struct Customer {
    token: String,
    user_id: String,
}

async fn register_and_login(b: &Bazaar, email: &str) -> Customer {
    let token = support::register_and_login(b, email, "Ada").await;
    Customer { token, user_id: String::new() }.with_profile(b).await
}

impl Customer {
    async fn with_profile(mut self, b: &Bazaar) -> Customer {
        let (s, v) = call(b, "GET", "/api/users/me", Some(&self.token), None).await;
        assert_eq!(s, 200, "profile: {v}");
        self.user_id = v["user_id"].as_str().unwrap().to_string();
        self
    }
}

/// A product with at least `stock` units, as the catalog lists it.
async fn a_product_in_stock(b: &Bazaar, stock: i64) -> Value {
    let (s, v) = call(b, "GET", "/api/products?per_page=100", None, None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().iter().find(|p| p["stock"].as_i64().unwrap() >= stock).cloned().expect("a product in stock")
}

/// The stock products has now, past the gateway's catalog cache.
async fn stock_of(b: &Bazaar, c: &Customer, id: &str) -> i64 {
    let (s, v) = get_fresh(b, &format!("/api/products/{id}"), &c.token).await;
    assert_eq!(s, 200, "{v}");
    v["stock"].as_i64().unwrap()
}

async fn notifications(b: &Bazaar, c: &Customer, at_least: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (s, v) = call(b, "GET", "/api/notifications", Some(&c.token), None).await;
        assert_eq!(s, 200, "{v}");
        let items = v["items"].as_array().unwrap().clone();
        if items.len() >= at_least || started.elapsed() > Duration::from_secs(30) {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn happy_path(shop: &Shop) {
    let b = &shop.bazaar;
    let ada = register_and_login(b, &format!("ada-{}@example.com", support::free_port())).await;
    // users publishes the new profile; notifications keeps it, to address
    // ada's notifications without asking users.
    let kept = format!("keeping the profile of user {} at revision 1", ada.user_id);
    assert!(b.wait_for_log(&kept), "no {kept:?} in:\n{}", b.logs());
    let product = a_product_in_stock(b, 2).await;
    let id = product["id"].as_str().unwrap();
    let sku = product["sku"].as_str().unwrap();
    let before = stock_of(b, &ada, id).await;

    let (s, order) = add_and_check_out(b, &ada.token, sku, 2, cards::GOOD).await;
    assert_eq!(s, 201, "{order}");
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["total_cents"], product["price_cents"].as_i64().unwrap() * 2);
    assert_eq!(stock_of(b, &ada, id).await, before - 2);

    let payment_id = order["payment_id"].as_str().unwrap();
    let (s, payment) = call(b, "GET", &format!("/api/payments/{payment_id}"), Some(&ada.token), None).await;
    assert_eq!(s, 200, "{payment}");
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount_cents"], order["total_cents"]);

    let (_, cart) = call(b, "GET", "/api/cart", Some(&ada.token), None).await;
    assert!(cart["items"].as_array().is_none_or(|i| i.is_empty()), "cart emptied: {cart}");

    let mine = notifications(b, &ada, 2).await;
    let order_id = order["id"].as_str().unwrap();
    assert!(mine.iter().any(|n| n["order_id"] == order_id && n["subject"].as_str().unwrap().contains("confirmed")), "{mine:?}");
}

async fn declined_payment_cancels_and_reserves_nothing(shop: &Shop) {
    let b = &shop.bazaar;
    let bob = register_and_login(b, &format!("bob-{}@example.com", support::free_port())).await;
    let product = a_product_in_stock(b, 1).await;
    let before = stock_of(b, &bob, product["id"].as_str().unwrap()).await;
    let (s, order) = add_and_check_out(b, &bob.token, product["sku"].as_str().unwrap(), 1, cards::DECLINED).await;
    assert_eq!(s, 402, "{order}");
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(stock_of(b, &bob, product["id"].as_str().unwrap()).await, before);
}

/// Two customers race for the last unit: exactly one order is confirmed;
/// the other is cancelled, and its card refunded or never charged.
async fn the_last_unit_goes_to_exactly_one_checkout(shop: &Shop, admin_email: &str) {
    let b = &shop.bazaar;
    let admin = register_and_login(b, admin_email).await;
    let (s, product) = call(
        b,
        "POST",
        "/api/products",
        Some(&admin.token),
        Some(json!({"sku": format!("LAST-{}", support::free_port()), "name": "The last one", "description": "Only one left",
                    "category": "collectibles", "price_cents": 9900, "stock": 1})),
    )
    .await;
    assert_eq!(s, 201, "{product}");
    let sku = product["sku"].as_str().unwrap().to_string();
    let c1 = register_and_login(b, &format!("c1-{}@example.com", support::free_port())).await;
    let c2 = register_and_login(b, &format!("c2-{}@example.com", support::free_port())).await;
    let (r1, r2) = tokio::join!(add_and_check_out(b, &c1.token, &sku, 1, cards::GOOD), add_and_check_out(b, &c2.token, &sku, 1, cards::GOOD));
    let results = [r1, r2];
    let confirmed = results.iter().filter(|(_, o)| o["status"] == "CONFIRMED").count();
    let cancelled: Vec<&Value> = results.iter().filter(|(_, o)| o["status"] == "CANCELLED").map(|(_, o)| o).collect();
    assert_eq!((confirmed, cancelled.len()), (1, 1), "{results:?}");
    assert_eq!(stock_of(b, &admin, product["id"].as_str().unwrap()).await, 0);
    if let Some(payment_id) = cancelled[0]["payment_id"].as_str() {
        let (_, payment) = call(b, "GET", &format!("/api/payments/{payment_id}"), Some(&admin.token), None).await;
        assert_eq!(payment["refunded_cents"], payment["amount_cents"], "the loser is refunded: {payment}");
    }
}

async fn bad_input_gets_clear_errors(shop: &Shop) {
    let b = &shop.bazaar;
    let resp = client().post(b.url("/api/auth/register")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["code"].is_string(), "{v}");
    let big = vec![b'x'; 2 * 1024 * 1024];
    let resp = client().post(b.url("/api/auth/register")).body(big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let (s, v) = call(b, "GET", "/api/orders", None, None).await;
    assert_eq!(s, 401, "{v}");
}

#[tokio::test]
async fn embedded_happy_path() {
    happy_path(&start_embedded()).await;
}

#[tokio::test]
async fn embedded_declined_payment() {
    declined_payment_cancels_and_reserves_nothing(&start_embedded()).await;
}

#[tokio::test]
async fn embedded_last_unit() {
    the_last_unit_goes_to_exactly_one_checkout(&start_embedded(), "admin@bazaar.example").await;
}

#[tokio::test]
async fn embedded_bad_input() {
    bad_input_gets_clear_errors(&start_embedded()).await;
}

#[tokio::test]
async fn production_happy_path() {
    happy_path(&start_production(support::redis_dbs::SHOP_HAPPY_PATH).await).await;
}

#[tokio::test]
async fn production_declined_payment() {
    declined_payment_cancels_and_reserves_nothing(&start_production(support::redis_dbs::SHOP_DECLINED).await).await;
}

#[tokio::test]
async fn production_last_unit() {
    the_last_unit_goes_to_exactly_one_checkout(&start_production(support::redis_dbs::SHOP_LAST_UNIT).await, "admin@bazaar.example").await;
}
