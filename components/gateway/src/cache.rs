//! The shared cache for catalog reads, in the `gateway-cache`
//! store.
//!
//! - Keys: a response is found in two steps, as HTTP caches do (RFC 9111
//!   §4.1). The request's route and URI (path and query) name a *vary
//!   record*: the header names the last response's `Vary` listed. Those
//!   names, with this request's values for them, then name the *entry*.
//!   A hit is one read of the store: the generation (below), the vary
//!   record and the entry of a response that varies on nothing, together.
//! - Signed-in callers: the catalog is the same for everyone, and products
//!   says so with `Cache-Control: public`. A response is kept for, or served
//!   to, a request with `Authorization` only when it carries that mark (or
//!   `s-maxage`/`must-revalidate`, RFC 9111 §3.5), so a service that ever
//!   answers a caller personally, without the mark, is never shared; one
//!   that answers per caller with the mark must say `Vary: Authorization`.
//! - Invalidation: every entry carries the cache *generation* it was stored
//!   at, and serves only while that is the current one. A successful
//!   catalog write through the gateway bumps the generation (a
//!   compare-and-swap), so every stored response is out of date at once, on
//!   every host; the write then sweeps the old entries away. A read that
//!   started before the bump stores with the generation it read, so it can
//!   never resurrect a stale response. (The generation is a decimal number
//!   the gateway writes itself, not an atomic counter, so that it can be
//!   read with the entry: a counter's bytes are the store's own business.)
//! - Validators: every stored response gets a strong ETag, a hash of its
//!   body, and `If-None-Match` is answered with 304.
//! - `Cache-Status` (RFC 9211) tells the client what the cache did.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache_control::CacheControl;
use crate::inbound::Headers;
use crate::kv::{self, KvError, Store};
use crate::reply::Reply;
use crate::trace::hex;

/// The cache's name in `Cache-Status`.
const CACHE_NAME: &str = "gateway";
/// The generation's key.
const GENERATION_KEY: &str = "gateway-cache:current-generation";
/// The prefix of every key.
const KEY_PREFIX: &str = "gateway-cache:";

/// Fields that describe one exchange, not the stored response.
const PER_EXCHANGE: [&str; 6] = ["x-request-id", "ratelimit", "ratelimit-policy", "cache-status", "age", "set-cookie"];

/// What identifies a request before `Vary` is known.
#[derive(Clone, Copy, Debug)]
pub struct RequestKey<'a> {
    /// The route's name (`catalog`).
    pub route: &'a str,
    /// Path and query.
    pub uri: &'a str,
}

impl RequestKey<'_> {
    /// The key of the vary record.
    pub fn vary_key(&self) -> String {
        format!("{KEY_PREFIX}vary:{}", self.digest(&[]))
    }

    /// The vary record's key and the key of the entry of a response that
    /// varies on nothing, from one hash: both hash the route and URI alone.
    pub fn unvaried_keys(&self) -> (String, String) {
        let digest = self.digest(&[]);
        (format!("{KEY_PREFIX}vary:{digest}"), format!("{KEY_PREFIX}entry:{digest}"))
    }

    /// The key of the entry for this request, given the vary record's names.
    pub fn entry_key(&self, vary: &[String], headers: &Headers) -> String {
        let mut names: Vec<&str> = vary.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let selected: Vec<(&str, Option<&str>)> =
            names.into_iter().map(|name| (name, headers.get(name).map(str::trim))).collect();
        format!("{KEY_PREFIX}entry:{}", self.digest(&selected))
    }

    /// A hash of every part, each length-prefixed so that no two different
    /// requests encode alike.
    fn digest(&self, selected: &[(&str, Option<&str>)]) -> String {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        part(self.route.as_bytes());
        part(self.uri.as_bytes());
        for (name, value) in selected {
            part(name.as_bytes());
            match value {
                Some(value) => {
                    part(b"=");
                    part(value.as_bytes());
                }
                None => part(b"absent"),
            }
        }
        hex(&hasher.finalize())
    }
}

/// The lower-case field names a `Vary` value lists, or `None` for `Vary: *`
/// (the response depends on more than headers: never reusable).
fn vary_names(vary: Option<&str>) -> Option<Vec<String>> {
    let names: Vec<String> =
        vary.unwrap_or("").split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
    (!names.iter().any(|n| n == "*")).then_some(names)
}

/// What the client's own `Cache-Control` asks of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMode {
    /// Serve from the cache when fresh, else forward and store.
    Normal,
    /// `no-cache` or `max-age=0`: forward, then store the fresh response.
    Refresh,
    /// `no-store`: neither read nor write the cache.
    Bypass,
}

