//! End to end: the products service (components/products) as its users and
//! the shop's other services see it over HTTP: the seeded catalog, search,
//! admin writes, and inventory reservations, including the race for the
//! last unit.
//!
//! Every scenario runs twice, each time on a fresh database of its own:
//! embedded (`embedded::*`, a SQLite file in the test's state directory)
//! and in production mode (`postgres::*`, a database created on the
//! Postgres server at 127.0.0.1:5432 and dropped at the end). The Postgres
//! runs fail, never skip, when the server is down.
use crate::support;

use std::collections::HashSet;
use std::path::Path;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use support::postgres::TestDatabase;
use support::{Bazaar, Up, app, client, require_components};

/// Products in the seed catalog (components/products/migrations).
const SEEDED: usize = 55;
const ADMIN: &[(&str, &str)] = &[("x-user-id", "u-admin"), ("x-user-role", "admin")];
const CUSTOMER: &[(&str, &str)] = &[("x-user-id", "u-1"), ("x-user-role", "customer")];

/// Runs each scenario `async fn name(shop: Shop)` in both modes.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Shop::embedded()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Shop::on_postgres().await).await
            })*
        }
    };
}

in_both_modes!(
    the_seed_catalog_is_loaded_on_first_use,
    concurrent_first_requests_all_find_the_catalog,
    search_matches_text_and_filters_sorts_and_pages,
    one_product_by_id_and_unknown_ids_are_404,
    admins_create_update_and_delete_products,
    catalog_writes_need_an_admin,
    invalid_input_is_a_400_naming_the_fields,
    unknown_routes_and_methods_are_json_errors,
    inventory_check_reports_what_is_short,
    a_reservation_is_all_or_nothing_and_answers_retries_as_first,
    commit_and_release_are_idempotent_and_final,
    a_sale_reserves_and_commits_in_one_call_and_answers_retries_as_first,
    concurrent_reservations_of_the_last_unit_let_exactly_one_win,
    concurrent_retries_of_one_order_reserve_once,
    the_catalog_and_reservations_survive_a_restart,
    a_read_under_an_older_schema_migrates_first,
    any_statement_under_an_older_schema_migrates_first,
);

// ---------------------------------------------------------------- scenarios

