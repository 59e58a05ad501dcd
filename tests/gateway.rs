//! End to end: the gateway (components/gateway) in front of the real auth,
//! users, products, orders and payments services, as a client of the shop
//! sees it: authentication with auth's EdDSA tokens, roles, rate limits,
//! the catalog cache, request ids and trace context, body limits, routing
//! and the OpenAPI document.
//!
//! `notifications` is the probe in this app (tests/apps/gateway/spin.toml):
//! `GET /api/notifications/headers` answers with the headers the service
//! received from the gateway. In tests/apps/gateway-varies the probe is the
//! catalog service instead, answering with `Vary`, which no shop service
//! sends.
//!
//! Embedded mode keeps every store in SQLite files in the test's state
//! directory. Production mode (`on_redis_*`) keeps the gateway's stores in
//! Redis databases 12 and 13 of the server at 127.0.0.1:6379, which this
//! test file alone uses, and runs two hosts on them.
use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{Bazaar, Up, app, client, require_components};

/// The Ed25519 seed of `jwt_signing_key` in the test manifest (bytes 1..=32).
const AUTH_SEED: [u8; 32] = {
    let mut seed = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        seed[i] = i as u8 + 1;
        i += 1;
    }
    seed
};
/// The manifest's `admin_email`.
const ADMIN_EMAIL: &str = "admin@bazaar.test";
/// The gateway's own "no route" message, which no service's 404 says.
const GATEWAY_NO_ROUTE: &str = "the gateway has no route for";
const MAX_BODY: usize = 1024 * 1024;
const REDIS: &str = "redis://127.0.0.1:6379";
/// The Redis databases of the production-mode test's `gateway` and `gateway-cache` stores.
const REDIS_DBS: (u8, u8) = support::redis_dbs::GATEWAY_STORES;

// ------------------------------------------------------------------ auth