impl RequestMode {
    pub fn of(headers: &Headers) -> Self {
        let cc = match headers.get("cache-control") {
            Some(field) => CacheControl::parse(field),
            // HTTP/1.0's spelling counts only without Cache-Control (RFC 9111 §5.4).
            None => CacheControl { no_cache: headers.get("pragma").is_some_and(|p| CacheControl::parse(p).no_cache), ..Default::default() },
        };
        if cc.no_store {
            Self::Bypass
        } else if cc.no_cache || cc.max_age == Some(0) {
            Self::Refresh
        } else {
            Self::Normal
        }
    }
}

/// How long a response may be served from the shared cache, or why it may
/// not be stored at all; `authorized` when the request carried
/// `Authorization`.
pub fn storable_for(reply: &Reply, authorized: bool, default_ttl_secs: u64) -> Result<u64, &'static str> {
    if reply.status != 200 {
        return Err("status");
    }
    if vary_names(reply.joined_header("vary").as_deref()).is_none() {
        return Err("vary-star");
    }
    if reply.header("set-cookie").is_some() {
        return Err("set-cookie");
    }
    let cc = CacheControl::parse(&reply.joined_header("cache-control").unwrap_or_default());
    if cc.no_store {
        return Err("no-store");
    }
    if cc.private {
        return Err("private");
    }
    if authorized && !cc.shared_despite_authorization() {
        return Err("authorization");
    }
    // no-cache allows storing, but only to revalidate before every use; the
    // services answer no conditional requests, so keeping it would not help.
    if cc.no_cache {
        return Err("no-cache");
    }
    match cc.shared_max_age() {
        Some(0) => Err("max-age"),
        Some(secs) => Ok(secs),
        None => Ok(default_ttl_secs),
    }
}

/// A strong validator: the first 128 bits of the body's SHA-256.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex(&Sha256::digest(body)[..16]))
}

/// Whether `If-None-Match` matches `etag` (weak comparison, RFC 9110 §13.1.2).
pub fn if_none_match(field: Option<&str>, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    field.is_some_and(|field| field.trim() == "*" || field.split(',').any(|tag| opaque(tag) == opaque(etag)))
}

/// The 304 for `reply`: only the fields RFC 9110 §15.4.5 keeps.
pub fn not_modified(reply: &Reply) -> Reply {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "cache-control" | "content-location" | "date" | "etag" | "expires" | "vary"))
        .cloned()
        .collect();
    headers.extend(reply.headers.iter().filter(|(name, _)| name == "cache-status").cloned());
    Reply { status: 304, headers, body: Vec::new() }
}

/// The `Cache-Status` value for a response that was forwarded.
pub fn forwarded_status(reason: &str, stored: Result<u64, &str>) -> String {
    match stored {
        Ok(ttl) => format!("{CACHE_NAME}; fwd={reason}; stored; ttl={ttl}"),
        Err(why) => format!("{CACHE_NAME}; fwd={reason}; detail={why}"),
    }
}

/// What is kept of a response besides its body.
#[derive(Serialize, Deserialize)]
struct Meta {
    /// The cache generation it was stored at: it serves only while that is
    /// the current one.
    generation: u64,
    stored_at_secs: u64,
    expires_at_secs: u64,
    status: u16,
    headers: Vec<(String, String)>,
}

/// A stored response: its [`Meta`] as JSON, length-prefixed, then the body
/// as it is, so a hit copies the body out instead of decoding it (base64 in
/// JSON cost a catalog page more than the rest of the lookup).
struct Entry {
    meta: Meta,
    body: Vec<u8>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("the metadata serializes");
        let mut bytes = Vec::with_capacity(4 + meta.len() + self.body.len());
        bytes.extend_from_slice(&u32::try_from(meta.len()).expect("metadata under 4 GiB").to_be_bytes());
        bytes.extend_from_slice(&meta);
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// `None` for anything this version did not write (an older format, a
    /// torn value): the lookup then counts it a miss and stores anew.
    fn decode(mut bytes: Vec<u8>) -> Option<Self> {
        let len = usize::try_from(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
        let meta: Meta = serde_json::from_slice(bytes.get(4..4usize.checked_add(len)?)?).ok()?;
        let body = bytes.split_off(4 + len);
        Some(Self { meta, body })
    }
}

/// What a lookup found.
pub enum Lookup {
    /// A fresh response, with its `Age`, `ETag` and `Cache-Status`.
    Hit(Reply),
    /// Nothing usable; the `Cache-Status` `fwd` reason.
    Miss(&'static str),
}

/// The cache, as one request sees it.
pub struct Cache {
    store: Store,
    /// The generation the request's lookup read; what it stores carries it.
    generation: Option<u64>,
}

impl Cache {
    pub fn open() -> Result<Self, KvError> {
        Ok(Self { store: Store::open(kv::CACHE)?, generation: None })
    }