async fn the_seed_catalog_is_loaded_on_first_use(shop: Shop) {
    let page = shop.get("/api/products?per_page=100").await.expect(200);
    assert_eq!(page["total"], SEEDED);
    assert_eq!((page["page"].as_i64(), page["per_page"].as_i64()), (Some(1), Some(100)));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), SEEDED);
    for item in items {
        let keys: HashSet<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["id", "sku", "name", "description", "category", "price_cents", "stock"]));
        assert!(item["price_cents"].as_i64().unwrap() > 0 && item["stock"].as_i64().unwrap() >= 0, "{item}");
    }
    let skus: HashSet<&str> = items.iter().map(|p| p["sku"].as_str().unwrap()).collect();
    assert_eq!(skus.len(), SEEDED, "SKUs are unique");

    let categories = shop.get("/api/products/categories").await.expect(200);
    let categories = categories.as_array().unwrap();
    let names: Vec<&str> = categories.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["books", "clothing", "electronics", "home-kitchen", "sports-outdoors", "toys-games"]);
    let counted: i64 = categories.iter().map(|c| c["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, SEEDED as i64);
}

async fn concurrent_first_requests_all_find_the_catalog(shop: Shop) {
    // Nothing has touched the database yet: all of these race to migrate it.
    let replies = join_all((0..8).map(|_| shop.get("/api/products/categories"))).await;
    for reply in &replies {
        reply.expect_ref(200);
        assert_eq!(reply.body, replies[0].body);
    }
    assert_eq!(shop.get("/api/products").await.expect(200)["total"], SEEDED, "seeded once");
}

async fn search_matches_text_and_filters_sorts_and_pages(shop: Shop) {
    // Every word must be in the name or the description; best match first.
    let found = shop.get("/api/products?q=Coffee%20GRINDER").await.expect(200);
    assert_eq!(skus(&found), ["HOME-3004"]);
    let coffee = shop.get("/api/products?q=coffee").await.expect(200);
    // Pour-over maker (name and description), grinder (name), then kettle and
    // press (description only), each tie by name.
    assert_eq!(skus(&coffee), ["HOME-3003", "HOME-3004", "HOME-3008", "HOME-3005"]);
    for item in coffee["items"].as_array().unwrap() {
        let text = format!("{} {}", item["name"], item["description"]).to_lowercase();
        assert!(text.contains("coffee"), "{item}");
    }
    // A name starting with the query ranks first.
    assert_eq!(skus(&shop.get("/api/products?q=cast%20iron").await.expect(200))[0], "HOME-3002");
    // LIKE wildcards in the query match themselves: only the monitor ("99% sRGB") has a `%`.
    assert_eq!(skus(&shop.get("/api/products?q=%25").await.expect(200)), ["ELEC-1006"]);
    assert_eq!(shop.get("/api/products?q=zeppelin").await.expect(200)["total"], 0);

    let books = shop.get("/api/products?category=books&per_page=100").await.expect(200);
    assert_eq!(books["total"], 8);
    assert!(books["items"].as_array().unwrap().iter().all(|p| p["category"] == "books"));
    assert_eq!(shop.get("/api/products?category=garden").await.expect(200)["total"], 0);

    let range = shop.get("/api/products?min_price_cents=2000&max_price_cents=4000&per_page=100").await.expect(200);
    let in_range = prices(&range);
    assert!(!in_range.is_empty() && in_range.iter().all(|p| (2000..=4000).contains(p)), "{in_range:?}");
    assert_eq!(range["total"], in_range.len());

    let cheapest_first = prices(&shop.get("/api/products?sort=price&per_page=100").await.expect(200));
    assert!(cheapest_first.is_sorted());
    let dearest_first = prices(&shop.get("/api/products?sort=-price&per_page=100").await.expect(200));
    assert!(dearest_first.iter().rev().is_sorted());
    let by_name = names(&shop.get("/api/products?sort=name&per_page=100").await.expect(200));
    assert!(by_name.iter().map(|n| n.to_lowercase()).is_sorted(), "{by_name:?}");

    // Only the SKUs asked for (how orders prices a cart): unknown ones are simply absent.
    let by_sku = shop.get("/api/products?sku=HOME-3002,ELEC-1006,NO-SUCH-SKU&sort=name").await.expect(200);
    let mut found = skus(&by_sku);
    found.sort();
    assert_eq!(found, ["ELEC-1006", "HOME-3002"]);
    assert_eq!(by_sku["total"], 2);

    let combined = "/api/products?q=coffee&category=home-kitchen&max_price_cents=5000&sort=price";
    assert_eq!(skus(&shop.get(combined).await.expect(200)), ["HOME-3003", "HOME-3005"]);

    // Pages partition the catalog, in a stable order.
    let mut seen = Vec::new();
    for page in 1..=8 {
        let reply = shop.get(&format!("/api/products?sort=price&per_page=7&page={page}")).await.expect(200);
        assert_eq!((reply["total"].as_u64(), reply["page"].as_i64()), (Some(SEEDED as u64), Some(page)));
        seen.extend(skus(&reply));
    }
    assert_eq!(seen.len(), SEEDED);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), SEEDED, "no product on two pages");
    let beyond = shop.get("/api/products?per_page=7&page=9").await.expect(200);
    assert_eq!((beyond["items"].as_array().unwrap().len(), beyond["total"].as_u64()), (0, Some(SEEDED as u64)));
    // Past the last page of a ranked search (its ranking binds parameters
    // of its own), the count is still that of the matches.
    let beyond = shop.get("/api/products?q=coffee&per_page=2&page=3").await.expect(200);
    assert_eq!((beyond["items"].as_array().unwrap().len(), beyond["total"].as_u64()), (0, Some(4)));
    let last = shop.get("/api/products?q=coffee&per_page=3&page=2").await.expect(200);
    assert_eq!((skus(&last), last["total"].as_u64()), (vec!["HOME-3005".to_string()], Some(4)));
}

/// Catalog reads check the schema with the query they run (no query of
/// their own: on Postgres its schema guard, see `shop_shared::db::schema`):
/// one that finds an older schema migrates, then reads again.
async fn a_read_under_an_older_schema_migrates_first(shop: Shop) {
    let id = shop.create_product("KEEP-0001", 3).await;
    // Back to schema version 1, as if the seed migration had never run,
    // with a product of the admin's left in it.
    let downgrade = "DELETE FROM schema_migrations WHERE version = 2; \
                     DELETE FROM stock WHERE sku <> 'KEEP-0001'; DELETE FROM products WHERE sku <> 'KEEP-0001'";
    shop.sql(downgrade).await;
    assert_eq!(shop.get("/api/products").await.expect(200)["total"], SEEDED + 1, "the seed migration ran again");
    assert_eq!(shop.schema_version().await, 2);
    shop.sql(downgrade).await;
    assert_eq!(shop.get(&format!("/api/products/{id}")).await.expect(200)["sku"], "KEEP-0001");
    assert_eq!(shop.schema_version().await, 2, "a product read migrates too");
    assert_eq!(shop.get("/api/products?per_page=100").await.expect(200)["total"], SEEDED + 1);
}

