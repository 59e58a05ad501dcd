//! End to end, hot swap at shop level (the acceptance test of the hot-swap
//! issue): while customers browse the catalog, search, view a product and
//! check out through the gateway, the products service is swapped three
//! times and rolled back once. No request fails; every request that starts
//! after a swap is answered by the new build (the host's `--version-header`
//! names it); and afterwards the books balance: the stock sold is the
//! quantity of the confirmed orders, and every confirmed order has a
//! captured payment.
//!
//! The new "builds" are products.wasm with a custom section added: a new
//! content hash, hence a new version to the host, with the same behaviour.
use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{Bazaar, Up, bazaar_command, call, cards, client, get_fresh, register_and_login, require_components, root};

const SERVICES: [&str; 7] = ["gateway", "auth", "users", "products", "orders", "payments", "notifications"];
const ADMIN_TOKEN: &str = "shop-swap-test-token";
const SERVED_BY: &str = "bazaar-served-by";
/// The product the customers buy: enough stock that no checkout runs out.
const SKU: &str = "SWAP-1";
const START_STOCK: i64 = 1_000_000;
const PRICE_CENTS: i64 = 500;
/// Before the swaps start, between two steps and at the end, every load
/// loop must have completed this many more requests: the load overlaps
/// every phase, however fast or slow the machine.
const PROGRESS: u64 = 5;

fn wasm(name: &str) -> PathBuf {
    root().join("target/wasm32-wasip2/release").join(format!("{name}.wasm"))
}