    /// The fresh entry for this request; `authorized` (the request carried
    /// `Authorization`) finds only entries the service marked as shared.
    pub fn lookup(&mut self, key: &RequestKey<'_>, headers: &Headers, authorized: bool, now_secs: u64) -> Result<Lookup, KvError> {
        // Most responses vary on nothing: the entry such a response is kept
        // under is read with the generation and its vary record, in one call
        // to the store. Only a record that names headers costs a second call.
        let (vary_key, unvaried) = key.unvaried_keys();
        let [generation, vary, unvaried_entry] = self.store.get_many([GENERATION_KEY, &vary_key, &unvaried])?;
        let generation = generation_of(generation.as_deref())?;
        self.generation = Some(generation);
        let Some(vary) = vary else {
            return Ok(Lookup::Miss("uri-miss"));
        };
        let Ok(vary) = serde_json::from_slice::<Vec<String>>(&vary) else {
            return Ok(Lookup::Miss("uri-miss"));
        };
        let entry = if vary.is_empty() {
            unvaried_entry
        } else {
            self.store.get(&key.entry_key(&vary, headers))?
        };
        let Some(entry) = entry else {
            return Ok(Lookup::Miss("vary-miss"));
        };
        let Some(Entry { meta, body }) = Entry::decode(entry) else {
            return Ok(Lookup::Miss("uri-miss"));
        };
        if meta.generation != generation {
            // Stored before the catalog last changed.
            return Ok(Lookup::Miss("miss"));
        }
        if now_secs >= meta.expires_at_secs {
            return Ok(Lookup::Miss("stale"));
        }
        let mut reply = Reply { status: meta.status, headers: meta.headers, body };
        if authorized && !CacheControl::parse(&reply.joined_header("cache-control").unwrap_or_default()).shared_despite_authorization() {
            return Ok(Lookup::Miss("miss"));
        }
        reply.set_header("age", now_secs.saturating_sub(meta.stored_at_secs).to_string());
        reply.set_header("cache-status", format!("{CACHE_NAME}; hit; ttl={}", meta.expires_at_secs - now_secs));
        Ok(Lookup::Hit(reply))
    }

    /// Keeps `reply` for `ttl_secs`, at the generation the lookup read (a
    /// request that did not look up reads it now).
    pub fn store(&mut self, key: &RequestKey<'_>, headers: &Headers, reply: &Reply, ttl_secs: u64, now_secs: u64) -> Result<(), KvError> {
        let generation = match self.generation {
            Some(generation) => generation,
            None => generation_of(self.store.get(GENERATION_KEY)?.as_deref())?,
        };
        let vary = vary_names(reply.joined_header("vary").as_deref()).unwrap_or_default();
        let meta = Meta {
            generation,
            stored_at_secs: now_secs,
            expires_at_secs: now_secs.saturating_add(ttl_secs),
            status: reply.status,
            headers: reply.headers.iter().filter(|(name, _)| !PER_EXCHANGE.contains(&name.as_str())).cloned().collect(),
        };
        let entry = Entry { meta, body: reply.body.clone() }.encode();
        self.store.set(&key.entry_key(&vary, headers), &entry)?;
        self.store.set(&key.vary_key(), &serde_json::to_vec(&vary).expect("names serialize"))
    }