#[tokio::test]
async fn tokens_missing_expired_forged_or_unsigned_are_401() {
    let shop = Shop::embedded(&[]);
    let user = shop.customer("alice@bazaar.test").await;
    let headers_path = "/api/notifications/headers";

    let missing = shop.call(Method::GET, headers_path, &[], None).await;
    missing.assert_error(401, "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"bazaar\""));
    assert_eq!(shop.get_as(&user, headers_path).await.status, 200);

    // The test signs with auth's key: a token it makes with a future expiry
    // passes, so the ones below fail for the reason each one shows.
    let kid = token_header(&user.token)["kid"].as_str().unwrap().to_owned();
    let now = now_secs();
    let claims = |iat: u64, exp: u64| {
        json!({"sub": user.id, "email": "alice@bazaar.test", "role": "customer", "iat": iat, "exp": exp, "jti": "t1", "iss": "bazaar-auth"})
    };
    let eddsa = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let own = sign(&eddsa, &claims(now, now + 600), &AUTH_SEED);
    assert_eq!(shop.get_with_token(&own, headers_path).await.status, 200);
    // A token that verified is remembered (the last one per user), so the
    // same token again skips the signature check; every token below differs
    // from the remembered one and is checked in full.
    for _ in 0..2 {
        assert_eq!(shop.get_as(&user, headers_path).await.status, 200);
    }

    let expired = sign(&eddsa, &claims(now - 3600, now - 1800), &AUTH_SEED);
    let mut tampered = claims(now, now + 600);
    tampered["role"] = json!("admin");
    let (signed_part, signature) = user.token.rsplit_once('.').unwrap();
    let forged_claims = format!("{}.{}.{signature}", signed_part.split('.').next().unwrap(), b64url(tampered.to_string().as_bytes()));
    let swapped_signature = format!("{signed_part}.{}", own.rsplit_once('.').unwrap().1);
    let other_key = sign(&eddsa, &claims(now, now + 600), &[42u8; 32]);
    let wrong_issuer = sign(&eddsa, &json!({"sub": user.id, "role": "customer", "iat": now, "exp": now + 600, "iss": "evil"}), &AUTH_SEED);
    let unknown_kid = sign(&json!({"alg": "EdDSA", "kid": "no-such-key"}), &claims(now, now + 600), &AUTH_SEED);
    let unsigned = format!("{}.{}.", b64url(json!({"alg": "none", "kid": kid}).to_string().as_bytes()), b64url(claims(now, now + 600).to_string().as_bytes()));
    let cases = [
        ("expired", expired, "expired"),
        ("claims changed after signing", forged_claims, "signature"),
        ("another token's signature", swapped_signature, "signature"),
        ("signed with another key", other_key, "signature"),
        ("another issuer", wrong_issuer, "issued by auth"),
        ("unknown kid", unknown_kid, "signing key is unknown"),
        ("alg none", unsigned, "not signed with EdDSA"),
        ("not a JWT", "not-a-jwt".to_owned(), "well-formed"),
    ];
    for (case, token, why) in cases {
        let reply = shop.get_with_token(&token, headers_path).await;
        reply.assert_error(401, "unauthorized");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""), "{case}: {challenge}");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains(why), "{case}: {}", reply.text);
    }
    let basic = shop.call(Method::GET, headers_path, &[("authorization", "Basic YWxpY2U6c2VjcmV0")], None).await;
    basic.assert_error(401, "unauthorized");

    // On a public route a bad token is ignored: a client holding an expired
    // token can still log in.
    let expired = sign(&eddsa, &claims(now - 3600, now - 1800), &AUTH_SEED);
    let login = json!({"email": "alice@bazaar.test", "password": "correct horse"});
    let reply = shop.call(Method::POST, "/api/auth/login", &[("authorization", &format!("Bearer {expired}"))], Some(login)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn product_writes_need_the_admin_role() {
    let shop = Shop::embedded(&[]);
    let customer = shop.customer("bob@bazaar.test").await;
    let admin = shop.customer(ADMIN_EMAIL).await;
    let product = json!({"sku": "GW-1", "name": "Gateway lamp", "description": "A lamp", "category": "lighting", "price_cents": 1999, "stock": 3});

    let anonymous = shop.call(Method::POST, "/api/products", &[], Some(product.clone())).await;
    anonymous.assert_error(401, "unauthorized");
    for (method, path) in [(Method::POST, "/api/products"), (Method::PUT, "/api/products/p1"), (Method::DELETE, "/api/products/p1")] {
        let reply = shop.call(method.clone(), path, &customer.auth(), Some(product.clone())).await;
        reply.assert_error(403, "forbidden");
        assert!(reply.header("www-authenticate").unwrap().contains("insufficient_scope"), "{method} {path}");
    }
    let created = shop.call(Method::POST, "/api/products", &admin.auth(), Some(product)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["sku"], "GW-1");
}

#[tokio::test]
async fn a_verified_user_reaches_its_services_as_itself() {
    let shop = Shop::embedded(&[]);
    let user = shop.customer("carol@bazaar.test").await;

    // users answers with the profile of the x-user-id the gateway passed.
    let profile = shop.get_as(&user, "/api/users/me").await;
    assert_eq!(profile.status, 200, "{}", profile.text);
    assert_eq!(profile.json()["user_id"], user.id.as_str());
    assert_eq!(profile.json()["email"], "carol@bazaar.test");

    // Identity headers a client sends are replaced by the verified ones.
    let spoofed = [("x-user-id", "someone-else"), ("x-user-role", "admin"), ("x-user-email", "x@y")];
    let mut headers = user.auth();
    headers.extend(spoofed);
    let seen = shop.call(Method::GET, "/api/notifications/headers", &headers, None).await.json();
    assert_eq!(seen["x-user-id"], user.id.as_str());
    assert_eq!(seen["x-user-role"], "customer");
    assert_eq!(seen["x-user-email"], Value::Null);
}

// ------------------------------------------------------- tracing and ids

#[tokio::test]
async fn request_ids_and_trace_context_are_kept_or_made_and_passed_on() {
    let shop = Shop::embedded(&[]);
    let user = shop.customer("dave@bazaar.test").await;
    let path = "/api/notifications/headers";

    // Made by the gateway, passed on, returned.
    let reply = shop.get_as(&user, path).await;
    let id = reply.header("x-request-id").unwrap().to_owned();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let seen = reply.json();
    assert_eq!(seen["x-request-id"], id.as_str());
    let traceparent = seen["traceparent"].as_str().unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((parts[0], parts[1].len(), parts[2].len(), parts[3]), ("00", 32, 16, "01"), "{traceparent}");

    // Valid ones are kept: the same trace (each hop a span of its own, so
    // the parent id the service sees is the host's span, not the client's),
    // with the trace's tracestate.
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut headers = user.auth();
    headers.extend([("x-request-id", "client-42"), ("traceparent", parent), ("tracestate", "shop=1")]);
    let reply = shop.call(Method::GET, path, &headers, None).await;
    assert_eq!(reply.header("x-request-id"), Some("client-42"));
    let seen = reply.json();
    assert_eq!((seen["x-request-id"].as_str(), seen["tracestate"].as_str()), (Some("client-42"), Some("shop=1")), "{seen}");
    let seen_parts: Vec<&str> = seen["traceparent"].as_str().unwrap().split('-').collect();
    assert_eq!((seen_parts[0], seen_parts[1], seen_parts[3]), ("00", "0af7651916cd43dd8448eb211c80319c", "01"), "{seen}");
    assert!(seen_parts[2].len() == 16 && seen_parts[2] != "b7ad6b7169203331", "{seen}");

    // Invalid ones are replaced (and an invalid trace loses its tracestate).
    let long = "x".repeat(129);
    let mut headers = user.auth();
    headers.extend([("x-request-id", long.as_str()), ("traceparent", "00-zz-b7ad6b7169203331-01"), ("tracestate", "shop=1")]);
    let reply = shop.call(Method::GET, path, &headers, None).await;
    let id = reply.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let seen = reply.json();
    assert_eq!(seen["x-request-id"], id.as_str());
    assert_ne!(seen["traceparent"], "00-zz-b7ad6b7169203331-01");
    assert_eq!(seen["tracestate"], Value::Null);

    // The gateway's own answers carry one too.
    for reply in [shop.call(Method::GET, "/nowhere", &[], None).await, shop.call(Method::GET, path, &[], None).await] {
        assert_eq!(reply.header("x-request-id").map(str::len), Some(32), "{}", reply.status);
    }
    let reply = shop.call(Method::GET, "/nowhere", &[("x-request-id", "mine")], None).await;
    assert_eq!(reply.header("x-request-id"), Some("mine"));
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn oversize_bodies_are_refused_with_413() {
    let shop = Shop::embedded(&[]);
    let user = shop.customer("erin@bazaar.test").await;
    let path = "/api/cart/items";

    let declared = shop.raw(Method::POST, path, &user.auth(), vec![b'x'; MAX_BODY + 1]).await;
    declared.assert_error(413, "payload_too_large");
    assert!(declared.header("ratelimit").is_some());

    // Without a Content-Length, the stream is cut off at the cap.
    let chunks = (0..32).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    let streamed = client()
        .post(shop.bazaar.url(path))
        .header("authorization", format!("Bearer {}", user.token))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert_eq!(serde_json::from_str::<Value>(&streamed.text().await.unwrap()).unwrap()["error"]["code"], "payload_too_large");

    // 1 MiB itself is forwarded (orders refuses it as JSON, not as size).
    let at_cap = shop.raw(Method::POST, path, &user.auth(), vec![b'x'; MAX_BODY]).await;
    assert_ne!(at_cap.status, 413, "{}", at_cap.text);
    assert_eq!(at_cap.status, 400, "{}", at_cap.text);

    // Who may call is decided before any body is read. A client still
    // sending the body it was refused gets that answer all the same, not a
    // reset connection: the host reads the rest and drops it.
    let anonymous = shop.raw(Method::POST, path, &[], vec![b'x'; MAX_BODY + 1]).await;
    anonymous.assert_error(401, "unauthorized");
    // (Without that, about one request in ten got a broken pipe instead.)
    // Bodies of 1 to 8 MiB, staying under the limit of 40 writes a minute.
    for i in 0..24 {
        let anonymous = shop.raw(Method::POST, path, &[], vec![b'x'; (i % 8 + 1) * MAX_BODY + 1]).await;
        anonymous.assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_the_ratelimit_fields() {
    wait_clear_of_window_end(3600);
    let limits = [("SPIN_VARIABLE_RATE_LIMIT_AUTH", "5"), ("SPIN_VARIABLE_RATE_LIMIT_READS", "50"), ("SPIN_VARIABLE_RATE_LIMIT_WINDOW_SECONDS", "3600")];
    let shop = Shop::embedded(&limits);
    // Sign-up and login are the first two auth requests of this address.
    let user = shop.customer("frank@bazaar.test").await;
    let login = json!({"email": "frank@bazaar.test", "password": "wrong password"});
    for remaining in [2, 1, 0] {
        let reply = shop.call(Method::POST, "/api/auth/login", &[], Some(login.clone())).await;
        assert_eq!(reply.status, 401, "auth's own answer: {}", reply.text);
        assert_eq!(reply.header("ratelimit-policy"), Some("\"auth\";q=5;w=3600"));
        let (r, t) = parse_ratelimit(reply.header("ratelimit").unwrap(), "auth");
        assert_eq!(r, remaining);
        assert!((1..=3600).contains(&t), "{t}");
    }
    let limited = shop.call(Method::POST, "/api/auth/login", &[], Some(login.clone())).await;
    limited.assert_error(429, "rate_limited");
    let (r, t) = parse_ratelimit(limited.header("ratelimit").unwrap(), "auth");
    assert_eq!(r, 0);
    assert_eq!(limited.header("retry-after"), Some(t.to_string().as_str()));
    assert_eq!(limited.header("ratelimit-policy"), Some("\"auth\";q=5;w=3600"));

    // Other classes keep their own quota, and a user's is its own, not its address's.
    let reads = shop.call(Method::GET, "/api/products", &[], None).await;
    assert_eq!(reads.status, 200);
    assert_eq!(reads.header("ratelimit-policy"), Some("\"reads\";q=50;w=3600"));
    let anonymous_left = parse_ratelimit(reads.header("ratelimit").unwrap(), "reads").0;
    let as_user = shop.get_as(&user, "/api/notifications/headers").await;
    assert_eq!(parse_ratelimit(as_user.header("ratelimit").unwrap(), "reads").0, 49);
    let again = shop.call(Method::GET, "/api/products", &[], None).await;
    assert_eq!(parse_ratelimit(again.header("ratelimit").unwrap(), "reads").0, anonymous_left - 1);
}

// ----------------------------------------------------------------- cache

#[tokio::test]
async fn catalog_reads_are_cached_for_everyone_and_invalidated_by_admin_writes() {
    let shop = Shop::embedded(&[]);
    let admin = shop.customer(ADMIN_EMAIL).await;
    let customer = shop.customer("gina@bazaar.test").await;
    let path = "/api/products/categories";

    let first = shop.call(Method::GET, path, &[], None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_cache_status(&first, "gateway; fwd=uri-miss; stored");
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "a strong ETag: {etag}");

    let hit = shop.call(Method::GET, path, &[], None).await;
    assert_cache_status(&hit, "gateway; hit");
    assert_eq!(hit.header("etag"), Some(etag.as_str()));
    assert!(hit.header("age").is_some());
    assert_eq!(hit.text, first.text);

    for validator in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let not_modified = shop.call(Method::GET, path, &[("if-none-match", &validator)], None).await;
        assert_eq!(not_modified.status, 304, "{validator}");
        assert!(not_modified.text.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    }
    let changed = shop.call(Method::GET, path, &[("if-none-match", "\"something-else\"")], None).await;
    assert_eq!(changed.status, 200);

    // Another URI is another entry; a request's no-store bypasses the cache
    // and its no-cache refreshes the entry.
    assert_cache_status(&shop.call(Method::GET, &format!("{path}?view=all"), &[], None).await, "gateway; fwd=uri-miss; stored");
    assert_cache_status(&shop.call(Method::GET, path, &[("cache-control", "no-store")], None).await, "gateway; fwd=bypass");
    assert_cache_status(&shop.call(Method::GET, path, &[("cache-control", "No-Cache")], None).await, "gateway; fwd=request; stored");
    assert_cache_status(&shop.call(Method::GET, path, &[], None).await, "gateway; hit");

    // The catalog answers the same whoever asks and says so, so a signed-in
    // customer is served the entry an anonymous read stored, and an entry a
    // signed-in read stored serves everyone. Errors are never kept.
    let authorized = shop.get_as(&customer, path).await;
    assert_eq!(authorized.status, 200);
    assert_eq!(authorized.header("cache-control"), Some("public"));
    assert_cache_status(&authorized, "gateway; hit");
    assert_eq!(authorized.text, first.text);
    let signed_in_first = format!("{path}?signed-in");
    assert_cache_status(&shop.get_as(&customer, &signed_in_first).await, "gateway; fwd=uri-miss; stored");
    assert_cache_status(&shop.call(Method::GET, &signed_in_first, &[], None).await, "gateway; hit");
    assert_cache_status(&shop.get_as(&admin, &signed_in_first).await, "gateway; hit");
    for _ in 0..2 {
        let missing = shop.call(Method::GET, "/api/products/no-such-product", &[], None).await;
        assert_eq!(missing.status, 404);
        assert_cache_status(&missing, "gateway; fwd=uri-miss; detail=status");
    }

    // A failed write changes nothing; a successful one invalidates everything.
    let refused = shop.call(Method::PUT, "/api/products/no-such-product", &admin.auth(), Some(json!({"name": "x"}))).await;
    assert!(refused.status >= 400, "{}", refused.text);
    assert_cache_status(&shop.call(Method::GET, path, &[], None).await, "gateway; hit");
    let product = json!({"sku": "GW-CACHE", "name": "Cache lamp", "description": "New", "category": "gateway-tests", "price_cents": 500, "stock": 1});
    assert_eq!(shop.call(Method::POST, "/api/products", &admin.auth(), Some(product)).await.status, 201);
    let fresh = shop.call(Method::GET, path, &[("if-none-match", &etag)], None).await;
    assert_eq!(fresh.status, 200, "the old ETag no longer matches");
    assert_cache_status(&fresh, "gateway; fwd=uri-miss; stored");
    assert!(fresh.text.contains("gateway-tests"), "{}", fresh.text);
    assert_ne!(fresh.header("etag"), Some(etag.as_str()));
    assert_cache_status(&shop.call(Method::GET, &format!("{path}?view=all"), &[], None).await, "gateway; fwd=uri-miss; stored");
}

#[tokio::test]
async fn catalog_answers_that_vary_are_kept_one_entry_per_variant() {
    let shop = Shop::varying_catalog();
    let path = "/api/products/varies?on=accept-language";
    let get = |language: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = language.map(|l| ("accept-language", l)).into_iter().collect();
        let shop = &shop;
        async move { shop.call(Method::GET, path, &headers, None).await }
    };
    let assert_answer = |reply: &Reply, language: Option<&str>, status: &str| {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json(), json!({ "accept-language": language }), "for {language:?}");
        assert_eq!(reply.header("vary"), Some("accept-language"));
        assert_cache_status(reply, status);
    };

    // The first answer is kept under its variant, and serves that variant
    // only: another language is a miss that the service answers and that
    // is kept beside the first.
    assert_answer(&get(Some("en")).await, Some("en"), "gateway; fwd=uri-miss; stored");
    assert_answer(&get(Some("en")).await, Some("en"), "gateway; hit");
    assert_answer(&get(Some("fr")).await, Some("fr"), "gateway; fwd=vary-miss; stored");
    assert_answer(&get(Some("fr")).await, Some("fr"), "gateway; hit");
    assert_answer(&get(Some("en")).await, Some("en"), "gateway; hit");
    // No header at all is a variant of its own.
    assert_answer(&get(None).await, None, "gateway; fwd=vary-miss; stored");
    assert_answer(&get(None).await, None, "gateway; hit");
    assert_answer(&get(Some("fr")).await, Some("fr"), "gateway; hit");

    // `Vary: *` can never be matched, so such an answer is not kept.
    for _ in 0..2 {
        let star = shop.call(Method::GET, "/api/products/varies?on=*", &[], None).await;
        assert_eq!(star.status, 200, "{}", star.text);
        assert_cache_status(&star, "gateway; fwd=uri-miss; detail=vary-star");
    }
}

// --------------------------------------------------------------- routing

#[tokio::test]
async fn unknown_internal_and_dot_segment_paths_are_refused_as_json() {
    let shop = Shop::embedded(&[]);
    let admin = shop.customer(ADMIN_EMAIL).await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/api"),
        (Method::GET, "/api/unknown"),
        (Method::GET, "/api/productsx"),
        (Method::GET, "/internal/jwks"),
        (Method::GET, "/internal/users/u1"),
        (Method::POST, "/internal/inventory/reserve"),
        (Method::POST, "/internal/sagas/resume"),
    ] {
        let reply = shop.call(method.clone(), path, &admin.auth(), Some(json!({}))).await;
        reply.assert_error(404, "not_found");
        assert!(reply.text.contains(GATEWAY_NO_ROUTE), "{method} {path}: {}", reply.text);
        assert!(reply.header("x-request-id").is_some());
    }
    // Dot segments never reach a service, encoded or not (sent raw: an HTTP
    // client would normalise them away).
    for path in ["/api/products/../../internal/jwks", "/api/products/%2e%2e/%2E%2E/internal/jwks", "/api/products%2f..%2finternal"] {
        let (status, body) = raw_get(&shop.bazaar, path);
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
    }
    let wrong_method = shop.call(Method::POST, "/api/openapi.json", &[], None).await;
    wrong_method.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn every_documented_path_is_routed() {
    let shop = Shop::embedded(&[]);
    let admin = shop.customer(ADMIN_EMAIL).await;
    let doc = shop.call(Method::GET, "/api/openapi.json", &[], None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let etag = doc.header("etag").unwrap().to_owned();
    assert_eq!(shop.call(Method::GET, "/api/openapi.json", &[("if-none-match", &etag)], None).await.status, 304);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());

    let mut operations = 0;
    for (template, item) in paths {
        let path = fill_template(template);
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else { continue };
            if !matches!(method, Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
                continue;
            }
            operations += 1;
            assert!(operation["responses"].is_object(), "{method} {template} documents its responses");
            let mut headers = admin.auth();
            headers.push(("idempotency-key", "gateway-routing-test"));
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let reply = shop.call(method.clone(), &path, &headers, body).await;
            assert!(!reply.text.contains(GATEWAY_NO_ROUTE), "{method} {path}: {} {}", reply.status, reply.text);
            assert_ne!(reply.status, 401, "{method} {path}: {}", reply.text);
            assert!(reply.header("x-request-id").is_some(), "{method} {path}");
        }
    }
    assert!(operations >= 30, "{operations} operations");
    for public in ["/api/auth/login", "/api/products"] {
        let operation = &paths[public][if public == "/api/products" { "get" } else { "post" }];
        assert_eq!(operation["security"], json!([]), "{public} is documented as public");
    }
}

// ------------------------------------------------------ production mode

#[tokio::test]
async fn on_redis_counters_and_the_cache_generation_hold_across_hosts() {
    wait_clear_of_window_end(3600);
    flush_redis_dbs().await;
    let state = tempfile::tempdir().unwrap();
    let envs = [("SPIN_VARIABLE_RATE_LIMIT_READS", "30"), ("SPIN_VARIABLE_RATE_LIMIT_WINDOW_SECONDS", "3600")];
    let a = Shop::start(state.path(), Stores::Redis, &envs);
    let admin = a.customer(ADMIN_EMAIL).await;
    // The second host shares the Redis stores and the services' SQLite files.
    let b = Shop::start(state.path(), Stores::Redis, &envs);
    let path = "/api/products/categories";

    // A response cached through one host is a hit on the other.
    let stored = a.call(Method::GET, path, &[], None).await;
    assert_cache_status(&stored, "gateway; fwd=uri-miss; stored");
    let hit = b.call(Method::GET, path, &[], None).await;
    assert_cache_status(&hit, "gateway; hit");
    assert_eq!(hit.header("etag"), stored.header("etag"));

    // A catalog write through one host invalidates the other's reads.
    let product = json!({"sku": "GW-REDIS", "name": "Shared lamp", "description": "x", "category": "redis-tests", "price_cents": 700, "stock": 2});
    assert_eq!(b.call(Method::POST, "/api/products", &admin.auth(), Some(product)).await.status, 201);
    let fresh = a.call(Method::GET, path, &[], None).await;
    assert_cache_status(&fresh, "gateway; fwd=uri-miss; stored");
    assert!(fresh.text.contains("redis-tests"), "{}", fresh.text);

    // One counter per client, whichever host counts: each answer has exactly
    // one request fewer left, until the 429.
    let mut left = parse_ratelimit(fresh.header("ratelimit").unwrap(), "reads").0;
    let mut hosts = [&a, &b].into_iter().cycle();
    while left > 0 {
        let reply = hosts.next().unwrap().call(Method::GET, "/api/products?per_page=1", &[], None).await;
        assert_eq!(reply.status, 200);
        let now_left = parse_ratelimit(reply.header("ratelimit").unwrap(), "reads").0;
        assert_eq!(now_left, left - 1);
        left = now_left;
    }
    for shop in [&a, &b] {
        shop.call(Method::GET, "/api/products", &[], None).await.assert_error(429, "rate_limited");
    }
    flush_redis_dbs().await;
}

// --------------------------------------------------------------- helpers

/// Where the gateway's key-value stores live.
#[derive(Clone, Copy)]
enum Stores {
    /// As runtime-config/embedded.toml has them: `gateway` (rate-limit
    /// counters) and `gateway-tokens` in memory, `gateway-cache` in a
    /// SQLite file in the state directory.
    Embedded,
    /// As runtime-config/production.toml has them: `gateway` and
    /// `gateway-cache` in the Redis databases [`REDIS_DBS`], `gateway-tokens`
    /// in memory.
    Redis,
}

/// The shop behind its gateway.
struct Shop {
    bazaar: Bazaar,
    _state: Option<tempfile::TempDir>,
}

/// A signed-in user.
struct Session {
    id: String,
    token: String,
    /// `Bearer <token>`.
    authorization: String,
}

impl Session {
    /// The headers that authenticate as this user.
    fn auth(&self) -> Vec<(&str, &str)> {
        vec![("authorization", self.authorization.as_str())]
    }
}

impl Shop {
    /// Embedded mode with the manifest's variables, overridden by `envs`.
    fn embedded(envs: &[(&str, &str)]) -> Shop {
        let state = tempfile::tempdir().unwrap();
        let bazaar = Self::start(state.path(), Stores::Embedded, envs).bazaar;
        Shop { bazaar, _state: Some(state) }
    }

    /// A host on the stores and databases in `state`.
    fn start(state: &Path, stores: Stores, envs: &[(&str, &str)]) -> Shop {
        require_components(&["gateway", "auth", "users", "products", "orders", "payments", "probe"]);
        Self::start_app("gateway", state, stores, envs)
    }

    /// The gateway in front of the probe as the catalog service
    /// (tests/apps/gateway-varies), its stores as in embedded mode.
    fn varying_catalog() -> Shop {
        require_components(&["gateway", "probe"]);
        let state = tempfile::tempdir().unwrap();
        let bazaar = Self::start_app("gateway-varies", state.path(), Stores::Embedded, &[]).bazaar;
        Shop { bazaar, _state: Some(state) }
    }

    fn start_app(name: &str, state: &Path, stores: Stores, envs: &[(&str, &str)]) -> Shop {
        let runtime_config = state.join(match stores {
            Stores::Embedded => "runtime-config.toml",
            Stores::Redis => "runtime-config-redis.toml",
        });
        std::fs::write(&runtime_config, runtime_config_toml(state, stores)).unwrap();
        let mut up = Up::default().state_dir(state).arg("--runtime-config-file").arg(runtime_config.display().to_string());
        for (name, value) in envs {
            up = up.env(name, *value);
        }
        Shop { bazaar: Bazaar::start(&app(name), up), _state: None }
    }

    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string().into_bytes());
        let mut headers = headers.to_vec();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.raw(method, path, &headers, body.unwrap_or_default()).await
    }

    async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut request = client().request(method, self.bazaar.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Reply { status, headers, text: response.text().await.unwrap() }
    }

    async fn get_as(&self, session: &Session, path: &str) -> Reply {
        self.get_with_token(&session.token, path).await
    }

    async fn get_with_token(&self, token: &str, path: &str) -> Reply {
        self.call(Method::GET, path, &[("authorization", &format!("Bearer {token}"))], None).await
    }

    /// Registers `email` (the manifest's admin email becomes an admin) and logs in.
    async fn customer(&self, email: &str) -> Session {
        let password = "correct horse";
        let registered = self.call(Method::POST, "/api/auth/register", &[], Some(json!({"email": email, "password": password, "name": "Test"}))).await;
        assert_eq!(registered.status, 201, "register {email}: {}", registered.text);
        let id = registered.json()["user_id"].as_str().unwrap().to_owned();
        let login = self.call(Method::POST, "/api/auth/login", &[], Some(json!({"email": email, "password": password}))).await;
        assert_eq!(login.status, 200, "login {email}: {}", login.text);
        let token = login.json()["access_token"].as_str().unwrap().to_owned();
        Session { id, authorization: format!("Bearer {token}"), token }
    }
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.status, self.text))
    }

    /// The shop's error shape with this status and code.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string() && body["error"]["fields"].is_array(), "{body}");
    }
}

