//! The shop's cross-service invariants, checked from its databases after a
//! run: what a load test or a crash must never break, whichever way the
//! requests interleaved.
//!
//! 1. Per SKU, the stock left plus the quantities of every CONFIRMED order
//!    equals the stock at the start (nothing sold twice, nothing lost, no
//!    reservation left dangling by a cancelled order).
//! 2. Every CONFIRMED order has exactly one captured payment, the one it
//!    names, and nothing of it refunded.
//! 3. Every CANCELLED order has no payment, or each of its payments is
//!    refunded in full.
//! 4. No order is left PENDING (every saga finished or was compensated).
//! 5. Every order event in the orders outbox produced exactly one
//!    notification (the email: users are created with email only), and no
//!    notification comes from an event the outbox does not have.
//!
//! The services' data is read directly, not through their APIs: the
//! gateway shows a customer only their own orders, and the checker must not
//! trust the code it checks. A [`Snapshot`] loads the few columns the
//! invariants need, from the SQLite files (embedded mode) or the Postgres
//! databases (production mode) alike; [`check`] compares two snapshots.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the shop's services keep their data.
#[derive(Clone, Debug)]
pub enum Source {
    /// Embedded mode: `<dir>/<service>.db`, as the runtime config the tests
    /// write puts them.
    Sqlite { dir: PathBuf },
    /// Production mode: one Postgres URL per service.
    Postgres { products: String, orders: String, payments: String, notifications: String },
}

impl Source {
    pub fn sqlite(dir: &Path) -> Source {
        Source::Sqlite { dir: dir.to_path_buf() }
    }

    /// The SQLite file of `service` (embedded mode only).
    pub fn sqlite_file(&self, service: &str) -> Option<PathBuf> {
        match self {
            Source::Sqlite { dir } => Some(dir.join(format!("{service}.db"))),
            Source::Postgres { .. } => None,
        }
    }

    /// The Postgres URL of `service` (production mode only).
    pub fn postgres_url(&self, service: &str) -> Option<&str> {
        match self {
            Source::Sqlite { .. } => None,
            Source::Postgres { products, orders, payments, notifications } => Some(match service {
                "products" => products,
                "orders" => orders,
                "payments" => payments,
                "notifications" => notifications,
                _ => return None,
            }),
        }
    }

    /// Runs `sql` (a write that corrupts data on purpose, in tests) on
    /// `service`'s database: the rows it changed.
    pub async fn execute(&self, service: &str, sql: &str) -> u64 {
        match self {
            Source::Sqlite { .. } => {
                let path = self.sqlite_file(service).unwrap();
                let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute(sql, []).unwrap_or_else(|e| panic!("{sql} on {}: {e}", path.display())) as u64
            }
            Source::Postgres { .. } => {
                let url = self.postgres_url(service).unwrap_or_else(|| panic!("no database for service {service}"));
                let client = connect_postgres(url).await;
                client.execute(sql, &[]).await.unwrap_or_else(|e| panic!("{sql} on {url}: {e}"))
            }
        }
    }
}

/// One order, as far as the invariants care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub status: String,
    pub payment_id: Option<String>,
    /// `(sku, quantity)` per line.
    pub lines: Vec<(String, i64)>,
}

/// One captured payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub order_id: String,
    pub amount_cents: i64,
    /// The sum of its rows in `refunds`.
    pub refunds_cents: i64,
}

/// One event in the orders outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub order_id: String,
    pub kind: String,
    pub sent: bool,
    /// Publishes of it that failed (the outbox's `attempts`).
    pub failed_publishes: i64,
    /// Why the last of them failed.
    pub last_error: Option<String>,
}

/// The data the invariants read, from every service at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `stock.quantity` per SKU (products).
    pub stock: BTreeMap<String, i64>,
    pub orders: Vec<Order>,
    pub payments: Vec<Payment>,
    pub events: Vec<Event>,
    /// Notifications per `(event_id, channel)`.
    pub notifications: BTreeMap<(String, String), usize>,
}