/// Every other statement of an instance that has not seen the schema yet:
/// checked before it on SQLite, and on Postgres by the statement itself
/// (its schema guard fails it, it migrates and runs again); and only the
/// first of an instance, so each request here is a new instance.
async fn any_statement_under_an_older_schema_migrates_first(shop: Shop) {
    assert_eq!(shop.stock("prd_book-2002").await, 40, "the first request migrates");
    // Back to schema version 1, as if the seed migration had never run.
    let downgrade = "DELETE FROM schema_migrations WHERE version = 2; DELETE FROM stock; DELETE FROM products";
    shop.sql(downgrade).await;
    // A read through the database as opened for writes too: the seed
    // product it asks for is there, priced.
    let enough = json!({"items": [{"sku": "BOOK-2002", "quantity": 40}]});
    let reply = shop.post("/internal/inventory/check", enough.clone()).await.expect(200);
    assert_eq!(reply["available"], true, "{reply}");
    assert_eq!(reply["products"][0]["price_cents"], 2799);
    assert_eq!(shop.schema_version().await, 2);

    // A write, after the same downgrade: it sells from the seeded stock.
    shop.sql(downgrade).await;
    let sold = shop.sell("after-downgrade", json!([{"sku": "BOOK-2002", "quantity": 3}])).await.expect(200);
    assert_eq!(sold["status"], "committed", "{sold}");
    assert_eq!(shop.schema_version().await, 2);
    assert_eq!(shop.stock("prd_book-2002").await, 37);
    // Once current, the same statements go as they are.
    assert_eq!(shop.post("/internal/inventory/check", enough).await.expect(200)["available"], false);
}

async fn one_product_by_id_and_unknown_ids_are_404(shop: Shop) {
    let product = shop.get("/api/products/prd_book-2002").await.expect(200);
    assert_eq!(
        product,
        json!({
            "id": "prd_book-2002",
            "sku": "BOOK-2002",
            "name": "The Sourdough Handbook",
            "description": "Everything about wild yeast baking: starters, hydration, shaping and scoring, with 40 recipes.",
            "category": "books",
            "price_cents": 2799,
            "stock": 40
        })
    );
    let missing = shop.get("/api/products/prd_nope").await.expect(404);
    assert_eq!(missing["error"]["code"], "not_found");
}

async fn admins_create_update_and_delete_products(shop: Shop) {
    let mug = json!({
        "sku": "CAMP-0001",
        "name": "Enamel Camping Mug",
        "description": "Steel mug with a chip-resistant enamel coating, 350 ml.",
        "category": "camping",
        "price_cents": 1499,
        "stock": 12
    });
    let reply = shop.call(Method::POST, "/api/products", ADMIN, Some(mug.clone())).await;
    let created = reply.expect_ref(201).clone();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("prd_"), "{id}");
    assert_eq!(reply.header("location"), Some(format!("/api/products/{id}")));
    let mut expected = mug.clone();
    expected["id"] = json!(id);
    assert_eq!(created, expected);
    assert_eq!(shop.get(&format!("/api/products/{id}")).await.expect(200), expected);
    assert_eq!(skus(&shop.get("/api/products?q=enamel").await.expect(200)), ["CAMP-0001"]);
    let categories = shop.get("/api/products/categories").await.expect(200);
    assert!(categories.as_array().unwrap().contains(&json!({"name": "camping", "count": 1})), "{categories}");

    // A second create with the SKU is refused, naming the product that has it.
    let again = shop.call(Method::POST, "/api/products", ADMIN, Some(mug)).await.expect(409);
    assert!(again["error"]["message"].as_str().unwrap().contains(&id), "{again}");

    // PUT replaces the fields; the stock stays unless given.
    let path = format!("/api/products/{id}");
    let renamed = json!({"name": "Enamel Mug 350 ml", "category": "camping", "price_cents": 1599});
    let updated = shop.call(Method::PUT, &path, ADMIN, Some(renamed)).await.expect(200);
    assert_eq!(
        (&updated["name"], &updated["price_cents"], &updated["description"], &updated["stock"], &updated["sku"]),
        (&json!("Enamel Mug 350 ml"), &json!(1599), &json!(""), &json!(12), &json!("CAMP-0001"))
    );
    // A client may send back what it read, with changes.
    let mut edited = updated.clone();
    edited["stock"] = json!(3);
    edited["description"] = json!("Now with a lid.");
    let updated = shop.call(Method::PUT, &path, ADMIN, Some(edited.clone())).await.expect(200);
    assert_eq!(updated, edited);
    assert_eq!(shop.get(&path).await.expect(200), edited);
    // The SKU is the product's key for orders and inventory: it cannot change.
    let mut resku = edited.clone();
    resku["sku"] = json!("CAMP-0002");
    let refused = shop.call(Method::PUT, &path, ADMIN, Some(resku)).await.expect(400);
    assert_eq!(fields(&refused), ["sku"]);

    let deleted = shop.call(Method::DELETE, &path, ADMIN, None).await;
    assert_eq!(deleted.status, 204);
    shop.get(&path).await.expect(404);
    shop.call(Method::DELETE, &path, ADMIN, None).await.expect(404);
    shop.call(Method::PUT, &path, ADMIN, Some(edited)).await.expect(404);
    let categories = shop.get("/api/products/categories").await.expect(200);
    assert!(!categories.to_string().contains("camping"), "{categories}");
    let check = shop.post("/internal/inventory/check", json!({"items": [{"sku": "CAMP-0001", "quantity": 1}]})).await.expect(200);
    assert_eq!(check["short"][0]["in_stock"], 0, "its stock went with it");
    assert_eq!(check["products"], json!([]), "and it is no longer sold");
}