fn assert_cache_status(reply: &Reply, expected_start: &str) {
    let status = reply.header("cache-status").unwrap_or_else(|| panic!("no Cache-Status: {} {}", reply.status, reply.text));
    assert!(status.starts_with(expected_start), "Cache-Status {status:?}, expected {expected_start:?}");
}

/// Runtime config: the services' SQLite databases in `state`, the gateway's
/// stores as in embedded mode or in Redis.
fn runtime_config_toml(state: &Path, stores: Stores) -> String {
    let file = |name: &str| format!("{:?}", state.join(name).display().to_string());
    let mut config = String::new();
    for db in ["auth", "users", "products", "orders", "payments"] {
        config += &format!("[sqlite_database.{db}]\ntype = \"spin\"\npath = {}\n\n", file(&format!("{db}.db")));
    }
    config += &format!("[key_value_store.carts]\ntype = \"spin\"\npath = {}\n\n", file("carts.db"));
    // As in both runtime configs: each host keeps its own, in memory.
    config += "[key_value_store.gateway-tokens]\ntype = \"spin\"\n\n";
    for (store, db) in [("gateway", REDIS_DBS.0), ("gateway-cache", REDIS_DBS.1)] {
        config += &match stores {
            Stores::Embedded if store == "gateway" => format!("[key_value_store.{store}]\ntype = \"spin\"\n\n"),
            Stores::Embedded => format!("[key_value_store.{store}]\ntype = \"spin\"\npath = {}\n\n", file(&format!("{store}.db"))),
            Stores::Redis => format!("[key_value_store.{store}]\ntype = \"redis\"\nurl = \"{REDIS}/{db}\"\n\n"),
        };
    }
    config
}

