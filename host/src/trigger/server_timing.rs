//! `bazaar up --server-timing`: every response to a request from the
//! network says, in a W3C `Server-Timing` field, how long the request waited
//! at the door to be admitted (`--max-concurrent-requests`) and how long it
//! then took to its response head:
//!
//! ```text
//! server-timing: queue;dur=12.250;desc="waiting to be admitted", app;dur=3.125;desc="admitted to response head"
//! ```
//!
//! Why: a client sees only the sum. Under load, whether a slow request
//! waited behind others or ran slowly is the first question (the shop's
//! benchmark traces both, see scripts/bench/latency_spread.py), and browser
//! developer tools show the field as it is. Durations are milliseconds, as
//! the W3C format wants. The field is appended, so one the component set
//! itself stays. Off by default: it tells the world how loaded the host is.
use std::time::Duration;

use http::{HeaderValue, Response};

pub const SERVER_TIMING: &str = "server-timing";

/// The field's value for a request that waited `queue` and then ran `app`.
pub fn value(queue: Duration, app: Duration) -> String {
    format!(
        "queue;dur={:.3};desc=\"waiting to be admitted\", app;dur={:.3};desc=\"admitted to response head\"",
        millis(queue),
        millis(app)
    )
}

/// Appends the field to `response`.
pub fn append<B>(response: &mut Response<B>, queue: Duration, app: Duration) {
    // Digits, letters and punctuation only: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&value(queue, app)) {
        response.headers_mut().append(SERVER_TIMING, value);
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_milliseconds_with_microsecond_digits() {
        let v = value(Duration::from_micros(12_250), Duration::from_nanos(3_125_400));
        assert_eq!(
            v,
            "queue;dur=12.250;desc=\"waiting to be admitted\", app;dur=3.125;desc=\"admitted to response head\""
        );
    }

    #[test]
    fn a_field_the_component_set_is_kept() {
        let mut response = Response::builder().header(SERVER_TIMING, "db;dur=1").body(()).unwrap();
        append(&mut response, Duration::ZERO, Duration::from_millis(2));
        let fields: Vec<_> = response.headers().get_all(SERVER_TIMING).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert_eq!(fields[0], "db;dur=1");
        assert!(fields[1].starts_with("queue;dur=0.000;"), "{fields:?}");
    }
}
