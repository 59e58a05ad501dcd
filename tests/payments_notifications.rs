//! End to end: the payments and notifications services
//! (components/payments, components/notifications) in the real `bazaar`,
//! reached directly on their routes (tests/apps/payments_notifications).
//!
//! Payments: Idempotency-Key semantics (replay, mismatch, in flight,
//! missing), the simulated processor's test cards, card validation, refunds
//! and their limits. Notifications: order events published on the bus the
//! way orders publishes them (the probe's Redis `publish`), turned into
//! messages once per event, and listed newest first.
//!
//! Every test has its own state directory; the `postgres_*` tests run the
//! same scenarios with the services on databases of their own on the
//! Postgres server at 127.0.0.1:5432 (production mode), which must be
//! running.
use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::postgres::TestDatabase;
use support::{Bazaar, Up, cards, client, require_components, root};

// ------------------------------------------------------------------ harness

/// Where the services keep their data.
enum Backend {
    /// SQLite files in the test's state directory (embedded mode).
    Sqlite,
    /// A Postgres database per service, dropped when the test ends.
    Postgres,
}

/// A running test app and what it owns.
struct Shop {
    bazaar: Bazaar,
    dir: tempfile::TempDir,
    _databases: Vec<TestDatabase>,
}

impl Shop {
    fn url(&self, path: &str) -> String {
        self.bazaar.url(path)
    }

    /// Runs `sql` on the payments database from outside (to age its rows as
    /// if time had passed): Postgres's when the test has one, else the
    /// SQLite file.
    async fn payments_sql(&self, sql: &str) {
        match self._databases.first() {
            Some(postgres) => postgres.admin.batch_execute(sql).await.unwrap(),
            None => {
                self.payments_db().execute_batch(sql).unwrap();
            }
        }
    }