/// Empties the production-mode test's Redis databases.
async fn flush_redis_dbs() {
    for db in [REDIS_DBS.0, REDIS_DBS.1] {
        let url = format!("{REDIS}/{db}");
        let flush = async {
            let mut connection = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            redis::cmd("FLUSHDB").query_async::<()>(&mut connection).await
        };
        match tokio::time::timeout(Duration::from_secs(5), flush).await {
            Ok(Ok(())) => {}
            outcome => panic!(
                "this test needs a Redis server at {REDIS} ({outcome:?}); start one with \
                 `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`"
            ),
        }
    }
}

/// `"<policy>";r=<remaining>;t=<reset>` → (remaining, reset).
fn parse_ratelimit(field: &str, policy: &str) -> (u64, u64) {
    let rest = field.strip_prefix(&format!("\"{policy}\";")).unwrap_or_else(|| panic!("RateLimit {field:?} is not for {policy}"));
    let param = |name: &str| {
        rest.split(';').find_map(|p| p.strip_prefix(&format!("{name}="))).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("RateLimit {field:?} has no {name}"))
    };
    (param("r"), param("t"))
}

/// Fixed windows start at multiples of `window` seconds: a test that counts
/// within one window starts well before the next.
fn wait_clear_of_window_end(window: u64) {
    let left = window - now_secs() % window;
    if left < 30 {
        std::thread::sleep(Duration::from_secs(left + 1));
    }
}