async fn catalog_writes_need_an_admin(shop: Shop) {
    let product = json!({"sku": "X-1", "name": "X", "category": "books", "price_cents": 1});
    let seeded = "/api/products/prd_book-2002";
    for (headers, status, code) in [(&[][..], 401, "unauthorized"), (CUSTOMER, 403, "forbidden")] {
        for (method, path, body) in [
            (Method::POST, "/api/products", Some(product.clone())),
            // Who may write is decided before what is written.
            (Method::POST, "/api/products", Some(json!({"sku": ""}))),
            (Method::PUT, seeded, Some(product.clone())),
            (Method::DELETE, seeded, None),
        ] {
            let reply = shop.call(method.clone(), path, headers, body).await.expect(status);
            assert_eq!(reply["error"]["code"], code, "{method} {path}");
        }
    }
    let role_only = [("x-user-role", "admin")];
    shop.call(Method::DELETE, seeded, &role_only, None).await.expect(401);
    assert_eq!(shop.get(seeded).await.expect(200)["name"], "The Sourdough Handbook");
    assert_eq!(shop.get("/api/products").await.expect(200)["total"], SEEDED);
}

async fn invalid_input_is_a_400_naming_the_fields(shop: Shop) {
    let bad = json!({
        "sku": "has spaces", "name": " ", "category": "Camping Gear", "price_cents": -5, "stock": "many", "colour": "red"
    });
    let reply = shop.call(Method::POST, "/api/products", ADMIN, Some(bad)).await.expect(400);
    assert_eq!(reply["error"]["code"], "validation_failed");
    assert_eq!(fields(&reply), ["colour", "sku", "name", "category", "price_cents", "stock"]);
    let missing = shop.call(Method::POST, "/api/products", ADMIN, Some(json!({}))).await.expect(400);
    assert_eq!(fields(&missing), ["sku", "name", "category", "price_cents"]);

    let malformed = shop.send(Method::POST, "/api/products", ADMIN, Some("{\"sku\": ".into())).await.expect(400);
    assert_eq!(malformed["error"]["code"], "bad_request");
    assert!(!malformed["error"]["fields"].as_array().unwrap().is_empty(), "{malformed}");
    let not_object = shop.call(Method::POST, "/api/products", ADMIN, Some(json!([1, 2]))).await.expect(400);
    assert_eq!(fields(&not_object), ["body"]);

    let search = shop.get("/api/products?sort=cheapest&page=0&per_page=1000&min_price_cents=x").await.expect(400);
    assert_eq!(fields(&search), ["min_price_cents", "page", "per_page", "sort"]);
    let range = shop.get("/api/products?min_price_cents=500&max_price_cents=100").await.expect(400);
    assert_eq!(fields(&range), ["min_price_cents"]);

    let reserve = json!({"order_id": "", "items": [{"sku": "ELEC-1001", "quantity": 0}, {"quantity": 2}]});
    let reply = shop.post("/internal/inventory/reserve", reserve).await.expect(400);
    assert_eq!(fields(&reply), ["order_id", "items[0].quantity", "items[1].sku"]);
    assert_eq!(fields(&shop.post("/internal/inventory/check", json!({})).await.expect(400)), ["items"]);
    let empty = shop.post("/internal/inventory/check", json!({"items": []})).await.expect(400);
    assert_eq!(fields(&empty), ["items"]);
    assert_eq!(
        fields(&shop.post("/internal/inventory/commit", json!({"order": "o"})).await.expect(400)),
        ["order", "order_id"]
    );
    // Nothing was written by any of it.
    assert_eq!(shop.get("/api/products").await.expect(200)["total"], SEEDED);
}

