//! What happens to every request, in order: route, authenticate, count
//! against the rate limit, authorise, read the body, then answer from the
//! catalog cache or forward to the service.
//!
//! Authentication comes before the rate limit so an authenticated client is
//! limited by its user id wherever it connects from; a request with a
//! missing or bad token is still counted (by address) before it is refused,
//! so guessing tokens is throttled like everything else. The body is read
//! last, so refused requests never upload anything.
use spin_sdk::http::IncomingRequest;

use shop_shared::api::{ApiError, REQUEST_ID};

use crate::cache::{self, Cache, Lookup, RequestKey, RequestMode};
use crate::clock::now_secs;
use crate::config::Config;
use crate::inbound::{self, Head};
use crate::kv::{self, Store};
use crate::proxy;
use crate::rate_limit::{Decision, Policy};
use crate::reply::Reply;
use crate::routes::{self, Access, Catalog, Resolved, Route};
use crate::token::{self, Identity, Rejection, Role};
use crate::trace::TraceContext;

/// The OpenAPI document of the public API.
const OPENAPI: &str = include_str!("openapi.json");
/// The catalog's name in cache keys.
const CATALOG_ROUTE: &str = "catalog";

/// Answers one request; every answer carries the request id.
pub async fn handle(req: IncomingRequest) -> Reply {
    let head = Head::of(&req);
    let trace = TraceContext::of(&head.headers);
    let mut reply = serve(&head, req, &trace).await.unwrap_or_else(|reply| reply);
    reply.set_header(REQUEST_ID, trace.request_id.clone());
    reply
}

/// `Err` is an answer the gateway gives itself.
async fn serve(head: &Head, req: IncomingRequest, trace: &TraceContext) -> Result<Reply, Reply> {
    let resolved = routes::resolve(&head.method, &head.path)?;
    let config = Config::load()?;
    match resolved {
        Resolved::OpenApi => {
            let decision = limit(config.reads, &format!("ip:{}", head.client_ip()), trace)?;
            let mut reply = Reply::json(200, OPENAPI.as_bytes().to_vec());
            reply.set_header("etag", cache::etag_of(&reply.body));
            let mut reply = conditional(reply, head);
            annotate(decision, &mut reply);
            Ok(reply)
        }
        Resolved::Forward(route) => forward(&route, head, req, trace, &config).await,
    }
}

async fn forward(route: &Route, head: &Head, req: IncomingRequest, trace: &TraceContext, config: &Config) -> Result<Reply, Reply> {
    let authorization = head.headers.get("authorization");
    let identity = match authorization {
        Some(_) => token::authenticate(authorization, trace, config.jwks_ttl_secs).await,
        None => Err(Rejection::Missing),
    };
    let client = match &identity {
        Ok(identity) => format!("u:{}", identity.user_id),
        Err(_) => format!("ip:{}", head.client_ip()),
    };
    let decision = limit(config.policy(route.class), &client, trace)?;
    let mut reply = match authorize(route.access, identity) {
        Ok(identity) => match inbound::read_body(head, req).await {
            Ok(body) => dispatch(route, head, body, identity.as_ref(), trace, config).await,
            Err(error) => Reply::from(error),
        },
        Err(refusal) => refusal,
    };
    annotate(decision, &mut reply);
    Ok(reply)
}

/// Counts the request; `Err` is the 429. A store that cannot count lets the
/// request through (and says so in the log): an outage of the counters
/// should not take the shop down.
fn limit(policy: Policy, client: &str, trace: &TraceContext) -> Result<Option<Decision>, Reply> {
    let counted = Store::open(kv::GATEWAY).and_then(|store| Decision::count(&store, policy, client, now_secs()));
    match counted {
        Ok(decision) if !decision.allowed() => Err(decision.rejection()),
        Ok(decision) => Ok(Some(decision)),
        Err(e) => {
            eprintln!("gateway [{}]: rate limit not applied: {e}", trace.request_id);
            Ok(None)
        }
    }
}