    /// The embedded payments database, opened from outside, to age its rows
    /// as if time had passed.
    fn payments_db(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(self.dir.path().join("payments.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db
    }

    /// The embedded users database, opened from outside, to change a
    /// profile behind users' back (so without a profile event).
    fn users_db(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(self.dir.path().join("users.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db
    }
}

fn manifest(file: &str) -> PathBuf {
    root().join("tests/apps/payments_notifications").join(file)
}

/// A runtime config for one test: its SQLite databases in `dir`, and the
/// embedded bus with quick retries.
fn runtime_config(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for db in ["payments", "notifications", "users"] {
        text.push_str(&format!(
            "[sqlite_database.{db}]\ntype = \"spin\"\npath = \"{}\"\n\n",
            dir.join(format!("{db}.db")).display()
        ));
    }
    text.push_str("[message_bus]\ntype = \"embedded\"\nmax_attempts = 3\nretry_backoff_ms = 50\n");
    let path = dir.join("runtime-config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start_app(file: &str, components: &[&str], backend: Backend) -> Shop {
    require_components(components);
    let dir = tempfile::tempdir().unwrap();
    let (bazaar, databases) = launch(file, dir.path(), backend).await;
    Shop { bazaar, dir, _databases: databases }
}

/// Starts bazaar on the app `file` with its state in `dir`.
async fn launch(file: &str, dir: &Path, backend: Backend) -> (Bazaar, Vec<TestDatabase>) {
    let rc = runtime_config(dir);
    let mut up = Up::default().state_dir(&dir.join("state")).arg("--runtime-config-file").arg(rc.to_str().unwrap());
    let mut databases = Vec::new();
    if let Backend::Postgres = backend {
        for service in ["payments", "notifications"] {
            let db = TestDatabase::create_for(service).await;
            up = up.env(&format!("SPIN_VARIABLE_{}_DATABASE_URL", service.to_uppercase()), db.url());
            databases.push(db);
        }
    }
    (Bazaar::start(&manifest(file), up), databases)
}

async fn start(backend: Backend) -> Shop {
    start_app("spin.toml", &["payments", "notifications", "users", "probe"], backend).await
}

/// A response as the tests look at it.
struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }

    fn field_names(&self) -> Vec<String> {
        self.json()["error"]["fields"]
            .as_array()
            .map(|fields| fields.iter().map(|f| f["field"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply { status, headers, text: response.text().await.unwrap() }
}

async fn get(shop: &Shop, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().get(shop.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// POSTs `body` with `Idempotency-Key: key` (none when `None`).
async fn post(shop: &Shop, path: &str, key: Option<&str>, body: &Value) -> Reply {
    let mut request = client().post(shop.url(path)).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    send(request).await
}

fn charge_body(order_id: &str, amount_cents: i64, card_number: &str) -> Value {
    json!({
        "order_id": order_id,
        "amount_cents": amount_cents,
        "currency": "USD",
        "card": cards::card(card_number)
    })
}

async fn charge(shop: &Shop, key: &str, body: &Value) -> Reply {
    post(shop, "/api/payments/charges", Some(key), body).await
}

async fn payments_of(shop: &Shop, order_id: &str) -> Vec<Value> {
    let reply = get(shop, &format!("/api/payments?order_id={order_id}"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["items"].as_array().unwrap().clone()
}

async fn refund(shop: &Shop, payment_id: &str, key: &str, body: &Value) -> Reply {
    post(shop, &format!("/api/payments/{payment_id}/refunds"), Some(key), body).await
}

// ----------------------------------------------------------------- payments

async fn a_charge_is_made_once_per_key(shop: &Shop) {
    let body = charge_body("order-1", 2_500, cards::GOOD);
    let first = charge(shop, "key-1", &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);
    let payment = first.json();
    assert_eq!(payment["order_id"], "order-1");
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount_cents"], 2_500);
    assert_eq!(payment["refunded_cents"], 0);
    assert_eq!(payment["card_last4"], "4242");
    assert!(!first.text.contains(cards::GOOD), "the card number must not be echoed: {}", first.text);

    // The same request again: the stored answer, byte for byte.
    let replay = charge(shop, "key-1", &body).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.text, first.text);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // The same request written differently is still the same request.
    let respelled = json!({
        "currency": "usd",
        "card": {"cvc": "123", "exp_year": 2099, "exp_month": 12, "number": "4242 4242 4242 4242"},
        "amount_cents": 2_500,
        "order_id": "order-1"
    });
    let replay = charge(shop, "key-1", &respelled).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")), "{}", replay.text);
    assert_eq!(replay.text, first.text);

    let payments = payments_of(shop, "order-1").await;
    assert_eq!(payments.len(), 1, "one charge only: {payments:?}");
    assert_eq!(payments[0], payment);
    let id = payment["payment_id"].as_str().unwrap();
    let shown = get(shop, &format!("/api/payments/{id}"), &[]).await;
    assert_eq!((shown.status, shown.json()), (200, payment.clone()));
}

async fn a_key_reused_for_another_request_is_refused(shop: &Shop) {
    assert_eq!(charge(shop, "key-2", &charge_body("order-2", 1_000, cards::GOOD)).await.status, 201);
    let other = charge(shop, "key-2", &charge_body("order-2", 1_001, cards::GOOD)).await;
    assert_eq!((other.status, other.error_code().as_str()), (422, "idempotency_key_reused"), "{}", other.text);
    assert_eq!(payments_of(shop, "order-2").await.len(), 1);
}

#[tokio::test]
async fn charge_replays_the_first_response_for_the_same_key() {
    let shop = start(Backend::Sqlite).await;
    a_charge_is_made_once_per_key(&shop).await;
    a_key_reused_for_another_request_is_refused(&shop).await;
}

#[tokio::test]
async fn a_charge_without_an_idempotency_key_is_refused() {
    let shop = start(Backend::Sqlite).await;
    let reply = post(&shop, "/api/payments/charges", None, &charge_body("order-3", 1_000, cards::GOOD)).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "idempotency_key_missing"), "{}", reply.text);
    let too_long = "k".repeat(256);
    let reply = post(&shop, "/api/payments/charges", Some(&too_long), &charge_body("order-3", 1_000, cards::GOOD)).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "idempotency_key_invalid"), "{}", reply.text);
    assert!(payments_of(&shop, "order-3").await.is_empty());
}

async fn concurrent_requests_with_one_key_charge_once(shop: &Shop) {
    let body = charge_body("order-4", 4_200, cards::GOOD);
    let replies = join_all((0..4).map(|_| charge(shop, "key-4", &body))).await;
    let fresh: Vec<&Reply> =
        replies.iter().filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none()).collect();
    assert_eq!(fresh.len(), 1, "exactly one request charges");
    for reply in &replies {
        match reply.status {
            201 => assert_eq!(reply.text, fresh[0].text),
            409 => assert_eq!(reply.error_code(), "idempotency_key_in_use"),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(payments_of(shop, "order-4").await.len(), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_charge_once_on_sqlite() {
    concurrent_requests_with_one_key_charge_once(&start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn a_key_in_flight_is_409_and_a_processor_failure_frees_it() {
    let shop = start(Backend::Sqlite).await;
    let body = charge_body("order-5", 900, cards::UNAVAILABLE);
    let started = Instant::now();
    let (first, second) = tokio::join!(charge(&shop, "key-5", &body), async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        charge(&shop, "key-5", &body).await
    });
    assert_eq!((second.status, second.error_code().as_str()), (409, "idempotency_key_in_use"), "{}", second.text);
    assert!(second.header("retry-after").is_some());
    assert_eq!((first.status, first.error_code().as_str()), (503, "processor_unavailable"), "{}", first.text);
    assert!(started.elapsed() >= Duration::from_secs(5), "the slow card answers after 5 s");
    assert!(payments_of(&shop, "order-5").await.is_empty());

    // Nothing was charged, so the key is free again: a retry is a new
    // attempt (slow again), not a replay of the failure.
    let retry = charge(&shop, "key-5", &body).await;
    assert_eq!(retry.status, 503);
    assert_eq!(retry.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn a_key_left_in_flight_by_a_crash_is_taken_over_after_its_lease() {
    let shop = start(Backend::Sqlite).await;
    let body = charge_body("order-12", 900, cards::UNAVAILABLE);
    let stuck = tokio::spawn({
        let request = client().post(shop.url("/api/payments/charges")).header("Idempotency-Key", "key-12").json(&body);
        async move { request.send().await }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // SIGKILL while the charge is in flight: the key stays claimed.
    let Shop { bazaar, dir, _databases } = shop;
    drop(bazaar);
    let (bazaar, _) = launch("spin.toml", dir.path(), Backend::Sqlite).await;
    let shop = Shop { bazaar, dir, _databases };
    assert!(stuck.await.unwrap().is_err(), "the killed request never answers");
    assert_eq!(charge(&shop, "key-12", &body).await.status, 409, "the lease still holds the key");

    // A minute later the claim is stale: the next request takes the key over
    // and charges (here: the slow card fails again, nothing is replayed).
    shop.payments_db()
        .execute("UPDATE idempotency_keys SET locked_at_ms = locked_at_ms - 61000 WHERE idempotency_key = 'key-12'", [])
        .unwrap();
    let retry = charge(&shop, "key-12", &body).await;
    assert_eq!((retry.status, retry.header("idempotent-replayed")), (503, None), "{}", retry.text);
    assert!(shop.bazaar.wait_for_log("took over the charge key \"key-12\""), "{}", shop.bazaar.logs());
}

/// A charge that outlives its claim on the key records nothing: the
/// request that took the key over charges, once. The payment and the key's
/// answer are written together (one statement on Postgres), and the key's
/// update finding another holder undoes the payment.
async fn a_charge_that_lost_its_key_records_no_payment(backend: Backend) {
    let shop = start(backend).await;
    let body = charge_body("order-14", 1_400, cards::SLOW);
    let (first, second) = tokio::join!(charge(&shop, "key-14", &body), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The first request is still at the (slow) processor; its claim is
        // made to look a minute old, as a lease that ran out would.
        shop.payments_sql("UPDATE idempotency_keys SET locked_at_ms = locked_at_ms - 61000 WHERE idempotency_key = 'key-14'")
            .await;
        charge(&shop, "key-14", &body).await
    });
    assert_eq!((first.status, first.error_code().as_str()), (409, "idempotency_key_in_use"), "{}", first.text);
    assert!(first.text.contains("outlived its claim"), "{}", first.text);
    assert_eq!((second.status, second.header("idempotent-replayed")), (201, None), "{}", second.text);
    let payments = payments_of(&shop, "order-14").await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["payment_id"], second.json()["payment_id"]);
    // The key now answers as the request that charged did.
    let replay = charge(&shop, "key-14", &body).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")), "{}", replay.text);
    assert_eq!(replay.json()["payment_id"], second.json()["payment_id"]);
}

#[tokio::test]
async fn a_charge_that_lost_its_key_records_no_payment_on_sqlite() {
    a_charge_that_lost_its_key_records_no_payment(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_charge_that_lost_its_key_records_no_payment_on_postgres() {
    a_charge_that_lost_its_key_records_no_payment(Backend::Postgres).await;
}

#[tokio::test]
async fn keys_are_forgotten_after_a_day() {
    let shop = start(Backend::Sqlite).await;
    let body = charge_body("order-13", 1_300, cards::GOOD);
    assert_eq!(charge(&shop, "key-13", &body).await.status, 201);
    let day_and_a_minute = 24 * 60 * 60 * 1000 + 60_000;
    let aged = shop
        .payments_db()
        .execute(
            "UPDATE idempotency_keys SET created_at_ms = created_at_ms - ?1 WHERE idempotency_key = 'key-13'",
            [day_and_a_minute],
        )
        .unwrap();
    assert_eq!(aged, 1);
    let again = charge(&shop, "key-13", &body).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, None), "a day-old key is a new key");
    assert_eq!(payments_of(&shop, "order-13").await.len(), 2);
}

#[tokio::test]
async fn a_declined_card_is_402_and_replayed_as_such() {
    let shop = start(Backend::Sqlite).await;
    let body = charge_body("order-6", 1_500, cards::DECLINED);
    let first = charge(&shop, "key-6", &body).await;
    assert_eq!((first.status, first.error_code().as_str()), (402, "card_declined"), "{}", first.text);
    let again = charge(&shop, "key-6", &body).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (402, Some("true")));
    assert_eq!(again.text, first.text);
    assert!(payments_of(&shop, "order-6").await.is_empty());
}

#[tokio::test]
async fn invalid_charges_are_400_with_their_fields() {
    let shop = start(Backend::Sqlite).await;
    let luhn_typo = json!({"order_id": "order-7", "amount_cents": 100, "currency": "USD",
        "card": {"number": "4242424242424241", "exp_month": 12, "exp_year": 2099, "cvc": "123"}});
    let reply = charge(&shop, "key-7a", &luhn_typo).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (400, "validation_failed"), "{}", reply.text);
    assert_eq!(reply.field_names(), ["card.number"]);

    let expired = json!({"order_id": "order-7", "amount_cents": 100, "currency": "USD",
        "card": {"number": cards::GOOD, "exp_month": 1, "exp_year": 2021, "cvc": "123"}});
    assert_eq!(charge(&shop, "key-7b", &expired).await.field_names(), ["card.exp_year"]);

    let everything_wrong = json!({"amount_cents": -5, "currency": 840,
        "card": {"number": "42", "exp_month": 0, "exp_year": 99, "cvc": "1"}});
    let reply = charge(&shop, "key-7c", &everything_wrong).await;
    assert_eq!(
        reply.field_names(),
        ["order_id", "amount_cents", "currency", "card.number", "card.exp_month", "card.exp_year", "card.cvc"]
    );

    let malformed = send(
        client().post(shop.url("/api/payments/charges")).header("Idempotency-Key", "key-7d").body("{\"order_id\": "),
    )
    .await;
    assert_eq!((malformed.status, malformed.error_code().as_str()), (400, "bad_request"), "{}", malformed.text);

    // A refused request does not use its key up.
    assert_eq!(charge(&shop, "key-7a", &charge_body("order-7", 100, cards::GOOD)).await.status, 201);
}

async fn refunds_never_exceed_the_capture(shop: &Shop) {
    let payment = charge(shop, "pay-8", &charge_body("order-8", 10_000, cards::GOOD)).await.json();
    let id = payment["payment_id"].as_str().unwrap();

    let partial = refund(shop, id, "refund-8a", &json!({"amount_cents": 3_000})).await;
    assert_eq!(partial.status, 201, "{}", partial.text);
    assert_eq!(partial.json()["amount_cents"], 3_000);
    assert_eq!(partial.json()["payment_id"], id);
    assert!(partial.json()["refund_id"].as_str().is_some());

    let replay = refund(shop, id, "refund-8a", &json!({"amount_cents": 3_000})).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")));
    assert_eq!(replay.text, partial.text);
    let reused = refund(shop, id, "refund-8a", &json!({"amount_cents": 2_000})).await;
    assert_eq!((reused.status, reused.error_code().as_str()), (422, "idempotency_key_reused"));

    let too_much = refund(shop, id, "refund-8b", &json!({"amount_cents": 7_001})).await;
    assert_eq!(
        (too_much.status, too_much.error_code().as_str()),
        (422, "refund_exceeds_captured"),
        "{}",
        too_much.text
    );

    // No amount: the rest.
    let rest = refund(shop, id, "refund-8c", &json!({})).await;
    assert_eq!((rest.status, rest.json()["amount_cents"].clone()), (201, json!(7_000)), "{}", rest.text);
    let shown = get(shop, &format!("/api/payments/{id}"), &[]).await.json();
    assert_eq!((shown["amount_cents"].clone(), shown["refunded_cents"].clone()), (json!(10_000), json!(10_000)));

    let nothing_left = refund(shop, id, "refund-8d", &json!({"amount_cents": 1})).await;
    assert_eq!((nothing_left.status, nothing_left.error_code().as_str()), (422, "refund_exceeds_captured"));
    let nothing_left =
        send(client().post(shop.url(&format!("/api/payments/{id}/refunds"))).header("Idempotency-Key", "refund-8e"))
            .await;
    assert_eq!(nothing_left.status, 422, "an empty body refunds the rest, and none is left: {}", nothing_left.text);

    // Charge and refund keys live apart; a refund key names its payment.
    let other = charge(shop, "refund-8a", &charge_body("order-8b", 500, cards::GOOD)).await;
    assert_eq!((other.status, other.header("idempotent-replayed")), (201, None), "{}", other.text);
    let other_id = other.json()["payment_id"].as_str().unwrap().to_string();
    let elsewhere = refund(shop, &other_id, "refund-8a", &json!({"amount_cents": 3_000})).await;
    assert_eq!((elsewhere.status, elsewhere.error_code().as_str()), (422, "idempotency_key_reused"));
}

#[tokio::test]
async fn partial_and_full_refunds_up_to_the_captured_amount() {
    let shop = start(Backend::Sqlite).await;
    refunds_never_exceed_the_capture(&shop).await;
}

async fn concurrent_refunds_cannot_take_more_than_was_captured(shop: &Shop) {
    let payment = charge(shop, "pay-9", &charge_body("order-9", 10_000, cards::GOOD)).await.json();
    let id = payment["payment_id"].as_str().unwrap();
    let keys: Vec<String> = (0..4).map(|i| format!("refund-9-{i}")).collect();
    let body = json!({"amount_cents": 4_000});
    let replies = join_all(keys.iter().map(|key| refund(shop, id, key, &body))).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 201, 422, 422], "{:?}", replies.iter().map(|r| &r.text).collect::<Vec<_>>());
    let shown = get(shop, &format!("/api/payments/{id}"), &[]).await.json();
    assert_eq!(shown["refunded_cents"], 8_000);
}

#[tokio::test]
async fn concurrent_refunds_cannot_take_more_than_was_captured_on_sqlite() {
    concurrent_refunds_cannot_take_more_than_was_captured(&start(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn refund_requests_are_checked() {
    let shop = start(Backend::Sqlite).await;
    let id = charge(&shop, "pay-10", &charge_body("order-10", 1_000, cards::GOOD)).await.json()["payment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/payments/{id}/refunds");
    let no_key = post(&shop, &path, None, &json!({"amount_cents": 100})).await;
    assert_eq!((no_key.status, no_key.error_code().as_str()), (400, "idempotency_key_missing"));
    let negative = refund(&shop, &id, "refund-10", &json!({"amount_cents": -100})).await;
    assert_eq!((negative.status, negative.field_names()), (400, vec!["amount_cents".to_string()]));
    let unknown = refund(&shop, "pay_nope", "refund-10", &json!({"amount_cents": 100})).await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (404, "not_found"));
}

#[tokio::test]
async fn payment_routes_answer_in_json_and_customers_see_their_own() {
    let shop = start(Backend::Sqlite).await;
    let mine = send(
        client()
            .post(shop.url("/api/payments/charges"))
            .header("Idempotency-Key", "key-11")
            .header("x-user-id", "alice")
            .json(&charge_body("order-11", 700, cards::GOOD)),
    )
    .await;
    assert_eq!(mine.status, 201, "{}", mine.text);
    let path = format!("/api/payments/{}", mine.json()["payment_id"].as_str().unwrap());
    assert_eq!(get(&shop, &path, &[("x-user-id", "alice")]).await.status, 200);
    assert_eq!(get(&shop, &path, &[("x-user-id", "mallory")]).await.status, 404);
    assert_eq!(get(&shop, &path, &[("x-user-id", "root"), ("x-user-role", "admin")]).await.status, 200);
    let listed = get(&shop, "/api/payments?order_id=order-11", &[("x-user-id", "mallory")]).await.json();
    assert_eq!(listed["items"], json!([]));

    let no_order = get(&shop, "/api/payments", &[]).await;
    assert_eq!((no_order.status, no_order.field_names()), (400, vec!["order_id".to_string()]));
    let unknown = get(&shop, "/api/payments/a/b/c", &[]).await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (404, "not_found"));
    let wrong_method = send(client().delete(shop.url(&path))).await;
    assert_eq!((wrong_method.status, wrong_method.header("allow")), (405, Some("GET")));
    assert_eq!(wrong_method.error_code(), "method_not_allowed");
    let get_charges = get(&shop, "/api/payments/charges", &[]).await;
    assert_eq!((get_charges.status, get_charges.header("allow")), (405, Some("POST")));
}

#[tokio::test]
async fn postgres_charges_and_refunds() {
    let shop = start(Backend::Postgres).await;
    a_charge_is_made_once_per_key(&shop).await;
    a_key_reused_for_another_request_is_refused(&shop).await;
    refunds_never_exceed_the_capture(&shop).await;
}

#[tokio::test]
async fn postgres_concurrent_charges_and_refunds() {
    let shop = start(Backend::Postgres).await;
    concurrent_requests_with_one_key_charge_once(&shop).await;
    concurrent_refunds_cannot_take_more_than_was_captured(&shop).await;
}

// ------------------------------------------------------------ notifications

/// Publishes `payload` on the `orders` channel, as orders' outbox relay does.
async fn publish(shop: &Shop, payload: &str) {
    publish_on(shop, "orders", payload).await;
}

/// Publishes `payload` on `channel` of the app's bus, through the probe.
async fn publish_on(shop: &Shop, channel: &str, payload: &str) {
    let body = json!({"address": "redis://127.0.0.1:6379", "channel": channel, "payload": payload});
    let reply = send(client().post(shop.url("/probe/redis/publish")).json(&body)).await;
    assert!(reply.status < 300, "publish failed: {} {}", reply.status, reply.text);
}

fn confirmed(event_id: &str, order_id: &str, user_id: &str, at_ms: i64) -> String {
    json!({
        "event_id": event_id, "order_id": order_id, "user_id": user_id, "occurred_at_ms": at_ms,
        "type": "OrderConfirmed", "total_cents": 12_345, "payment_id": "pay_123"
    })
    .to_string()
}

fn created(event_id: &str, order_id: &str, user_id: &str, at_ms: i64) -> String {
    json!({
        "event_id": event_id, "order_id": order_id, "user_id": user_id, "occurred_at_ms": at_ms,
        "type": "OrderCreated", "total_cents": 12_345,
        "lines": [{"sku": "MUG-1", "name": "Stoneware mug", "quantity": 3, "unit_price_cents": 4_115}]
    })
    .to_string()
}

async fn notifications(shop: &Shop, user_id: &str) -> Vec<Value> {
    let reply = get(shop, "/api/notifications", &[("x-user-id", user_id)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["items"].as_array().unwrap().clone()
}

/// Waits until `user_id` has `n` notifications, and returns them.
async fn wait_for_notifications(shop: &Shop, user_id: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let items = notifications(shop, user_id).await;
        if items.len() >= n || started.elapsed() > Duration::from_secs(30) {
            assert_eq!(items.len(), n, "{user_id}'s notifications: {items:#?}\n{}", shop.bazaar.logs());
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn an_event_becomes_an_email_once(shop: &Shop) {
    publish(shop, &created("evt-1", "order-21", "bob", 1_000)).await;
    publish(shop, &confirmed("evt-2", "order-21", "bob", 2_000)).await;
    let items = wait_for_notifications(shop, "bob", 2).await;

    // Newest first; bob is unknown to users, so email only.
    let (newest, oldest) = (&items[0], &items[1]);
    assert_eq!((newest["event_id"].as_str(), oldest["event_id"].as_str()), (Some("evt-2"), Some("evt-1")));
    assert!(newest["created_at_ms"].as_i64() >= oldest["created_at_ms"].as_i64());
    assert_eq!(newest["channel"], "email");
    assert_eq!(newest["order_id"], "order-21");
    assert_eq!(newest["subject"], "Your order order-21 is confirmed");
    let body = newest["body"].as_str().unwrap();
    assert!(body.contains("order-21") && body.contains("$123.45"), "{body}");
    assert_eq!(oldest["subject"], "We received your order order-21");
    assert!(oldest["body"].as_str().unwrap().contains("3 × Stoneware mug — $123.45"), "{}", oldest["body"]);

    // Redelivery of the same event writes nothing; a later event is the
    // marker that the bus (in order per subscriber) delivered it.
    publish(shop, &confirmed("evt-2", "order-21", "bob", 2_000)).await;
    publish(shop, &confirmed("evt-3", "order-22", "bob", 3_000)).await;
    let items = wait_for_notifications(shop, "bob", 3).await;
    let ids: Vec<&str> = items.iter().map(|n| n["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt-3", "evt-2", "evt-1"]);
    assert!(notifications(shop, "carol").await.is_empty(), "others see nothing of bob's");
}

#[tokio::test]
async fn order_events_become_notifications_once_newest_first() {
    let shop = start(Backend::Sqlite).await;
    an_event_becomes_an_email_once(&shop).await;
}

#[tokio::test]
async fn postgres_order_events_become_notifications_once() {
    let shop = start(Backend::Postgres).await;
    an_event_becomes_an_email_once(&shop).await;
}

#[tokio::test]
async fn a_message_that_is_no_order_event_does_not_block_the_next() {
    let shop = start(Backend::Sqlite).await;
    publish(&shop, "this is not JSON").await;
    publish(&shop, &json!({"event_id": "evt-x", "type": "OrderShipped"}).to_string()).await;
    publish(&shop, &confirmed("evt-4", "order-23", "dave", 1_000)).await;
    let items = wait_for_notifications(&shop, "dave", 1).await;
    assert_eq!(items[0]["event_id"], "evt-4");
    assert!(shop.bazaar.wait_for_log("not an order event"), "{}", shop.bazaar.logs());
}

#[tokio::test]
async fn notifications_need_a_user_and_answer_in_json() {
    let shop = start(Backend::Sqlite).await;
    let anonymous = get(&shop, "/api/notifications", &[]).await;
    assert_eq!((anonymous.status, anonymous.error_code().as_str()), (401, "unauthorized"), "{}", anonymous.text);
    let bad_limit = get(&shop, "/api/notifications?limit=0", &[("x-user-id", "bob")]).await;
    assert_eq!((bad_limit.status, bad_limit.field_names()), (400, vec!["limit".to_string()]));
    let unknown = get(&shop, "/api/notifications/elsewhere", &[("x-user-id", "bob")]).await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (404, "not_found"));
    let wrong_method = send(client().post(shop.url("/api/notifications")).header("x-user-id", "bob")).await;
    assert_eq!((wrong_method.status, wrong_method.header("allow")), (405, Some("GET")));
}

#[tokio::test]
async fn without_users_every_event_still_gets_its_email() {
    let shop = start_app("without-users.toml", &["notifications", "probe"], Backend::Sqlite).await;
    publish(&shop, &confirmed("evt-5", "order-24", "erin", 1_000)).await;
    let items = wait_for_notifications(&shop, "erin", 1).await;
    assert_eq!((items[0]["channel"].as_str(), items[0]["event_id"].as_str()), (Some("email"), Some("evt-5")));
    assert!(shop.bazaar.wait_for_log("sending email only"), "{}", shop.bazaar.logs());
}

/// Waits until notifications keeps `user_id`'s profile at `revision`, from
/// users' profile feed.
fn wait_for_kept_profile(shop: &Shop, user_id: &str, revision: i64) {
    let kept = format!("keeping the profile of user {user_id} at revision {revision}");
    assert!(shop.bazaar.wait_for_log(&kept), "no {kept:?} in:\n{}", shop.bazaar.logs());
}

/// Registers `user_id` with users, with a phone number when given, and
/// asks for SMS and push notifications; returns once notifications keeps
/// that profile (its revision: 3 with a phone, else 2).
async fn user_wanting_every_channel(shop: &Shop, user_id: &str, name: &str, phone: Option<&str>) {
    let profile = json!({"user_id": user_id, "email": format!("{user_id}@example.com"), "name": name});
    let created = send(client().post(shop.url("/internal/users")).json(&profile)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    if let Some(phone) = phone {
        let patched =
            send(client().patch(shop.url("/api/users/me")).header("x-user-id", user_id).json(&json!({"phone": phone})))
                .await;
        assert_eq!(patched.status, 200, "{}", patched.text);
    }
    let preferences =
        json!({"email_notifications": true, "sms_notifications": true, "push_notifications": true, "currency": "USD"});
    let set =
        send(client().put(shop.url("/api/users/me/preferences")).header("x-user-id", user_id).json(&preferences)).await;
    assert_eq!(set.status, 200, "{}", set.text);
    wait_for_kept_profile(shop, user_id, if phone.is_some() { 3 } else { 2 });
}

#[tokio::test]
async fn sms_and_push_follow_the_users_preferences() {
    let shop = start(Backend::Sqlite).await;
    user_wanting_every_channel(&shop, "frank", "Frank", Some("+49 30 1234567")).await;
    user_wanting_every_channel(&shop, "grace", "Grace", None).await;
    publish(&shop, &confirmed("evt-6", "order-25", "frank", 1_000)).await;
    publish(&shop, &confirmed("evt-7", "order-26", "grace", 1_000)).await;

    let franks = wait_for_notifications(&shop, "frank", 3).await;
    let channels: Vec<&str> = franks.iter().map(|n| n["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["email", "push", "sms"]);
    let email = &franks[0];
    assert!(email["body"].as_str().unwrap().starts_with("Hi Frank,"), "{}", email["body"]);
    let sms = &franks[2];
    assert_eq!(sms["body"], "Bazaar: your order order-25 is confirmed. Total charged: $123.45.");

    // SMS needs a phone number as well as the preference.
    let graces = wait_for_notifications(&shop, "grace", 2).await;
    let channels: Vec<&str> = graces.iter().map(|n| n["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["email", "push"]);
}

fn channels(items: &[Value], order_id: &str) -> Vec<String> {
    let mut channels: Vec<String> =
        items.iter().filter(|n| n["order_id"] == order_id).map(|n| n["channel"].as_str().unwrap().to_string()).collect();
    channels.sort();
    channels
}

/// Notifications addresses a customer from the profile users published,
/// without asking users: what users says meanwhile without publishing it
/// (a change made behind its back) is not seen, an older revision arriving
/// late is ignored, and the next published change is followed. A customer
/// the feed has not told of is looked up in users.
async fn notifications_follow_the_profile_feed(shop: &Shop) {
    user_wanting_every_channel(shop, "ivan", "Ivan", Some("+33 1 23 45 67 89")).await;

    // Behind users' back: users would now answer "email only".
    let changed = shop
        .users_db()
        .execute("UPDATE profiles SET sms_notifications = 0, push_notifications = 0 WHERE user_id = 'ivan'", [])
        .unwrap();
    assert_eq!(changed, 1);
    publish(shop, &confirmed("evt-20", "order-40", "ivan", 1_000)).await;
    let items = wait_for_notifications(shop, "ivan", 3).await;
    assert_eq!(channels(&items, "order-40"), ["email", "push", "sms"], "from the kept profile, not from users");
    assert!(items.iter().any(|n| n["body"].as_str().unwrap().starts_with("Hi Ivan,")), "{items:#?}");

    // A stale revision, delivered late, changes nothing.
    let stale = json!({
        "type": "ProfileChanged", "user_id": "ivan", "revision": 1, "name": "Old Ivan", "phone": null,
        "email_notifications": true, "sms_notifications": false, "push_notifications": false
    });
    // As users' profile feed publishes it.
    publish_on(shop, "users", &stale.to_string()).await;
    let ignored = "the profile of user ivan at revision 1 is no newer than the one kept; ignored";
    assert!(shop.bazaar.wait_for_log(ignored), "{}", shop.bazaar.logs());
    publish(shop, &confirmed("evt-21", "order-41", "ivan", 2_000)).await;
    let items = wait_for_notifications(shop, "ivan", 6).await;
    assert_eq!(channels(&items, "order-41"), ["email", "push", "sms"]);

    // The next change through users reaches notifications (revision 4).
    let push_only =
        json!({"email_notifications": true, "sms_notifications": false, "push_notifications": true, "currency": "USD"});
    let set = send(client().put(shop.url("/api/users/me/preferences")).header("x-user-id", "ivan").json(&push_only)).await;
    assert_eq!(set.status, 200, "{}", set.text);
    wait_for_kept_profile(shop, "ivan", 4);
    publish(shop, &confirmed("evt-22", "order-42", "ivan", 3_000)).await;
    let items = wait_for_notifications(shop, "ivan", 8).await;
    assert_eq!(channels(&items, "order-42"), ["email", "push"]);

    // A profile users never published (as one made before the feed was):
    // notifications asks users.
    shop.users_db()
        .execute(
            "INSERT INTO profiles (user_id, email, name, phone, email_notifications, sms_notifications, \
             push_notifications, currency, created_at_ms, updated_at_ms, revision, published_revision) \
             VALUES ('judy', 'judy@example.com', 'Judy', NULL, 1, 0, 1, 'USD', 0, 0, 1, 1)",
            [],
        )
        .unwrap();
    publish(shop, &confirmed("evt-23", "order-43", "judy", 1_000)).await;
    let items = wait_for_notifications(shop, "judy", 2).await;
    assert_eq!(channels(&items, "order-43"), ["email", "push"], "from users' answer");
    assert!(items.iter().any(|n| n["body"].as_str().unwrap().starts_with("Hi Judy,")), "{items:#?}");
}

#[tokio::test]
async fn notifications_address_customers_from_the_profiles_users_publishes() {
    let shop = start(Backend::Sqlite).await;
    notifications_follow_the_profile_feed(&shop).await;
}

#[tokio::test]
async fn postgres_notifications_address_customers_from_the_profiles_users_publishes() {
    let shop = start(Backend::Postgres).await;
    notifications_follow_the_profile_feed(&shop).await;
}

#[tokio::test]
async fn users_relays_the_profiles_still_due_on_request() {
    let shop = start(Backend::Sqlite).await;
    let profile = json!({"user_id": "kate", "email": "kate@example.com", "name": "Kate"});
    let created = send(client().post(shop.url("/internal/users")).json(&profile)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["revision"], 1);
    wait_for_kept_profile(&shop, "kate", 1);

    // Due again (as after a bus outage): the relay endpoint publishes it.
    shop.users_db().execute("UPDATE profiles SET published_revision = 0, name = 'Kate B.'", []).unwrap();
    let relayed = send(client().post(shop.url("/internal/feed/relay"))).await;
    assert_eq!(relayed.status, 200, "{}", relayed.text);
    assert_eq!(relayed.json(), json!({"published": 1, "pending": 0, "error": null}));
    // Revision 1 is kept already: a repeat changes nothing.
    let ignored = "the profile of user kate at revision 1 is no newer than the one kept; ignored";
    assert!(shop.bazaar.wait_for_log(ignored), "{}", shop.bazaar.logs());
    let again = send(client().post(shop.url("/internal/feed/relay"))).await;
    assert_eq!(again.json(), json!({"published": 0, "pending": 0, "error": null}));
}