async fn unknown_routes_and_methods_are_json_errors(shop: Shop) {
    assert_eq!(shop.get("/api/nothing").await.expect(404)["error"]["code"], "not_found");
    assert_eq!(shop.get("/api/products/prd_book-2002/reviews").await.expect(404)["error"]["code"], "not_found");
    for (method, path, allow) in [
        (Method::DELETE, "/api/products", "GET, POST"),
        (Method::PATCH, "/api/products/prd_book-2002", "GET, PUT, DELETE"),
        (Method::POST, "/api/products/categories", "GET"),
        (Method::GET, "/internal/inventory/reserve", "POST"),
    ] {
        let reply = shop.call(method.clone(), path, ADMIN, None).await;
        assert_eq!(reply.expect_ref(405)["error"]["code"], "method_not_allowed", "{method} {path}");
        assert_eq!(reply.header("allow").as_deref(), Some(allow), "{method} {path}");
    }
}

async fn inventory_check_reports_what_is_short(shop: Shop) {
    let items = json!({"items": [
        {"sku": "ELEC-1001", "quantity": 2},
        {"sku": "NOPE-1", "quantity": 1},
        {"sku": "ELEC-1010", "quantity": 1},
        {"sku": "ELEC-1001", "quantity": 44}
    ]});
    let reply = shop.post("/internal/inventory/check", items).await.expect(200);
    // The products it sells come priced as the catalog lists them now, so a
    // checkout quotes and checks in one call.
    let priced = |listed: &Value| json!({"sku": listed["sku"], "name": listed["name"], "price_cents": listed["price_cents"]});
    let elec_1001 = shop.get("/api/products/prd_elec-1001").await.expect(200);
    let elec_1010 = shop.get("/api/products/prd_elec-1010").await.expect(200);
    let book_2001 = shop.get("/api/products/prd_book-2001").await.expect(200);
    assert_eq!(
        reply,
        json!({"available": false, "short": [
            {"sku": "ELEC-1001", "requested": 46, "in_stock": 45},
            {"sku": "ELEC-1010", "requested": 1, "in_stock": 0},
            {"sku": "NOPE-1", "requested": 1, "in_stock": 0}
        ], "products": [priced(&elec_1001), priced(&elec_1010)]})
    );
    let enough = json!({"items": [{"sku": "ELEC-1001", "quantity": 45}, {"sku": "BOOK-2001", "quantity": 1}]});
    let reply = shop.post("/internal/inventory/check", enough).await.expect(200);
    assert_eq!(
        reply,
        json!({"available": true, "short": [], "products": [priced(&book_2001), priced(&elec_1001)]})
    );
    assert_eq!(shop.stock("prd_elec-1001").await, 45, "a check takes nothing");
}

async fn a_reservation_is_all_or_nothing_and_answers_retries_as_first(shop: Shop) {
    let a = shop.create_product("RSV-A", 5).await;
    let b = shop.create_product("RSV-B", 1).await;
    let both = |qa: i64, qb: i64| json!([{"sku": "RSV-A", "quantity": qa}, {"sku": "RSV-B", "quantity": qb}]);

    // B is short: nothing is taken, not even A.
    let refused = shop.reserve("order-1", both(2, 2)).await.expect(409);
    assert_eq!(
        (&refused["reserved"], &refused["status"], &refused["short"]),
        (&json!(false), &json!("rejected"), &json!([{"sku": "RSV-B", "requested": 2, "in_stock": 1}]))
    );
    assert_eq!(refused["error"]["code"], "insufficient_stock");
    assert_eq!((shop.stock(&a).await, shop.stock(&b).await), (5, 1));
    // Restocked, the same order still gets its first answer.
    shop.set_stock(&b, 10).await;
    assert_eq!(shop.reserve("order-1", both(2, 2)).await.expect(409), refused);
    assert_eq!((shop.stock(&a).await, shop.stock(&b).await), (5, 10));

    let granted = shop.reserve("order-2", both(2, 3)).await.expect(200);
    assert_eq!(granted, json!({"order_id": "order-2", "reserved": true, "status": "reserved", "short": []}));
    assert_eq!((shop.stock(&a).await, shop.stock(&b).await), (3, 7));
    // A retry (lines in any order, a SKU split in two) takes nothing more.
    let same = json!([
        {"sku": "RSV-B", "quantity": 1}, {"sku": "RSV-A", "quantity": 2}, {"sku": "RSV-B", "quantity": 2}
    ]);
    assert_eq!(shop.reserve("order-2", same).await.expect(200), granted);
    assert_eq!((shop.stock(&a).await, shop.stock(&b).await), (3, 7));
    // The same order id for other items is a client bug, not a retry.
    let reused = shop.reserve("order-2", both(1, 1)).await.expect(422);
    assert_eq!(reused["error"]["code"], "order_id_reused");
    assert_eq!((shop.stock(&a).await, shop.stock(&b).await), (3, 7));
}