/// A documented path with every `{parameter}` filled in.
fn fill_template(template: &str) -> String {
    let mut path = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                path.push_str("gw-test");
            }
            c if !in_param => path.push(c),
            _ => {}
        }
    }
    path
}

/// A GET with the path exactly as given, bypassing client-side normalisation.
fn raw_get(bazaar: &Bazaar, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", bazaar.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ------------------------------------------------------ JWTs for the tests

/// A compact JWS of `header` and `claims`, signed with the Ed25519 key of `seed`.
fn sign(header: &Value, claims: &Value, seed: &[u8; 32]) -> String {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    // PKCS#8 v1 of an Ed25519 private key (RFC 8410): a fixed prefix, then the seed.
    let mut pkcs8 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    pkcs8.extend_from_slice(seed);
    let key = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8)).unwrap();
    let signer = key.choose_scheme(&[rustls::SignatureScheme::ED25519]).unwrap();
    format!("{signing_input}.{}", b64url(&signer.sign(signing_input.as_bytes()).unwrap()))
}

/// The decoded header of a compact JWS.
fn token_header(token: &str) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap())).unwrap()
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5), as JWTs use it.
fn b64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(text: &str) -> Vec<u8> {
    let (mut bits, mut count, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes() {
        let value = B64URL.iter().position(|&a| a == c).unwrap_or_else(|| panic!("not base64url: {text}"));
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}
