//! Request ids and W3C trace context.
//!
//! Every request that enters the shop gets a request id and a `traceparent`,
//! and every chained call carries both, so one request can be followed
//! through every service's log. A valid incoming value is kept (a caller that
//! already traces, or retries with its own id, stays correlated); anything
//! else is replaced, because an unchecked id would let a client inject
//! arbitrary text into every service's logs.
use shop_shared::api::{REQUEST_ID, TRACEPARENT};

use crate::inbound::Headers;

/// W3C's companion to `traceparent`: vendor data, meaningful only with the
/// trace it belongs to.
pub const TRACESTATE: &str = "tracestate";

/// The longest request id the gateway keeps.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's correlation headers, as passed to every service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub request_id: String,
    pub traceparent: String,
    /// Kept only when the incoming `traceparent` was kept: W3C trace context
    /// says a restarted trace must drop the old `tracestate`.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Keeps the client's valid ids and generates the rest.
    pub fn of(headers: &Headers) -> Self {
        let request_id = headers
            .get(REQUEST_ID)
            .filter(|id| is_valid_request_id(id))
            .map_or_else(new_request_id, str::to_owned);
        let (traceparent, tracestate) = match headers.get(TRACEPARENT) {
            Some(parent) if is_valid_traceparent(parent) => {
                (parent.to_owned(), headers.get(TRACESTATE).map(str::to_owned))
            }
            _ => (new_traceparent(), None),
        };
        Self { request_id, traceparent, tracestate }
    }

    /// The headers to set on a chained call.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            (REQUEST_ID.to_owned(), self.request_id.clone()),
            (TRACEPARENT.to_owned(), self.traceparent.clone()),
        ];
        if let Some(state) = &self.tracestate {
            headers.push((TRACESTATE.to_owned(), state.clone()));
        }
        headers
    }
}

/// 1 to 128 visible ASCII characters: safe to log and to echo in a header.
fn is_valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// `version-traceid-parentid-flags` in lower-case hex, as W3C Trace Context
/// (level 1, §3.2) defines it: version `ff` is invalid, all-zero ids are
/// invalid, and a version above `00` may append fields after a `-` that a
/// version-00 parser ignores.
fn is_valid_traceparent(value: &str) -> bool {
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    let Some(version) = value.get(..2) else { return false };
    if !is_hex(version, 2) || version == "ff" {
        return false;
    }
    let head = match (version, value.len()) {
        ("00", 55) => value,
        ("00", _) => return false,
        (_, 55) => value,
        (_, len) if len > 55 && value.as_bytes()[55] == b'-' => &value[..55],
        _ => return false,
    };
    let mut parts = head.split('-');
    let (Some(_), Some(trace_id), Some(parent_id), Some(flags), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    is_hex(trace_id, 32) && !all_zero(trace_id) && is_hex(parent_id, 16) && !all_zero(parent_id) && is_hex(flags, 2)
}

/// A random 128-bit id in hex.
fn new_request_id() -> String {
    hex(&random_bytes::<16>())
}

/// A new sampled trace: version 00, random trace and span ids, flags 01.
fn new_traceparent() -> String {
    format!("00-{}-{}-01", hex(&random_bytes::<16>()), hex(&random_bytes::<8>()))
}

/// Random bytes from WASI; never all zero, which trace context reserves for
/// "invalid".
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    while bytes.iter().all(|&b| b == 0) {
        // wasi:random cannot fail; a broken host is not worth a fallback.
        getrandom::fill(&mut bytes).expect("wasi:random is available");
    }
    bytes
}

/// Lower-case hex, as trace context and ETags spell bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())))
    }

    #[test]
    fn keeps_a_valid_request_id_and_replaces_an_invalid_one() {
        assert_eq!(TraceContext::of(&headers(&[("x-request-id", "abc-123")])).request_id, "abc-123");
        for bad in ["", "has space", "tab\there", "é", &"x".repeat(129)] {
            let id = TraceContext::of(&headers(&[("x-request-id", bad)])).request_id;
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32, "{id}");
        }
        assert!(is_valid_request_id(&"x".repeat(128)));
    }

    #[test]
    fn keeps_a_valid_traceparent_with_its_tracestate() {
        let context = TraceContext::of(&headers(&[("traceparent", PARENT), ("tracestate", "vendor=1")]));
        assert_eq!(context.traceparent, PARENT);
        assert_eq!(context.tracestate.as_deref(), Some("vendor=1"));
    }

    #[test]
    fn restarts_an_invalid_trace_and_drops_its_tracestate() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 has no extra fields
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            let context = TraceContext::of(&headers(&[("traceparent", bad), ("tracestate", "vendor=1")]));
            assert_ne!(context.traceparent, bad);
            assert!(is_valid_traceparent(&context.traceparent), "{}", context.traceparent);
            assert!(context.traceparent.starts_with("00-") && context.traceparent.ends_with("-01"));
            assert_eq!(context.tracestate, None);
        }
    }

    #[test]
    fn accepts_future_versions_with_extra_fields() {
        assert!(is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever"));
        assert!(!is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(new_request_id(), new_request_id());
        assert_ne!(new_traceparent(), new_traceparent());
    }
}