async fn commit_and_release_are_idempotent_and_final(shop: Shop) {
    let sku = "FIN-1";
    let id = shop.create_product(sku, 10).await;
    let line = |quantity: i64| json!([{"sku": sku, "quantity": quantity}]);
    let order = |id: &str| json!({"order_id": id});

    // Reserved, then sold: committing again is fine, releasing is not.
    shop.reserve("sold", line(4)).await.expect(200);
    for _ in 0..2 {
        let reply = shop.post("/internal/inventory/commit", order("sold")).await.expect(200);
        assert_eq!(reply, json!({"order_id": "sold", "status": "committed"}));
    }
    assert_eq!(shop.post("/internal/inventory/release", order("sold")).await.expect(409)["error"]["code"], "conflict");
    assert_eq!(shop.stock(&id).await, 6);
    let retry = shop.reserve("sold", line(4)).await.expect(200);
    assert_eq!((&retry["reserved"], &retry["status"]), (&json!(true), &json!("committed")));
    assert_eq!(shop.stock(&id).await, 6);

    // Reserved, then given back once however often released; then final.
    shop.reserve("cancelled", line(5)).await.expect(200);
    assert_eq!(shop.stock(&id).await, 1);
    for _ in 0..2 {
        let reply = shop.post("/internal/inventory/release", order("cancelled")).await.expect(200);
        assert_eq!(reply, json!({"order_id": "cancelled", "status": "released"}));
        assert_eq!(shop.stock(&id).await, 6);
    }
    shop.post("/internal/inventory/commit", order("cancelled")).await.expect(409);
    assert_eq!(shop.reserve("cancelled", line(5)).await.expect(200)["status"], "released");
    assert_eq!(shop.stock(&id).await, 6);

    // Released before it reserved (a saga that gave up): a late reserve takes nothing.
    shop.post("/internal/inventory/release", order("abandoned")).await.expect(200);
    let late = shop.reserve("abandoned", line(1)).await.expect(409);
    assert_eq!((&late["error"]["code"], &late["short"]), (&json!("reservation_released"), &json!([])));
    assert_eq!(shop.stock(&id).await, 6);

    // A refused reservation holds nothing: releasing it is a no-op, committing it a conflict.
    shop.reserve("too-many", line(7)).await.expect(409);
    let reply = shop.post("/internal/inventory/release", order("too-many")).await.expect(200);
    assert_eq!(reply["status"], "rejected");
    shop.post("/internal/inventory/commit", order("too-many")).await.expect(409);
    assert_eq!(shop.stock(&id).await, 6);

    assert_eq!(shop.post("/internal/inventory/commit", order("never")).await.expect(404)["error"]["code"], "not_found");
}

