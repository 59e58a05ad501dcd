//! `bazaar up --version-header`: every response a component gives names the
//! build that gave it, `bazaar-served-by: <component>@<version>`, the
//! version being the first 12 hex digits of the wasm's SHA-256 (what
//! `GET /admin/components` lists in full).
//!
//! It is how a client sees a hot swap take effect. The field is appended,
//! never replaced: a component that passes on the response of one it chained
//! to (the shop's gateway forwards the services' fields) keeps that one's
//! entry, so the client sees the whole chain, innermost first. Off by
//! default, because it tells the world which components and builds run.
use http::{HeaderValue, Response};

use crate::app::LoadedComponent;

pub const SERVED_BY: &str = "bazaar-served-by";

/// How many hex digits of the content hash name a version: enough to tell
/// builds apart, short enough to read.
const SHORT_VERSION: usize = 12;

/// `<component>@<short version>`.
pub fn value(id: &str, version: &str) -> String {
    let short = version.get(..SHORT_VERSION).unwrap_or(version);
    format!("{id}@{short}")
}

/// Appends this component's entry to `response`.
pub fn append<B>(response: &mut Response<B>, component: &LoadedComponent) {
    // Component ids are ASCII (the manifest checks them) and so is the hash.
    if let Ok(value) = HeaderValue::from_str(&value(&component.id, &component.version)) {
        response.headers_mut().append(SERVED_BY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_component_and_the_start_of_its_hash() {
        let hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(value("products", hash), "products@0123456789ab");
        assert_eq!(value("short", "abc"), "short@abc");
    }
}
