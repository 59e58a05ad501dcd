//! The gateway's settings, from Spin variables. A variable the manifest does
//! not declare takes its documented default, so the gateway runs with no
//! configuration; one declared with a value that is not a positive integer
//! is a deployment mistake, reported on every request until it is fixed.
use shop_shared::api::ApiError;
use spin_sdk::variables;

use crate::rate_limit::{Class, Policy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub auth: Policy,
    pub writes: Policy,
    pub reads: Policy,
    /// How long the JWKS fetched from auth is trusted before it is fetched again.
    pub jwks_ttl_secs: u64,
    /// How long a catalog response without `max-age`/`s-maxage` stays fresh.
    /// Stock changes through orders (not through the gateway) show up after
    /// at most this long.
    pub cache_ttl_secs: u64,
}

impl Config {
    pub fn load() -> Result<Self, ApiError> {
        let window_secs = number("rate_limit_window_seconds", 60)?;
        let policy = |class, name, default| -> Result<Policy, ApiError> {
            Ok(Policy { class, quota: number(name, default)?, window_secs })
        };
        Ok(Self {
            auth: policy(Class::Auth, "rate_limit_auth", 10)?,
            writes: policy(Class::Writes, "rate_limit_writes", 60)?,
            reads: policy(Class::Reads, "rate_limit_reads", 300)?,
            jwks_ttl_secs: number("jwks_ttl_seconds", 300)?,
            cache_ttl_secs: number("cache_ttl_seconds", 30)?,
        })
    }

    pub fn policy(&self, class: Class) -> Policy {
        match class {
            Class::Auth => self.auth,
            Class::Writes => self.writes,
            Class::Reads => self.reads,
        }
    }
}

/// A positive integer variable, or `default` when it is not declared.
fn number(name: &str, default: u64) -> Result<u64, ApiError> {
    match variables::get(name) {
        Ok(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::internal(format!("the gateway variable `{name}` must be a positive integer, not {value:?}"))),
        Err(variables::Error::Undefined(_)) => Ok(default),
        Err(e) => Err(ApiError::internal(format!("reading the gateway variable `{name}` failed: {e}"))),
    }
}