async fn a_sale_reserves_and_commits_in_one_call_and_answers_retries_as_first(shop: Shop) {
    let id = shop.create_product("SELL-1", 10).await;
    let line = |quantity: i64| json!([{"sku": "SELL-1", "quantity": quantity}]);
    let order = |id: &str| json!({"order_id": id});

    // Sold at once: the units are gone for good, however often asked.
    let sold = shop.sell("paid", line(4)).await.expect(200);
    assert_eq!(sold, json!({"order_id": "paid", "reserved": true, "status": "committed", "short": []}));
    assert_eq!(shop.sell("paid", line(4)).await.expect(200), sold);
    assert_eq!(shop.stock(&id).await, 6);
    let release = shop.post("/internal/inventory/release", order("paid")).await.expect(409);
    assert_eq!(release["error"]["code"], "conflict");
    assert_eq!(shop.post("/internal/inventory/commit", order("paid")).await.expect(200)["status"], "committed");
    assert_eq!(shop.stock(&id).await, 6);
    // The same order id for other items is a client bug, not a retry.
    assert_eq!(shop.sell("paid", line(1)).await.expect(422)["error"]["code"], "order_id_reused");

    // Short: nothing taken, and the first answer stands once restocked.
    let refused = shop.sell("too-many", line(7)).await.expect(409);
    assert_eq!((&refused["reserved"], &refused["status"]), (&json!(false), &json!("rejected")));
    assert_eq!(refused["short"], json!([{"sku": "SELL-1", "requested": 7, "in_stock": 6}]));
    assert_eq!(refused["error"]["code"], "insufficient_stock");
    shop.set_stock(&id, 20).await;
    assert_eq!(shop.sell("too-many", line(7)).await.expect(409), refused);
    assert_eq!(shop.stock(&id).await, 20);

    // A reservation held (by a saga from before sales were one call) is
    // committed by a sale, without taking its units twice.
    shop.reserve("held", line(5)).await.expect(200);
    assert_eq!(shop.stock(&id).await, 15);
    assert_eq!(shop.sell("held", line(5)).await.expect(200)["status"], "committed");
    assert_eq!(shop.post("/internal/inventory/release", order("held")).await.status, 409);
    assert_eq!(shop.stock(&id).await, 15);

    // Released before it sold (a saga that gave up): a late sale takes nothing.
    shop.post("/internal/inventory/release", order("abandoned")).await.expect(200);
    let late = shop.sell("abandoned", line(1)).await.expect(409);
    assert_eq!((&late["error"]["code"], &late["short"]), (&json!("reservation_released"), &json!([])));
    assert_eq!(shop.stock(&id).await, 15);
}

async fn concurrent_reservations_of_the_last_unit_let_exactly_one_win(shop: Shop) {
    let id = shop.create_product("LAST-1", 1).await;
    let orders: Vec<String> = (0..10).map(|i| format!("race-{i}")).collect();
    let line = json!([{"sku": "LAST-1", "quantity": 1}]);
    let replies = join_all(orders.iter().map(|order| shop.reserve(order, line.clone()))).await;

    let winners: Vec<&String> = orders.iter().zip(&replies).filter(|(_, r)| r.status == 200).map(|(o, _)| o).collect();
    assert_eq!(winners.len(), 1, "{:?}", replies.iter().map(|r| (r.status, &r.body)).collect::<Vec<_>>());
    for reply in replies.iter().filter(|r| r.status != 200) {
        let body = reply.expect_ref(409);
        assert_eq!(body["short"], json!([{"sku": "LAST-1", "requested": 1, "in_stock": 0}]));
    }
    assert_eq!(shop.stock(&id).await, 0);

    // Each order keeps its answer, even once the winner gives the unit back.
    shop.post("/internal/inventory/release", json!({"order_id": winners[0]})).await.expect(200);
    assert_eq!(shop.stock(&id).await, 1);
    for (order, reply) in orders.iter().zip(&replies) {
        assert_eq!(shop.reserve(order, line.clone()).await.status, reply.status, "{order}");
    }
    assert_eq!(shop.stock(&id).await, 1);
}

async fn concurrent_retries_of_one_order_reserve_once(shop: Shop) {
    let id = shop.create_product("SAME-1", 5).await;
    let line = json!([{"sku": "SAME-1", "quantity": 2}]);
    let replies = join_all((0..6).map(|_| shop.reserve("one-order", line.clone()))).await;
    for reply in &replies {
        assert_eq!(reply.expect_ref(200)["reserved"], true);
    }
    assert_eq!(shop.stock(&id).await, 3);
}

async fn the_catalog_and_reservations_survive_a_restart(shop: Shop) {
    let id = shop.create_product("KEEP-1", 4).await;
    shop.reserve("kept", json!([{"sku": "KEEP-1", "quantity": 3}])).await.expect(200);
    let shop = shop.restart();
    assert_eq!(shop.stock(&id).await, 1);
    assert_eq!(shop.get("/api/products").await.expect(200)["total"], SEEDED + 1, "the seed is not loaded twice");
    shop.reserve("kept", json!([{"sku": "KEEP-1", "quantity": 3}])).await.expect(200);
    assert_eq!(shop.stock(&id).await, 1);
}

// ------------------------------------------------------------------ harness

/// The products service running alone, on a database of its own.
struct Shop {
    bazaar: Bazaar,
    state: tempfile::TempDir,
    /// Production mode's database, dropped after bazaar stops.
    postgres: Option<TestDatabase>,
}