    /// Puts every stored response out of date (the next generation), then
    /// deletes the stored keys. Those a read stores meanwhile may go too: a
    /// miss later, never a stale hit.
    pub fn invalidate() -> Result<(), KvError> {
        let store = Store::open(kv::CACHE)?;
        store.update(GENERATION_KEY, |current| {
            // An unreadable generation starts again from 1: whatever was
            // stored with it is out of date all the same.
            let current = generation_of(current).unwrap_or(0);
            current.saturating_add(1).to_string().into_bytes()
        })?;
        for key in store.keys()? {
            if key.starts_with(KEY_PREFIX) && key != GENERATION_KEY {
                store.delete(&key)?;
            }
        }
        Ok(())
    }
}

/// The generation the store holds: 0 before the first invalidation.
fn generation_of(stored: Option<&[u8]>) -> Result<u64, KvError> {
    let Some(bytes) = stored else { return Ok(0) };
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| KvError::unreadable(kv::CACHE, format!("the generation at {GENERATION_KEY} is not a number: {bytes:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())))
    }

    const KEY: RequestKey<'static> = RequestKey { route: "catalog", uri: "/api/products?q=lamp" };

    #[test]
    fn the_generation_is_a_decimal_number_and_zero_before_the_first() {
        assert_eq!(generation_of(None).unwrap(), 0);
        assert_eq!(generation_of(Some(b"12")).unwrap(), 12);
        // An atomic counter's bytes (SQLite's 8 little-endian ones) are not one.
        assert!(generation_of(Some(&12i64.to_le_bytes())).is_err());
        assert!(generation_of(Some(b"-1")).is_err());
        assert!(KEY.vary_key().starts_with(KEY_PREFIX) && KEY.entry_key(&[], &headers(&[])).starts_with(KEY_PREFIX));
        assert_ne!(KEY.vary_key(), GENERATION_KEY);
    }

    #[test]
    fn keys_depend_on_route_and_uri() {
        let base = KEY.vary_key();
        assert_eq!(base, KEY.vary_key(), "deterministic");
        assert_ne!(base, RequestKey { route: "other", ..KEY }.vary_key());
        assert_ne!(base, RequestKey { uri: "/api/products?q=lamps", ..KEY }.vary_key());
        assert_ne!(base, RequestKey { uri: "/api/products", ..KEY }.vary_key());
        // Length prefixes keep parts from running into each other.
        let a = RequestKey { route: "ab", uri: "c" };
        let b = RequestKey { route: "a", uri: "bc" };
        assert_ne!(a.vary_key(), b.vary_key());
    }

    #[test]
    fn entry_keys_depend_on_the_varied_headers_only() {
        let vary = vec!["accept-language".to_owned()];
        let en = headers(&[("accept-language", "en"), ("user-agent", "a")]);
        let en_other_agent = headers(&[("accept-language", " en "), ("user-agent", "b")]);
        let fr = headers(&[("accept-language", "fr")]);
        let none = headers(&[]);
        let empty = headers(&[("accept-language", "")]);
        let key = |h: &Headers| KEY.entry_key(&vary, h);
        assert_eq!(key(&en), key(&en_other_agent));
        assert_ne!(key(&en), key(&fr));
        assert_ne!(key(&none), key(&empty), "absent differs from empty");
        assert_ne!(key(&en), KEY.entry_key(&[], &en), "the vary set is part of the key");
        assert_eq!(KEY.unvaried_keys(), (KEY.vary_key(), KEY.entry_key(&[], &en)));
    }

    #[test]
    fn vary_names_are_normalised_and_order_does_not_matter() {
        let h = headers(&[("accept", "a"), ("accept-language", "en")]);
        let one = vary_names(Some("Accept-Language, accept")).unwrap();
        let other = vary_names(Some("accept,accept-language,accept")).unwrap();
        assert_eq!(one, vec!["accept-language", "accept"]);
        assert_eq!(KEY.entry_key(&one, &h), KEY.entry_key(&other, &h));
        assert_eq!(vary_names(None), Some(vec![]));
        assert_eq!(vary_names(Some("accept, *")), None);
    }

    fn reply(status: u16, pairs: &[(&str, &str)]) -> Reply {
        Reply {
            status,
            headers: pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn storable_responses_and_their_lifetime() {
        assert_eq!(storable_for(&reply(200, &[]), false, 30), Ok(30));
        assert_eq!(storable_for(&reply(200, &[("cache-control", "public, max-age=60")]), false, 30), Ok(60));
        assert_eq!(storable_for(&reply(200, &[("cache-control", "max-age=60, s-maxage=5")]), false, 30), Ok(5));
        assert_eq!(storable_for(&reply(200, &[("vary", "accept")]), false, 30), Ok(30));
    }

    #[test]
    fn a_response_to_a_signed_in_caller_is_kept_only_when_marked_shared() {
        assert_eq!(storable_for(&reply(200, &[]), true, 30), Err("authorization"));
        assert_eq!(storable_for(&reply(200, &[("cache-control", "max-age=60")]), true, 30), Err("authorization"));
        assert_eq!(storable_for(&reply(200, &[("cache-control", "public")]), true, 30), Ok(30));
        assert_eq!(storable_for(&reply(200, &[("cache-control", "s-maxage=5")]), true, 30), Ok(5));
        // The mark does not override the refusals that hold for everyone.
        assert_eq!(storable_for(&reply(200, &[("cache-control", "public, no-store")]), true, 30), Err("no-store"));
        assert_eq!(storable_for(&reply(200, &[("cache-control", "public, private")]), true, 30), Err("private"));
    }

    #[test]
    fn private_no_store_and_friends_are_never_stored() {
        let cases = [
            (reply(200, &[("cache-control", "private")]), "private"),
            (reply(200, &[("cache-control", "Private=\"x-a\", max-age=60")]), "private"),
            (reply(200, &[("cache-control", "max-age=60"), ("cache-control", "no-store")]), "no-store"),
            (reply(200, &[("cache-control", "no-cache")]), "no-cache"),
            (reply(200, &[("cache-control", "max-age=0")]), "max-age"),
            (reply(200, &[("cache-control", "s-maxage=0, max-age=60")]), "max-age"),
            (reply(200, &[("vary", "*")]), "vary-star"),
            (reply(200, &[("set-cookie", "a=b")]), "set-cookie"),
            (reply(404, &[]), "status"),
        ];
        for (reply, why) in cases {
            assert_eq!(storable_for(&reply, false, 30), Err(why), "{:?}", reply.headers);
        }
    }

    #[test]
    fn request_modes() {
        assert_eq!(RequestMode::of(&headers(&[])), RequestMode::Normal);
        assert_eq!(RequestMode::of(&headers(&[("cache-control", "No-Store")])), RequestMode::Bypass);
        assert_eq!(RequestMode::of(&headers(&[("cache-control", "no-cache")])), RequestMode::Refresh);
        assert_eq!(RequestMode::of(&headers(&[("cache-control", "max-age=0")])), RequestMode::Refresh);
        assert_eq!(RequestMode::of(&headers(&[("pragma", "no-cache")])), RequestMode::Refresh);
        assert_eq!(RequestMode::of(&headers(&[("pragma", "no-cache"), ("cache-control", "max-age=5")])), RequestMode::Normal);
    }

    #[test]
    fn entries_keep_the_body_byte_for_byte_and_refuse_what_they_did_not_write() {
        let body = b"\x00{\"items\":[]}\xff".to_vec();
        let meta = Meta { generation: 4, stored_at_secs: 10, expires_at_secs: 70, status: 200, headers: vec![("etag".into(), "\"a\"".into())] };
        let bytes = Entry { meta, body: body.clone() }.encode();
        let back = Entry::decode(bytes.clone()).expect("decodes");
        assert_eq!((back.meta.generation, back.meta.stored_at_secs, back.meta.expires_at_secs, back.meta.status), (4, 10, 70, 200));
        assert_eq!(back.meta.headers, vec![("etag".to_string(), "\"a\"".to_string())]);
        assert_eq!(back.body, body);
        // Truncated, too short, or the old JSON-with-base64 entries.
        assert!(Entry::decode(bytes[..bytes.len() - body.len() - 1].to_vec()).is_none());
        assert!(Entry::decode(vec![0, 0]).is_none());
        assert!(Entry::decode(br#"{"stored_at_secs":1,"expires_at_secs":2,"status":200,"headers":[],"body_base64":""}"#.to_vec()).is_none());
    }

    #[test]
    fn etags_are_strong_hashes_of_the_body() {
        let etag = etag_of(b"{\"items\":[]}");
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
        assert_eq!(etag, etag_of(b"{\"items\":[]}"));
        assert_ne!(etag, etag_of(b"{\"items\":[1]}"));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = "\"abc\"";
        assert!(if_none_match(Some("\"abc\""), etag));
        assert!(if_none_match(Some("W/\"abc\""), etag));
        assert!(if_none_match(Some("\"x\", \"abc\""), etag));
        assert!(if_none_match(Some("*"), etag));
        assert!(!if_none_match(Some("\"abcd\""), etag));
        assert!(!if_none_match(None, etag));
    }

    #[test]
    fn not_modified_keeps_only_the_validator_fields() {
        let full = reply(200, &[("content-type", "application/json"), ("etag", "\"a\""), ("cache-control", "max-age=5"), ("vary", "accept"), ("cache-status", "gateway; hit")]);
        let reply = not_modified(&full);
        assert_eq!(reply.status, 304);
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("etag"), Some("\"a\""));
        assert_eq!(reply.header("vary"), Some("accept"));
        assert_eq!(reply.header("cache-status"), Some("gateway; hit"));
        assert_eq!(reply.header("content-type"), None);
    }
}