/// A broken invariant, saying which rows break it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// Stock left plus confirmed quantities is not the starting stock.
    Stock { sku: String, start: i64, now: i64, confirmed: i64 },
    /// A CONFIRMED order without exactly one payment (`payments` found).
    ConfirmedPayments { order_id: String, payments: usize },
    /// A CONFIRMED order whose payment is not the one it names.
    ConfirmedWrongPayment { order_id: String, names: Option<String>, found: String },
    /// A CONFIRMED order whose payment was (partly) refunded.
    ConfirmedRefunded { order_id: String, payment_id: String, refunded_cents: i64 },
    /// A CANCELLED order still holding money: a payment not refunded in full.
    CancelledCharged { order_id: String, payment_id: String, kept_cents: i64 },
    /// A payment for an order the orders service does not have.
    PaymentWithoutOrder { payment_id: String, order_id: String },
    /// An order whose saga never finished.
    Pending { order_id: String },
    /// An order event that did not produce exactly one email.
    /// An event never relayed says why, as far as the outbox knows: how many
    /// publishes failed and the last error (none failed: no relay took it).
    EventNotifications {
        event_id: String,
        order_id: String,
        kind: String,
        sent: bool,
        emails: usize,
        failed_publishes: i64,
        last_error: Option<String>,
    },
    /// A notification for an event the orders outbox never had.
    NotificationWithoutEvent { event_id: String, channel: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Stock { sku, start, now, confirmed } => write!(
                f,
                "stock of {sku}: {now} left + {confirmed} confirmed = {} but it started at {start}",
                now + confirmed
            ),
            Violation::ConfirmedPayments { order_id, payments } => {
                write!(f, "confirmed order {order_id} has {payments} captured payments, not 1")
            }
            Violation::ConfirmedWrongPayment { order_id, names, found } => {
                write!(f, "confirmed order {order_id} names payment {names:?} but its payment is {found}")
            }
            Violation::ConfirmedRefunded { order_id, payment_id, refunded_cents } => {
                write!(f, "confirmed order {order_id}: its payment {payment_id} has {refunded_cents} cents refunded")
            }
            Violation::CancelledCharged { order_id, payment_id, kept_cents } => {
                write!(f, "cancelled order {order_id}: payment {payment_id} keeps {kept_cents} cents (not refunded)")
            }
            Violation::PaymentWithoutOrder { payment_id, order_id } => {
                write!(f, "payment {payment_id} is for order {order_id}, which does not exist")
            }
            Violation::Pending { order_id } => write!(f, "order {order_id} is still PENDING"),
            Violation::EventNotifications { event_id, order_id, kind, sent, emails, failed_publishes, last_error } => {
                let relayed = match (sent, failed_publishes, last_error) {
                    (true, _, _) => "relayed".to_string(),
                    (false, 0, _) => "never relayed, no publish of it failed".to_string(),
                    (false, n, error) => {
                        format!("never relayed, {n} failed publishes, the last: {}", error.as_deref().unwrap_or("no error recorded"))
                    }
                };
                write!(f, "event {event_id} ({kind} of {order_id}, {relayed}) produced {emails} email notifications, not 1")
            }
            Violation::NotificationWithoutEvent { event_id, channel } => {
                write!(f, "{channel} notification for event {event_id}, which the orders outbox does not have")
            }
        }
    }
}

const CONFIRMED: &str = "CONFIRMED";
const CANCELLED: &str = "CANCELLED";
const PENDING: &str = "PENDING";

