//! The `spin-*` headers Spin adds to every request a component receives, so
//! a component can tell which route matched and what the rest of the path is
//! without parsing the manifest itself.
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::routing::RouteMatch;

pub const FULL_URL: &str = "spin-full-url";
pub const PATH_INFO: &str = "spin-path-info";
pub const MATCHED_ROUTE: &str = "spin-matched-route";
pub const BASE_PATH: &str = "spin-base-path";
pub const RAW_COMPONENT_ROUTE: &str = "spin-raw-component-route";
pub const COMPONENT_ROUTE: &str = "spin-component-route";
pub const CLIENT_ADDR: &str = "spin-client-addr";
pub const PATH_MATCH_PREFIX: &str = "spin-path-match-";

/// Replaces any client-sent `spin-*` headers (a client must not be able to
/// forge its address or the matched route) with the host's own.
pub fn apply(headers: &mut HeaderMap, full_url: &str, base: &str, route: &RouteMatch<'_>, client_addr: &str) {
    let forged: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("spin-")).cloned().collect();
    for name in forged {
        headers.remove(name);
    }
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    };
    // The fixed names are built at compile time: none is parsed per request.
    set(const { HeaderName::from_static(FULL_URL) }, full_url);
    set(const { HeaderName::from_static(PATH_INFO) }, &route.path_info);
    set(const { HeaderName::from_static(MATCHED_ROUTE) }, &route.matched_route);
    set(const { HeaderName::from_static(BASE_PATH) }, base);
    set(const { HeaderName::from_static(RAW_COMPONENT_ROUTE) }, route.raw_route);
    set(const { HeaderName::from_static(COMPONENT_ROUTE) }, &route.component_route);
    set(const { HeaderName::from_static(CLIENT_ADDR) }, client_addr);
    for (name, value) in &route.named {
        // Spin's header name: lower case, `_` as `-` (`:user_id` → spin-path-match-user-id).
        let name = format!("{PATH_MATCH_PREFIX}{}", name.to_ascii_lowercase().replace('_', "-"));
        if let Ok(name) = HeaderName::try_from(name) {
            set(name, value);
        }
    }
}