/// products.wasm with a custom section `bazaar-test-build` holding `tag`
/// appended: to the host a new version (its content hash differs), to
/// wasmtime the same component (custom sections carry no behaviour).
fn products_build(dir: &Path, tag: &str) -> PathBuf {
    use wasm_encoder::{ComponentSection, CustomSection};
    let mut bytes = std::fs::read(wasm("products")).unwrap();
    CustomSection { name: "bazaar-test-build".into(), data: tag.as_bytes().into() }.append_to_component(&mut bytes);
    let path = dir.join(format!("products-{tag}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sha256(file: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(file).unwrap()))
}

/// What `bazaar-served-by` calls a build: `<component>@<12 hex digits>`.
fn served_by(component: &str, file: &Path) -> String {
    format!("{component}@{}", &sha256(file)[..12])
}

fn served_by_values(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(SERVED_BY).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// The request loops, by what they do.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Anonymous catalog pages and categories: the gateway may answer from
    /// its cache.
    Catalog,
    /// Anonymous searches with `Cache-Control: no-cache`: the gateway
    /// forwards every one to products.
    Search,
    /// A logged-in customer views the product with `no-cache`: the gateway
    /// forwards every one to products.
    View,
    /// A logged-in customer adds to the cart and checks out.
    Checkout,
}

const KINDS: [Kind; 4] = [Kind::Catalog, Kind::Search, Kind::View, Kind::Checkout];

/// A confirmed order, to check against stock and payments at the end.
struct Confirmed {
    token: String,
    order_id: String,
    payment_id: String,
    quantity: i64,
    total_cents: i64,
}

/// What the load loops share with the test.
struct Load {
    base: String,
    product_id: String,
    stop: AtomicBool,
    served: [AtomicU64; 4],
    failures: Mutex<Vec<String>>,
    confirmed: Mutex<Vec<Confirmed>>,
    /// The `bazaar-served-by` of each products build, in the order they are
    /// installed (the first is the one the host started with).
    sequence: Vec<String>,
    /// Index in `sequence` of the last build whose install has completed: a
    /// request that starts now must be answered by it or a later one.
    installed: AtomicUsize,
    /// The gateway's own `bazaar-served-by`, which never changes here.
    gateway: String,
}

impl Load {
    fn served(&self, kind: Kind) -> u64 {
        self.served[kind as usize].load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        KINDS.iter().map(|k| self.served(*k)).sum()
    }

    fn record(&self, kind: Kind, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.served[kind as usize].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failures.lock().unwrap().push(format!("{kind:?}: {e}")),
        }
    }

    /// Checks the chain a read went through: products (a build allowed
    /// from `from` on in the sequence), then the gateway.
    fn check_products_chain(&self, headers: &HeaderMap, from: usize) -> Result<(), String> {
        let chain = served_by_values(headers);
        let allowed = &self.sequence[from..];
        match chain.as_slice() {
            [products, gateway] if allowed.contains(products) && *gateway == self.gateway => Ok(()),
            _ => Err(format!("{SERVED_BY} {chain:?}: expected one of {allowed:?} then {}", self.gateway)),
        }
    }

    /// One request: its status, fields and JSON body, or why it failed.
    async fn send(req: reqwest::RequestBuilder) -> Result<(u16, HeaderMap, Value), String> {
        let resp = req.send().await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        Ok((status, headers, value))
    }

    async fn catalog(&self, client: &reqwest::Client, n: u64) -> Result<(), String> {
        let path = if n.is_multiple_of(3) { "/api/products/categories".to_string() } else { format!("/api/products?page={}&per_page=10", n % 5 + 1) };
        let (status, headers, body) = Self::send(client.get(format!("{}{path}", self.base))).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        // A cached answer names the build that made it, which may be older.
        self.check_products_chain(&headers, 0).map_err(|e| format!("GET {path}: {e}"))
    }

    async fn search(&self, client: &reqwest::Client, n: u64) -> Result<(), String> {
        let words = ["lamp", "coffee", "desk", "monitor", "chair", "book"];
        let path = format!("/api/products?q={}&sort=price", words[n as usize % words.len()]);
        let from = self.installed.load(Ordering::SeqCst);
        let req = client.get(format!("{}{path}", self.base)).header("cache-control", "no-cache");
        let (status, headers, body) = Self::send(req).await?;
        if status != 200 || !body["items"].is_array() {
            return Err(format!("GET {path}: {status} {body}"));
        }
        self.check_products_chain(&headers, from).map_err(|e| format!("GET {path}: {e}"))
    }

    async fn view(&self, client: &reqwest::Client, token: &str) -> Result<(), String> {
        let path = format!("/api/products/{}", self.product_id);
        let from = self.installed.load(Ordering::SeqCst);
        let req = client.get(format!("{}{path}", self.base)).bearer_auth(token).header("cache-control", "no-cache");
        let (status, headers, body) = Self::send(req).await?;
        if status != 200 || body["sku"] != SKU || !body["stock"].is_i64() {
            return Err(format!("GET {path}: {status} {body}"));
        }
        self.check_products_chain(&headers, from).map_err(|e| format!("GET {path}: {e}"))
    }

    /// Adds `quantity` to the cart and checks out: both must succeed and the
    /// order be confirmed.
    async fn checkout(&self, client: &reqwest::Client, token: &str, quantity: i64) -> Result<(), String> {
        let add = client
            .post(format!("{}/api/cart/items", self.base))
            .bearer_auth(token)
            .json(&json!({"sku": SKU, "quantity": quantity}));
        let (status, _, body) = Self::send(add).await?;
        if status != 200 && status != 201 {
            return Err(format!("add to cart: {status} {body}"));
        }
        self.record(Kind::Checkout, Ok(()));
        let card = cards::good();
        let checkout = client.post(format!("{}/api/orders/checkout", self.base)).bearer_auth(token).json(&json!({"card": card}));
        let (status, headers, order) = Self::send(checkout).await?;
        if status != 201 || order["status"] != "CONFIRMED" {
            return Err(format!("checkout: {status} {order}"));
        }
        let chain = served_by_values(&headers);
        if chain.len() != 2 || !chain[0].starts_with("orders@") || chain[1] != self.gateway {
            return Err(format!("checkout: {SERVED_BY} {chain:?}, expected orders@… then {}", self.gateway));
        }
        self.confirmed.lock().unwrap().push(Confirmed {
            token: token.to_string(),
            order_id: order["id"].as_str().unwrap_or_default().to_string(),
            payment_id: order["payment_id"].as_str().unwrap_or_default().to_string(),
            quantity,
            total_cents: order["total_cents"].as_i64().unwrap_or_default(),
        });
        Ok(())
    }

    /// Runs one loop of `kind` until stopped.
    async fn run(self: Arc<Self>, kind: Kind, token: String) {
        let client = client();
        let mut n = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let outcome = match kind {
                Kind::Catalog => self.catalog(&client, n).await,
                Kind::Search => self.search(&client, n).await,
                Kind::View => self.view(&client, &token).await,
                Kind::Checkout => self.checkout(&client, &token, 1 + (n % 3) as i64).await,
            };
            self.record(kind, outcome);
        }
    }

    /// Waits until every loop has completed [`PROGRESS`] more requests.
    async fn progress(&self, bazaar: &Bazaar) {
        let start: Vec<u64> = KINDS.iter().map(|k| self.served(*k)).collect();
        let started = Instant::now();
        while KINDS.iter().zip(&start).any(|(k, s)| self.served(*k) < s + PROGRESS) {
            let failures = self.failures.lock().unwrap().clone();
            assert!(failures.is_empty(), "requests failed: {failures:?}\n{}", bazaar.logs());
            // Not a speed goal: a stuck shop must fail the test, not hang it.
            assert!(started.elapsed() < Duration::from_secs(300), "the load loops stopped making progress:\n{}", bazaar.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// POSTs `file` to the admin endpoint as the new build of products, smoke
/// tested first: the report.
async fn swap_products(b: &Bazaar, file: &Path) -> Value {
    let resp = client()
        .post(b.admin_url("/admin/components/products/swap?smoke_path=/api/products/categories"))
        .bearer_auth(ADMIN_TOKEN)
        .body(std::fs::read(file).unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let report: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "swap to {}: {report}", file.display());
    report
}

/// `bazaar swap --rollback products`: the report it prints.
async fn roll_back_products(b: &Bazaar) -> Value {
    let admin = b.admin.clone();
    let out = tokio::task::spawn_blocking(move || {
        bazaar_command()
            .args(["swap", "--rollback", "products", "--admin-url", &admin, "--admin-token", ADMIN_TOKEN])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "bazaar swap --rollback: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `bazaar-served-by` of a product view that reaches products for sure
/// (`no-cache`, so past the gateway's cache).
async fn products_version_now(b: &Bazaar, token: &str, product_id: &str) -> Vec<String> {
    let resp = client()
        .get(b.url(&format!("/api/products/{product_id}")))
        .bearer_auth(token)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    served_by_values(resp.headers())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn products_swapped_three_times_and_rolled_back_under_shop_load_fails_no_request() {
    require_components(&SERVICES);
    let state = tempfile::tempdir().unwrap();
    let rc = support::embedded_runtime_config(state.path());
    let bazaar = Bazaar::start(
        &root().join("spin.toml"),
        Up::default()
            .state_dir(state.path())
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .arg("--admin-token")
            .arg(ADMIN_TOKEN)
            .arg("--version-header")
            // A load test is not an abuse: lift the gateway's rate limits.
            .env("SPIN_VARIABLE_RATE_LIMIT_WRITES", "1000000")
            .env("SPIN_VARIABLE_RATE_LIMIT_READS", "1000000")
            .env("SPIN_VARIABLE_RATE_LIMIT_AUTH", "1000000"),
    );
    let b = &bazaar;
    // Embedded mode needs no server: ready, though spin.toml grants the
    // services a Postgres server for production.
    let ready = client().get(b.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["backends"], json!([]), "{ready}");

    // The builds, in the order they will serve: the original, three swaps,
    // then the rollback back to the third.
    let builds = tempfile::tempdir().unwrap();
    let original = wasm("products");
    let v2 = products_build(builds.path(), "v2");
    let v3 = products_build(builds.path(), "v3");
    let v4 = products_build(builds.path(), "v4");
    let sequence: Vec<String> = [&original, &v2, &v3, &v4, &v3].iter().map(|f| served_by("products", f)).collect();
    assert_eq!(sequence.iter().collect::<std::collections::HashSet<_>>().len(), 4, "distinct builds: {sequence:?}");

    let admin = register_and_login(b, "admin@bazaar.example", "Admin").await;
    let (s, product) = call(
        b,
        "POST",
        "/api/products",
        Some(&admin),
        Some(json!({"sku": SKU, "name": "Swap widget", "description": "Sold while products is swapped",
                    "category": "swap", "price_cents": PRICE_CENTS, "stock": START_STOCK})),
    )
    .await;
    assert_eq!(s, 201, "{product}");
    let product_id = product["id"].as_str().unwrap().to_string();
    let gateway = served_by("gateway", &wasm("gateway"));
    assert_eq!(products_version_now(b, &admin, &product_id).await, [sequence[0].clone(), gateway.clone()]);

    let load = Arc::new(Load {
        base: b.base.clone(),
        product_id: product_id.clone(),
        stop: AtomicBool::new(false),
        served: Default::default(),
        failures: Mutex::new(Vec::new()),
        confirmed: Mutex::new(Vec::new()),
        sequence: sequence.clone(),
        installed: AtomicUsize::new(0),
        gateway: gateway.clone(),
    });
    let mut tasks = Vec::new();
    let mut loops = vec![(Kind::Catalog, String::new()), (Kind::Catalog, String::new()), (Kind::Search, String::new())];
    for i in 0..2 {
        loops.push((Kind::View, register_and_login(b, &format!("viewer-{i}@example.com"), "Viewer").await));
    }
    for i in 0..3 {
        loops.push((Kind::Checkout, register_and_login(b, &format!("buyer-{i}@example.com"), "Buyer").await));
    }
    for (kind, token) in loops {
        tasks.push(tokio::spawn(load.clone().run(kind, token)));
    }
    load.progress(b).await;

    // Three swaps and a rollback, each while the loops run.
    let mut during = Vec::new();
    for (step, file) in [(1, &v2), (2, &v3), (3, &v4)] {
        let before = load.total();
        let report = swap_products(b, file).await;
        during.push(load.total() - before);
        load.installed.store(step, Ordering::SeqCst);
        assert_eq!(report["version"], sha256(file), "{report}");
        assert_eq!(report["smoke_status"], 200, "{report}");
        eprintln!(
            "swap {step}: compile+link+check {} ms, switch {} µs, {} requests completed during the swap",
            report["compile_ms"], report["switch_us"], during[step - 1]
        );
        assert_eq!(products_version_now(b, &admin, &product_id).await, [sequence[step].clone(), gateway.clone()]);
        load.progress(b).await;
    }
    let before = load.total();
    let report = roll_back_products(b).await;
    during.push(load.total() - before);
    load.installed.store(4, Ordering::SeqCst);
    assert_eq!(report["version"], sha256(&v3), "the rollback returns to the build before the last swap: {report}");
    assert_eq!(products_version_now(b, &admin, &product_id).await, [sequence[4].clone(), gateway.clone()]);
    load.progress(b).await;

    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let failures = load.failures.lock().unwrap().clone();
    let served: Vec<(Kind, u64)> = KINDS.iter().map(|k| (*k, load.served(*k))).collect();
    assert!(failures.is_empty(), "{} requests failed ({served:?} served): {:?}", failures.len(), &failures[..failures.len().min(10)]);
    eprintln!("{} requests served, none failed: {served:?}; completed during each swap and the rollback: {during:?}", load.total());

    // The listing agrees: v3 serves, v4 before it.
    let list: Value = client().get(b.admin_url("/admin/components")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
    let entry = list["components"].as_array().unwrap().iter().find(|c| c["id"] == "products").unwrap().clone();
    assert_eq!(entry["version"], sha256(&v3), "{entry}");
    assert_eq!(entry["previous_version"], sha256(&v4), "{entry}");

    // The books balance: the stock sold is what the confirmed orders hold...
    let confirmed = std::mem::take(&mut *load.confirmed.lock().unwrap());
    assert!(!confirmed.is_empty(), "checkouts were made");
    let sold: i64 = confirmed.iter().map(|c| c.quantity).sum();
    let (s, now) = get_fresh(b, &format!("/api/products/{product_id}"), &admin).await;
    assert_eq!(s, 200, "{now}");
    assert_eq!(now["stock"].as_i64().unwrap() + sold, START_STOCK, "stock left + confirmed quantities = starting stock");
    // ...every confirmed order has its payment captured, for its total...
    for order in &confirmed {
        assert_eq!(order.total_cents, order.quantity * PRICE_CENTS, "order {}", order.order_id);
        let (s, payment) = call(b, "GET", &format!("/api/payments/{}", order.payment_id), Some(&order.token), None).await;
        assert_eq!(s, 200, "payment of {}: {payment}", order.order_id);
        assert_eq!(payment["status"], "captured", "order {}: {payment}", order.order_id);
        assert_eq!(payment["amount_cents"], order.total_cents, "order {}: {payment}", order.order_id);
    }
    // ...and no customer has an order the load loops did not see confirmed.
    let mut tokens: Vec<&str> = confirmed.iter().map(|c| c.token.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    for token in tokens {
        let (s, orders) = call(b, "GET", "/api/orders?per_page=1", Some(token), None).await;
        assert_eq!(s, 200, "{orders}");
        let mine = confirmed.iter().filter(|c| c.token == token).count();
        assert_eq!(orders["total"], mine as i64, "{orders}");
    }
}