/// Every invariant broken in `now`, given the stock of `start` (a snapshot
/// taken before any order was placed), in a stable order.
pub fn check(start: &Snapshot, now: &Snapshot) -> Vec<Violation> {
    let mut violations = Vec::new();

    let mut confirmed: BTreeMap<&str, i64> = BTreeMap::new();
    for order in now.orders.iter().filter(|o| o.status == CONFIRMED) {
        for (sku, quantity) in &order.lines {
            *confirmed.entry(sku).or_default() += quantity;
        }
    }
    let skus: BTreeSet<&str> =
        start.stock.keys().chain(now.stock.keys()).map(String::as_str).chain(confirmed.keys().copied()).collect();
    for sku in skus {
        let start_qty = start.stock.get(sku).copied().unwrap_or(0);
        let now_qty = now.stock.get(sku).copied().unwrap_or(0);
        let sold = confirmed.get(sku).copied().unwrap_or(0);
        if now_qty + sold != start_qty {
            violations.push(Violation::Stock { sku: sku.to_string(), start: start_qty, now: now_qty, confirmed: sold });
        }
    }

    let mut payments_of: BTreeMap<&str, Vec<&Payment>> = BTreeMap::new();
    for payment in &now.payments {
        payments_of.entry(&payment.order_id).or_default().push(payment);
    }
    let order_ids: BTreeSet<&str> = now.orders.iter().map(|o| o.id.as_str()).collect();
    for order in &now.orders {
        let payments = payments_of.get(order.id.as_str()).map(Vec::as_slice).unwrap_or_default();
        match order.status.as_str() {
            CONFIRMED => match payments {
                [payment] => {
                    if order.payment_id.as_deref() != Some(payment.id.as_str()) {
                        violations.push(Violation::ConfirmedWrongPayment {
                            order_id: order.id.clone(),
                            names: order.payment_id.clone(),
                            found: payment.id.clone(),
                        });
                    }
                    if payment.refunds_cents != 0 {
                        violations.push(Violation::ConfirmedRefunded {
                            order_id: order.id.clone(),
                            payment_id: payment.id.clone(),
                            refunded_cents: payment.refunds_cents,
                        });
                    }
                }
                _ => violations.push(Violation::ConfirmedPayments { order_id: order.id.clone(), payments: payments.len() }),
            },
            CANCELLED => {
                for payment in payments.iter().filter(|p| p.refunds_cents < p.amount_cents) {
                    violations.push(Violation::CancelledCharged {
                        order_id: order.id.clone(),
                        payment_id: payment.id.clone(),
                        kept_cents: payment.amount_cents - payment.refunds_cents,
                    });
                }
            }
            PENDING => violations.push(Violation::Pending { order_id: order.id.clone() }),
            other => panic!("order {} has status {other:?}, which the checker does not know", order.id),
        }
    }
    for payment in now.payments.iter().filter(|p| !order_ids.contains(p.order_id.as_str())) {
        violations.push(Violation::PaymentWithoutOrder { payment_id: payment.id.clone(), order_id: payment.order_id.clone() });
    }

    let event_ids: BTreeSet<&str> = now.events.iter().map(|e| e.event_id.as_str()).collect();
    for event in &now.events {
        let emails = now.notifications.get(&(event.event_id.clone(), "email".to_string())).copied().unwrap_or(0);
        if emails != 1 {
            violations.push(Violation::EventNotifications {
                event_id: event.event_id.clone(),
                order_id: event.order_id.clone(),
                kind: event.kind.clone(),
                sent: event.sent,
                emails,
                failed_publishes: event.failed_publishes,
                last_error: event.last_error.clone(),
            });
        }
    }
    for (event_id, channel) in now.notifications.keys() {
        if !event_ids.contains(event_id.as_str()) {
            violations.push(Violation::NotificationWithoutEvent { event_id: event_id.clone(), channel: channel.clone() });
        }
    }
    violations.sort();
    violations
}

/// Loads a snapshot, then keeps loading until every outbox event has been
/// relayed and notified (the bus delivers after the requests have been
/// answered) or `patience` runs out: the last snapshot either way.
pub async fn settle(source: &Source, patience: Duration) -> Snapshot {
    let started = Instant::now();
    loop {
        let snapshot = Snapshot::load(source).await;
        let notified: BTreeSet<&str> = snapshot.notifications.keys().map(|(event, _)| event.as_str()).collect();
        let done = snapshot.events.iter().all(|e| e.sent && notified.contains(e.event_id.as_str()));
        if done || started.elapsed() > patience {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const STOCK: &str = "SELECT sku, quantity FROM stock";
const ORDERS: &str = "SELECT id, status, payment_id FROM orders";
const LINES: &str = "SELECT order_id, sku, quantity FROM order_lines";
const PAYMENTS: &str = "SELECT p.id, p.order_id, p.amount_cents, \
     CAST(COALESCE((SELECT SUM(r.amount_cents) FROM refunds r WHERE r.payment_id = p.id), 0) AS BIGINT) \
     FROM payments p";
const EVENTS: &str = "SELECT event_id, order_id, kind, CAST(CASE WHEN sent_at_ms IS NULL THEN 0 ELSE 1 END AS BIGINT), \
     attempts, last_error FROM outbox";
const NOTIFICATIONS: &str = "SELECT event_id, channel FROM notifications";

/// Text and integer cells, the only types the queries above read.
#[derive(Clone, Debug)]
enum Cell {
    Text(Option<String>),
    Int(i64),
}

impl Cell {
    fn text(&self) -> String {
        self.opt_text().unwrap_or_else(|| panic!("expected text, got {self:?}"))
    }
    fn opt_text(&self) -> Option<String> {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(_) => panic!("expected text, got {self:?}"),
        }
    }
    fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            Cell::Text(_) => panic!("expected an integer, got {self:?}"),
        }
    }
}

