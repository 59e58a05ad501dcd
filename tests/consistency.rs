//! The consistency checker the shop benchmark runs after its load
//! (tests/support/consistency.rs), exercised on a real shop: after a short
//! session (confirmed checkouts, a declined card, a sold-out product) it
//! finds nothing wrong, and after each deliberate corruption of a service's
//! database it finds exactly that corruption. Embedded (SQLite files) and
//! production (Postgres databases) modes, since it reads both.
use crate::support;

use std::time::Duration;

use serde_json::json;
use support::consistency::{self, Snapshot, Violation};
use support::shop::{Mode, Shop};
use support::{Up, add_and_check_out, call, cards, register_and_login};

#[tokio::test]
async fn embedded_session_is_consistent_and_corruptions_are_found() {
    let shop = Shop::start(Mode::Embedded, Up::default()).await;
    consistent_then_corrupted(&shop).await;
}

#[tokio::test]
async fn production_session_is_consistent_and_corruptions_are_found() {
    // Redis database 14 is this test's own (tests/shop.rs and
    // tests/gateway.rs use 11 to 13, the shop benchmark 15).
    let shop = Shop::start(Mode::Production { redis_db: support::redis_dbs::CONSISTENCY }, Up::default()).await;
    consistent_then_corrupted(&shop).await;
}

async fn consistent_then_corrupted(shop: &Shop) {
    let b = &shop.bazaar;
    let source = &shop.source;
    let admin = register_and_login(b, "admin@bazaar.example", "Admin").await;
    let (s, last) = call(
        b,
        "POST",
        "/api/products",
        Some(&admin),
        Some(json!({"sku": "LAST-1", "name": "The last one", "description": "One left", "category": "collectibles",
                    "price_cents": 9900, "stock": 1})),
    )
    .await;
    assert_eq!(s, 201, "{last}");
    let start = Snapshot::starting(source).await;
    assert_eq!(start.stock.get("LAST-1"), Some(&1), "{:?}", start.stock);

    let ada = register_and_login(b, "ada@example.com", "Ada").await;
    let bob = register_and_login(b, "bob@example.com", "Bob").await;
    let (s, first) = add_and_check_out(b, &ada, "ELEC-1002", 2, cards::GOOD).await;
    assert_eq!((s, &first["status"]), (201, &json!("CONFIRMED")), "{first}");
    let (s, declined) = add_and_check_out(b, &bob, "BOOK-2001", 1, cards::DECLINED).await;
    assert_eq!((s, &declined["status"]), (402, &json!("CANCELLED")), "{declined}");
    // Bob's cart still holds the book: the same card again, now a good one.
    let (s, second) = call(b, "POST", "/api/orders/checkout", Some(&bob), Some(json!({"card": cards::good()}))).await;
    assert_eq!((s, &second["status"]), (201, &json!("CONFIRMED")), "{second}");
    let (s, won) = add_and_check_out(b, &ada, "LAST-1", 1, cards::GOOD).await;
    assert_eq!((s, &won["status"]), (201, &json!("CONFIRMED")), "{won}");
    let (s, sold_out) = add_and_check_out(b, &bob, "LAST-1", 1, cards::GOOD).await;
    assert_eq!((s, &sold_out["status"]), (409, &json!("CANCELLED")), "{sold_out}");

    // Every event has been relayed and notified once the snapshot settles.
    let now = consistency::settle(source, Duration::from_secs(30)).await;
    assert_eq!(now.orders.len(), 5, "{:?}", now.orders);
    assert_eq!(now.payments.len(), 3, "one payment per confirmed order: {:?}", now.payments);
    assert!(now.events.len() >= 10, "OrderCreated and a final event per order: {:?}", now.events);
    let violations = consistency::check(&start, &now);
    assert!(violations.is_empty(), "a consistent session reported: {}", list(&violations));

    // 1. A unit of stock appears from nowhere.
    assert_eq!(source.execute("products", "UPDATE stock SET quantity = quantity + 1 WHERE sku = 'ELEC-1002'").await, 1);
    let violations = consistency::check(&start, &Snapshot::load(source).await);
    let start_qty = start.stock["ELEC-1002"];
    assert_eq!(
        violations,
        [Violation::Stock { sku: "ELEC-1002".into(), start: start_qty, now: start_qty - 2 + 1, confirmed: 2 }],
        "{}",
        list(&violations)
    );
    assert_eq!(source.execute("products", "UPDATE stock SET quantity = quantity - 1 WHERE sku = 'ELEC-1002'").await, 1);
    assert_eq!(consistency::check(&start, &Snapshot::load(source).await), []);

    // 2. A confirmed order's payment disappears.
    let order_id = first["id"].as_str().unwrap();
    let payment_id = first["payment_id"].as_str().unwrap();
    assert_eq!(source.execute("payments", &format!("DELETE FROM payments WHERE id = '{payment_id}'")).await, 1);
    let violations = consistency::check(&start, &Snapshot::load(source).await);
    let missing_payment = Violation::ConfirmedPayments { order_id: order_id.into(), payments: 0 };
    assert_eq!(violations, [missing_payment.clone()], "{}", list(&violations));

    // 3. An order event's notification disappears (on top of 2).
    let event = now.events.iter().find(|e| e.order_id == second["id"].as_str().unwrap()).unwrap();
    let deleted = source
        .execute("notifications", &format!("DELETE FROM notifications WHERE event_id = '{}' AND channel = 'email'", event.event_id))
        .await;
    assert_eq!(deleted, 1);
    let violations = consistency::check(&start, &Snapshot::load(source).await);
    let lost_email = Violation::EventNotifications {
        event_id: event.event_id.clone(),
        order_id: event.order_id.clone(),
        kind: event.kind.clone(),
        sent: true,
        emails: 0,
        failed_publishes: 0,
        last_error: None,
    };
    let mut expected = vec![missing_payment.clone(), lost_email.clone()];
    expected.sort();
    assert_eq!(violations, expected, "{}", list(&violations));

    // 4. An event stays in the outbox after failed publishes (on top of 3):
    // the violation says so, with the last error.
    let stuck = now.events.iter().find(|e| e.order_id == won["id"].as_str().unwrap()).unwrap();
    let error = "publishing to the bus: connection refused";
    let update = format!("UPDATE outbox SET sent_at_ms = NULL, attempts = 2, last_error = '{error}' WHERE event_id = '{}'", stuck.event_id);
    assert_eq!(source.execute("orders", &update).await, 1);
    let delete = format!("DELETE FROM notifications WHERE event_id = '{}' AND channel = 'email'", stuck.event_id);
    assert_eq!(source.execute("notifications", &delete).await, 1);
    let violations = consistency::check(&start, &Snapshot::load(source).await);
    let never_relayed = Violation::EventNotifications {
        event_id: stuck.event_id.clone(),
        order_id: stuck.order_id.clone(),
        kind: stuck.kind.clone(),
        sent: false,
        emails: 0,
        failed_publishes: 2,
        last_error: Some(error.into()),
    };
    assert!(never_relayed.to_string().contains(&format!("never relayed, 2 failed publishes, the last: {error}")), "{never_relayed}");
    let mut expected = vec![missing_payment, lost_email, never_relayed];
    expected.sort();
    assert_eq!(violations, expected, "{}", list(&violations));
}

fn list(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("\n  - {v}")).collect()
}