fn annotate(decision: Option<Decision>, reply: &mut Reply) {
    if let Some(decision) = decision {
        decision.annotate(reply);
    }
}

/// Who may go on: `Ok(None)` is an anonymous caller of a public route. On a
/// public route a token that does not verify is ignored rather than refused,
/// so a client holding an expired token can still log in or refresh it.
fn authorize(access: Access, identity: Result<Identity, Rejection>) -> Result<Option<Identity>, Reply> {
    match (access, identity) {
        (Access::Public, identity) => Ok(identity.ok()),
        (_, Err(rejection)) => Err(rejection.reply()),
        (Access::Admin, Ok(identity)) if identity.role != Role::Admin => Err(Reply::from(ApiError::forbidden("this route needs the admin role"))
            .with_header("www-authenticate", "Bearer realm=\"bazaar\", error=\"insufficient_scope\"")),
        (_, Ok(identity)) => Ok(Some(identity)),
    }
}

/// Forwards, through the cache for catalog reads; a successful catalog write
/// invalidates the cache.
async fn dispatch(route: &Route, head: &Head, body: Vec<u8>, identity: Option<&Identity>, trace: &TraceContext, config: &Config) -> Reply {
    let forwarded = |body| proxy::forward(route.service, head, body, identity, trace);
    match route.catalog {
        Catalog::Read => cached(head, forwarded(body), trace, config).await,
        Catalog::Write => {
            let reply = forwarded(body).await.unwrap_or_else(Reply::from);
            if (200..300).contains(&reply.status)
                && let Err(e) = Cache::invalidate()
            {
                eprintln!("gateway [{}]: invalidating the catalog cache failed: {e}", trace.request_id);
            }
            reply
        }
        Catalog::None => forwarded(body).await.unwrap_or_else(Reply::from),
    }
}

/// A catalog read: from the cache when it has a fresh answer, else from the
/// service, kept for next time when the response allows. A signed-in
/// caller shares only the answers the service marked `public` (see
/// [`cache`]).
async fn cached(head: &Head, forwarded: impl Future<Output = Result<Reply, ApiError>>, trace: &TraceContext, config: &Config) -> Reply {
    let log = |e: &kv::KvError| eprintln!("gateway [{}]: catalog cache: {e}", trace.request_id);
    let mode = RequestMode::of(&head.headers);
    let cache = if mode == RequestMode::Bypass { None } else { Cache::open().inspect_err(log).ok() };
    let Some(mut cache) = cache else {
        let mut reply = forwarded.await.unwrap_or_else(Reply::from);
        reply.set_header("cache-status", "gateway; fwd=bypass");
        return reply;
    };
    let uri = head.uri();
    let key = RequestKey { route: CATALOG_ROUTE, uri: &uri };
    let authorized = head.headers.get("authorization").is_some();
    let now = now_secs();
    let reason = match mode {
        RequestMode::Normal => match cache.lookup(&key, &head.headers, authorized, now) {
            Ok(Lookup::Hit(reply)) => return conditional(reply, head),
            Ok(Lookup::Miss(reason)) => reason,
            Err(e) => {
                log(&e);
                "miss"
            }
        },
        RequestMode::Refresh | RequestMode::Bypass => "request",
    };
    let mut reply = forwarded.await.unwrap_or_else(Reply::from);
    if reply.status == 200 {
        reply.set_header("etag", cache::etag_of(&reply.body));
    }
    let mut storable = cache::storable_for(&reply, authorized, config.cache_ttl_secs);
    if let Ok(ttl) = storable
        && let Err(e) = cache.store(&key, &head.headers, &reply, ttl, now)
    {
        log(&e);
        storable = Err("store-failed");
    }
    reply.set_header("cache-status", cache::forwarded_status(reason, storable));
    conditional(reply, head)
}

/// A 304 when the client already has this representation.
fn conditional(reply: Reply, head: &Head) -> Reply {
    match reply.header("etag") {
        Some(etag) if reply.status == 200 && cache::if_none_match(head.headers.get("if-none-match"), etag) => cache::not_modified(&reply),
        _ => reply,
    }
}