/// Which columns of a query are integers (the others are text).
fn int_columns(sql: &str) -> &'static [usize] {
    match sql {
        STOCK => &[1],
        LINES => &[2],
        PAYMENTS => &[2, 3],
        EVENTS => &[3, 4],
        _ => &[],
    }
}

impl Snapshot {
    /// The stock alone: what [`check`] compares a later snapshot with. Take
    /// it before the first order (the products service must have served a
    /// request, so its database exists).
    pub async fn starting(source: &Source) -> Snapshot {
        let stock = query(source, "products", STOCK).await;
        Snapshot { stock: stock.into_iter().map(|row| (row[0].text(), row[1].int())).collect(), ..Snapshot::default() }
    }

    /// Reads every service's data; panics naming the database that could
    /// not be read.
    pub async fn load(source: &Source) -> Snapshot {
        let stock = query(source, "products", STOCK).await;
        let orders = query(source, "orders", ORDERS).await;
        let lines = query(source, "orders", LINES).await;
        let payments = query(source, "payments", PAYMENTS).await;
        let events = query(source, "orders", EVENTS).await;
        let notifications = query(source, "notifications", NOTIFICATIONS).await;

        let mut lines_of: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for row in lines {
            lines_of.entry(row[0].text()).or_default().push((row[1].text(), row[2].int()));
        }
        let mut counts = BTreeMap::new();
        for row in notifications {
            *counts.entry((row[0].text(), row[1].text())).or_default() += 1;
        }
        Snapshot {
            stock: stock.into_iter().map(|row| (row[0].text(), row[1].int())).collect(),
            orders: orders
                .into_iter()
                .map(|row| {
                    let id = row[0].text();
                    Order { lines: lines_of.remove(&id).unwrap_or_default(), id, status: row[1].text(), payment_id: row[2].opt_text() }
                })
                .collect(),
            payments: payments
                .into_iter()
                .map(|row| Payment { id: row[0].text(), order_id: row[1].text(), amount_cents: row[2].int(), refunds_cents: row[3].int() })
                .collect(),
            events: events
                .into_iter()
                .map(|row| Event {
                    event_id: row[0].text(),
                    order_id: row[1].text(),
                    kind: row[2].text(),
                    sent: row[3].int() != 0,
                    failed_publishes: row[4].int(),
                    last_error: row[5].opt_text(),
                })
                .collect(),
            notifications: counts,
        }
    }
}

async fn query(source: &Source, service: &str, sql: &str) -> Vec<Vec<Cell>> {
    let ints = int_columns(sql);
    match source {
        Source::Sqlite { .. } => {
            let path = source.sqlite_file(service).unwrap();
            assert!(path.is_file(), "{} does not exist: has the {service} service served a request yet?", path.display());
            let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql} on {}: {e}", path.display()));
            let columns = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    (0..columns)
                        .map(|i| Ok(if ints.contains(&i) { Cell::Int(row.get(i)?) } else { Cell::Text(row.get(i)?) }))
                        .collect::<rusqlite::Result<Vec<Cell>>>()
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
            rows.unwrap_or_else(|e| panic!("{sql} on {}: {e}", path.display()))
        }
        Source::Postgres { .. } => {
            let url = source.postgres_url(service).unwrap();
            let client = connect_postgres(url).await;
            let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql} on {url}: {e}"));
            rows.iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| if ints.contains(&i) { Cell::Int(row.get::<_, i64>(i)) } else { Cell::Text(row.get(i)) })
                        .collect()
                })
                .collect()
        }
    }
}

async fn connect_postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("the consistency checker cannot reach PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}
