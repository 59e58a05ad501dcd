//! Rate limits per client and route class: a fixed-window counter in the
//! `gateway` store, advertised with the IETF RateLimit header fields.
//!
//! A window's counter is one key, `gateway:rl:<class>:<window>:<client>`, bumped
//! with the store's atomic increment, so the count is exact however many
//! hosts serve the gateway (the store is Redis in production). Fixed windows
//! let a client send up to twice its quota across a window boundary; they
//! cost one round trip per request and no read-modify-write, which a sliding
//! log or GCRA (compare-and-swap retries under contention) would not.
//!
//! The headers follow draft-ietf-httpapi-ratelimit-headers-09, whose
//! structured fields name each policy: `RateLimit-Policy: "reads";q=300;w=60`
//! describes the quota, `RateLimit: "reads";r=299;t=42` says what is left
//! and in how many seconds the window resets. They are on every response of
//! a limited route, the 429 included (with `Retry-After`).
use shop_shared::api::ApiError;

use crate::kv::{KvError, Store};
use crate::reply::Reply;

/// The kinds of route that share a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Sign-up, login, refresh and logout: the brute-force target.
    Auth,
    /// Everything that changes state.
    Writes,
    /// Everything that only reads.
    Reads,
}

impl Class {
    /// The policy's name in the headers and in its counters' keys.
    pub fn name(self) -> &'static str {
        match self {
            Class::Auth => "auth",
            Class::Writes => "writes",
            Class::Reads => "reads",
        }
    }
}

/// `quota` requests per `window_secs` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub class: Class,
    pub quota: u64,
    pub window_secs: u64,
}

impl Policy {
    /// The `RateLimit-Policy` field value.
    pub fn header(&self) -> String {
        format!("\"{}\";q={};w={}", self.class.name(), self.quota, self.window_secs)
    }
}

/// What the counter said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub policy: Policy,
    /// Requests this client has made in the current window, this one included.
    pub count: u64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

impl Decision {
    /// Counts a request by `client` (the user id, or the client's address)
    /// at `now_secs`.
    pub fn count(store: &Store, policy: Policy, client: &str, now_secs: u64) -> Result<Self, KvError> {
        let window = now_secs / policy.window_secs;
        let count = store.increment(&counter_key(policy.class, window, client), 1)?;
        if count == 1 && window > 0 {
            // The first request of a window retires the client's previous
            // counter; counters of clients who stopped coming are left behind,
            // one per client and class (wasi:keyvalue has no expiry). A failed
            // cleanup costs a stale key, not the request.
            if let Err(e) = store.delete(&counter_key(policy.class, window - 1, client)) {
                eprintln!("gateway: retiring a rate-limit counter failed: {e}");
            }
        }
        Ok(Self::at(policy, u64::try_from(count).unwrap_or(0), now_secs))
    }

    fn at(policy: Policy, count: u64, now_secs: u64) -> Self {
        Self { policy, count, reset_secs: policy.window_secs - now_secs % policy.window_secs }
    }

    pub fn allowed(&self) -> bool {
        self.count <= self.policy.quota
    }

    pub fn remaining(&self) -> u64 {
        self.policy.quota.saturating_sub(self.count)
    }

    /// The `RateLimit` field value.
    pub fn header(&self) -> String {
        format!("\"{}\";r={};t={}", self.policy.class.name(), self.remaining(), self.reset_secs)
    }

    /// Adds the RateLimit fields to a reply of a limited route.
    pub fn annotate(&self, reply: &mut Reply) {
        reply.set_header("ratelimit-policy", self.policy.header());
        reply.set_header("ratelimit", self.header());
    }

    /// The 429 for a client over its quota: retry when the window resets.
    pub fn rejection(&self) -> Reply {
        let error = ApiError::new(
            429,
            "rate_limited",
            format!(
                "more than {} {} requests in {} s; retry in {} s",
                self.policy.quota,
                self.policy.class.name(),
                self.policy.window_secs,
                self.reset_secs
            ),
        );
        let mut reply = Reply::from(error).with_header("retry-after", self.reset_secs.to_string());
        self.annotate(&mut reply);
        reply
    }
}

fn counter_key(class: Class, window: u64, client: &str) -> String {
    format!("gateway:rl:{}:{window}:{client}", class.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    const READS: Policy = Policy { class: Class::Reads, quota: 300, window_secs: 60 };

    #[test]
    fn headers_use_the_structured_field_syntax() {
        assert_eq!(READS.header(), r#""reads";q=300;w=60"#);
        let decision = Decision::at(READS, 1, 1_000_038);
        assert_eq!(decision.header(), r#""reads";r=299;t=42"#);
    }

    #[test]
    fn the_quota_is_inclusive_and_remaining_never_goes_negative() {
        let policy = Policy { quota: 2, ..READS };
        assert!(Decision::at(policy, 2, 0).allowed());
        assert_eq!(Decision::at(policy, 2, 0).remaining(), 0);
        assert!(!Decision::at(policy, 3, 0).allowed());
        assert_eq!(Decision::at(policy, 7, 0).remaining(), 0);
    }

    #[test]
    fn reset_counts_down_to_the_window_boundary() {
        assert_eq!(Decision::at(READS, 1, 120).reset_secs, 60);
        assert_eq!(Decision::at(READS, 1, 179).reset_secs, 1);
    }

    #[test]
    fn a_rejection_says_when_to_retry() {
        let policy = Policy { class: Class::Auth, quota: 10, window_secs: 60 };
        let reply = Decision::at(policy, 11, 30).rejection();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.header("retry-after"), Some("30"));
        assert_eq!(reply.header("ratelimit"), Some(r#""auth";r=0;t=30"#));
        assert_eq!(reply.header("ratelimit-policy"), Some(r#""auth";q=10;w=60"#));
    }

    #[test]
    fn counters_are_per_class_window_and_client() {
        assert_eq!(counter_key(Class::Auth, 7, "ip:127.0.0.1"), "gateway:rl:auth:7:ip:127.0.0.1");
        assert_ne!(counter_key(Class::Reads, 7, "u:1"), counter_key(Class::Writes, 7, "u:1"));
    }
}