impl Shop {
    /// Embedded mode: the `products` database is a SQLite file in the
    /// test's state directory.
    fn embedded() -> Shop {
        let state = tempfile::tempdir().unwrap();
        let bazaar = start(state.path(), None);
        Shop { bazaar, state, postgres: None }
    }

    /// Production mode: `database_url` names a new Postgres database.
    async fn on_postgres() -> Shop {
        let database = TestDatabase::create_for("products").await;
        let state = tempfile::tempdir().unwrap();
        let bazaar = start(state.path(), Some(&database.url()));
        Shop { bazaar, state, postgres: Some(database) }
    }

    /// Stops bazaar and starts it again on the same data.
    fn restart(self) -> Shop {
        let Shop { bazaar, state, postgres } = self;
        drop(bazaar);
        let bazaar = start(state.path(), postgres.as_ref().map(TestDatabase::url).as_deref());
        Shop { bazaar, state, postgres }
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Reply {
        let mut request = client().request(method, self.bazaar.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {status}, not JSON: {text}"))
        };
        Reply { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        self.send(method, path, headers, body.map(|b| b.to_string())).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    async fn reserve(&self, order_id: &str, items: Value) -> Reply {
        self.post("/internal/inventory/reserve", json!({"order_id": order_id, "items": items})).await
    }

    async fn sell(&self, order_id: &str, items: Value) -> Reply {
        self.post("/internal/inventory/sell", json!({"order_id": order_id, "items": items})).await
    }

    /// Runs `statements` on the service's database, behind its back.
    async fn sql(&self, statements: &str) {
        match &self.postgres {
            Some(database) => database.admin.batch_execute(statements).await.unwrap(),
            None => rusqlite::Connection::open(self.state.path().join("products.db"))
                .and_then(|db| db.execute_batch(statements))
                .unwrap(),
        }
    }

    /// The schema version the service's database records.
    async fn schema_version(&self) -> i64 {
        const SQL: &str = "SELECT MAX(version) FROM schema_migrations";
        match &self.postgres {
            Some(database) => database.admin.query_one(SQL, &[]).await.unwrap().get(0),
            None => rusqlite::Connection::open(self.state.path().join("products.db"))
                .and_then(|db| db.query_row(SQL, [], |row| row.get(0)))
                .unwrap(),
        }
    }

    /// Creates a product (as an admin) with `stock` units; returns its id.
    async fn create_product(&self, sku: &str, stock: i64) -> String {
        let product = json!({
            "sku": sku, "name": format!("Test product {sku}"), "category": "testing", "price_cents": 1000, "stock": stock
        });
        let created = self.call(Method::POST, "/api/products", ADMIN, Some(product)).await.expect(201);
        created["id"].as_str().unwrap().to_string()
    }

    async fn stock(&self, id: &str) -> i64 {
        self.get(&format!("/api/products/{id}")).await.expect(200)["stock"].as_i64().unwrap()
    }

    async fn set_stock(&self, id: &str, stock: i64) {
        let path = format!("/api/products/{id}");
        let mut product = self.get(&path).await.expect(200);
        product["stock"] = json!(stock);
        self.call(Method::PUT, &path, ADMIN, Some(product)).await.expect(200);
    }
}

/// Starts the products test app with its SQLite database in `state`, or on
/// the Postgres database `postgres_url`.
fn start(state: &Path, postgres_url: Option<&str>) -> Bazaar {
    require_components(&["products"]);
    let runtime_config = state.join("runtime-config.toml");
    let database_file = state.join("products.db");
    std::fs::write(
        &runtime_config,
        format!("[sqlite_database.products]\ntype = \"spin\"\npath = {:?}\n", database_file.display().to_string()),
    )
    .unwrap();
    let mut up = Up::default().state_dir(state).arg("--runtime-config-file").arg(runtime_config.display().to_string());
    if let Some(url) = postgres_url {
        up = up.env("SPIN_VARIABLE_DATABASE_URL", url);
    }
    Bazaar::start(&app("products"), up)
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    /// The body, once the status is as expected.
    fn expect(self, status: u16) -> Value {
        self.expect_ref(status);
        self.body
    }

    fn expect_ref(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
}

fn skus(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap().to_string()).collect()
}

fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

fn prices(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap().iter().map(|p| p["price_cents"].as_i64().unwrap()).collect()
}

/// The fields a 400 names, in order.
fn fields(reply: &Value) -> Vec<String> {
    let fields = reply["error"]["fields"].as_array().unwrap_or_else(|| panic!("no fields: {reply}"));
    fields.iter().map(|f| f["field"].as_str().unwrap().to_string()).collect()
}
